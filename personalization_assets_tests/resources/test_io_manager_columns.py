"""An input's metadata `columns` makes the IO manager read only those columns of the table (the
identity map reads 5 columns of staging.events, not its payload texts), and stitching on those
columns gives the same identity map as on the whole table."""

import dagster as dg
import pandas as pd

from personalization_assets.assets.core import STITCH_EVENT_COLUMNS
from personalization_assets.identity import stitch_identities
from personalization_assets.resources.io_manager import AtomicDuckDBIOManager

SEEN = {}


@dg.asset(key=["staging", "wide"])
def wide() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "n": [1, 2, 3], "payload": ["{...}", "{}", None]})


@dg.asset(key=["core", "narrow"], ins={"rows": dg.AssetIn(key=["staging", "wide"], metadata={"columns": ["n", "id"]})})
def narrow(rows: pd.DataFrame) -> pd.DataFrame:
    SEEN["narrow"] = rows
    return rows


@dg.asset(key=["core", "whole"], ins={"rows": dg.AssetIn(key=["staging", "wide"])})
def whole(rows: pd.DataFrame) -> pd.DataFrame:
    SEEN["whole"] = rows
    return rows


def test_input_columns_are_the_only_ones_read(tmp_path):
    result = dg.materialize([wide, narrow, whole],
                            resources={"io_manager": AtomicDuckDBIOManager(database=str(tmp_path / "w.duckdb"))})
    assert result.success
    assert list(SEEN["narrow"].columns) == ["n", "id"]
    assert SEEN["narrow"].sort_values("id")["n"].tolist() == [1, 2, 3]
    assert list(SEEN["whole"].columns) == ["id", "n", "payload"]


def _events() -> pd.DataFrame:
    ts = pd.Timestamp("2026-03-01", tz="UTC")
    rows = [  # (type, event, user_id, anonymous_id, minutes)
        ("page", None, None, "dev1", 0), ("identify", None, "1001", "dev1", 5),
        ("track", "Signed In", "1002", "dev2", 7), ("track", "Product Viewed", None, "dev2", 9),
        ("alias", None, "1003", "dev3", 11), ("track", "Logged In", "1004", "dev1", 20),
        ("track", "Order Completed", "1001", None, 30), ("page", None, " 1005 ", "", 31),
        ("identify", None, "1002", "dev5", 40),
    ]
    return pd.DataFrame({
        "message_id": [f"m{i}" for i in range(len(rows))], "type": [r[0] for r in rows],
        "event": [r[1] for r in rows], "user_id": [r[2] for r in rows], "anonymous_id": [r[3] for r in rows],
        "timestamp": [ts + pd.Timedelta(minutes=r[4]) for r in rows],
        "received_at": [ts + pd.Timedelta(minutes=r[4] + 1) for r in rows],
        "payload": ['{"properties": {}}'] * len(rows), "currency": [None] * len(rows),
    })


def test_identity_map_from_its_columns_equals_the_whole_table():
    crosswalk = pd.DataFrame({"record_id": ["crm:1001", "crm:1002", "crm:1004", "shop:9"],
                              "customer_key": ["c1", "c2", "c4", "c1"], "rule": ["exact"] * 4})
    events = _events()
    whole_map = stitch_identities(events, crosswalk)
    pruned_map = stitch_identities(events[STITCH_EVENT_COLUMNS], crosswalk[["record_id", "customer_key"]])
    # the fixture reaches every way a device is linked, and users with and without a customer
    assert {"identify", "alias", "login", "user_id"} <= set(whole_map["method"])
    assert whole_map["customer_key"].notna().any() and whole_map["customer_key"].isna().any()
    pd.testing.assert_frame_equal(pruned_map, whole_map)
