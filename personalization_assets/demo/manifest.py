"""The demo's data set on disk: `demo.json` in the data dir records what built it.

The manifest holds the seed, scale, the demo's "now" and what `--inject-bad` broke, so a rerun
rebuilds the same records at the same now, and a data set that cannot give a clean run again is
started over (`state.py` deletes it and resets the Dagster instance's cursors) instead of failing
the same way every time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..clock import iso, parse_instant

MANIFEST = "demo.json"


@dataclass(frozen=True)
class Manifest:
    seed: int
    scale: float
    now: datetime
    injected: dict[str, int] = field(default_factory=dict)  # what --inject-bad broke, per source


def read_manifest(data_dir: Path) -> Manifest | None:
    path = data_dir / MANIFEST
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return Manifest(seed=int(raw["seed"]), scale=float(raw["scale"]),
                    now=parse_instant(raw.get("now") or raw["anchor"]),  # older manifests: the anchor only
                    injected={k: int(v) for k, v in (raw.get("injected") or {}).items()})


def write_manifest(data_dir: Path, manifest: Manifest) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MANIFEST).write_text(json.dumps(
        {"seed": manifest.seed, "scale": manifest.scale, "now": iso(manifest.now), "injected": manifest.injected},
        indent=2) + "\n")


def reason_to_start_over(manifest: Manifest | None, *, seed: int, scale: float, now: datetime | None,
                         fresh: bool, inject_bad: bool) -> str | None:
    """Why the data dir must be started over before this run, or None to build on it."""
    if fresh:
        return "--fresh"
    if manifest is None:
        return None
    if (manifest.seed, manifest.scale) != (seed, scale):
        return f"it holds another data set (seed {manifest.seed}, scale {manifest.scale:g})"
    if now is not None and now != manifest.now:
        return f"it was built for another --now ({iso(manifest.now)})"
    if manifest.injected and not inject_bad:
        return ("it holds the rows --inject-bad broke on purpose: the event outside the tracking plan stays "
                "on the append-only bus and would fail the blocking check of staging.events again")
    return None
