"""Collector settings: plain values, so the same object drives tests, the CLI and workers."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..bus.base import DEFAULT_DEDUP_WINDOW_S

SETTINGS_ENV = "PERSONALIZATION_COLLECTOR_SETTINGS"


@dataclass(frozen=True)
class CollectorSettings:
    bus_url: str
    write_keys: frozenset[str] = frozenset()  # empty: any key is accepted (local demo only)
    dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S
    max_pending_events: int = 100_000  # beyond this the collector answers 429
    max_commit_events: int = 20_000
    retry_after_s: int = 1
    webhooks: dict = field(default_factory=dict)  # config handed to create_webhook_app

    def to_env(self) -> str:
        data = asdict(self)
        data["write_keys"] = sorted(self.write_keys)
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> "CollectorSettings":
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set; start the collector with run_collector()")
        data = json.loads(raw)
        data["write_keys"] = frozenset(data.get("write_keys", ()))
        return cls(**data)
