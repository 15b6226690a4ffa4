"""A sync process killed with SIGKILL mid-run, then run again: every change lands exactly once."""

import os
import signal
import subprocess
import sys
import threading

import duckdb

from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.model import MIRROR
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.warehouse import WarehouseConnection

from .conftest import Marts
from .servers import WebhookReceiver

CHILD = """
import sys
import duckdb
from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.http import HttpTransport
from personalization_assets.activation.model import MIRROR
from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.warehouse import WarehouseConnection

conn = WarehouseConnection(duckdb.connect(sys.argv[1]), "duckdb")
hook = SignedWebhook(sys.argv[2], "k", HttpTransport(TokenBucket(rate=1000)), batch_size=10)
run_sync(conn, SyncSpec(hook, "vip", MIRROR, segment_members_sql(conn)))
"""


class StallingReceiver(WebhookReceiver):
    """Applies batch `stall_at`, then never answers it (the sender dies waiting)."""

    def __init__(self, stall_at: int):
        super().__init__("k", max_rows=10)
        self.stall_at, self.stalled, self.resume = stall_at, threading.Event(), threading.Event()

    def handle(self, method, path, headers, body):
        answer = super().handle(method, path, headers, body)
        if self.batches == self.stall_at and not self.stalled.is_set():
            self.stalled.set()
            self.lock.release()  # let the test read the counters while this request hangs
            try:
                self.resume.wait(10)
            finally:
                self.lock.acquire()
        return answer


def test_sigkill_mid_sync_then_rerun_delivers_each_change_once(tmp_path, transport):
    path = str(tmp_path / "warehouse.duckdb")
    raw = duckdb.connect(path)
    keys = Marts(WarehouseConnection(raw, "duckdb")).people(55)
    raw.execute("insert into marts.segment_membership select 'vip', customer_key, now() from marts.customer_profiles")
    raw.close()
    with StallingReceiver(stall_at=3) as receiver:
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, receiver.url], cwd=os.getcwd())
        assert receiver.stalled.wait(30), "the child never reached batch 3"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        receiver.resume.set()  # the stalled request now answers a dead socket
        assert child.returncode == -signal.SIGKILL and receiver.batches == 3
        raw = duckdb.connect(path)
        conn = WarehouseConnection(raw, "duckdb")
        assert conn.scalar("select count(*) from activation.sync_state") == 20  # batches 1-2 committed
        rerun = run_sync(conn, SyncSpec(SignedWebhook(receiver.url, "k", transport, batch_size=10), "vip", MIRROR,
                                        segment_members_sql(conn)))
        raw.close()
    assert rerun.counts()["added"] == 35
    assert sorted(k for (_, k) in receiver.changes()) == sorted(keys)
    assert set(receiver.changes().values()) == {1}  # batch 3 came twice, was applied once
    assert sorted(n for n in receiver.deliveries.values() if n > 1) == [2] * 10
