"""Collector settings: plain values, so the same object drives tests, the CLI and workers.

Connection limits (per worker process), against slow or idle clients holding connections open:
- `header_timeout_s`: a request's headers must arrive within this long of the connection opening
  (or of its first byte, on a kept-alive connection); else the connection is closed.
- `body_timeout_s`: the whole body must arrive within this long of the headers; else 408.
- `keep_alive_timeout_s`: an idle kept-alive connection is closed after this long.
- `max_connections`: open connections beyond this are closed as soon as they are accepted.

/health and /metrics are served only on the admin address (`admin_host`:`admin_port`, loopback by
default), never on the public ingestion port: they show the worker pid and the bus location.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..bus.base import DEFAULT_DEDUP_WINDOW_S

SETTINGS_ENV = "PERSONALIZATION_COLLECTOR_SETTINGS"
WRITE_KEYS_ENV = "COLLECTOR_WRITE_KEYS"  # comma-separated


def load_write_keys(cli_keys=(), key_file: str | None = None, environ=os.environ) -> list[str]:
    """The accepted write keys: from --write-key (visible in `ps`: avoid), a file (one key per line,
    `#` comments), and COLLECTOR_WRITE_KEYS, all together. Raises ValueError for an unreadable file."""
    keys = [k.strip() for k in cli_keys or () if k.strip()]
    if key_file:
        try:
            lines = open(key_file, encoding="utf-8").read().splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the write key file {key_file}: {exc.strerror}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    keys += [k.strip() for k in environ.get(WRITE_KEYS_ENV, "").split(",") if k.strip()]
    return sorted(set(keys))


@dataclass(frozen=True)
class CollectorSettings:
    bus_url: str
    write_keys: frozenset[str] = frozenset()  # empty: any key is accepted (local demo only)
    dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S
    max_pending_events: int = 100_000  # beyond this the collector answers 429
    max_commit_events: int = 20_000
    retry_after_s: int = 1
    webhooks: dict = field(default_factory=dict)  # config handed to create_webhook_app
    admin_host: str = "127.0.0.1"
    admin_port: int = 8089
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5
    max_connections: int = 1000

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
