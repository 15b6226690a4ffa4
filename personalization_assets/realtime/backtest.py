"""Backtest: the live engine, unchanged, over a historical range of events.

The frontier follows the events' receive times (or their timestamps when history has none), so
the same lateness, cancellation, cooldown, cap and quiet-hours rules decide, in the same order, as
they would have live. Events after `end` are not seen: a cart whose order came after the range
ends may "fire" in the backtest, which is why the flush stops at `end`.

A trigger's `when:` conditions on computed traits are checked with the values the trait store
would have held at each decision (`replayed_traits.py`: computed from the same history, as of the
bucket edge before the decision), unless a `traits` source is given.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Iterable

import pandas as pd

from .definitions import TriggerDefinition, TriggerSet, load_trigger_set
from .engine import TriggerEngine
from .events import BadEvent, Event, from_segment
from .guards import DictGuardProvider, GuardProvider, TraitSource
from .replayed_traits import ReplayedTraits, TraitEvent

COLUMNS = ["trigger", "customer_id", "cart", "window_start", "due_at", "send_at", "outcome", "reason"]
_STAGING_FIELDS = ("user_id", "anonymous_id", "cart_id", "checkout_id", "order_id")
_PROPS = ("category", "sku", "currency", "cart_id", "checkout_id", "order_id", "value_minor")  # model.EVENT_COLUMNS


def _present(value) -> bool:
    return value is not None and value != "" and not (isinstance(value, float) and pd.isna(value))


def _trait_event(row: dict) -> TraitEvent | None:
    """One history row (raw payload, staging columns or a Segment dict) as the traits read it."""
    payload = row.get("payload", row if "properties" in row or "userId" in row else None)
    if payload is not None:
        payload = json.loads(payload) if isinstance(payload, str) else payload
        received = _utc(row.get("received_at") or payload.get("receivedAt")) or _utc(payload.get("timestamp"))
        at = _utc(payload.get("timestamp")) or received
        props = payload.get("properties") or {}
        name, user, anon = payload.get("event"), payload.get("userId"), payload.get("anonymousId")
    else:
        at = _utc(row.get("timestamp"))
        received = _utc(row.get("received_at")) or at
        props, name, user, anon = row, row.get("event"), row.get("user_id"), row.get("anonymous_id")
    if not name or at is None or received is None or not (_present(user) or _present(anon)):
        return None
    return TraitEvent(str(name).lower(), min(at, received), received, str(user) if _present(user) else None,
                      str(anon) if _present(anon) else None,
                      {c: props[c] for c in _PROPS if c in props and _present(props[c])})


def _utc(value) -> datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime() if pd.Timestamp(value).tzinfo is None \
        else pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def _events_from_frame(frame: pd.DataFrame, names: dict[str, str]) -> Iterable[Event]:
    """Rows of `raw.events` (payload JSON + received_at) or `staging.events` (flat columns)."""
    for row in frame.to_dict("records"):
        try:
            if "payload" in row:
                payload = row["payload"]
                payload = json.loads(payload) if isinstance(payload, str) else payload
                received = _utc(row.get("received_at")) or _utc(payload.get("timestamp"))
                ev = from_segment(payload, received) if received else None
            else:
                at = _utc(row.get("timestamp"))
                received = _utc(row.get("received_at")) or at
                if at is None or not row.get("event"):
                    continue
                ev = Event(str(row["event"]), min(at, received), received,
                           **{f: (str(row[f]) if row.get(f) not in (None, "") and not pd.isna(row[f]) else None)
                              for f in _STAGING_FIELDS if f in row})
        except (BadEvent, ValueError, TypeError, AttributeError):
            continue  # malformed history is quarantined upstream; it cannot be replayed here
        if ev is not None:
            name = names.get(ev.name.lower(), ev.name)
            yield ev if name == ev.name else replace(ev, name=name)


def identity_index(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Rows of `core.identity_map` (identity_type, identity, customer_key) as `backtest` takes them."""
    return {(str(r.identity_type), str(r.identity)): str(r.customer_key) for r in frame.itertuples(index=False)}


def history_start(trigger: TriggerDefinition, start: datetime) -> datetime | None:
    """The earliest event time a backtest from `start` reads: the customer window before it, and
    the longest window of the trigger's computed-trait conditions (None: a trait over all history)."""
    reach = trigger.customer_window
    for c in trigger.trait_conditions:
        if c.trait.window.start is None:
            return None
        reach = max(reach, timedelta(seconds=c.trait.window.start))
    return start - reach


def backtest(events: pd.DataFrame | Iterable[dict], triggers: TriggerSet | TriggerDefinition | str | None = None,
             start: datetime | None = None, end: datetime | None = None,
             guard: GuardProvider | None = None, traits: TraitSource | None = None,
             identity: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Who would have been messaged, and when, by `triggers` over events in [start, end).

    `events`: a frame of raw or staging events, or Segment dicts (with `receivedAt` or
    `timestamp`). `triggers`: a set, one definition, or the name of a packaged trigger.
    `guard` defaults to "everyone may be messaged" (pass real consent state to be exact).
    `traits`: where `when:` conditions read computed traits; by default they are computed from
    these same events (all of them before `end`, also those before `start`: windows look back),
    keyed to customers through `identity` ({(identity_type, identity): customer_key}, see
    `identity_index`) as the warehouse keys them.
    """
    if triggers is None or isinstance(triggers, str):
        base = load_trigger_set()
        triggers = base.only(triggers) if triggers else base
    elif isinstance(triggers, TriggerDefinition):
        triggers = TriggerSet((triggers,), load_trigger_set().limits)
    names = {n.lower(): n for t in triggers.triggers for n in t.start_on | t.cancel_on}
    if not isinstance(events, pd.DataFrame):
        events = list(events)  # read twice when traits are replayed
    if traits is None and any(t.when is not None for t in triggers.triggers):
        from .definitions import declared_trait_index

        used = {c.trait.name: c.trait for t in triggers.triggers for c in t.trait_conditions}
        replayed = traits = ReplayedTraits(used, declared_trait_index(), identity)
        rows = events.to_dict("records") if isinstance(events, pd.DataFrame) else events
        for te in map(_trait_event, rows):  # each decision counts only what had arrived by then
            if te is not None and (end is None or te.at < end):
                replayed.add(te)
    if isinstance(events, pd.DataFrame):
        stream = list(_events_from_frame(events, names))
    else:
        stream = []
        for e in events:
            received = _utc(e.get("receivedAt") or e.get("timestamp"))
            try:
                ev = from_segment(e, received) if received else None
            except BadEvent:
                continue
            if ev is not None:
                stream.append(ev)
    stream = [e for e in stream if (start is None or e.at >= start) and (end is None or e.at < end)]
    stream.sort(key=lambda e: e.received_at)
    engine = TriggerEngine(triggers, guard or DictGuardProvider(allow_unknown=True), traits)
    decisions = []
    tick = timedelta(microseconds=1)
    for ev in stream:  # decide what was due strictly before this arrival, then take it in
        decisions += engine.advance_through(ev.received_at - tick)
        decisions += engine.process(ev)
    if end is None and stream:
        longest = max(t.delay + t.allowed_lateness for t in triggers.triggers)
        end = stream[-1].received_at + longest + timedelta(days=1)  # let every timer decide
    if end is not None:
        decisions += engine.advance_through(end)
    rows = [(d.trigger, d.customer, d.group, d.window_start, d.due_at, d.decided_at, d.kind, d.reason)
            for d in decisions if d.kind in ("fire", "suppress")]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("window_start", "due_at", "send_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame.sort_values(["send_at", "trigger", "cart"], ignore_index=True)


