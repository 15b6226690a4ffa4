"""Computed traits for a replay of history: the values the trait store would have held at each
decision, computed from the replayed events themselves.

Live, a decision reads `marts.computed_traits` as of the last bucket edge the warehouse synced
(`audiences/traits.py`). A backtest has no store for past instants, so at decision time `now`
this source evaluates each trait over the customer's events received by `now`, at the bucket
edge at or before `now` (`aligned`), with the audience stream's own evaluator (`trait_at`), which
the equivalence check holds equal to the SQL compilation. Events are keyed to customers as the
warehouse keys them (`traits.snapshot_sql`): through `core.identity_map` when one is given, else
by userId, else `anon:<anonymousId>`; a decision about a userId reads its customer's values (with
an identity map, only userIds the map knows have a row, as `traits_store.trait_rows` copies).
A customer is unknown, as in the store, until one of their events matches a declared trait.
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
    """A `realtime.guards.TraitSource` over replayed events (`add` them in any order).

    `identity`: {(identity_type, identity): customer_key} of `core.identity_map`
    (identity_type `user_id` or `anonymous_id`), or None to key by the event's own ids."""

    def __init__(self, used: dict[str, ComputedTrait], declared: dict[str, ComputedTrait] | None = None,
                 identity: dict[tuple[str, str], str] | None = None):
        self.used = dict(used)
        self.declared = {**(declared or {}), **self.used}  # who is a row of the store: any declared trait
        self.bucket = bucket_seconds(self.declared)
        self.identity = identity
        self.by_key: dict[str, list[TraitEvent]] = {}

    def _key(self, ev: TraitEvent) -> str:
        if self.identity is not None:
            key = self.identity.get(("user_id", ev.user_id or "")) \
                or self.identity.get(("anonymous_id", ev.anonymous_id or ""))
            if key is not None:
                return key
        return ev.user_id or f"anon:{ev.anonymous_id}"

    def add(self, ev: TraitEvent) -> None:
        self.by_key.setdefault(self._key(ev), []).append(ev)

    def traits(self, customer_id: str, now: datetime | None = None) -> tuple[dict[str, Any], datetime | None]:
        if now is None:
            raise ValueError("ReplayedTraits needs the decision time (`now`) to compute values as of then")
        key = customer_id if self.identity is None else self.identity.get(("user_id", customer_id))
        events = [e for e in self.by_key.get(key, ()) if e.received_at <= now] if key is not None else []
        if not any(_counted(t, e) for e in events for t in self.declared.values()):
            return {}, None  # no row in the store yet
        as_of = aligned(now, self.bucket)
        stream = sorted(StreamEvent(e.at.timestamp(), key, e.name, e.received_at.timestamp(), e.props)
                        for e in events)
        return {name: trait_at(t, stream, as_of.timestamp()) for name, t in self.used.items()}, as_of
