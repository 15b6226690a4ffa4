"""Normalizers and export parsing: any JSON a provider (or an attacker) sends yields a normalized
event or a quarantine record with a rule, never an exception."""

from __future__ import annotations

import json
from datetime import timezone

from hypothesis import given, settings, strategies as st

from personalization_assets.email_events import EVENT_TYPES, Normalized, Rejected, normalize
from personalization_assets.email_events.demo import generate_email_events, write_demo_export
from personalization_assets.email_events.files import load_file, provider_of, scan
from personalization_assets.email_events.staging import events_frame, suppressions

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20)
KEYS = ["event", "type", "email", "recipient", "timestamp", "sg_event_id", "id", "severity", "url",
        "sg_machine_open", "bounce_class", "event-data", "customer_key"]
events = st.dictionaries(st.sampled_from(KEYS), json_values | st.sampled_from(
    ["bounce", "open", "failed", "opened", "a@b.io", "1700000000", "2026-01-01T00:00:00Z", "blocked"]), max_size=10)


@settings(max_examples=200, deadline=None)
@given(provider=st.sampled_from(["sendgrid", "mailgun", "generic"]), event=events | json_values)
def test_any_payload_is_normalized_or_quarantined_with_a_rule(provider, event):
    result = normalize(provider, event)
    if isinstance(result, Normalized):
        assert result.type in EVENT_TYPES
        assert result.timestamp.tzinfo == timezone.utc
        assert result.email == result.email.lower() and "@" in result.email
        assert result.bus_message_id == f"{provider}:{result.provider_event_id}"
        assert json.loads(result.raw_payload) == json.loads(json.dumps(event, sort_keys=True, default=str))
    else:
        assert isinstance(result, Rejected) and result.rule and result.message
        assert result.record_id.startswith(f"{provider}:")


@given(offset=st.integers(min_value=-14 * 60, max_value=14 * 60), seconds=st.integers(1, 4_000_000_000))
def test_iso_and_unix_timestamps_agree_in_utc(offset, seconds):
    from datetime import datetime, timedelta

    moment = datetime.fromtimestamp(seconds, timezone.utc)
    local = moment.astimezone(timezone(timedelta(minutes=offset))).isoformat()
    a = normalize("generic", {"id": "1", "type": "open", "email": "a@b.io", "timestamp": local})
    b = normalize("generic", {"id": "1", "type": "open", "email": "a@b.io", "timestamp": seconds})
    assert a.timestamp == b.timestamp == moment


def test_provider_comes_from_the_file_name():
    assert [provider_of(n) for n in ("sendgrid_x.csv", "Mailgun-2026.jsonl", "generic.jsonl", "brevo_x.csv")] == [
        "sendgrid", "mailgun", "generic", None]


def test_unknown_provider_file_is_quarantined_whole(tmp_path):
    (tmp_path / "brevo_export.csv").write_text("email,event\na@b.io,open\n")
    [f] = scan(tmp_path)
    good, bad = load_file(f)
    assert good == [] and bad[0].rule == "file.provider" and "brevo_export.csv" in bad[0].message


def test_demo_engagement_is_deterministic_and_flows_through_the_sendgrid_normalizer(tmp_path):
    customers = [{"email": f"c{i}@example.com", "customer_key": f"k{i}"} for i in range(300)] + [{"email": None}]
    first, again = generate_email_events(customers, seed=5), generate_email_events(customers, seed=5)
    assert [e["sg_event_id"] for e in first] == [e["sg_event_id"] for e in again]
    path = write_demo_export(tmp_path, first, seed=5)
    [f] = scan(tmp_path)
    good, bad = load_file(f)
    assert f.name == path.name and bad == [] and len(good) == len(first)
    types = {g.type for g in good}
    assert {"delivered", "open", "click", "bounce", "soft_bounce", "unsubscribe"} <= types
    assert any(g.is_machine for g in good if g.type == "open") and any(not g.is_machine for g in good if g.type == "open")
    frame = events_frame([g.to_record() for g in good])
    supp = suppressions(frame)
    hard = set(frame.loc[frame["type"] == "bounce", "email"])
    soft_only = set(frame.loc[frame["type"] == "soft_bounce", "email"]) - hard - set(
        frame.loc[frame["type"].isin(["unsubscribe", "spamreport"]), "email"])
    assert hard <= set(supp["email"]) and not (soft_only & set(supp["email"]))
    assert not supp.duplicated(["email", "reason"]).any()


def test_clicks_within_seconds_of_delivery_are_scanner_clicks():
    def ev(i, kind, ts, message="m1"):
        return {"provider": "sendgrid", "provider_event_id": str(i), "type": kind, "email": "a@b.io",
                "message_id": message, "timestamp": f"2026-01-01T10:00:{ts:02d}+00:00", "is_machine": False}
    frame = events_frame([ev(1, "delivered", 0), ev(2, "click", 3), ev(3, "click", 40), ev(4, "open", 9),
                          ev(5, "click", 1, message="m2"), ev(6, "delivered", 5, message="m2")])
    from personalization_assets.email_events.staging import flag_scanner_clicks

    flagged = dict(zip(frame["provider_event_id"], flag_scanner_clicks(frame)["is_machine"]))
    assert flagged == {"1": False, "2": True, "3": False, "4": True, "5": False, "6": False}
