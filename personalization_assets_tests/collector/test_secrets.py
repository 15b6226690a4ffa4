"""Issue 18, finding 6: no credential in what the CLIs print, no internals in error bodies, write
keys from a file or the environment (with a warning for --write-key)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import requests

import personalization_assets.collector.app as collector_app
from personalization_assets.collector.settings import load_write_keys
from personalization_assets.redact import redact_url

from personalization_assets_tests.conftest import REPO_ROOT

from .conftest import WRITE_KEY

AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}


def test_redact_url_hides_passwords_and_keeps_the_location():
    assert redact_url("redis://:s3cret@redis.internal:6379/0?stream=ev") == "redis://:***@redis.internal:6379/0?stream=ev"
    assert redact_url("rediss://app:pw@r:6380/1") == "rediss://app:***@r:6380/1"
    assert redact_url("postgresql://u:p@h/db?password=x&sslmode=require") == \
        "postgresql://u:***@h/db?password=***&sslmode=require"
    assert redact_url("sqlite:////abs/events.db?table=events") == "sqlite:////abs/events.db?table=events"
    assert "s3cret" not in redact_url("redis://s3cret@h:1/0")


def _cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "personalization_assets.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_collector_cli_never_prints_the_bus_password_and_warns_about_write_key(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# production keys\nkey-one\n\nkey-two\n")
    out = _cli("collector", "--port", "0", "--admin-port", "0", "--bus", "bogus://:s3cret@db.internal:6379/0",
               "--write-key-file", str(keys), "--write-key", "key-three",
               env={"COLLECTOR_WRITE_KEYS": "key-four", "PERSONALIZATION_DATA_DIR": str(tmp_path)})
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "s3cret" not in text, text
    assert ":***@db.internal:6379" in text and "4 write key(s)" in text
    assert "warning: --write-key" in out.stderr and "COLLECTOR_WRITE_KEYS" in out.stderr
    assert "collector stopped: unknown bus URL scheme" in out.stderr


def test_collector_cli_names_and_redacts_the_bus_from_event_bus_url(tmp_path):
    out = _cli("collector", "--port", "0", "--admin-port", "0",
               env={"EVENT_BUS_URL": "bogus://:s3cret@bus.internal:6379/0", "PERSONALIZATION_DATA_DIR": str(tmp_path)})
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "s3cret" not in text, text
    assert "-> bogus://:***@bus.internal:6379/0" in out.stdout, text
    assert "collector stopped: unknown bus URL scheme" in out.stderr


def test_triggers_cli_never_prints_the_bus_password(tmp_path):
    try:
        out = _cli("triggers", "--bus", "redis://:s3cret@127.0.0.1:1/0", "--state", str(tmp_path / "t.sqlite"),
                   "--guard", str(tmp_path / "g.sqlite"), "--port", "0", timeout=30)
        text = out.stdout + out.stderr
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
    assert "s3cret" not in text


def test_write_keys_from_file_environment_and_flags(tmp_path):
    f = tmp_path / "k"
    f.write_text("a\n# comment\n b \n")
    assert load_write_keys(["c"], str(f), {"COLLECTOR_WRITE_KEYS": "d, a,"}) == ["a", "b", "c", "d"]
    assert load_write_keys((), None, {}) == []


def test_503_and_500_bodies_are_stable_and_name_no_internals(collector, monkeypatch, caplog):
    def bus_down(events):
        raise ConnectionError("Error 111 connecting to 10.20.30.40:6379. Connection refused.")

    monkeypatch.setattr(collector.app.state.bus, "append_detailed", bus_down)
    body = orjson.dumps({"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "m1"}]})
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 503 and r.json()["code"] == "bus_unavailable"
    assert "10.20.30.40" not in r.text and "ConnectionError" not in r.text
    assert "10.20.30.40" in caplog.text  # the detail is in the log

    def broken(*args, **kwargs):
        raise RuntimeError("internal state at /srv/secret/path")

    monkeypatch.setattr(collector_app, "split", broken)
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "/srv/secret" not in r.text and "RuntimeError" not in r.text
