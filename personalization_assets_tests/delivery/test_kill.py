"""Exactly once, measured: `kill -9` of the sender at random points during 200 sends, restarted
each time. Afterwards every fire is sent, failed or suppressed with a reason (0 lost); a webhook
that deduplicates on Idempotency-Key delivers each fire once (0 duplicates); over SMTP the copies,
counted by Message-ID, are at most one per kill (the message in flight when it died).

Half of the kills land inside the request (the peer has accepted the message, the sender never
reads the answer: the worst case), half from this thread at whatever point the sender is.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from personalization_assets.delivery.outbox import FINAL, idempotency_key
from personalization_assets.delivery.payloads import PayloadStore

from .peers import SECRET, EspServer, SmtpSink, seed

SENDS, KILLS = 200, 5
ROOT = Path(__file__).resolve().parents[2]


class Killer:
    """Starts the sender as a subprocess and kills it (SIGKILL) when the peer has seen request k."""

    def __init__(self, command: list[str], env: dict, points: list[int]):
        self.command, self.env = command, env
        self.in_request = set(points[::2])  # killed inside the peer, before it answers
        self.from_outside = sorted(set(points) - self.in_request)
        self.killed = 0
        self.missed = 0  # in-request kill points that found the sender already dead
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def kill(self) -> bool:
        """Kill the running sender; False when it was already dead (the other thread's kill won)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()  # dead before anyone looks again: a second kill() never counts it twice
                self.killed += 1
                return True
            return False

    def on_request(self, n: int) -> None:
        if n in self.in_request and not self.kill():
            with self.lock:  # the sender was killed from outside a moment before: kill its restart later
                self.missed += 1

    def run(self, seen, done, deadline_s: float = 120.0) -> None:
        """Keep the sender running (restarting it after each kill) until `done()` and every kill
        was made. A kill point the sender passed while this thread was not scheduled (a loaded
        machine) lands where the sender then is, at the latest once it has finished: an idle
        sender is a crash point too, and its restart must send nothing again. When both threads
        kill the same process, only one kill counts, and the other lands on the restart."""
        start = time.monotonic()
        outside = list(self.from_outside)
        self.start()
        while True:
            assert time.monotonic() - start < deadline_s, f"not done after {deadline_s} s"
            if self.proc.poll() is not None:
                assert self.proc.returncode == -signal.SIGKILL, self.proc.stderr.read().decode()[-2000:]
                self.start()
            finished = done()
            if self.missed and self.kill():
                with self.lock:
                    self.missed -= 1
                continue
            if outside and (seen() >= outside[0] or finished):
                if self.kill():  # else the peer's thread killed it first: this point waits for the restart
                    outside.pop(0)
                continue
            if finished:
                break
            time.sleep(0.002)
        self.proc.send_signal(signal.SIGTERM)  # and it stops cleanly
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # hung: SIGABRT makes faulthandler print every thread's stack
            self.proc.send_signal(signal.SIGABRT)
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError("the sender ignored SIGTERM for 60 s; its threads:\n" + err.decode()[-6000:])
        assert self.proc.returncode == 0, err.decode()[-2000:]


def outbox_states(path: Path) -> dict:
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        if not conn.execute("select 1 from sqlite_master where name = 'outbox'").fetchone():
            return {}
        return dict(conn.execute("select state, count(*) from outbox group by state").fetchall())
    finally:
        conn.close()


def finished(path: Path, n: int) -> bool:
    states = outbox_states(path)
    return sum(states.get(s, 0) for s in FINAL) == n


def setup(tmp_path, n):
    payloads = PayloadStore(tmp_path / "delivery_payloads.sqlite")
    keys = seed(tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", payloads, n)
    payloads.close()
    command = [sys.executable, "-m", "personalization_assets.delivery", "--ledger", str(tmp_path / "triggers.sqlite"),
               "--outbox", str(tmp_path / "outbox.sqlite"), "--guard", str(tmp_path / "guard.sqlite"),
               "--warehouse", "", "--page-port", "-1", "--rate", "2000",
               "--no-holdouts"]  # every fire counted as sent: no global control or holdout here
    env = dict(os.environ, UNSUBSCRIBE_SECRET="s3cret", UNSUBSCRIBE_BASE_URL="https://shop.example/u",
               DELIVERY_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(ROOT),
               PYTHONFAULTHANDLER="1")
    return keys, command, env


def kill_points(seed_: int, n: int, kills: int) -> list[int]:
    return sorted(random.Random(seed_).sample(range(5, n - 5), kills))


def unfinished_rows(path: Path) -> list:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("select fire_key, state, reason from outbox where state not in ('sent')"
                            " and (reason is null or reason = '')").fetchall()
    finally:
        conn.close()


def test_kill_9_during_webhook_sends_loses_nothing_and_delivers_each_fire_once(tmp_path):
    keys, command, env = setup(tmp_path, SENDS)
    killer = Killer(command + ["--channel", "webhook"], env, kill_points(11, SENDS, KILLS))
    with EspServer(on_request=killer.on_request) as esp:
        killer.command += ["--webhook-url", esp.url]
        killer.run(seen=lambda: esp.raw, done=lambda: finished(tmp_path / "outbox.sqlite", SENDS))
    assert killer.killed == KILLS
    assert outbox_states(tmp_path / "outbox.sqlite") == {"sent": SENDS}  # 0 lost
    assert set(esp.delivered) == {idempotency_key(k) for k in keys}  # every fire accepted...
    assert set(esp.delivered.values()) == {1}  # ...once: 0 duplicates delivered
    resent = esp.raw - len(esp.delivered)  # copies the key let the ESP drop
    assert 1 <= resent <= KILLS, resent  # the kills inside requests did cause re-sends
    assert esp.bad_signatures == 0


def test_kill_9_during_smtp_sends_duplicates_at_most_one_per_kill_by_message_id(tmp_path):
    keys, command, env = setup(tmp_path, SENDS)
    killer = Killer(command + ["--channel", "smtp", "--smtp-from", "Shop <news@shop.example>"], env,
                    kill_points(12, SENDS, KILLS))
    with SmtpSink(on_message=killer.on_request) as smtp:
        killer.command += ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port)]
        killer.run(seen=lambda: len(smtp.messages), done=lambda: finished(tmp_path / "outbox.sqlite", SENDS))
    assert killer.killed == KILLS
    assert outbox_states(tmp_path / "outbox.sqlite") == {"sent": SENDS}  # 0 lost
    assert set(smtp.ids) == {f"<{idempotency_key(k)}@shop.example>" for k in keys}
    assert smtp.duplicates <= killer.killed  # the documented bound: the message in flight per crash
    assert smtp.duplicates >= 1  # and the in-request kills did produce the copies this bound is about
