"""memory.map_large_blocks: arrays freed in the middle of the heap leave the process."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from personalization_assets.identity.memory import map_large_blocks

    def rss_mb():
        with open("/proc/self/status") as fh:
            return int(fh.read().split("VmRSS:")[1].split()[0]) // 1024

    if sys.argv[1] == "fixed":
        assert map_large_blocks()
    big = np.ones(20 << 20, np.uint8)  # freeing it raises glibc's dynamic mmap threshold to 20 MB
    del big
    before = rss_mb()
    arrays = [np.ones(2 << 20, np.uint8) for _ in range(100)]  # 200 MB of 2 MB arrays
    pin = np.ones(2 << 20, np.uint8)  # allocated last: the freed arrays sit below it
    del arrays
    print(rss_mb() - before)
""")


def _resident_after_free(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_freed_arrays_are_returned_to_the_system():
    assert _resident_after_free("fixed") < 20  # MB still resident of the 200 MB freed
