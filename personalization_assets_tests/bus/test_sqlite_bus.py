"""The embedded bus: durable append, dedup window, offsets in order, groups, several processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

import pytest

from personalization_assets.bus import open_bus
from personalization_assets.bus.sqlite_bus import SqliteBus


def _ev(i: int, **extra) -> dict:
    return {"type": "track", "event": "Viewed", "messageId": f"m-{i}", "properties": {"i": i}, **extra}


def test_open_bus_creates_parent_dirs_and_round_trips(tmp_path):
    url = f"sqlite:///{tmp_path}/a/b/events.db"
    bus = open_bus(url)
    offsets = bus.append([_ev(1), _ev(2)])
    assert offsets[1] == offsets[0] + 1
    records = bus.read(0)
    assert [r.message_id for r in records] == ["m-1", "m-2"]
    assert records[0].event["properties"] == {"i": 1}
    assert records[0].received_at.tzinfo is not None
    assert bus.last_offset() == offsets[1]
    bus.close()
    with open_bus(url) as reopened:
        assert [r.offset for r in reopened.read(0)] == offsets


def test_duplicates_are_stored_once_and_report_the_first_offset(tmp_path, closing):
    bus = closing(SqliteBus(tmp_path / "e.db"))
    first = bus.append_detailed([_ev(1), _ev(2), _ev(1)])
    assert [a.duplicate for a in first] == [False, False, True]
    assert first[2].offset == first[0].offset
    again = bus.append_detailed([_ev(2), _ev(3)])
    assert [a.duplicate for a in again] == [True, False]
    assert again[0].offset == first[1].offset
    assert bus.count() == 3


def test_messageid_is_stored_again_after_the_window(tmp_path, closing):
    bus = closing(SqliteBus(tmp_path / "e.db", dedup_window_s=0.2))
    bus.append([_ev(1)])
    time.sleep(0.3)
    bus._next_prune = 0  # prune on the next append instead of after the 60 s period
    bus.append([_ev(9)])
    assert bus.append_detailed([_ev(1)])[0].duplicate is False
    assert bus.count() == 3


def test_hash_collisions_never_drop_or_double_an_event(tmp_path, closing, monkeypatch):
    """Every messageId hashes alike here: the log's own ids still tell duplicates from strangers,
    and pruning the window removes exactly the pruned entries."""
    from personalization_assets.bus import sqlite_bus

    monkeypatch.setattr(sqlite_bus, "id_hash", lambda message_id: 42)
    bus = closing(SqliteBus(tmp_path / "e.db", dedup_window_s=0.2))
    first = bus.append_detailed([_ev(1), _ev(2)])
    again = bus.append_detailed([_ev(2), _ev(3), _ev(1)])
    assert [a.duplicate for a in again] == [True, False, True]
    assert (again[0].offset, again[2].offset) == (first[1].offset, first[0].offset)
    time.sleep(0.3)
    bus._next_prune = 0
    bus.append([_ev(9)])  # prunes m-1..m-3 (older than the window), keeps m-9
    assert [a.duplicate for a in bus.append_detailed([_ev(1), _ev(9)])] == [False, True]
    assert bus.count() == 5


def test_a_bus_with_the_old_text_index_is_migrated(tmp_path, closing):
    import sqlite3

    bus = closing(SqliteBus(tmp_path / "e.db"))
    offsets = bus.append([_ev(1), _ev(2)])
    bus.close()
    with sqlite3.connect(tmp_path / "e.db") as conn:  # the index as an earlier version wrote it
        conn.execute("DROP TABLE events_ids")
        conn.execute("CREATE TABLE events_dedup (message_id TEXT PRIMARY KEY, bus_offset INTEGER NOT NULL) WITHOUT ROWID")
        conn.executemany("INSERT INTO events_dedup VALUES (?, ?)", [("m-1", offsets[0]), ("m-2", offsets[1])])
    reopened = closing(SqliteBus(tmp_path / "e.db"))
    assert [a.duplicate for a in reopened.append_detailed([_ev(2), _ev(3)])] == [True, False]
    with sqlite3.connect(tmp_path / "e.db") as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert "events_dedup" not in tables and "events_ids" in tables


def test_event_without_message_id_gets_one(tmp_path, closing):
    bus = closing(SqliteBus(tmp_path / "e.db"))
    bus.append([{"type": "track", "event": "X"}])
    (record,) = bus.read(0)
    assert record.event["messageId"] == record.message_id and record.message_id


def test_read_paginates_and_group_ack_advances(tmp_path, closing):
    bus = closing(SqliteBus(tmp_path / "e.db"))
    offsets = bus.append([_ev(i) for i in range(10)])
    assert [r.offset for r in bus.read(offsets[3], limit=2)] == offsets[4:6]
    got = bus.read_group("g", "c1", limit=4)
    assert [r.offset for r in got] == offsets[:4]
    # not acknowledged yet: delivered again
    assert [r.offset for r in bus.read_group("g", "c1", limit=4)] == offsets[:4]
    bus.ack("g", [r.offset for r in got])
    assert [r.offset for r in bus.read_group("g", "c1", limit=100)] == offsets[4:]
    assert [r.offset for r in bus.read_group("other", "c", limit=2)] == offsets[:2]
    bus.ack("g", [offsets[1]])  # a stale ack never moves the group backwards
    assert bus.committed("g") == offsets[3]


def test_read_group_blocks_until_timeout_when_empty(tmp_path, closing):
    bus = closing(SqliteBus(tmp_path / "e.db"))
    t0 = time.monotonic()
    assert bus.read_group("g", "c", block_ms=150) == []
    assert time.monotonic() - t0 >= 0.14


def _writer(path: str, start: int, n: int) -> None:
    with SqliteBus(path) as bus:
        for k in range(0, n, 50):
            bus.append([_ev(start + i) for i in range(k, min(n, k + 50))])


def test_several_processes_write_and_read_at_once(tmp_path, closing):
    path = str(tmp_path / "e.db")
    SqliteBus(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p * 10_000, 400)) for p in range(3)]
    for p in procs:
        p.start()
    reader = closing(SqliteBus(path))
    seen, after = [], 0
    deadline = time.monotonic() + 30
    while len(seen) < 1200 and time.monotonic() < deadline:
        batch = reader.read(after, limit=300)
        if batch:
            seen.extend(r.offset for r in batch)
            after = batch[-1].offset
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(seen) == 1200 and seen == sorted(set(seen))


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown bus URL scheme"):
        open_bus("kafka://x")


def _open_files_under(folder) -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the fd of the listing itself, closed by now
            pass
    return [p for p in paths if p.startswith(str(folder))]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc to list open files")
def test_close_stops_the_checkpoint_thread_and_releases_every_file(tmp_path):
    with SqliteBus(tmp_path / "e.db") as bus:
        bus.append([_ev(1)])  # the first append starts the checkpoint thread
        thread = bus._checkpointer._thread
        assert thread.is_alive() and thread in threading.enumerate()
        assert _open_files_under(tmp_path)
    assert not thread.is_alive()
    assert _open_files_under(tmp_path) == []


def test_close_of_an_idle_bus_does_not_wait_for_the_checkpoint_poll(tmp_path):
    bus = SqliteBus(tmp_path / "e.db")
    bus.append([_ev(1)])
    checkpointer = bus._checkpointer
    deadline = time.monotonic() + 30
    while checkpointer.wanted.is_set() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)  # its checkpoint done, the thread waits up to 0.5 s for the next append
    t0 = time.monotonic()
    bus.close()
    assert not checkpointer._thread.is_alive()
    assert time.monotonic() - t0 < 0.25  # close wakes it: no wait for the rest of the ~0.4 s
