"""`personalization deliver` as a user runs it, the Braze channel on a real HTTP peer, one sender
per outbox, and the payload copy from a DuckDB warehouse."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import requests

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.delivery.channels import BrazeChannel
from personalization_assets.delivery.outbox import Outbox, idempotency_key
from personalization_assets.delivery.payloads import PayloadStore, payload_rows, refresh_from_duckdb
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import AlreadyRunning, Sender, lock_outbox
from personalization_assets.realtime.guards import SqliteGuardProvider

from ..activation.servers import BrazeServer
from .peers import seed

ROOT = Path(__file__).resolve().parents[2]


def test_personalization_deliver_prints_its_paths_serves_the_page_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DELIVERY_HOLDOUTS"}
    env.update(PERSONALIZATION_DATA_DIR=str(tmp_path), UNSUBSCRIBE_SECRET="s3cret")
    cli = Path(sys.executable).with_name("personalization")
    proc = subprocess.Popen([str(cli), "deliver", "--page-port", "0", "--smtp-port", "1"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"fires from {tmp_path / 'triggers.sqlite'}" in line, line + proc.stderr.read()
        assert f"outbox {tmp_path / 'outbox.sqlite'}" in line and "smtp smtp://127.0.0.1:1" in line
        assert "experiments: global_control, " in line  # on by default: the global control is never mailed
        url = line.split("outbox page on ")[1].split(";")[0]
        assert url.startswith("http://127.0.0.1:")
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and "No e-mails yet" in page.text
        assert requests.get(url + "stats", timeout=10).json()["counts"]["sent"] == 0
        second = subprocess.run([str(cli), "deliver", "--page-port", "-1"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "another sender is running on" in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "deliver: stopped" in out
    assert "Traceback" not in err


def test_one_sender_per_outbox(tmp_path):
    first = lock_outbox(tmp_path / "outbox.sqlite")
    with pytest.raises(AlreadyRunning, match="one sender per outbox"):
        lock_outbox(tmp_path / "outbox.sqlite")
    first.close()
    lock_outbox(tmp_path / "outbox.sqlite").close()  # released: a restarted sender takes it


def test_braze_channel_posts_one_event_per_fire_with_its_idempotency_key(tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    keys = seed(tmp_path / "t.sqlite", tmp_path / "g.sqlite", payloads, 3)
    with BrazeServer("k", throttle={2}, retry_after="0.2") as braze:
        sender = Sender(Outbox(tmp_path / "o.sqlite"), tmp_path / "t.sqlite", payloads,
                        SqliteGuardProvider(tmp_path / "g.sqlite"), BrazeChannel(braze.url, "k", TokenBucket(100)),
                        Unsubscribe("https://shop.example/u", "s"), rng=random.Random(1))
        for _ in range(50):
            sender.step()
            if sender.outbox.counts()["sent"] == 3:
                break
            __import__("time").sleep(0.05)
    assert sender.outbox.counts()["sent"] == 3
    got = sorted(e["properties"]["idempotency_key"] for e in braze.events)
    assert got == sorted(idempotency_key(k) for k in keys)  # the throttled request was sent again, once
    assert {e["name"] for e in braze.events} == {"cart_abandonment_fired"}


def _payload_warehouse(path, customers: dict[str, str]) -> None:
    """A warehouse whose payloads are {userId: first name}, customer cus_<userId>."""
    conn = duckdb.connect(str(path))
    conn.execute("create schema if not exists core; create schema if not exists marts")
    conn.execute("create or replace table core.identity_map (identity_type text, identity text, customer_key text)")
    conn.execute("create or replace table marts.personalization_payloads (customer_key text, email text, payload text)")
    for uid, name in customers.items():
        conn.execute("insert into core.identity_map values ('user_id', ?, ?), ('anonymous_id', ?, ?)",
                     [uid, f"cus_{uid}", f"anon-{uid}", f"cus_{uid}"])
        conn.execute("insert into marts.personalization_payloads values (?, ?, ?)",
                     [f"cus_{uid}", f"{name.lower()}@example.com", f'{{"greeting": "Hi {name}"}}'])
    conn.close()


def test_payloads_are_copied_from_the_warehouse_by_tracked_user_id(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    store = PayloadStore(tmp_path / "payloads.sqlite")
    assert refresh_from_duckdb(path, store) is None  # no warehouse yet: nothing to copy, no error
    duckdb.connect(str(path)).close()
    assert refresh_from_duckdb(path, store) is None  # no payloads built yet: likewise
    _payload_warehouse(path, {"u1": "Ann"})
    assert refresh_from_duckdb(path, store) == 1
    assert store.get("u1") == ("ann@example.com", {"greeting": "Hi Ann"})
    assert store.get("anon-u1") is None  # the engine fires for tracked userIds


def test_the_copy_mirrors_the_warehouse_a_payload_it_dropped_is_gone(tmp_path):
    """A customer who left the payloads (no longer sendable, merged away, erased) must not keep a
    stale copy the sender would render; the others are updated in place."""
    path = tmp_path / "warehouse.duckdb"
    store = PayloadStore(tmp_path / "payloads.sqlite")
    _payload_warehouse(path, {"u1": "Ann", "u2": "Bob"})
    assert refresh_from_duckdb(path, store) == 2
    _payload_warehouse(path, {"u2": "Robert"})
    assert refresh_from_duckdb(path, store) == 1
    assert store.get("u1") is None
    assert store.get("u2") == ("robert@example.com", {"greeting": "Hi Robert"})
    assert store.conn.execute("select count(*) from delivery_payloads").fetchone()[0] == 1
    _payload_warehouse(path, {})  # built, and nobody is sendable
    assert refresh_from_duckdb(path, store) == 0
    assert store.get("u2") is None


def test_payload_rows_are_fetched_a_chunk_at_a_time(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    _payload_warehouse(path, {f"u{i:02d}": f"N{i}" for i in range(25)})
    conn = duckdb.connect(str(path), read_only=True)
    rows = payload_rows(conn, chunk_rows=10)
    first = next(rows)
    i = int(first[0][1:])
    assert first == (f"u{i:02d}", f"cus_u{i:02d}", f"n{i}@example.com", f'{{"greeting": "Hi N{i}"}}')
    # a chunk read, not the result: DuckDB's cursor still holds the rest
    assert len(conn.fetchmany(100)) == 25 - 10
    conn.close()
    conn = duckdb.connect(str(path), read_only=True)
    assert sorted(r[0] for r in payload_rows(conn, chunk_rows=10)) == [f"u{i:02d}" for i in range(25)]
    conn.close()


def test_a_busy_warehouse_keeps_the_last_copy(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    store = PayloadStore(tmp_path / "payloads.sqlite")
    store.sync([("u1", "cus_1", "ann@example.com", {"greeting": "Hi"})])
    writer = duckdb.connect(str(path))  # a run holding the warehouse
    try:
        assert refresh_from_duckdb(path, store) is None
    finally:
        writer.close()
    assert store.get("u1") == ("ann@example.com", {"greeting": "Hi"})


def test_the_sender_imports_no_dagster():
    code = ("import sys, personalization_assets.delivery.cli, personalization_assets.delivery.sender, "
            "personalization_assets.delivery.page, personalization_assets.delivery.payloads; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
