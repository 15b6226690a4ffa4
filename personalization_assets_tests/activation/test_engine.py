"""The sync engine against a real signed-webhook receiver on 127.0.0.1."""

import pytest

from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.model import EVENTS, MIRROR, UPSERT
from personalization_assets.activation.sources import segment_changes_sql, segment_members_sql

from .servers import WebhookReceiver

SECRET = "s3cret"


def spec(duck, receiver, transport, mode=MIRROR, segment="vip", batch_size=10, **kw) -> SyncSpec:
    hook = SignedWebhook(url=receiver.url + "/hook", secret=SECRET, transport=transport, batch_size=batch_size)
    source = segment_changes_sql(duck) if mode == EVENTS else segment_members_sql(duck)
    return SyncSpec(hook, segment, mode, source, **kw)


def test_only_changes_are_sent_and_mirror_removes(duck, marts, transport):
    keys = marts.people(30)
    marts.members("vip", keys[:25])
    with WebhookReceiver(SECRET, max_rows=10) as receiver:
        first = run_sync(duck, spec(duck, receiver, transport))
        assert first.counts() == {"added": 25, "changed": 0, "removed": 0, "events": 0, "failed": 0}
        assert first.batches == 3 and receiver.batches == 3  # 10 + 10 + 5: never above the receiver's limit

        again = run_sync(duck, spec(duck, receiver, transport))
        assert again.counts()["added"] == again.counts()["changed"] == 0 and receiver.batches == 3

        marts.members("vip", keys[5:30])  # 5 leave, 5 join
        marts.rename(keys[10], "Renamed")
        third = run_sync(duck, spec(duck, receiver, transport))
        assert third.counts() == {"added": 5, "changed": 1, "removed": 5, "events": 0, "failed": 0}
    applied = receiver.changes()
    assert sum(applied.values()) == 25 + 11 and set(applied.values()) == {1}
    assert {k for (op, k) in applied if op == "removed"} == set(keys[:5])
    changed = [r for r in receiver.applied.values() if r["op"] == "changed"]
    assert changed[0]["payload"]["first_name"] == "Renamed"
    results = duck.query("select outcome, sum(rows) as n from activation.sync_results group by 1")
    assert dict(zip(results["outcome"], results["n"])) == {"added": 30, "changed": 1, "removed": 5}
    assert duck.scalar("select count(distinct sync_id) from activation.sync_results") == 2  # the idle sync wrote nothing


def test_upsert_never_removes_and_events_send_each_change_once(duck, marts, transport):
    keys = marts.people(6)
    marts.members("vip", keys[:4])
    with WebhookReceiver(SECRET) as receiver:
        run_sync(duck, spec(duck, receiver, transport, mode=UPSERT))
        marts.members("vip", keys[2:6])
        report = run_sync(duck, spec(duck, receiver, transport, mode=UPSERT))
        assert report.counts()["removed"] == 0 and report.counts()["added"] == 2
        events = run_sync(duck, spec(duck, receiver, transport, mode=EVENTS))
        assert events.counts()["events"] == 4 + 2 + 2  # entered x4, then entered x2 and exited x2
        assert run_sync(duck, spec(duck, receiver, transport, mode=EVENTS)).counts()["events"] == 0
    names = sorted(r["payload"]["name"] for r in receiver.applied.values() if r["op"] == "event")
    assert names == ["segment_entered"] * 6 + ["segment_exited"] * 2


def test_dry_run_plans_without_sending_or_writing(duck, marts, transport):
    marts.members("vip", marts.people(12))
    with WebhookReceiver(SECRET) as receiver:
        report = run_sync(duck, spec(duck, receiver, transport), dry_run=True)
        assert report.counts()["added"] == 12 and receiver.count == 0
    assert duck.scalar("select count(*) from activation.sync_state") == 0
    assert duck.scalar("select count(*) from activation.sync_results") == 0


def test_429_and_retry_after_slow_the_bucket_down(duck, marts, transport, clock):
    marts.members("vip", marts.people(20))
    with WebhookReceiver(SECRET, max_rows=10, throttle={1, 2}, retry_after="5") as receiver:
        report = run_sync(duck, spec(duck, receiver, transport))
    assert report.counts()["added"] == 20 and receiver.count == 4
    assert sum(clock.slept) >= 10  # two Retry-After: 5 honoured (on the fake clock)
    assert transport.bucket.rate < transport.bucket.max_rate


