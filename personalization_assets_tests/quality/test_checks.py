"""Pandera asset-check factory and table models on small frames, run through real Dagster."""

import dagster as dg
import pandas as pd

from personalization_assets.assets.checks import pandera_asset_check, table_schema
from personalization_assets.schemas.tables import STAGING_MODELS, StagingOrderLines


def _lines(**overrides):
    df = pd.DataFrame({
        "order_id": ["o1", "o1", "o2"], "line_no": [1, 2, 1], "sku": ["a", "b", "c"],
        "product_name": ["A", None, "C"], "category": [None, "x", "y"],
        "quantity": [1, 2, 3], "unit_price_minor": [100, 250, 0], "line_total_minor": [100, 500, 0],
        "currency": ["EUR", "GBP", "USD"],
    })
    for k, v in overrides.items():
        df[k] = v
    return df


def _run(df):
    @dg.asset(key=["staging", "order_lines"], io_manager_key="mem")
    def order_lines():
        return df

    check = pandera_asset_check(["staging", "order_lines"], StagingOrderLines)
    result = dg.materialize([order_lines, check], resources={"mem": dg.InMemoryIOManager()},
                            raise_on_error=False)
    evals = result.get_asset_check_evaluations()
    assert len(evals) == 1
    return evals[0]


def test_valid_frame_passes():
    ev = _run(_lines())
    assert ev.passed
    assert ev.metadata["failed_checks"].value == 0


def test_bad_rows_fail_with_error_severity_and_examples():
    ev = _run(_lines(quantity=[0, -1, 2], currency=["EUR", "XXY", "ZZZ"]))
    assert not ev.passed
    assert ev.severity == dg.AssetCheckSeverity.ERROR
    failures = {(f["column"], f["check"]): f for f in ev.metadata["failures"].value}
    qty = failures[("quantity", "greater_than(0)")]
    assert qty["count"] == 2 and sorted(qty["examples"]) == ["-1", "0"]
    cur = failures[("currency", "iso_4217")]
    assert cur["count"] == 2 and set(cur["examples"]) == {"XXY", "ZZZ"}


def test_examples_capped_at_five():
    n = 12
    df = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)], "line_no": [1] * n, "sku": ["s"] * n,
        "product_name": [None] * n, "category": [None] * n, "quantity": [0] * n,
        "unit_price_minor": [1] * n, "line_total_minor": [1] * n, "currency": ["EUR"] * n,
    })
    ev = _run(df)
    (qty,) = [f for f in ev.metadata["failures"].value if f["column"] == "quantity"]
    assert qty["count"] == n and len(qty["examples"]) == 5


def test_blocking_flag_reaches_the_check_spec():
    for blocking in (True, False):
        check = pandera_asset_check(["staging", "order_lines"], StagingOrderLines, blocking=blocking)
        (spec,) = check.check_specs
        assert spec.blocking is blocking


def test_table_schema_matches_model_columns():
    for model in STAGING_MODELS.values():
        schema = table_schema(model)
        names = [c.name for c in schema.columns]
        assert names == list(model.to_schema().columns)
    lines = {c.name: c for c in table_schema(StagingOrderLines).columns}
    assert lines["product_name"].constraints.nullable
    assert not lines["quantity"].constraints.nullable
    assert "iso_4217" in lines["currency"].constraints.other


def test_orders_and_events_rules():
    orders = pd.DataFrame({
        "order_id": ["o1", "o2"], "customer_record_id": [None, "crm:1"], "is_guest": [False, False],
        "status": ["paid", "paid"], "currency": ["EUR", "EUR"], "total_minor": [100, -5],
        "created_at": pd.to_datetime(["2024-01-01T00:00Z"] * 2, utc=True),
        "updated_at": pd.to_datetime(["2024-01-01T00:00Z"] * 2, utc=True),
    })
    from personalization_assets.quality.checks import run_model
    from personalization_assets.schemas.tables import StagingOrders
    failed = {(f["column"], f["check"]) for f in run_model(StagingOrders, orders)}
    assert ("total_minor", "greater_than_or_equal_to(0)") in failed
    assert any(check == "guest_or_customer" for _, check in failed)
    naive = orders.assign(total_minor=[1, 2], is_guest=[True, False],
                          created_at=pd.to_datetime(["2024-01-01"] * 2))
    failed = {c for c, _ in map(lambda f: (f["column"], f["check"]), run_model(StagingOrders, naive))}
    assert "created_at" in failed
