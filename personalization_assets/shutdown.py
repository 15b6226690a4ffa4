"""Stopping a long-running command on SIGTERM/SIGINT without a deadlock.

`threading.Event` must not be set from a signal handler: the handler runs in the main thread
between bytecodes, and if that thread was inside `Event.wait()` holding the event's (non-reentrant)
lock, `Event.set()` blocks on it forever. The sender then ignored SIGTERM (seen as a 20 s hang in
CI). `StopFlag` is set with one attribute write, and waits in short sleeps instead of on a lock.
"""

from __future__ import annotations

import signal
import time


class StopFlag:
    """The parts of `threading.Event` the loops use (`set`, `is_set`, `wait`), safe in a signal handler."""

    def __init__(self, tick_s: float = 0.05):
        self._set = False
        self.tick_s = tick_s

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until set or `timeout` seconds have passed; returns whether it is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = self.tick_s if deadline is None else min(self.tick_s, deadline - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
        return self._set


def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)) -> StopFlag:
    """A StopFlag that these signals set (call from the main thread)."""
    stop = StopFlag()
    for sig in signals:
        signal.signal(sig, lambda *_: stop.set())
    return stop
