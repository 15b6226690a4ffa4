"""`personalization demo` as a user runs it (a subprocess, small scale): what --inject-bad promises,
the way back from it (the printed replay command, then a plain run), --fresh resetting the Dagster
instance's cursors, and the same tables for the same seed and --now at another wall time."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

SCALE = "0.2"
STALE_CURSOR = '{"events": 999999, "quarantine": 0}'  # a bus offset from a data set that is gone
# Columns that record when something happened on the wall clock, not what the data say: the bus
# stamps each event's arrival (raw/staging received_at, and the raw row kept in quarantine), the
# trigger backtest decides at arrival, and syncs log when they ran.
WALL_CLOCK_COLUMNS = {
    "raw.events": {"received_at"}, "staging.events": {"received_at"}, "quarantine.events": {"raw_payload"},
    "activation.trigger_backtest": {"send_at"}, "activation.sync_results": {"sync_id", "started_at", "finished_at"},
    "activation.sync_state": {"synced_at"}, "marts.audience_events": {"received"},
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {
        "PERSONALIZATION_NOW", "PERSONALIZATION_DATA_DIR", "PERSONALIZATION_DUCKDB_PATH", "CRM_DATABASE_URL",
        "EVENT_BUS_URL", "ORDERS_API_URL", "DAGSTER_DEPLOYMENT"}}
    return {**env, "DAGSTER_HOME": str(home)}


def _demo(tmp_path: Path, *args: str, scale: str = SCALE, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", scale,
               "--data-dir", str(tmp_path / "data"), "--dagster-home", str(tmp_path / "home"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**_env(tmp_path / "home"), **(env or {})})


def _dagster(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "dagster"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env=env or {**_env(tmp_path / "home"), "PERSONALIZATION_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _set_stale_sensor_cursor(tmp_path: Path) -> None:
    """What the daemon leaves behind after reading a bus: the event stream sensor's cursor."""
    _dagster(tmp_path, "sensor", "cursor", "event_stream_sensor", "--set", STALE_CURSOR,
             "-m", "personalization_assets.definitions")
    assert STALE_CURSOR in _sensor_cursors(tmp_path)


