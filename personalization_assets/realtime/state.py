"""Engine state as plain JSON: what a checkpoint stores and what `inspect` shows.

Only facts are stored (timers, cancel memory, aliases, fire history); indexes and the timer heap
are derived, so a snapshot from an older build still restores.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timezone

from .definitions import TriggerSet
from .engine import Timer, TriggerEngine
from .guards import GuardProvider, TraitSource

FORMAT = 1
TIMER_FIELDS = ["trigger", "key", "window_start", "last_activity", "ids", "identities", "user_id",
                "timezone", "not_before"]


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def snapshot(engine: TriggerEngine) -> dict:
    return {
        "format": FORMAT,
        "frontier": _ts(engine.frontier),
        "timer_fields": TIMER_FIELDS,
        "timers": [  # rows, not objects: a checkpoint of 100k timers must take milliseconds
            [t.trigger, t.key, t.window_start.timestamp(), t.last_activity.timestamp(), list(t.ids),
             list(t.identities), t.user_id, t.timezone, _ts(t.not_before)]
            for t in engine.timers.values()
        ],
        "cancels": [[tr, i, _ts(at)] for (tr, i), at in engine.cancels.items()],
        "closed": [[tr, i, _ts(at)] for (tr, i), at in engine.closed.items()],
        "aliases": engine.aliases,
        "links": [[i, j, _ts(at)] for i, peers in engine.links.items() for j, at in peers.items()],
        "history": {u: [[tr, _ts(at)] for tr, at in h] for u, h in engine.history.items()},
        "decided": {k: _ts(at) for k, at in engine.decided.items()},
    }


def restore(data: dict, trigger_set: TriggerSet, guard: GuardProvider,
            traits: TraitSource | None = None) -> TriggerEngine:
    if data.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {data.get('format')!r} is not {FORMAT}; delete the"
                         " checkpoint to rebuild the state from the bus and the fire ledger")
    engine = TriggerEngine(trigger_set, guard, traits)
    engine.frontier = _dt(data.get("frontier"))
    engine.aliases = dict(data.get("aliases") or {})
    for row in data.get("timers", []):
        raw = dict(zip(TIMER_FIELDS, row))
        if raw["trigger"] not in engine.defs:
            continue  # a trigger that was removed from the definitions
        timer = Timer(raw["trigger"], raw["key"], _dt(raw["window_start"]), _dt(raw["last_activity"]),
                      set(raw["ids"]), set(raw["identities"]), raw["user_id"], raw["timezone"],
                      _dt(raw["not_before"]))
        tk = (timer.trigger, timer.key)
        engine.timers[tk] = timer
        for g in timer.ids:
            engine.by_id[(timer.trigger, g)] = tk
        for i in timer.identities:
            engine.by_identity.setdefault(i, set()).add(tk)
        engine._schedule(engine.defs[timer.trigger], timer)
    for table, rows in ((engine.cancels, data.get("cancels", [])), (engine.closed, data.get("closed", []))):
        for trigger, ident, at in rows:
            if trigger in engine.defs:
                engine._remember(table, (trigger, ident), _dt(at), engine.defs[trigger].memory)
    for i, j, at in data.get("links", []):
        engine._link((i, j), _dt(at))
    for user, rows in (data.get("history") or {}).items():
        for trigger, at in rows:
            engine.record_fire(user, trigger, _dt(at))
    for key, at in (data.get("decided") or {}).items():
        engine.mark_decided(key, _dt(at))
    heapq.heapify(engine._expiry)
    return engine
