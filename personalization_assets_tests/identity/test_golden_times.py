"""golden_records' first_seen / last_updated: the earliest and latest known time per customer."""

import numpy as np
import pandas as pd

from personalization_assets.identity.survivorship import golden_records


def test_first_seen_and_last_updated_match_groupby_min_max_with_unknown_times():
    rng = np.random.default_rng(5)
    n = 2000
    times = pd.Series(pd.to_datetime(rng.integers(1.6e18, 1.7e18, n), utc=True))
    times[rng.random(n) < 0.3] = pd.NaT
    keys = pd.Series([f"cus_{k}" for k in rng.integers(0, 600, n)])
    times[keys == keys.iloc[0]] = pd.NaT  # one customer with no known time at all
    records = pd.DataFrame({"record_id": [f"r{i}" for i in range(n)], "source": "crm",
                            "first_name": "ann", "updated_at": times})
    golden = golden_records(records, keys, ("crm",)).set_index("customer_key")
    grouped = times.groupby(keys)
    pd.testing.assert_series_equal(golden["first_seen"], grouped.min().reindex(golden.index), check_names=False)
    pd.testing.assert_series_equal(golden["last_updated"], grouped.max().reindex(golden.index), check_names=False)
    assert golden.loc[keys.iloc[0], "last_updated"] is pd.NaT
