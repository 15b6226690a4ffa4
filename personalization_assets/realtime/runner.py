"""The long-running trigger process: bus -> engine -> fire ledger, with `/metrics`.

It polls the bus with a short interval (sub-second decisions need a resident consumer, not a
Dagster run per tick). The ledger's checkpoint offset is the authoritative consumer position; the
bus consumer group is acked after each commit so that lag is visible on the bus side too.

Frontier: the receive time of the last record read. Receive times are stamped inside the bus's
serialized write transaction, so no later record can carry an earlier one. On an idle bus the
wall clock minus IDLE_SLACK_S moves it on: a record being committed right now (fsync) may carry a
receive time slightly in the past, and the slack must cover that commit time.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..redact import redact_url
from . import metrics
from .definitions import TriggerSet, load_trigger_set
from .engine import TriggerEngine
from .events import BadEvent, from_segment
from .guards import DictGuardProvider, GuardProvider, SqliteGuardProvider, TraitSource
from .ledger import Ledger, load_history
from .state import restore, snapshot

log = logging.getLogger(__name__)
IDLE_SLACK_S = 1.0
LAG_READ_CAP = 1000


def open_guard(spec: GuardProvider | str | None, allow_unknown: bool = False) -> GuardProvider:
    """A provider, or a SQLite path/URL (`sqlite:///guard.db`); None means: nobody is known."""
    if spec is None or isinstance(spec, str) and spec == "":
        return DictGuardProvider(allow_unknown=allow_unknown)
    if isinstance(spec, str):
        return SqliteGuardProvider(spec.removeprefix("sqlite://"), allow_unknown=allow_unknown)
    return spec


def open_traits(spec: TraitSource | str | None) -> TraitSource | None:
    """A trait source, or the SQLite path/URL of the store the traits asset syncs
    (`customer_traits`, in the guard store file by default); None: no store (all unknown)."""
    if spec is None or isinstance(spec, str) and spec == "":
        return None
    if isinstance(spec, str):
        from ..audiences.traits_store import TraitReader

        return TraitReader(spec.removeprefix("sqlite://"))
    return spec


class EngineProcess:
    """One engine bound to a bus and a ledger; `step()` is one poll (tests call it directly)."""

    # Checkpoints cost O(open timers); between them a crash only means re-reading up to
    # checkpoint_every_s of the bus, and the ledger keeps that replay from firing twice.
    def __init__(self, bus, ledger: Ledger, trigger_set: TriggerSet, guard: GuardProvider,
                 group: str = "triggers", batch: int = 500, checkpoint_every_s: float = 30.0,
                 clock: Callable[[], float] = time.time, traits: TraitSource | None = None):
        self.bus, self.ledger, self.group, self.batch = bus, ledger, group, batch
        self.clock = clock
        self.checkpoint_every_s = checkpoint_every_s
        cp = ledger.checkpoint()
        if cp is not None:
            self.engine = restore(cp.state, trigger_set, guard, traits)
            self.offset = cp.bus_offset
        else:  # no checkpoint: rebuild from the whole bus, the ledger prevents re-fires
            self.engine = TriggerEngine(trigger_set, guard, traits)
            self.offset = 0
        now = datetime.fromtimestamp(clock(), timezone.utc)
        load_history(self.engine, ledger, now, self.engine._history_span)
        self.names = frozenset(n for t in trigger_set.triggers for n in t.start_on | t.cancel_on)
        self.order_names = frozenset(n for t in trigger_set.triggers for n in t.cancel_on)
        self._last_checkpoint = clock()
        self._last_gauges = 0.0

    def step(self) -> int:
        """Read one batch, decide, commit. Returns how many records were read."""
        records = self.bus.read(self.offset, self.batch)
        decisions, orders = [], []
        engine = self.engine
        for r in records:
            try:
                ev = from_segment(r.event, r.received_at, self.names)
            except BadEvent:
                metrics.EVENTS_SKIPPED.labels("malformed").inc()
                ev = None
            if ev is not None:
                decisions += engine.process(ev)
                if ev.name in self.order_names:
                    orders += [(key, ev.at) for key in engine.cancel_keys(ev)]
        if records:  # one advance per batch: every record up to the last one is processed
            self.offset = records[-1].offset
            decisions += engine.advance(records[-1].received_at)
        if len(records) < self.batch:  # drained: the wall clock moves the frontier on an idle bus
            idle = datetime.fromtimestamp(self.clock() - IDLE_SLACK_S, timezone.utc)
            if engine.frontier is None or idle > engine.frontier:
                decisions += engine.advance(idle)
        due = self.clock() - self._last_checkpoint >= self.checkpoint_every_s
        if due or orders or any(d.kind in ("fire", "suppress") for d in decisions):
            self.commit(decisions, checkpoint=due, orders=orders)
        elif decisions:
            metrics.observe(decisions, time.time())  # cancels and deferrals: nothing to record
        metrics.EVENTS_CONSUMED.inc(len(records))
        self._gauges()
        return len(records)

    def commit(self, decisions, checkpoint: bool = True, orders=()) -> None:
        state = snapshot(self.engine) if checkpoint else None
        new = set(map(id, self.ledger.commit(decisions, self.offset, state, orders)))
        recorded = time.time()
        # a fire whose key was already in the ledger is a replay: count it nowhere
        metrics.observe([d for d in decisions if d.kind not in ("fire", "suppress") or id(d) in new],
                        recorded)
        if checkpoint:
            self._last_checkpoint = self.clock()
            if self.offset:
                self.bus.ack(self.group, [self.offset])

    def _lag(self) -> int:
        """Records not yet processed: exact on the SQLite bus (dense offsets); on buses whose
        offsets are sparse (Redis stream ids) a read-ahead, capped at LAG_READ_CAP."""
        if type(self.bus).__name__ == "SqliteBus":
            return max(0, self.bus.last_offset() - self.offset)
        return len(self.bus.read(self.offset, LAG_READ_CAP))

    def _gauges(self) -> None:
        if self.clock() - self._last_gauges < 1.0:
            return
        self._last_gauges = self.clock()
        metrics.CONSUMER_LAG.set(self._lag())
        for name, n in self.engine.open_timers().items():
            metrics.TIMERS_OPEN.labels(name).set(n)
        if self.engine.frontier is not None:
            metrics.WATERMARK.set(self.engine.frontier.timestamp())


def run_engine(bus_url: str, state_path: str | Path, definitions: TriggerSet | str | Path | None = None,
               port: int | None = 9108, *, guard: GuardProvider | str | None = None,
               allow_unknown: bool = False, group: str = "triggers", poll_interval_s: float = 0.02,
               stop: threading.Event | None = None, ready: Callable[[int], None] | None = None,
               traits: TraitSource | str | None = None) -> None:
    """Consume `bus_url` until `stop` is set; fires go to the ledger in `state_path` (SQLite).

    `definitions`: a TriggerSet, a YAML path, or None for the packaged triggers. `port`: where
    `/metrics` listens on 127.0.0.1 (0 = any free port, None = no endpoint). `ready(port)` is called
    once the process is consuming. `traits`: the computed-trait store that triggers with `when:`
    read at decision time (a SQLite path or a source); by default the guard store file when
    `guard` is a path (the traits asset syncs `customer_traits` there). Each decision reads it
    anew, so every warehouse sync reaches the running engine.
    """
    from ..bus import open_bus

    trigger_set = definitions if isinstance(definitions, TriggerSet) else load_trigger_set(definitions)
    stop = stop or threading.Event()
    server = None
    if port is not None:
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr="127.0.0.1")
        port = server.server_port
    if traits is None and isinstance(guard, str):
        traits = guard
    trait_source = open_traits(traits) if any(t.when is not None for t in trigger_set.triggers) else None
    bus = open_bus(bus_url)
    ledger = Ledger(state_path)
    try:
        proc = EngineProcess(bus, ledger, trigger_set, open_guard(guard, allow_unknown), group=group,
                             traits=trait_source)
        log.info("trigger engine consuming %s from offset %s, ledger %s", redact_url(bus_url), proc.offset, state_path)
        if ready:
            ready(port or 0)
        while not stop.is_set():
            if proc.step() < proc.batch:
                stop.wait(poll_interval_s)
        proc.commit([], checkpoint=True)
    finally:
        ledger.close()
        bus.close()
        if trait_source is not None and hasattr(trait_source, "close"):
            trait_source.close()
        if server is not None:
            server.shutdown()
            server.server_close()


def inspect_state(state_path: str | Path) -> dict:
    """What a running or stopped engine holds: checkpoint offset, open timers, ledger counts."""
    ledger = Ledger(state_path)
    try:
        cp = ledger.checkpoint()
        return {
            "bus_offset": cp.bus_offset if cp else 0,
            "open_timers": [dict(zip(cp.state["timer_fields"], row)) for row in cp.state["timers"]] if cp else [],
            "fired": ledger.count("fire"),
            "suppressed": ledger.count("suppress"),
            "checkpointed": cp is not None,
        }
    finally:
        ledger.close()


__all__ = ["EngineProcess", "inspect_state", "open_guard", "open_traits", "run_engine"]
