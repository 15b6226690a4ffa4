"""Braze and Mailchimp destinations against loopback servers that enforce the documented limits."""

import json

import pytest
import requests

from personalization_assets.activation.destinations import BrazeTrack, FileExport, MailchimpAudience
from personalization_assets.activation.destinations.mailchimp import subscriber_hash
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.model import EVENTS, MIRROR, UPSERT, SyncRow
from personalization_assets.activation.sources import segment_changes_sql, segment_members_sql

from .servers import BrazeServer, MailchimpServer


def test_braze_server_refuses_more_than_75_objects():
    with BrazeServer("key") as server:
        body = {"attributes": [{"external_id": str(i), "email": f"{i}@x.io"} for i in range(50)],
                "events": [{"external_id": str(i), "name": "e", "time": "2026-01-01T00:00:00Z"} for i in range(26)]}
        answer = requests.post(server.url + "/users/track", json=body, headers={"Authorization": "Bearer key"}, timeout=5)
    assert answer.status_code == 400  # 76 combined: the limit holds across the three arrays
    with pytest.raises(ValueError, match="75"):
        BrazeTrack("http://127.0.0.1:1", "key", transport=None, batch_size=76)


def test_braze_mirror_and_events_respect_limits_and_retry_after(duck, marts, transport, clock):
    keys = marts.people(200)
    marts.members("vip", keys[:160])
    with BrazeServer("key", throttle={2}, retry_after="7") as server:
        braze = BrazeTrack(server.url, "key", transport)
        first = run_sync(duck, SyncSpec(braze, "vip", MIRROR, segment_members_sql(duck)))
        assert first.counts()["added"] == 160
        assert max(server.sizes) <= 75 and sum(server.sizes) == 160
        assert 7 in clock.slept  # Retry-After: 7 honoured before the next request
        marts.members("vip", keys[40:200])
        second = run_sync(duck, SyncSpec(braze, "vip", MIRROR, segment_members_sql(duck)))
        assert (second.counts()["added"], second.counts()["removed"]) == (40, 40)
        events = run_sync(duck, SyncSpec(braze, "vip", EVENTS, segment_changes_sql(duck)))
    assert events.counts()["events"] == 160 + 80
    in_vip = {uid for uid, user in server.users.items() if "vip" in user["segments"]}
    assert in_vip == set(keys[40:200])
    assert server.users[keys[50]]["first_name"] == "Name050"
    assert {e["name"] for e in server.events} == {"segment_entered", "segment_exited"}


def test_braze_partial_errors_fail_only_the_refused_rows(transport):
    rows = [SyncRow(f"r{i}", f"c{i}", f"c{i}@x.io" if i != 3 else "not-an-address", "added", "vip") for i in range(5)]
    with BrazeServer("key") as server:
        results = BrazeTrack(server.url, "key", transport).send(rows, "b1")
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert results[3].error == "Invalid email"


def test_mailchimp_members_and_static_segment_mirror(duck, marts, transport):
    keys = marts.people(800)
    marts.members("vip", keys[:700])
    with MailchimpServer("abc-us6", "L1", throttle={1}) as server:
        chimp = MailchimpAudience("abc-us6", "L1", {"vip": "77"}, transport, base_url=server.url + "/3.0")
        run_sync(duck, SyncSpec(chimp, "vip", MIRROR, segment_members_sql(duck)))
        marts.members("vip", keys[100:800])
        report = run_sync(duck, SyncSpec(chimp, "vip", MIRROR, segment_members_sql(duck)))
        chimp.delete([f"{keys[500]}@example.com"], [])
    assert report.counts()["added"] == 100 and report.counts()["removed"] == 100
    assert server.segments["77"] == {f"{k}@example.com" for k in keys[100:800]}
    assert all(s == "subscribed" for s in server.members.values())
    assert server.deleted == [subscriber_hash(f"{keys[500]}@example.com")]
    with pytest.raises(ValueError, match="mode"):
        SyncSpec(chimp, "vip", EVENTS, segment_changes_sql(duck))


def test_mailchimp_unknown_segment_fails_rows_with_a_reason(transport):
    with MailchimpServer("abc-us6", "L1") as server:
        chimp = MailchimpAudience("abc-us6", "L1", {}, transport, base_url=server.url + "/3.0")
        results = chimp.send([SyncRow("r1", "c1", "a@x.io", "added", "vip")], "b")
    assert not results[0].ok and "no Mailchimp static segment" in results[0].error


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_export_rewrites_its_own_batch_and_erases(tmp_path, duck, marts, fmt):
    keys = marts.people(30)
    marts.members("vip", keys)
    export = FileExport(tmp_path / "out", format=fmt, batch_size=20)
    run_sync(duck, SyncSpec(export, "vip", UPSERT, segment_members_sql(duck)))
    files = export.files()
    assert len(files) == 2
    duck.execute("delete from activation.sync_state")  # as if the run died before committing
    run_sync(duck, SyncSpec(export, "vip", UPSERT, segment_members_sql(duck)))
    assert export.files() == files  # same batch keys: the files are replaced, not duplicated
    assert sum(len(export._read(f)) for f in files) == 30
    export.delete([f"{keys[25]}@example.com"], [keys[26]])
    frames = [export._read(f) for f in export.files()]
    remaining = {k for f in frames for k in f["customer_key"]}
    assert keys[25] not in remaining and keys[26] not in remaining and keys[27] in remaining
    assert json.loads(frames[1]["payload"].iloc[0])["locale"] == "en-GB"
