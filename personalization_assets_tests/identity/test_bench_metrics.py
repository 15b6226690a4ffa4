"""The benchmark's rule ceiling: true pairs that the never-merge rule forbids are lost by any engine."""

import pandas as pd
import pytest

from bench.identity.metrics import pairwise, rule_ceiling


def test_rule_ceiling_counts_only_true_pairs_that_disagree_on_first_name_and_birth_year():
    df = pd.DataFrame({
        "entity": [1, 1, 1, 2, 2, 3, 3],
        "first_name": ["Liam", "Elton", "Liam", "Cameron", "Jessup", "Bob", "Robert"],
        "last_name": ["Waller", "Waller", "Waller", None, "Cameron", "Hale", "Hale"],
        "birth_date": ["1992-07-06", "1956-01-02", "1992-07-06", "1956-11-17", "1965-12-07", "1970-01-02",
                       "1980-05-05"],
    })
    # entity 1: Elton/1956 against both Liams (2 of 3 pairs); entity 2: a swap; entity 3: a nickname
    out = rule_ceiling(df)
    assert out["ceiling_recall"] == pytest.approx(1 - 2 / 5)
    best = pairwise(df["entity"], pd.Series([0, 9, 0, 1, 1, 2, 2]))  # the best allowed clustering
    assert best["recall"] == pytest.approx(out["ceiling_recall"]) and best["precision"] == 1.0
