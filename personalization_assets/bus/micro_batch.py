"""When to launch a micro-batch run over the bus: plain logic behind the Dagster sensor.

One run per batch of waiting events, never one per event. While a run waits to start (queued or
launching) no second one is requested: it will read everything appended meanwhile. A run that is
already executing does not hold the next batch back: the next run starts its process meanwhile and
queues behind it on the warehouse pool, so start-up overlaps the previous load. The run key names
the offset range, so a repeated tick with the same cursor cannot launch the same batch twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Run tags of a micro-batch run: the bus offsets it was launched for. Staging stages only what is
# new in such a run (see `assets/staging.py`), instead of re-staging whole days.
OFFSET_FROM_TAG, OFFSET_TO_TAG = "bus/offset_from", "bus/offset_to"


@dataclass(frozen=True)
class Offsets:
    events: int = 0
    quarantine: int = 0

    def to_cursor(self) -> str:
        return json.dumps({"events": self.events, "quarantine": self.quarantine})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "Offsets":
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(int(data.get("events", 0)), int(data.get("quarantine", 0)))


@dataclass(frozen=True)
class Decision:
    run_key: str | None  # None: skip
    cursor: Offsets
    reason: str


def plan_micro_batch(seen: Offsets, head: Offsets, waiting_run: str | None) -> Decision:
    """`seen`: offsets already handed to a run; `head`: the buses' last offsets now;
    `waiting_run`: a micro-batch run that has not started executing yet, if any."""
    waiting = head.events > seen.events or head.quarantine > seen.quarantine
    if not waiting:
        return Decision(None, seen, f"no new events after offset {seen.events} "
                                    f"(quarantine {seen.quarantine})")
    if waiting_run:
        return Decision(None, seen, f"events waiting up to offset {head.events}; run "
                                    f"{waiting_run} has not started yet and will load them")
    key = f"events:{seen.events + 1}-{head.events}|quarantine:{seen.quarantine + 1}-{head.quarantine}"
    return Decision(key, head, f"new events: offsets {seen.events + 1}..{head.events}, "
                               f"quarantined {seen.quarantine + 1}..{head.quarantine}")
