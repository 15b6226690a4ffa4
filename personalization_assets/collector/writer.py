"""Group commit: concurrent requests share one bus append (one transaction, one fsync).

Each request hands its events to a single writer thread and waits for the result; the thread
takes everything queued so far and appends it in one call. The request is answered only after
that append returned, so a 200 always means "durable in the bus". When more events wait than
`max_pending`, new requests are refused (the collector answers 429) instead of queueing forever.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from ..bus.base import Appended, EventBus
from . import metrics


class Backpressure(Exception):
    """Too many events are waiting for the bus; retry later."""


@dataclass(frozen=True)
class WriteResult:
    events: list[Appended]
    quarantined: list[Appended]


class GroupCommitWriter:
    def __init__(
        self, bus: EventBus, quarantine: EventBus, max_pending: int = 100_000, max_commit: int = 20_000
    ) -> None:
        self.bus, self.quarantine = bus, quarantine
        self.max_pending, self.max_commit = max_pending, max_commit
        self._cv = threading.Condition()
        self._queue: deque[tuple[list[dict], list[dict], Future]] = deque()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bus-group-commit", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, events: list[dict], quarantined: list[dict]) -> Future:
        n = len(events) + len(quarantined)
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the bus writer is closed")
            if self._pending and self._pending + n > self.max_pending:
                raise Backpressure(f"{self._pending} events are waiting for the bus")
            self._queue.append((events, quarantined, fut))
            self._pending += n
            self._cv.notify()
        return fut

    def _take(self) -> list[tuple[list[dict], list[dict], Future]] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None
            taken, size = [], 0
            while self._queue and (not taken or size + len(self._queue[0][0]) <= self.max_commit):
                item = self._queue.popleft()
                taken.append(item)
                size += len(item[0]) + len(item[1])
            return taken

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            n = sum(len(e) + len(q) for e, q, _ in taken)
            try:
                t0 = time.perf_counter()
                all_q = [q for _, qs, _ in taken for q in qs]
                q_res = self.quarantine.append_detailed(all_q) if all_q else []
                all_e = [e for es, _, _ in taken for e in es]
                e_res = self.bus.append_detailed(all_e) if all_e else []
                metrics.BUS_APPEND_DURATION.observe(time.perf_counter() - t0)
            except Exception as exc:  # every waiting request gets the error (answered 503)
                for _, _, fut in taken:
                    fut.set_exception(exc)
            else:
                ie = iq = 0
                for es, qs, fut in taken:
                    fut.set_result(WriteResult(e_res[ie : ie + len(es)], q_res[iq : iq + len(qs)]))
                    ie, iq = ie + len(es), iq + len(qs)
            finally:
                with self._cv:
                    self._pending -= n

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued (those requests still get their answer), then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)
