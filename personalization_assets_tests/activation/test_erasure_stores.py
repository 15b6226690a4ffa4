"""Each store outside the warehouse erases one person for good: not a byte left in its files, and
nobody else's data touched."""

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import redis

from personalization_assets.activation.erasure_match import Identifiers
from personalization_assets.activation.erasure_stores import (
    BusStore, GuardStore, LandingStore, LedgerStore, LocalExports, rewrite_duckdb_file,
)
from personalization_assets.activation.destinations import FileExport
from personalization_assets.activation.model import SyncRow
from personalization_assets.bus import open_bus
from personalization_assets.realtime.engine import Decision
from personalization_assets.realtime.guards import SqliteGuardProvider
from personalization_assets.realtime.ledger import Ledger
from personalization_assets.warehouse import WarehouseConnection

ANNA = Identifiers(customer_keys={"cus_anna0001"}, record_ids={"crm:1001"}, source_ids={"1001"},
                   emails={"anna.k@example.org"}, phones={"+447700900123"}, user_ids={"1001"},
                   anonymous_ids={"6cad4a26-8d11-6ece-1738-f7d93d9c1724"})
SECRETS = [b"anna.k@example.org", b"6cad4a26-8d11-6ece-1738-f7d93d9c1724", b"cus_anna0001", b"+447700900123"]


def leftovers(*paths: Path) -> list[str]:
    """Which of Anna's identifiers a file (or a file beside it: WAL, journal) still holds."""
    found = []
    for path in paths:
        for f in path.parent.glob(path.name + "*"):
            data = f.read_bytes().lower()
            found += [f"{f.name}: {s.decode()}" for s in SECRETS if s in data]
    return found


def events(user: str, anon: str, email: str, n: int = 3) -> list[dict]:
    out = [{"type": "identify", "messageId": f"id-{user}", "userId": user, "anonymousId": anon,
            "traits": {"email": email, "phone": "+447700900123"}}]
    return out + [{"type": "track", "event": "Product Viewed", "messageId": f"{user}-{i}", "anonymousId": anon,
                   "properties": {"sku": "SKU-1"}} for i in range(n)]


BOB = ("1002", "0b0b0b0b-8d11-6ece-1738-f7d93d9c1724", "bob@example.org")


