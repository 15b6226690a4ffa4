"""Exact stage: trusted keys merge, placeholders and shared keys never do."""

import pandas as pd
from personalization_assets_tests.identity.identity_factory import person

from personalization_assets.identity import resolve
from personalization_assets.identity.exact import exact_edges
from personalization_assets.identity.prepare import features


def keys_of(res):
    return res.crosswalk.set_index("record_id")["customer_key"]


def test_same_email_key_merges_with_rule_evidence():
    df = pd.DataFrame([person("crm:1", "Ann", "Lee", email="ann@x.org"),
                       person("shop:9", "Annie", "Leigh", email="ann@x.org", source="shop")])
    res = resolve(df)
    k = keys_of(res)
    assert k["crm:1"] == k["shop:9"]
    assert "exact:email_key" in set(res.evidence["rule"])


def test_placeholder_email_and_phone_never_link():
    df = pd.DataFrame([person("crm:1", "Ann", "Lee", email="test@example.com", phone="+440000000000"),
                       person("crm:2", "Bob", "Ray", email="test@example.com", phone="+440000000000")])
    k = keys_of(resolve(df))
    assert k["crm:1"] != k["crm:2"]


def test_household_phone_is_evidence_not_a_verdict():
    """The exact stage proposes every pair sharing the phone; only compatible first names link
    (before: it linked by first initial, without scoring)."""
    df = pd.DataFrame([person("crm:1", "Ann", "Lee", phone="+447700900123"),
                       person("crm:2", "Tom", "Lee", phone="+447700900123"),
                       person("crm:3", "Anne", "Lee", phone="+447700900123")])
    e, _ = exact_edges(features(df), max_group=20)
    assert {tuple(sorted((int(a), int(b)))) for a, b in zip(e["left"], e["right"])} == {(0, 1), (0, 2), (1, 2)}
    res = resolve(df)
    k = keys_of(res)
    assert k["crm:1"] == k["crm:3"] != k["crm:2"]
    assert (res.review["reason"] == "conflict").sum() == 2   # Tom-Ann and Tom-Anne, for a person to see


def test_key_shared_by_too_many_records_is_refused_and_reported():
    rows = [person(f"crm:{i}", f"N{chr(97 + i % 26)}x", f"L{i}", email="family@home.net") for i in range(25)]
    rows = [dict(r, first_name="Sam") for r in rows]  # same initial so the group stays one key
    res = resolve(pd.DataFrame(rows))
    assert res.golden.shape[0] > 1
    assert res.review["reason"].str.startswith("shared_key:email_key").any()


def test_same_source_customer_id_merges():
    df = pd.DataFrame([person("crm:7", "Kim", "Ng"), person("crm:7b", "Kim", "Ng")])
    df.loc[1, "source_id"] = "7"
    k = keys_of(resolve(df))
    assert k["crm:7"] == k["crm:7b"]
