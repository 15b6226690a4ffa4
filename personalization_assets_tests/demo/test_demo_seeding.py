"""Seeding at scale without holding it all: the generator hands its events over in chunks (the
same events, in the same order), the e-mail export is written as it is generated, and the demo
seeds its sources in a child process whose memory goes back to the system when it exits."""

import os
import sqlite3
from datetime import datetime, timezone

import pytest

from personalization_assets.bus import open_bus
from personalization_assets.demo.generator import generate
from personalization_assets.demo.seed_process import seed_in_child
from personalization_assets.email_events.demo import email_events, generate_email_events, write_demo_export

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_events_handed_over_in_chunks_are_the_events_of_a_whole_generation_in_order():
    whole = generate(seed=7, scale=0.2, anchor=NOW)
    chunks: list[list[dict]] = []
    streamed = generate(seed=7, scale=0.2, anchor=NOW, on_events=lambda c: chunks.append(list(c)), chunk=500)
    assert len(chunks) > 3 and all(len(c) >= 500 for c in chunks[:-1])
    assert [e for c in chunks for e in c] == whole.events
    assert streamed.events == [] and streamed.events_handed == len(whole.events)
    assert (streamed.customers, streamed.orders, streamed.bad_events) == (whole.customers, whole.orders, whole.bad_events)


def test_the_email_export_written_from_an_iterator_is_the_file_of_the_list(tmp_path):
    customers = generate(seed=7, scale=0.1, anchor=NOW).customers
    listed = write_demo_export(tmp_path / "a", generate_email_events(customers, 3, now=NOW), 3).read_bytes()
    streamed = write_demo_export(tmp_path / "b", email_events(iter(customers), 3, now=NOW), 3).read_bytes()
    assert streamed == listed and listed.count(b"\n") > 1000


@pytest.fixture
def sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("EMAIL_LANDING_DIR", raising=False)
    return dict(data_dir=tmp_path, crm_url=f"sqlite:///{tmp_path / 'crm.sqlite'}",
                bus_url=f"sqlite:///{tmp_path / 'events.db'}")


def _bus_messages(url: str) -> list[str]:
    bus, ids = open_bus(url), []
    try:
        while batch := bus.read(ids[-1][0] if ids else 0, limit=5000):
            ids += [(r.offset, r.event["messageId"]) for r in batch]
    finally:
        bus.close()
    return [m for _, m in ids]


def test_the_sources_are_seeded_in_a_child_process_that_hands_back_the_truth(sources):
    lines: list[str] = []
    seeded = seed_in_child(**sources, seed=7, scale=0.2, now=NOW, say=lines.append)
    whole = generate(seed=7, scale=0.2, anchor=NOW)
    assert seeded.pid != os.getpid() and seeded.peak_rss_mb > 0
    assert (seeded.data.customers, seeded.data.orders, seeded.data.events) == ([], [], [])
    assert seeded.data.person_of_customer == whole.person_of_customer
    assert seeded.data.events_handed == len(whole.events)
    assert _bus_messages(sources["bus_url"]) == [e["messageId"] for e in whole.events]
    with sqlite3.connect(sources["data_dir"] / "crm.sqlite") as crm:
        assert crm.execute("select count(*) from customers").fetchone()[0] == len(whole.customers)
    assert [line.split()[0] for line in lines] == ["generated", "crm", "shop", "email"]
    assert seeded.injected == {}


def test_the_child_hands_back_the_records_when_asked_and_injects_bad_rows_there(sources):
    seeded = seed_in_child(**sources, seed=7, scale=0.2, now=NOW, inject_bad=True, keep_records=True)
    whole = generate(seed=7, scale=0.2, anchor=NOW)
    assert (seeded.data.customers, seeded.data.events) == (whole.customers, whole.events)
    assert seeded.injected["events"] == 1 and seeded.injected["crm_customers"] > 0
    assert _bus_messages(sources["bus_url"])[-1] == "bad-type-outside-tracking-plan"


def test_a_failure_in_the_child_is_raised_in_the_parent(sources):
    with pytest.raises(ValueError, match="unknown bus URL scheme"):
        seed_in_child(**{**sources, "bus_url": "nosuch://bus"}, seed=7, scale=0.1, now=NOW)


def test_the_generators_uuids_are_the_uuid_modules_strings():
    import random
    import uuid

    from personalization_assets.demo.generator import random_uuid

    ours, theirs = random.Random(5), random.Random(5)
    for _ in range(1_000):
        assert random_uuid(ours) == str(uuid.UUID(int=theirs.getrandbits(128)))


def test_the_bus_appender_stores_chunks_in_order_and_raises_a_failed_append(tmp_path):
    from personalization_assets.demo.seed import _Appender

    bus = open_bus(f"sqlite:///{tmp_path / 'events.db'}")
    appender = _Appender(bus, in_flight=2)
    chunks = [[{"type": "track", "event": "E", "messageId": f"m{c}-{i}"} for i in range(300)] for c in range(6)]
    try:
        for chunk in chunks:
            appender.append(chunk)
        appender.finish()
        stored = [r.message_id for r in bus.read(0, limit=10_000)]
        assert stored == [e["messageId"] for chunk in chunks for e in chunk]

        class Refusing:
            def append(self, chunk):
                raise OSError("disk full")

        failing = _Appender(Refusing())
        failing.append(chunks[0])
        with pytest.raises(OSError, match="disk full"):
            failing.finish()
        failing.close()
    finally:
        appender.close()
        bus.close()
