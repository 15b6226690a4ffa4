"""The demo's parts that need no Dagster run: data that never lies in the future, the pinned clock,
when a data dir is started over (and that starting over resets the instance's cursors), the CLI."""

from datetime import datetime, timedelta, timezone

import pytest

from personalization_assets import clock
from personalization_assets.cli import main
from personalization_assets.demo.generator import generate
from personalization_assets.demo.manifest import Manifest, reason_to_start_over, write_manifest
from personalization_assets.demo.state import start_over

NOW = datetime(2026, 3, 1, 12, 34, 56, tzinfo=timezone.utc)


def _times(data):
    for c in data.customers:
        yield f"crm:{c['customer_id']}", c["created_at"], c["updated_at"]
    for o in data.orders:
        yield o["order_id"], datetime.fromisoformat(o["created_at"]), datetime.fromisoformat(o["updated_at"])
    for e in data.events:
        if e["messageId"] not in data.bad_events:  # `bad-future` is wrong on purpose: staging quarantines it
            yield e["messageId"], datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")), \
                datetime.fromisoformat(e["sentAt"].replace("Z", "+00:00"))


def test_the_demo_data_never_lies_in_the_future():
    data = generate(seed=7, scale=1.0, anchor=NOW)  # the old generator dated ord-0002679 36 h ahead
    late = [(record, a, b) for record, a, b in _times(data)
            if max(t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (a, b)) > data.anchor]
    assert not late, f"{len(late)} records after now, e.g. {late[:3]}"


def test_the_same_seed_and_now_give_the_same_data():
    assert generate(seed=7, scale=0.1, anchor=NOW) == generate(seed=7, scale=0.1, anchor=NOW)


def test_the_pinned_now_is_everyones_now(monkeypatch):
    monkeypatch.delenv(clock.NOW_ENV, raising=False)
    with clock.pinned(NOW):
        assert clock.utc_now() == NOW
        from personalization_assets.assets.common import utc_now

        assert utc_now() == NOW
    assert abs(clock.utc_now() - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert clock.parse_instant("2026-03-01T12:34:56") == NOW  # naive = UTC
    with pytest.raises(ValueError, match="not an ISO 8601 instant"):
        clock.parse_instant("yesterday")


def test_when_a_data_dir_is_started_over():
    built = Manifest(seed=7, scale=1.0, now=NOW)
    same = dict(seed=7, scale=1.0, now=None, fresh=False, inject_bad=False)
    assert reason_to_start_over(built, **same) is None  # a rerun builds on it (same now)
    assert reason_to_start_over(built, **{**same, "now": NOW}) is None
    assert reason_to_start_over(built, **{**same, "fresh": True}) == "--fresh"
    assert reason_to_start_over(None, **{**same, "fresh": True}) == "--fresh"  # the instance's cursors too
    assert "another data set" in reason_to_start_over(built, **{**same, "seed": 8})
    assert "another --now" in reason_to_start_over(built, **{**same, "now": NOW + timedelta(hours=1)})
    broken = Manifest(seed=7, scale=1.0, now=NOW, injected={"events": 1})
    assert "--inject-bad" in reason_to_start_over(broken, **same)
    assert reason_to_start_over(broken, **{**same, "inject_bad": True}) is None


def test_start_over_refuses_a_directory_that_is_not_the_demos(tmp_path):
    import dagster as dg

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a demo data dir"):
        start_over(tmp_path, dg.DagsterInstance.ephemeral())
    assert (tmp_path / "notes.txt").exists()
    write_manifest(tmp_path / "demo", Manifest(seed=7, scale=1.0, now=NOW))
    start_over(tmp_path / "demo", dg.DagsterInstance.ephemeral())
    assert not (tmp_path / "demo").exists()


def test_demo_options_have_help_and_show_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--scale", "1.0"), ("--seed", "7"), ("--now", "the current time"), ("--data-dir", ".data"),
                            ("--dagster-home", ".dagster_home"), ("--fresh", "False"), ("--inject-bad", "False")]:
        after = text.split(option, 2)[-1]  # the option's own help, after the usage line
        assert f"(default: {default}" in after.split(" --")[0], option


def test_a_now_in_the_future_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path / "data"))
    later = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["demo", "--now", later, "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --now") and "in the future" in err and "\n" not in err
    assert not (tmp_path / "data").exists()
