"""Golden record rules and lineage of every field."""

import pandas as pd
from personalization_assets_tests.identity.identity_factory import person

from personalization_assets.identity.survivorship import golden_records


def test_rules_most_frequent_name_most_recent_value_and_source_record():
    df = pd.DataFrame([
        person("crm:1", "Robert", "Smith", email="old@x.org", city="Leeds", updated="2026-01-01T00:00:00Z"),
        person("shop:2", "Bob", "Smith", email="new@x.org", city=None, source="shop", updated="2026-03-01T00:00:00Z"),
        person("crm:3", "Robert", "Smith", email=None, city="York", updated="2026-02-01T00:00:00Z"),
    ])
    g = golden_records(df, pd.Series(["k1", "k1", "k1"]), ("crm", "shop"))
    row = g.iloc[0]
    assert row["first_name"] == "Robert" and row["first_name_source"] in {"crm:1", "crm:3"}
    assert row["email"] == "new@x.org" and row["email_source"] == "shop:2"   # most recent non-null
    assert row["city"] == "York" and row["city_source"] == "crm:3"           # newest non-null city
    assert row["source_records"] == 3 and row["n_sources"] == 2


def test_source_priority_breaks_recency_ties():
    same = "2026-01-01T00:00:00Z"
    df = pd.DataFrame([person("shop:1", "A", "B", phone="+441", source="shop", updated=same),
                       person("crm:1", "A", "B", phone="+442", source="crm", updated=same)])
    g = golden_records(df, pd.Series(["k", "k"]), ("crm", "shop"))
    assert g.loc[0, "phone"] == "+442" and g.loc[0, "phone_source"] == "crm:1"
