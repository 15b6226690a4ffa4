"""The trigger engine: a pure state machine over events and a frontier of receive time.

`process(event)` updates timers and cancels; `advance(frontier)` says "everything received up to
`frontier` has been processed" and returns the decisions that became due. No clock is read here,
so tests drive time explicitly and a replay of the bus reproduces the same decisions.

A timer is ready at `due + allowed_lateness` (receive time), where `due = last start event + delay`
in event time (see `events.py`). Before firing it passes, in order: the cancel memory (orders seen
for its cart, checkout or customer, however they were ordered on the bus), the guards (consent,
unsubscribe, latest purchase, then the trigger's `when:` conditions on the customer's computed
traits as the trait store holds them), cooldown, frequency cap, and quiet hours (which defer it).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from .definitions import ID_FIELDS, TriggerDefinition, TriggerSet
from .events import Event
from .guards import GuardProvider, NoTraits, TraitSource, suppression_reason, trait_reason
from .limits import cap_blocks, cooldown_blocks, quiet_until


@dataclass(slots=True)
class Timer:
    trigger: str
    key: str  # first group id, e.g. "cart_id:c-1"; with window_start it names the session
    window_start: datetime  # earliest start event of this session (event time)
    last_activity: datetime  # latest start event (event time)
    ids: set[str] = field(default_factory=set)  # group ids: cart_id:/checkout_id:/order_id:/user:
    identities: set[str] = field(default_factory=set)  # user:<id>, anon:<id>
    user_id: str | None = None
    timezone: str | None = None
    not_before: datetime | None = None  # deferred by quiet hours (receive time)
    version: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # fire | suppress | defer | cancel
    trigger: str
    group: str
    customer: str | None
    window_start: datetime
    due_at: datetime
    decided_at: datetime  # frontier (receive time) at the decision
    ready_at: datetime | None = None  # when it became decidable: due + lateness (or deferral end)
    reason: str | None = None
    not_before: datetime | None = None

    @property
    def fire_key(self) -> str:
        return fire_key(self.trigger, self.customer, self.group, self.window_start)


def fire_key(trigger: str, customer: str | None, group: str, window_start: datetime) -> str:
    """(trigger, customer, cart, window): what makes a fire exactly-once across replays."""
    return f"{trigger}|{customer or '-'}|{group}|{window_start.isoformat()}"


class TriggerEngine:
    def __init__(self, trigger_set: TriggerSet, guard: GuardProvider, traits: TraitSource | None = None):
        self.defs = {t.name: t for t in trigger_set.triggers}
        self.limits = trigger_set.limits
        self.guard = guard
        # Without a store every customer's traits are unknown: triggers with `when:` follow their policy.
        self.traits = traits if traits is not None else NoTraits()
        self.timers: dict[tuple[str, str], Timer] = {}
        self.by_id: dict[tuple[str, str], tuple[str, str]] = {}  # (trigger, group id) -> timer
        self.by_identity: dict[str, set[tuple[str, str]]] = {}  # identity -> timers
        self.cancels: dict[tuple[str, str], datetime] = {}  # (trigger, id) -> latest cancel time
        self.closed: dict[tuple[str, str], datetime] = {}  # (trigger, id) -> last decided activity
        self.aliases: dict[str, str] = {}  # anonymous id -> user id
        self.links: dict[str, dict[str, datetime]] = {}  # id -> ids seen on the same event (cart<->checkout)
        self.history: dict[str, list[tuple[str, datetime]]] = {}  # user -> (trigger, fired_at)
        self.decided: dict[str, datetime] = {}  # fire keys fired or suppressed -> when
        self.frontier: datetime | None = None
        self._heap: list[tuple[float, int, str, str, int]] = []
        self._expiry: list[tuple[float, str, tuple[str, str]]] = []  # heap: when to forget what
        self._seq = 0
        self._link_memory = max(t.memory for t in self.defs.values()) if self.defs else timedelta(0)
        self._history_span = max([self.limits.cap_window] + [t.cooldown for t in self.defs.values()])

    # -- events ------------------------------------------------------------------------------
    def process(self, ev: Event) -> list[Decision]:
        out: list[Decision] = []
        if ev.user_id and ev.anonymous_id and self.aliases.get(ev.anonymous_id) != ev.user_id:
            self._learn_alias(ev.anonymous_id, ev.user_id)
        if not ev.name:
            return out  # an identify or untracked call: only the alias mattered
        hard = ev.ids(ID_FIELDS)
        if len(hard) > 1:
            self._link(hard, ev.at)
        people = self._identities(ev)
        for t in self.defs.values():
            if ev.name in t.cancel_on:
                self._cancel_event(t, ev, hard, people, out)
            elif ev.name in t.start_on:
                self._start_event(t, ev, hard, people, out)
        return out

    def cancel_keys(self, ev: Event) -> list[str]:
        """`trigger|id` for each trigger this event cancels, with the ids it matches on (linked
        cart/checkout ids, and the customer where the trigger matches customers): the ledger's
        `orders_seen`, which the sender re-checks right before a send."""
        keys: list[str] = []
        for t in self.defs.values():
            if ev.name in t.cancel_on:
                ids = self._expand(ev.ids(ID_FIELDS), t.cancel_match)
                people = self._identities(ev) if "customer" in t.cancel_match else ()
                keys += [f"{t.name}|{i}" for i in ids + people]
        return keys

    def _identities(self, ev: Event) -> tuple[str, ...]:
        ids = ev.identities()
        alias = self.aliases.get(ev.anonymous_id) if ev.anonymous_id else None
        return ids + (f"user:{alias}",) if alias and not ev.user_id else ids

    def _learn_alias(self, anon: str, user: str) -> None:
        self.aliases[anon] = user
        for tk in list(self.by_identity.get(f"anon:{anon}", ())):
            timer = self.timers[tk]
            timer.user_id = timer.user_id or user
            timer.identities.add(f"user:{user}")
            self.by_identity.setdefault(f"user:{user}", set()).add(tk)

    def _link(self, ids: tuple[str, ...], at: datetime) -> None:
        for i in ids:
            peers = self.links.setdefault(i, {})
            for j in ids:
                if j != i and peers.get(j, at - timedelta(1)) < at:
                    peers[j] = at
                    heapq.heappush(self._expiry, ((at + self._link_memory).timestamp(), "l", (i, j)))

    def _expand(self, ids: tuple[str, ...], fields) -> tuple[str, ...]:
        """The ids plus those linked to them (two hops: order -> checkout -> cart)."""
        links = self.links
        if not any(i in links for i in ids):
            return tuple(i for i in ids if i[:i.index(":")] in fields)
        out = list(ids)
        for i in out[:]:
            for j in self.links.get(i, ()):
                if j not in out:
                    out.append(j)
                    out.extend(k for k in self.links.get(j, ()) if k not in out)
        return tuple(i for i in out if i[:i.index(":")] in fields)

    def _remember(self, table: dict, key: tuple[str, str], at: datetime, keep: timedelta) -> None:
        if key not in table or table[key] < at:
            table[key] = at
            heapq.heappush(self._expiry, ((at + keep).timestamp(), "c" if table is self.cancels else "x", key))

    def _cancel_event(self, t: TriggerDefinition, ev: Event, hard, people, out: list[Decision]) -> None:
        hard = self._expand(hard, t.cancel_match)
        people = people if "customer" in t.cancel_match else ()
        for i in hard + people:
            self._remember(self.cancels, (t.name, i), ev.at, t.memory)
        for i in hard:
            tk = self.by_id.get((t.name, i))
            if tk is not None:
                timer = self.timers[tk]
                self._ordered(t, timer, ev.at)
                out.append(self._close(timer, "cancel", i.split(":", 1)[0], ev.received_at))
        for i in people:
            for tk in [k for k in self.by_identity.get(i, ()) if k[0] == t.name]:
                timer = self.timers[tk]
                if ev.at >= timer.window_start - t.customer_window:
                    out.append(self._close(timer, "cancel", "customer", ev.received_at))

    def _start_event(self, t: TriggerDefinition, ev: Event, hard, people, out: list[Decision]) -> None:
        gids = self._expand(hard, t.group_by) or (people if "customer" in t.group_by else ())
        if not gids:
            return  # nothing to group it by
        closed = self.closed
        for g in gids:
            c = closed.get((t.name, g))
            if c is not None and c >= ev.at:
                return  # a session that was already decided covers it
        tk = next((self.by_id[(t.name, g)] for g in gids if (t.name, g) in self.by_id), None)
        if tk is None:
            tk = (t.name, gids[0])
            timer = self.timers[tk] = Timer(t.name, gids[0], ev.at, ev.at)
        else:
            timer = self.timers[tk]
            timer.window_start = min(timer.window_start, ev.at)
            timer.last_activity = max(timer.last_activity, ev.at)
            timer.not_before = None
        for g in gids:
            if g not in timer.ids:
                timer.ids.add(g)
                self.by_id[(t.name, g)] = tk
        for i in people:
            if i not in timer.identities:
                timer.identities.add(i)
                self.by_identity.setdefault(i, set()).add(tk)
        timer.user_id = timer.user_id or ev.user_id or self.aliases.get(ev.anonymous_id or "")
        timer.timezone = ev.timezone or timer.timezone
        reason = self._cancelled_by_memory(t, timer)
        if reason:  # the order reached us before this start event
            out.append(self._close(timer, "cancel", reason, ev.received_at))
            return
        self._schedule(t, timer)

    def _ordered(self, t: TriggerDefinition, timer: Timer, at: datetime) -> None:
        """An order matched on one id closes the cart under all of its ids (cart and checkout)."""
        for i in timer.ids:
            self._remember(self.cancels, (t.name, i), at, t.memory)

    def _cancelled_by_memory(self, t: TriggerDefinition, timer: Timer) -> str | None:
        cancels, name = self.cancels, t.name
        for i in timer.ids:
            at = cancels.get((name, i))
            if at is not None and i[:i.index(":")] in t.cancel_match:
                self._ordered(t, timer, at)
                return "out_of_order"
        if "customer" in t.cancel_match:
            floor = timer.window_start - t.customer_window
            for i in timer.identities:
                at = cancels.get((name, i))
                if at is not None and at >= floor:
                    return "out_of_order"
                if i.startswith("anon:") and i[5:] in self.aliases:
                    at = cancels.get((name, f"user:{self.aliases[i[5:]]}"))
                    if at is not None and at >= floor:
                        return "out_of_order"
        return None

    def _schedule(self, t: TriggerDefinition, timer: Timer) -> None:
        self._seq += 1
        timer.version = self._seq  # unique: a stale heap entry never matches a reborn timer
        ready = timer.last_activity + t.delay + t.allowed_lateness
        if timer.not_before is not None and timer.not_before > ready:
            ready = timer.not_before
        heapq.heappush(self._heap, (ready.timestamp(), self._seq, timer.trigger, timer.key, timer.version))

    def _close(self, timer: Timer, kind: str, reason: str | None, now: datetime | None = None,
               customer: str | None = None) -> Decision:
        t = self.defs[timer.trigger]
        tk = (timer.trigger, timer.key)
        del self.timers[tk]
        for g in timer.ids:
            self.by_id.pop((timer.trigger, g), None)
            self._remember(self.closed, (timer.trigger, g), timer.last_activity, t.memory)
        for i in timer.identities:
            holders = self.by_identity.get(i)
            if holders is not None:
                holders.discard(tk)
                if not holders:
                    del self.by_identity[i]
        due = timer.last_activity + t.delay
        return Decision(kind, timer.trigger, timer.key, customer or timer.user_id, timer.window_start,
                        due, now or self.frontier or timer.last_activity, due + t.allowed_lateness,
                        reason)

    # -- time --------------------------------------------------------------------------------
    def advance(self, frontier: datetime) -> list[Decision]:
        """Everything received up to `frontier` is processed: decide the timers that are ready."""
        if self.frontier is None or frontier > self.frontier:
            self.frontier = frontier
        now = self.frontier
        limit = now.timestamp()
        out: list[Decision] = []
        while self._heap and self._heap[0][0] <= limit:
            ready, _, trigger, key, version = heapq.heappop(self._heap)
            timer = self.timers.get((trigger, key))
            if timer is not None and timer.version == version:
                out.append(self._decide(self.defs[trigger], timer, now, ready))
        if self._expiry and self._expiry[0][0] <= limit:
            self._expire(limit)
        return out

    def advance_through(self, frontier: datetime) -> list[Decision]:
        """Like `advance`, but stopping at every ready time on the way, so each decision is made
        (and stamped) when it became due, as a live process would have: for backtests."""
        out: list[Decision] = []
        limit = frontier.timestamp()
        while self._heap and self._heap[0][0] <= limit:
            out += self.advance(datetime.fromtimestamp(self._heap[0][0], timezone.utc))
        return out + self.advance(frontier)

    def _decide(self, t: TriggerDefinition, timer: Timer, now: datetime, ready: float) -> Decision:
        if self._cancelled_by_memory(t, timer):
            return self._close(timer, "cancel", "late_check", now)
        user = timer.user_id or next((self.aliases[i[5:]] for i in timer.identities
                                      if i.startswith("anon:") and i[5:] in self.aliases), None)
        if user is None:
            return self._close(timer, "suppress", "unidentified", now)
        if fire_key(t.name, user, timer.key, timer.window_start) in self.decided:
            return self._close(timer, "duplicate", None, now, user)  # replayed after a restart
        state = self.guard.state(user)
        reason = suppression_reason(state)
        if reason is None and t.check_purchase and state.last_purchase_at is not None \
                and state.last_purchase_at >= timer.window_start - t.customer_window:
            reason = "purchased"
        if reason is None and t.when is not None:
            values, as_of = self.traits.traits(user, now)
            reason = trait_reason(t.when, values, as_of, t.trait_unknown)
        history = self.history.get(user, [])
        if reason is None and cooldown_blocks(history, t.name, t.cooldown, now):
            reason = "cooldown"
        if reason is None and cap_blocks(history, self.limits.cap_messages, self.limits.cap_window, now):
            reason = "frequency_cap"
        if reason is None:
            until = quiet_until(now, state.timezone or timer.timezone, self.limits.quiet_hours)
            if until is not None:
                timer.not_before = until
                self._schedule(t, timer)
                return Decision("defer", t.name, timer.key, user, timer.window_start,
                                timer.last_activity + t.delay, now, None, "quiet_hours", until)
        decision = self._close(timer, "suppress" if reason else "fire", reason, now, user)
        decision = replace(decision, ready_at=datetime.fromtimestamp(ready, timezone.utc))
        self.mark_decided(decision.fire_key, now)
        if decision.kind == "fire":
            self.record_fire(user, t.name, now)
        return decision

    def mark_decided(self, key: str, at: datetime) -> None:
        self.decided[key] = at
        heapq.heappush(self._expiry, ((at + self._history_span).timestamp(), "d", (key, "")))

    def record_fire(self, user: str, trigger: str, at: datetime) -> None:
        """Count a fire for cooldown and cap (also used to reload them from the ledger)."""
        span = self._history_span
        kept = [h for h in self.history.get(user, []) if at - h[1] < span]
        kept.append((trigger, at))
        self.history[user] = kept

    def _expire(self, limit: float) -> None:
        while self._expiry and self._expiry[0][0] <= limit:
            _, kind, key = heapq.heappop(self._expiry)
            if kind == "d":
                self.decided.pop(key[0], None)
                continue
            if kind == "l":
                peers = self.links.get(key[0], {})
                if key[1] in peers and (peers[key[1]] + self._link_memory).timestamp() <= limit:
                    del peers[key[1]]
                    if not peers:
                        del self.links[key[0]]
                continue
            table = self.cancels if kind == "c" else self.closed
            at = table.get(key)
            if at is not None and (at + self.defs[key[0]].memory).timestamp() <= limit:
                del table[key]

    def open_timers(self) -> dict[str, int]:
        counts = {name: 0 for name in self.defs}
        for trigger, _ in self.timers:
            counts[trigger] += 1
        return counts

