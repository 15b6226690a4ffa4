"""Starting the demo over: its data dir and the Dagster instance's sensor and schedule state.

Starting over deletes the data dir (refusing one that holds no manifest, see `manifest.py`) and
the instance's sensor and schedule state (their cursors point into the old event bus and landing
files); the run history stays for the UI.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .manifest import MANIFEST

if TYPE_CHECKING:
    import dagster as dg


def start_over(data_dir: Path, instance: dg.DagsterInstance | None = None) -> int:
    """Delete the demo's data dir and, given `instance`, reset its cursors (`reset_cursors`).
    Refuses a directory that is not the demo's."""
    if data_dir.exists() and any(data_dir.iterdir()) and not (data_dir / MANIFEST).exists():
        raise ValueError(f"{data_dir} is not empty and holds no {MANIFEST}, so it is not a demo data dir: "
                         "remove it yourself or choose another --data-dir")
    shutil.rmtree(data_dir, ignore_errors=True)
    return reset_cursors(instance) if instance is not None else 0


def reset_cursors(instance: dg.DagsterInstance) -> int:
    """Delete every sensor and schedule state of `instance` (cursors included): they point into an
    event bus and landing files that are gone. Returns how many states were reset."""
    if instance.schedule_storage is None:  # an ephemeral instance keeps no sensor state
        return 0
    states = list(instance.all_instigator_state())
    for state in states:
        instance.delete_instigator_state(state.instigator_origin_id, state.selector_id)
    return len(states)
