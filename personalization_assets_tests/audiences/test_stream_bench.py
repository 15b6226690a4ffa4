"""bench.audiences' stream replay: every event goes through, and each chunk's own rate is reported
beside the cumulative one (the cumulative figure hides the slowdown as window edges begin to fire)."""

from __future__ import annotations

from bench.audiences import audiences, replay


def test_replay_sends_every_event_and_reports_the_last_chunk_rate():
    run = replay(audiences(8), customers=300, events=6_000, size=1_000)
    assert run["events"] == 6_000
    assert run["decisions"] > 0 and 0 < run["keys_held"] <= 300
    assert run["seconds"] > 0 and run["last_chunk_events_per_s"] > 0
