"""Small builders for trigger tests: events and engines on an explicit clock (never sleep)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from personalization_assets.realtime.definitions import load_trigger_set
from personalization_assets.realtime.engine import TriggerEngine
from personalization_assets.realtime.events import Event
from personalization_assets.realtime.guards import CustomerState, DictGuardProvider

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)  # 12:00 UTC, outside quiet hours in UTC
H = timedelta(hours=1)
M = timedelta(minutes=1)
LATE = 2 * M  # allowed lateness of the packaged cart trigger


def ev(name: str, at: datetime, received: datetime | None = None, user: str | None = "u1",
       cart: str | None = "c1", checkout: str | None = None, order: str | None = None,
       anon: str | None = None, tz: str | None = None) -> Event:
    return Event(name, at, received or at, None, user, anon, cart, checkout, order, tz)


def triggers(*names: str, quiet: bool = False, cap: int = 100, **limits):
    ts = load_trigger_set()
    ts = ts.only(*names) if names else ts
    return replace(ts, limits=replace(ts.limits, cap_messages=cap,
                                      quiet_hours=ts.limits.quiet_hours if quiet else None, **limits))


def engine(*names: str, states: dict[str, CustomerState] | None = None, quiet: bool = False,
           cap: int = 100, allow_unknown: bool = True) -> TriggerEngine:
    return TriggerEngine(triggers(*names, quiet=quiet, cap=cap),
                         DictGuardProvider(states, allow_unknown=allow_unknown))


def run(engine: TriggerEngine, events, until: datetime):
    """Feed events in list order (their receive time is the frontier), then advance to `until`."""
    out = []
    for e in events:
        out += engine.process(e)
        out += engine.advance(e.received_at)
    out += engine.advance(until)
    return out


def tick(engine: TriggerEngine, until: datetime, step: timedelta = timedelta(minutes=1)):
    """Advance the frontier minute by minute, as a live process would (no jumps over a night)."""
    out, at = [], engine.frontier
    while at < until:
        at = min(at + step, until)
        out += engine.advance(at)
    return out


def kinds(decisions, kind="fire"):
    return [d for d in decisions if d.kind == kind]