def test_sqlite_bus_erases_her_events_and_their_bytes(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    bus = open_bus(url)
    bus.append(events("1001", "6cad4a26-8d11-6ece-1738-f7d93d9c1724", "Anna.K@example.org"))
    bob_offsets = bus.append(events(*BOB))  # Bob shares her phone (a family landline)
    bus.close()
    assert leftovers(tmp_path / "events.db")
    store = BusStore(url)

    assert store.erase(ANNA) == 4 and store.remaining(ANNA) == 0
    assert leftovers(tmp_path / "events.db") == ["events.db: +447700900123"]  # only in Bob's identify event
    bus = open_bus(url)
    kept = bus.read(0)
    assert [r.offset for r in kept] == bob_offsets
    (again,) = bus.append_detailed([{"type": "track", "messageId": "1001-0", "event": "Resent"}])
    assert not again.duplicate and again.offset > max(bob_offsets)  # her dedup entries went with her events
    bus.close()


def test_redis_bus_erases_her_entries_and_their_bytes(redis_url):
    """XDEL alone leaves the entry in its listpack (and in DUMP/RDB); the rebuild drops it and
    keeps the consumer groups where they were, pending entries included."""
    stream = f"erasure-test-{uuid.uuid4().hex[:8]}"
    bus = open_bus(redis_url, topic=stream)
    raw = redis.Redis.from_url(redis_url)
    try:
        bus.append(events("1001", "6cad4a26-8d11-6ece-1738-f7d93d9c1724", "anna.k@example.org"))
        bob = bus.append(events(*BOB))
        delivered = bus.read_group("triggers", "c1", limit=6)  # Bob's first two delivered, not acked
        bus.ack("triggers", [r.offset for r in delivered[:4]])
        assert b"anna.k@example.org" in raw.dump(stream)
        store = BusStore(redis_url, stream)

        assert store.erase(ANNA) == 4 and store.remaining(ANNA) == 0
        assert [r.offset for r in bus.read(0)] == bob
        assert b"anna.k@example.org" not in raw.dump(stream) and b"6cad4a26" not in raw.dump(stream)
        assert [r.offset for r in bus.read_group("triggers", "c1")] == bob[:2]  # redelivered: still pending
        bus.ack("triggers", bob[:2])
        assert [r.offset for r in bus.read_group("triggers", "c1")] == bob[2:]  # then the rest, once
        assert bus.append([{"type": "track", "messageId": "late", "event": "E"}])[0] > bob[-1]
    finally:
        bus.drop()
        bus.close()
        raw.close()


def test_guard_store_erases_her_row(tmp_path):
    guard = SqliteGuardProvider(tmp_path / "guard.sqlite")
    guard.sync([("1001", True, True, False, None, "Europe/London"), ("1002", True, True, False, None, "Europe/Paris")])
    guard.close()
    store = GuardStore(tmp_path / "guard.sqlite")
    assert store.erase(ANNA) == 1 and store.remaining(ANNA) == 0
    guard = SqliteGuardProvider(tmp_path / "guard.sqlite")
    assert guard.state("1002").known and not guard.state("1001").known
    guard.close()
    assert b"Europe/London" not in (tmp_path / "guard.sqlite").read_bytes()


def test_trigger_ledger_erases_her_fires_and_checkpointed_state(tmp_path):
    start = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    fires = [Decision("fire", "cart_abandonment", f"cart_id:cart-{u}", u, start, start + timedelta(hours=1),
                      start + timedelta(hours=1)) for u in ("1001", "1002")]
    state = {"format": 1, "frontier": 1.0, "timer_fields": ["trigger", "key", "user_id"],
             "timers": [["cart_abandonment", "cart-1001", "1001"], ["cart_abandonment", "cart-1002", "1002"]],
             "aliases": {"6cad4a26-8d11-6ece-1738-f7d93d9c1724": "1001", BOB[1]: "1002"},
             "history": {"1001": [["cart_abandonment", 1.0]], "1002": [["cart_abandonment", 1.0]]},
             "decided": {d.fire_key: 1.0 for d in fires}}
    ledger = Ledger(tmp_path / "triggers.sqlite")
    ledger.commit(fires, bus_offset=7, state=state)
    ledger.close()
    store = LedgerStore(tmp_path / "triggers.sqlite")

    assert store.erase(ANNA) == 5 and store.remaining(ANNA) == 0  # 1 fire, 4 state entries
    ledger = Ledger(tmp_path / "triggers.sqlite")
    assert [f[2] for f in ledger.fires()] == ["1002"]
    kept = ledger.checkpoint()
    assert kept.bus_offset == 7 and kept.state["aliases"] == {BOB[1]: "1002"} and list(kept.state["history"]) == ["1002"]
    assert [t[2] for t in kept.state["timers"]] == ["1002"] and kept.state["timer_fields"] == ["trigger", "key", "user_id"]
    ledger.close()
    assert b"6cad4a26" not in (tmp_path / "triggers.sqlite").read_bytes()
    assert b"cart-1001" not in (tmp_path / "triggers.sqlite").read_bytes()


def test_landing_files_lose_her_rows_and_the_loader_keeps_its_place(tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    rows = [{"email": "anna.k@example.org", "event": "open", "sg_event_id": "e1",
             "sg_message_id": "demo.spring.anna.k@example.org"},
            {"email": "joanna.k@example.org", "event": "open", "sg_event_id": "e2"},  # contains hers: not hers
            {"email": "bob@example.org", "event": "click", "sg_event_id": "e3"}]
    (folder / "sendgrid_1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "sendgrid_2.csv").write_text("email,event,sg_event_id\nANNA.K@example.org,open,e4\nbob@example.org,open,e5\n")
    raw = duckdb.connect()
    conn = WarehouseConnection(raw, "duckdb")
    conn.execute("create schema ops")
    conn.execute("create table ops.email_files (name varchar, checksum varchar)")
    from personalization_assets.email_events.files import scan

    for f in scan(folder):
        conn.execute("insert into ops.email_files values (?, ?)", [f.name, f.checksum])
    store = LandingStore(folder)

    assert store.erase(ANNA) == 2 and store.remaining(ANNA) == 0
    assert [json.loads(line)["sg_event_id"] for line in (folder / "sendgrid_1.jsonl").read_text().splitlines()] == ["e2", "e3"]
    assert (folder / "sendgrid_2.csv").read_text() == "email,event,sg_event_id\nbob@example.org,open,e5\n"
    assert leftovers(folder / "sendgrid_2.csv") == []
    assert b'"anna.k@' not in (folder / "sendgrid_1.jsonl").read_bytes()  # (joanna's address contains hers)
    assert b".anna.k@" not in (folder / "sendgrid_1.jsonl").read_bytes()
    store.record_loaded(conn)  # the loader sees the rewritten files as already loaded
    assert {f"{f.name}@{f.checksum}" for f in scan(folder)} == \
        {f"{n}@{c}" for n, c in conn.query("select * from ops.email_files").itertuples(index=False)}


def test_file_exports_lose_her_rows_in_csv_and_parquet(tmp_path):
    rows = [SyncRow("cus_anna0001", "cus_anna0001", "anna.k@example.org", "added", "vip", {"first_name": "Anna"}, "k1"),
            SyncRow("cus_bob", "cus_bob", "bob@example.org", "added", "vip", {"first_name": "Bob"}, "k2")]
    for fmt in ("csv", "parquet"):
        FileExport(tmp_path, format=fmt).send(rows, f"batch-{fmt}")
    store = LocalExports(tmp_path)
    assert store.remaining(ANNA) == 2 and store.erase(ANNA) == 2 and store.remaining(ANNA) == 0
    assert list(FileExport(tmp_path, format="parquet")._read(tmp_path / "vip" / "batch-parquet.parquet")["customer_key"]) == ["cus_bob"]
    assert leftovers(tmp_path / "vip" / "batch-csv.csv", tmp_path / "vip" / "batch-parquet.parquet") == []


def test_rewriting_the_duckdb_file_drops_deleted_values(tmp_path):
    """DELETE + CHECKPOINT leaves the deleted strings in the file; the rewrite does not."""
    path = tmp_path / "warehouse.duckdb"
    raw = duckdb.connect(str(path))
    raw.execute("create schema core")
    raw.execute("create table core.people (k varchar, email varchar)")
    raw.executemany("insert into core.people values (?, ?)",
                    [[f"k{i}", f"person{i}.{uuid.uuid4().hex}@example.org"] for i in range(50)] + [["anna", "anna.k@example.org"]])
    raw.execute("create view core.people_view as select * from core.people")
    raw.execute("checkpoint")
    raw.execute("delete from core.people where k = 'anna'")
    raw.execute("checkpoint")
    raw.close()
    assert b"anna.k@example.org" in path.read_bytes()  # the reason for the rewrite

    rewrite_duckdb_file(path)

    assert b"anna.k@example.org" not in path.read_bytes()
    raw = duckdb.connect(str(path))
    assert raw.execute("select count(*) from core.people_view").fetchone() == (50,)
    raw.close()


@pytest.mark.parametrize("held", [True, False])
def test_rewrite_refuses_a_file_another_process_holds(tmp_path, held):
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    if not held:
        rewrite_duckdb_file(path)
        return
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
                               "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(duckdb.IOException, match="lock"):
            rewrite_duckdb_file(path)
        assert path.exists()
    finally:
        holder.kill()
        holder.wait()


def test_runs_stored_before_masking_are_named(tmp_path):
    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)
    (runs / "index.db").write_bytes(b"... preview | ANNA.K@example.org | ...")
    (runs / "0f1e2d3c-aaaa.db").write_bytes(b"md_str: anna.k@example.org")
    (runs / "9a8b7c6d-bbbb.db").write_bytes(b"md_str: a***@example.org")
    from personalization_assets.activation.erasure_stores import dagster_runs_mentioning

    assert dagster_runs_mentioning(tmp_path, ANNA) == ["0f1e2d3c-aaaa", "index.db"]
    assert dagster_runs_mentioning(None, ANNA) == []