def test_refused_rows_are_kept_and_retried_on_later_runs(duck, marts, transport):
    keys = marts.people(5)
    marts.members("vip", keys)
    with WebhookReceiver(SECRET, refuse_rows={keys[1]}) as receiver:
        report = run_sync(duck, spec(duck, receiver, transport))
        assert report.counts()["added"] == 4 and report.failed == 1
        failed = duck.query("select row_key, error, attempts from activation.sync_failed_rows")
        assert failed.to_dict("records") == [{"row_key": keys[1], "error": "invalid address", "attempts": 1}]
        receiver.refuse_rows.clear()
        later = run_sync(duck, spec(duck, receiver, transport))
    assert later.counts()["added"] == 1 and later.failed == 0
    assert duck.scalar("select count(*) from activation.sync_failed_rows") == 0


def test_a_row_refused_max_attempts_times_waits_for_a_new_payload(duck, marts, transport):
    keys = marts.people(2)
    marts.members("vip", keys)
    with WebhookReceiver(SECRET, refuse_rows={keys[0]}) as receiver:
        for _ in range(3):
            run_sync(duck, spec(duck, receiver, transport, max_attempts=2))
        assert duck.scalar("select attempts from activation.sync_failed_rows") == 2
        marts.rename(keys[0], "Fixed")
        receiver.refuse_rows.clear()
        assert run_sync(duck, spec(duck, receiver, transport, max_attempts=2)).counts()["added"] == 1


def test_transient_failures_are_retried_within_the_run(duck, marts, transport):
    marts.members("vip", marts.people(30))
    with WebhookReceiver(SECRET, max_rows=10, lose_answer_of={2}) as receiver:
        report = run_sync(duck, spec(duck, receiver, transport))
    assert report.counts() == {"added": 30, "changed": 0, "removed": 0, "events": 0, "failed": 0}
    assert max(receiver.deliveries.values()) == 2  # batch 2 arrived twice (its answer was lost) ...
    assert sum(receiver.changes().values()) == 30  # ... and was applied once, by idempotency key


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


@pytest.mark.parametrize("lose_answer", [False, True])
def test_killed_sync_rerun_delivers_every_change_exactly_once(duck, marts, transport, lose_answer):
    keys = marts.people(100)
    marts.members("vip", keys[:60])
    with WebhookReceiver(SECRET, max_rows=10) as receiver:
        run_sync(duck, spec(duck, receiver, transport))
        marts.members("vip", keys[20:100])  # 20 removed, 40 added
        sync = spec(duck, receiver, transport)
        send, calls = sync.destination.send, []

        def dying_send(rows, key):  # the process dies after the 3rd batch reached the receiver
            calls.append(key)
            results = send(rows, key)
            if len(calls) == 3:
                raise Killed()
            return results

        if lose_answer:
            receiver.lose_answer_of = {receiver.batches + 3}
        object.__setattr__(sync.destination, "send", dying_send)
        with pytest.raises(Killed):
            run_sync(duck, sync)
        assert receiver.batches == 6 + 3 + lose_answer  # a lost answer: the transport posted batch 3 again
        rerun = run_sync(duck, spec(duck, receiver, transport))
        assert rerun.counts()["added"] + rerun.counts()["removed"] == 60 - 20  # batch 3 was never committed
    applied = receiver.changes()
    assert set(applied.values()) == {1}
    assert sorted(k for (op, k) in applied if op == "added") == sorted(keys)
    assert sorted(k for (op, k) in applied if op == "removed") == sorted(keys[:20])
    state = duck.query("select row_key from activation.sync_state where present")
    assert sorted(state["row_key"]) == sorted(keys[20:100])
    # only the uncommitted batch was sent again (and once more in-run when its answer was lost)
    assert receiver.deliveries.most_common(1)[0][1] == 2 + lose_answer
    assert sum(n > 1 for n in receiver.deliveries.values()) == 10


def test_a_plan_longer_than_a_read_is_sent_in_full_batches_in_order(duck, marts, transport, monkeypatch):
    """The plan is read PLAN_READ_ROWS at a time (DuckDB hands over 2,048-row vectors: here 2,048,
    2,048 and 904 of 5,000 rows): every batch but the last is full, across the reads' edges; the
    rows go out once each, in send order; the plan's scratch table is gone after."""
    from personalization_assets.activation import engine

    monkeypatch.setattr(engine, "PLAN_READ_ROWS", 2048)
    keys = marts.people(5000)
    marts.members("vip", keys)
    with WebhookReceiver(SECRET, max_rows=300) as receiver:
        report = run_sync(duck, spec(duck, receiver, transport, batch_size=300))
    assert report.counts()["added"] == 5000 and report.batches == 17 and receiver.batches == 17  # 16 x 300 + 200
    sent = [r["row_key"] for r in receiver.applied.values()]
    assert len(set(sent)) == 5000 and sent == sorted(sent)
    assert not duck.table_exists("activation", "sync_plan")
