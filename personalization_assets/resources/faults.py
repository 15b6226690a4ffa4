"""Test-only fault injection: stop the process at a named point so a test can `kill -9` it there.

`PERSONALIZATION_FAULT=<point>` makes `fault_point(<point>)` print `FAULT <point> <pid>` to stderr
and sleep until the process is killed (`<point>:exit` ends it at once with `os._exit(137)`, the
status of a SIGKILL). Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

FAULT_ENV = "PERSONALIZATION_FAULT"


def fault_point(point: str) -> None:
    wanted = os.environ.get(FAULT_ENV)
    if not wanted or wanted.split(":")[0] != point:
        return
    print(f"FAULT {point} {os.getpid()}", file=sys.stderr, flush=True)
    if wanted.endswith(":exit"):
        os._exit(137)
    while True:  # the test kills the process here
        time.sleep(60)
