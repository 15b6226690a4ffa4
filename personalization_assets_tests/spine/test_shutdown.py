"""StopFlag: what the sender and the trigger engine wait on, set by SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import threading
import time

from personalization_assets.shutdown import StopFlag, stop_on_signals


def test_wait_times_out_unset_and_returns_at_once_when_set_by_another_thread():
    stop = StopFlag()
    assert stop.wait(0.05) is False and not stop.is_set()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert stop.wait(60) is True
    assert time.monotonic() - started < 30  # woke on the flag, not on the 60 s timeout


def test_a_signal_sets_the_flag_even_while_the_main_thread_is_waiting():
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        stop = stop_on_signals((signal.SIGUSR1,))
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert stop.wait(60) is True
    finally:
        signal.signal(signal.SIGUSR1, previous)

