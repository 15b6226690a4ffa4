"""release_freed() hands the pages a large step freed back to the system (glibc keeps them
otherwise: small blocks freed below live ones never leave the heap), and `releasing` wraps a step's
function without changing what it returns or yields."""

import platform

import pytest

from personalization_assets.heap import release_freed, releasing


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_small_blocks_go_back_to_the_system():
    release_freed()
    # ~150 MB of 1 KB blocks: above Python's small-object allocator, below glibc's mmap threshold
    texts = [f"payload-{i}-" + "x" * 1000 for i in range(150_000)]
    survivors = texts[::100]  # a few live blocks scattered through the heap pin it
    del texts
    freed = _rss_mb()
    assert release_freed()
    assert _rss_mb() < freed - 50, "malloc_trim returned less than 50 MB of ~150 MB freed"
    assert len(survivors) == 1500


def test_releasing_keeps_results_and_generators():
    @releasing
    def plain(a, b=2):
        """doc"""
        return a + b

    @releasing
    def gen(n):
        yield from range(n)

    assert plain(1) == 3 and plain.__doc__ == "doc" and plain.__name__ == "plain"
    assert list(gen(3)) == [0, 1, 2]
    import inspect
    assert inspect.isgeneratorfunction(gen) and list(inspect.signature(plain).parameters) == ["a", "b"]


def test_arrow_pool_pages_go_back_to_the_system():
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pa.array([f"value-{i}" for i in range(3_000_000)])
    release_freed()  # the Python strings' heap pages: only Arrow's are left to measure
    upper = [pc.utf8_upper(texts) for _ in range(3)]  # ~200 MB from Arrow's pool
    del upper, texts
    freed = _rss_mb()
    release_freed(collect=False)
    assert _rss_mb() < freed - 100, f"{pa.default_memory_pool().backend_name} kept the pages of ~200 MB freed"


def test_collections_paused_stops_automatic_collection_and_restores_it():
    import gc
    import weakref

    from personalization_assets.heap import collections_paused

    class Node:
        pass

    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
        cycle = Node()
        cycle.me = cycle
        watch = weakref.ref(cycle)
        del cycle
        garbage = [[i] for i in range(100_000)]  # far past the first generation's threshold
        assert watch() is not None, "a collection ran inside the block"
    assert gc.isenabled() and len(garbage) == 100_000
    gc.collect()
    assert watch() is None
    with pytest.raises(RuntimeError):
        with collections_paused():
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collections_paused():
            pass
        assert not gc.isenabled(), "it enabled collection that was off before"
    finally:
        gc.enable()


def test_collections_thinned_freezes_what_lives_and_still_collects_cycles():
    import gc
    import weakref

    from personalization_assets.heap import collections_thinned

    class Node:
        pass

    before = gc.get_threshold()
    with collections_thinned((1_000, 5, 5)):
        assert gc.get_threshold() == (1_000, 5, 5) and gc.get_freeze_count() > 0
        cycle = Node()
        cycle.me = cycle
        watch = weakref.ref(cycle)
        del cycle
        garbage = [[i] for i in range(20_000)]  # past the thinned threshold: a collection runs
        assert watch() is None, "no collection freed the cycle inside the block"
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0 and len(garbage) == 20_000


def test_collecting_frees_the_cycles_an_item_left_before_the_next_and_restores_the_freeze():
    import gc
    import weakref

    from personalization_assets.heap import collecting, collections_paused, collections_thinned

    class Node:
        pass

    watches = []

    def items():
        for i in range(3):
            assert all(w() is None for w in watches), "an earlier item's cycle is still alive"
            yield i

    def process(item):  # leaves a cycle behind, as a pandas frame with a cached accessor does
        cycle = Node()
        cycle.me = cycle
        watches.append(weakref.ref(cycle))

    with collections_paused():  # only `collecting` collects
        for item in collecting(items()):
            process(item)
    assert len(watches) == 3 and watches[-1]() is None and gc.get_freeze_count() == 0
    with collections_thinned():  # a freeze from outside stays until its own block ends
        for item in collecting(items()):
            process(item)
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
