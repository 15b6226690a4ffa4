"""The equivalence asset and its blocking check, on a temporary DuckDB warehouse."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd

from personalization_assets.assets import audiences
from personalization_assets.resources.warehouse import DuckDBWarehouse

from .test_trigger_rewrite import sessions


def staged(path, late_minutes: int = 0):
    frame = sessions(customers=40)
    for col in ("sku", "category", "currency"):
        frame[col] = None
    frame["value_minor"] = None
    if late_minutes:  # a lone cart event, long after the last visit, arrives long after its time
        at = frame["timestamp"].max() + timedelta(days=2)
        late = {**frame.iloc[0].to_dict(), "message_id": "late", "event": "product added", "user_id": "late-one",
                "timestamp": at, "received_at": at + timedelta(minutes=late_minutes)}
        frame = pd.concat([frame, pd.DataFrame([late])], ignore_index=True)
    con = duckdb.connect(str(path))
    con.execute("create schema staging")
    con.register("f", frame)
    con.execute("create table staging.events as select * from f")
    con.close()
    return frame


def materialize(path, days: float = 30, instants: int = 300):
    return dg.materialize([audiences.audience_equivalence, audiences.audiences_agree_within_tolerance],
                          resources={"warehouse": DuckDBWarehouse(database=str(path))},
                          run_config={"ops": {"marts__audience_equivalence": {"config": {"days": days, "max_instants": instants}}}},
                          raise_on_error=False)


def test_equivalence_on_history_finds_no_disagreement_and_the_check_passes(tmp_path):
    db = tmp_path / "w.duckdb"
    staged(db)
    result = materialize(db)
    assert result.success
    meta = result.asset_materializations_for_node("marts__audience_equivalence")[0].metadata
    assert meta["instants"].value > 50 and meta["unexplained"].value == 0
    assert meta["dagster/row_count"].value == 0
    refused = meta["not_streamable"].value
    assert "batch-only" in refused["cart_abandoners"] and "cart_abandonment" not in refused
    check = result.get_asset_check_evaluations()[0]
    assert check.passed


def test_a_late_event_is_reported_with_its_reason(tmp_path):
    db = tmp_path / "w.duckdb"
    staged(db, late_minutes=90)
    result = materialize(db, days=1, instants=10_000)  # the late cart is alone in the last day
    meta = result.asset_materializations_for_node("marts__audience_equivalence")[0].metadata
    assert meta["by_reason"].value.get("late_event", 0) >= 1 and meta["unexplained"].value == 0
    assert result.get_asset_check_evaluations()[0].passed


def test_check_blocks_when_unexplained_disagreements_exceed_the_tolerance(tmp_path):
    db = tmp_path / "w.duckdb"
    staged(db)
    materialize(db)
    con = duckdb.connect(str(db))
    con.execute("insert into marts.audience_equivalence values (now(), 'cart_abandonment', 'u1', true, false, 'unexplained')")
    con.close()
    result = dg.materialize([audiences.audience_equivalence, audiences.audiences_agree_within_tolerance],
                            resources={"warehouse": DuckDBWarehouse(database=str(db))},
                            selection=dg.AssetSelection.checks(audiences.audiences_agree_within_tolerance),
                            raise_on_error=False)
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.metadata["unexplained"].value == 1
    assert check.severity == dg.AssetCheckSeverity.ERROR
