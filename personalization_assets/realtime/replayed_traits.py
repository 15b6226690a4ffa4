"""Computed traits for a replay of history: the values the trait store would have held at each
decision, computed from the replayed events themselves.

Live, a decision reads `marts.computed_traits` as of the last bucket edge the warehouse synced
(`audiences/traits.py`). A backtest has no store for past instants, so at decision time `now`
this source evaluates each trait over the customer's events received by `now`, at the bucket
edge at or before `now` (`aligned`), with the audience stream's own evaluator (`trait_at`), which
the equivalence check holds equal to the SQL compilation. The customer is a userId; anonymous
events count once an event has linked them to it (the warehouse resolves identities more
widely, through `core.identity_map`). A customer is unknown, as in the store, until one of
their events matches a declared trait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..audiences.model import ComputedTrait, EventFilter
from ..audiences.stream import StreamEvent, trait_at
from ..audiences.traits import aligned, bucket_seconds


@dataclass(frozen=True, slots=True)
class TraitEvent:
    name: str  # lower case, as staged
    at: datetime
    received_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    props: dict[str, Any] = field(default_factory=dict)


def _counted(t: ComputedTrait, ev: TraitEvent) -> bool:
    """Whether the warehouse's fold keeps a state row for this event (`traits._fold_select`)."""
    f: EventFilter = t.match
    return ev.name in f.events and all(ev.props.get(col) in vals for col, vals in f.where) \
        and (t.kind not in ("last", "most_frequent") or ev.props.get(t.of) is not None)


class ReplayedTraits:
    """A `realtime.guards.TraitSource` over replayed events (`add` them in receive order)."""

    def __init__(self, used: dict[str, ComputedTrait], declared: dict[str, ComputedTrait] | None = None):
        self.used = dict(used)
        self.declared = {**(declared or {}), **self.used}  # who is a row of the store: any declared trait
        self.bucket = bucket_seconds(self.declared)
        self.by_user: dict[str, list[TraitEvent]] = {}
        self.by_anon: dict[str, list[TraitEvent]] = {}
        self.aliases: dict[str, set[str]] = {}  # userId -> anonymous ids linked to it

    def add(self, ev: TraitEvent) -> None:
        if ev.user_id:
            self.by_user.setdefault(ev.user_id, []).append(ev)
            if ev.anonymous_id:
                self.aliases.setdefault(ev.user_id, set()).add(ev.anonymous_id)
        elif ev.anonymous_id:
            self.by_anon.setdefault(ev.anonymous_id, []).append(ev)

    def traits(self, customer_id: str, now: datetime | None = None) -> tuple[dict[str, Any], datetime | None]:
        if now is None:
            raise ValueError("ReplayedTraits needs the decision time (`now`) to compute values as of then")
        events = [e for e in self.by_user.get(customer_id, ()) if e.received_at <= now]
        for anon in self.aliases.get(customer_id, ()):
            events += [e for e in self.by_anon.get(anon, ()) if e.received_at <= now]
        if not any(_counted(t, e) for e in events for t in self.declared.values()):
            return {}, None  # no row in the store yet
        as_of = aligned(now, self.bucket)
        stream = sorted(StreamEvent(e.at.timestamp(), customer_id, e.name, e.received_at.timestamp(), e.props)
                        for e in events)
        return {name: trait_at(t, stream, as_of.timestamp()) for name, t in self.used.items()}, as_of