def _sensor_cursors(tmp_path: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        return [getattr(s.instigator_data, "cursor", None) for s in instance.all_instigator_state()]


def _clean_console(result: subprocess.CompletedProcess) -> None:
    text = result.stdout + result.stderr
    for noise in ("Traceback", "BetaWarning", " - ERROR - ", "site-packages"):
        assert noise not in text, f"{noise!r} on the console:\n{text[-3000:]}"
    assert re.search(r"^Run [0-9a-f-]{36} ", result.stdout, re.M), "the run id is printed"
    assert re.search(r"^  staging +\d+ of \d+ +assets +[\d,]+ rows +[\d.]+ s", result.stdout, re.M), result.stdout


def _section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n\n", 1)[0] if title in text else ""


def _tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        names = [f"{s}.{t}" for s, t in conn.execute(
            "select table_schema, table_name from information_schema.tables where table_schema <> 'ops'").fetchall()]
        out = {}
        for name in names:
            frame = conn.execute(f"select * from {name}").df().drop(columns=list(WALL_CLOCK_COLUMNS.get(name, ())))
            frame = frame.astype(str) if frame.empty else frame.apply(
                lambda c: c.round(9) if c.dtype.kind == "f" else c).astype(str)  # float sums: order noise only
            out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        return out


def test_inject_bad_shows_each_promised_check_and_the_demo_recovers(tmp_path):
    now = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    broken = _demo(tmp_path, "--inject-bad", "--now", now)
    assert broken.returncode == 0, broken.stderr[-3000:]
    _clean_console(broken)
    failed = _section(broken.stdout, "Failed checks:")
    assert "staging/customers: quarantine_rate_crm_customers (ERROR)" in failed
    assert "staging/order_lines: category_mapped (WARN)" in failed
    assert "staging/events: pandera_StagingEvents (ERROR)" in failed
    held = _section(broken.stdout, "Held back by a failed blocking check")
    assert "core/identity_map" in held and "marts/segment_membership" in held
    assert "quarantine/staging_replayed" not in held  # the remedy is not held back by the failure
    injected = int(re.search(r"crm_customers (\d+)", _section(broken.stdout, "Injected bad rows")).group(1))

    # The CRM team fixes the e-mails; the replay command the run printed moves them into staging.
    from personalization_assets.demo.generator import generate
    from personalization_assets.sources.crm import write_customers

    template = generate(seed=7, scale=float(SCALE)).customers[0]
    fixed_at = datetime.now(timezone.utc) - timedelta(minutes=1)
    write_customers(f"sqlite:///{tmp_path / 'data' / 'crm.sqlite'}", [
        {**template, "customer_id": 990_000 + i, "email": f"fixed-{i}@example.org", "updated_at": fixed_at}
        for i in range(injected)])
    printed = broken.stdout.split("replay the quarantine", 1)[1].split("\n", 1)[1]
    words = shlex.split(" ".join(line.strip().rstrip("\\") for line in printed.splitlines()[:2]))
    assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    argv = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    assert argv[:3] == ["dagster", "asset", "materialize"], argv
    _dagster(tmp_path, *argv[1:], env={**_env(tmp_path / "home"), **assignments})
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as conn:
        statuses = dict(conn.execute("select status, count(*) from quarantine.crm_customers "
                                     "where record_id like 'crm:990%' group by 1").fetchall())
        staged = conn.execute("select count(*) from staging.customers where email like 'fixed-%'").fetchone()[0]
    assert statuses == {"released": injected} and staged == injected
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        replay = instance.get_latest_materialization_event(dg.AssetKey(["quarantine", "staging_replayed"]))
        assert replay.asset_materialization.metadata["moved"].value["crm_customers"] == injected

    # A plain run after --inject-bad starts over (the rogue event stays on the append-only bus) and
    # succeeds; the stale sensor cursor of the old bus goes with it.
    _set_stale_sensor_cursor(tmp_path)
    plain = _demo(tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    _clean_console(plain)
    assert "Starting over (it holds the rows --inject-bad broke on purpose" in plain.stdout
    assert "Failed checks" not in plain.stdout and "cart_abandoners" in _section(plain.stdout, "Segment sizes:")
    assert re.search(r"^  personalization up --data-dir \S+ --dagster-home \S+$", plain.stdout, re.M)
    assert "outbox page http://127.0.0.1:8090/" in plain.stdout  # the summary points to the e-mails
    assert STALE_CURSOR not in _sensor_cursors(tmp_path)


def test_the_same_seed_and_now_give_the_same_tables_and_fresh_resets_the_cursors(tmp_path):
    # Ten days back: had any step read the wall clock instead of --now, the carts abandoned in the
    # last two days before it would have left the 7-day cart_abandoners window.
    now = (datetime.now(timezone.utc) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = _demo(tmp_path, "--now", now)
    assert first.returncode == 0, first.stderr[-3000:]
    _clean_console(first)
    tables = _tables(tmp_path / "data" / "warehouse.duckdb")
    _set_stale_sensor_cursor(tmp_path)

    again = _demo(tmp_path, "--fresh", "--now", now)  # later on the wall clock, same seed and now
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting over (--fresh)" in again.stdout
    assert STALE_CURSOR not in _sensor_cursors(tmp_path)
    rebuilt = _tables(tmp_path / "data" / "warehouse.duckdb")
    assert rebuilt.keys() == tables.keys()
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(rebuilt[name], frame, obj=name)
    members = tables["marts.segment_membership"]
    assert (members["segment"] == "cart_abandoners").sum() > 0


def test_a_failed_run_says_what_failed_and_what_to_do_next(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: the orders API cannot be reached
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    failed = _demo(tmp_path, scale="0.05", env={"ORDERS_API_URL": dead})
    assert failed.returncode == 1
    assert "Traceback" not in failed.stdout + failed.stderr and "BetaWarning" not in failed.stderr
    assert "raw__shop_orders" in failed.stderr and f"cannot reach {dead}" in failed.stderr
    assert re.search(r"^Full logs: personalization ui --data-dir \S+ --dagster-home \S+ +\(Runs -> [0-9a-f]{8}\)$",
                     failed.stderr, re.M)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the demo run failed") and "personalization demo --fresh" in last
