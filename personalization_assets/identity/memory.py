"""Keep a large run's freed arrays from staying resident.

glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after the first
few freed arrays every array below 32 MB comes from the heap, and the heap hands freed memory back
only from its top: a million-record run kept ~0.2-0.4 GB of freed temporaries resident at its end,
exactly when its outputs are largest. A fixed threshold keeps every array of 1 MB or more in its
own mapping, returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK = 1 << 20


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Fix glibc's mmap threshold (process-wide; no-op elsewhere). True if it was set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc
        return False
