"""Hand the memory a large step freed back to the system.

The demo runs its steps one after another in one process. A step that held a few hundred thousand
rows in pandas frees them when it ends, but glibc keeps most of those bytes: object columns are
millions of small blocks from the heap (and DuckDB's threads allocate from arenas of their own),
and a heap hands memory back only from its top. The next steps then start from the high-water
mark of the largest step so far. `malloc_trim(0)` returns every whole free page of every arena,
and Arrow's own pool (mimalloc by default) is asked to hand back the pages it keeps.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import inspect
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_LIBC = None


def release_freed(collect: bool = True) -> bool:
    """Collect cycles (`collect`: ~70 ms with the Dagster definitions loaded), then return the free
    pages of Arrow's pool and of glibc's heaps to the system (no-op off glibc; well under a
    millisecond on a small heap). True if glibc returned memory."""
    import pyarrow as pa  # here, not at import: the demo's seeding imports this module before pandas

    global _LIBC
    if collect:
        gc.collect()
    pa.default_memory_pool().release_unused()  # 223 MB kept after core.customers at 1M
    try:
        _LIBC = _LIBC or ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_LIBC.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def releasing(fn):
    """Wrap a step's function: release what the steps before it freed, run it, then release what
    it freed itself (its locals are gone once it returns; its inputs go when the step ends, and the
    next wrapped step releases them). Generator functions stay generators. No cycle collection: the
    frames go by reference counting, and a collection costs ~70 ms a call, twice a step (a micro-batch
    runs two wrapped steps in ~0.3 s)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            release_freed(collect=False)
            try:
                yield from fn(*args, **kwargs)
            finally:
                release_freed(collect=False)
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        release_freed(collect=False)
        try:
            return fn(*args, **kwargs)
        finally:
            release_freed(collect=False)
    return plain


@contextlib.contextmanager
def collections_paused():
    """No automatic cycle collection inside the block (as before after it). For code that builds
    many objects that live on and form no cycles: each collection of the oldest generation walks
    every object alive, so their number grows with the data. Seeding the demo at scale 30 (a
    million dicts) spent ~9 s of its 44 s CPU in collections that found nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collecting(items: Iterable[T]) -> Iterator[T]:
    """`items`, with the cycles each one's processing left collected before the next is fetched.
    pandas and Pandera leave a chunk's frames in reference cycles (a frame and its cached
    `.pandera` accessor, a Series and its `.dt`), so they outlive the chunk until a collection of
    the oldest generation, which Python runs only after a quarter of the objects alive have been
    promoted there: validating 10M rows in 100k-row chunks held up to 400 MB of past chunks. The
    objects alive on entry are frozen, so each collection walks only what the loop made (~6 ms a
    chunk with the Dagster definitions loaded, not ~110 ms); unfrozen after, unless they already
    were (`collections_thinned`)."""
    frozen_outside = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        for item in items:
            yield item
            gc.collect()
    finally:
        if not frozen_outside:
            gc.unfreeze()


# The first generation is collected after this many new container objects (Python's default: 700).
# A step's rows come and go by reference counting; a collection every 700 of them mostly walked
# objects that were about to be freed anyway, and promoted the rest to be walked again.
RUN_GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def collections_thinned(threshold: tuple[int, int, int] = RUN_GC_THRESHOLD):
    """Fewer, cheaper cycle collections inside the block, for a long in-process run: the objects
    alive on entry (imported modules, the Dagster definitions and instance) are frozen, so no
    collection walks them again, and collections run `threshold` apart (see RUN_GC_THRESHOLD).
    Cycles are still collected. As before after the block."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
