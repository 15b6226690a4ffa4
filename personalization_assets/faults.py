"""Test-only fault injection: stop the process at a named point so a test can `kill -9` it there.

`PERSONALIZATION_FAULT=<point>` makes `fault_point(<point>, <where>)` print `FAULT <point>@<where>
<pid>` to stderr and sleep until the process is killed; `<point>@<where>` stops only there (e.g.
`after_delete@core.merge_evidence`), and a trailing `:exit` ends the process at once with
`os._exit(137)`, the status of a SIGKILL. Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

FAULT_ENV = "PERSONALIZATION_FAULT"


def fault_point(point: str, where: str = "") -> None:
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name = wanted.split(":")[0]
    if name != point and name != f"{point}@{where}":
        return
    print(f"FAULT {point}@{where} {os.getpid()}", file=sys.stderr, flush=True)
    if wanted.endswith(":exit"):
        os._exit(137)
    while True:  # the test kills the process here
        time.sleep(60)
