"""A check that a test closes every SQLite bus it writes to. A bus left open keeps its checkpoint
thread, its connection and its lock file for the rest of the session: a long suite then collects
dozens of threads and hundreds of open files.

A directory's conftest opts in with `from personalization_assets_tests.leaks import no_leaked_bus_thread`;
`closing` is a fixture for tests that open buses without a `with` block.
"""

from __future__ import annotations

import threading
import time

import pytest

THREAD_NAME = "bus-checkpoint"  # personalization_assets.bus.sqlite_bus._Checkpointer
GRACE_S = 15.0  # a server thread still shutting down may close its bus a little after the test


def checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()}


@pytest.fixture(scope="module", autouse=True)
def no_leaked_bus_thread(request):
    """Fails a test module (at the teardown of its last test, after its module fixtures) that leaves
    a bus-checkpoint thread running: close the bus, e.g. `with open_bus(url) as bus:`. Per module,
    not per test, so a module-scoped fixture may keep a bus across its tests. A leaked thread never
    ends, so waiting out the grace period costs time only when a test is wrong."""
    before = checkpoint_threads()
    yield
    deadline = time.monotonic() + GRACE_S
    for thread in checkpoint_threads() - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    if left := checkpoint_threads() - before:
        pytest.fail(f"{request.module.__name__} left {len(left)} SQLite bus(es) open (a {THREAD_NAME} thread "
                    "each): close every bus a test opens, e.g. `with open_bus(url) as bus:`", pytrace=False)


@pytest.fixture
def closing():
    """`closing(bus)` is `bus`, closed when the test ends, pass or fail."""
    opened = []

    def keep(bus):
        opened.append(bus)
        return bus

    yield keep
    for bus in reversed(opened):
        bus.close()
