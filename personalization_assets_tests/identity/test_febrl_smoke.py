"""Accuracy smoke test on FEBRL 1 (1,000 records, truth in record ids)."""

import pandas as pd

from personalization_assets.identity import resolve
from personalization_assets_tests.conftest import FIXTURES

FEBRL = FIXTURES / "febrl" / "dataset1.csv"


def test_febrl1_pairwise_f1():
    raw = pd.read_csv(FEBRL, skipinitialspace=True, dtype=str)
    df = pd.DataFrame({"record_id": raw["rec_id"], "source": "febrl", "first_name": raw["given_name"],
                       "last_name": raw["surname"], "street": raw["street_number"].fillna("") + " " +
                       raw["address_1"].fillna(""), "city": raw["suburb"], "postcode": raw["postcode"],
                       "birth_date": raw["date_of_birth"], "national_id": raw["soc_sec_id"]})
    res = resolve(df)
    entity = res.crosswalk["record_id"].str.extract(r"rec-(\d+)", expand=False)
    both = pd.DataFrame({"c": res.crosswalk["customer_key"], "e": entity})
    pairs = lambda s: (s * (s - 1) // 2).sum()  # noqa: E731
    tp = pairs(both.groupby(["c", "e"]).size())
    precision, recall = tp / pairs(both.groupby("c").size()), tp / pairs(both.groupby("e").size())
    assert precision >= 0.995 and recall >= 0.99
