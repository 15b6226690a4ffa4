"""An input's metadata `columns` makes the IO manager read only those columns of the table (the
identity map reads 2 columns of the crosswalk)."""

import dagster as dg
import pandas as pd

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
