"""The marts assets materialized through the `warehouse` resource: DuckDB file and fakesnow."""

import json

import dagster as dg
import pytest

from personalization_assets.assets import marts
from personalization_assets.resources.warehouse import DuckDBWarehouse, SnowflakeWarehouse

from .conftest import NOW, History, ago
from personalization_assets_tests.conftest import require_module

ASSETS = [marts.customer_profiles, marts.segments, marts.personalization_payloads,
          marts.suppressed_never_in_sendable_segments]


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    """The histories are written relative to NOW; the assets read the clock through utc_now."""
    monkeypatch.setattr(marts, "utc_now", lambda: NOW)


def history() -> History:
    h = History()
    h.customer("anna", first_name="Anna", created_at=ago(days=200))
    h.customer("noel", email_opt_in=False, created_at=ago(days=200))
    for key in ("anna", "noel"):  # both abandon a cart; only anna may be e-mailed
        h.order(key, ago(days=40), lines=(("A", "bags", 1), ("B", "bags", 1)))
        h.event(key, "Product Added", ago(hours=3), sku="A", value_minor=1500)
    return h


def check_result(result: dg.ExecuteInProcessResult) -> None:
    assert result.success
    by_key = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    membership = by_key[marts.MEMBERSHIP_KEY]
    assert membership["segment_size:cart_abandoners"].value == 1
    assert membership["segment_size:win_back"].value == 0
    assert json.loads(json.dumps(membership["segment_sizes"].value))["cart_abandoners"] == 1
    assert by_key[marts.CHANGES_KEY]["dagster/row_count"].value == 1
    preview = by_key[marts.PAYLOADS_KEY]["template_preview"].value
    assert "Hi Anna" in preview and "You left these in your cart" in preview and "noel" not in preview
    payloads = by_key[marts.PAYLOADS_KEY]  # counted in the warehouse, over the table written
    assert payloads["dagster/row_count"].value == 1 and payloads["with_cart"].value == 1
    assert payloads["loyalty_tiers"].value == {"bronze": 1}
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["violations"].value == 0
    assert check.metadata["suppressed_customers"].value == 1


def test_assets_on_a_duckdb_file(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect() as conn:
        history().write(conn)
    check_result(dg.materialize(ASSETS, resources={"warehouse": warehouse}))


def test_assets_on_fakesnow():
    fakesnow = require_module("fakesnow")
    with fakesnow.patch():
        warehouse = SnowflakeWarehouse(account="acct", user="u", password="pw", database="PERSONALIZATION")
        with warehouse.connect() as conn:
            conn.execute("create schema if not exists public")
            history().write(conn)
        check_result(dg.materialize(ASSETS, resources={"warehouse": warehouse}))


def test_blocking_check_fails_when_a_suppressed_customer_is_a_member(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect() as conn:
        history().write(conn)
    assert dg.materialize(ASSETS[:2], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        conn.execute("insert into marts.segment_membership values ('cart_abandoners', 'noel', current_timestamp)")
    result = dg.materialize([marts.suppressed_never_in_sendable_segments, *ASSETS[:2]],
                            resources={"warehouse": warehouse},
                            selection=dg.AssetSelection.checks(marts.suppressed_never_in_sendable_segments),
                            raise_on_error=False)
    assert not result.success  # blocking: the run fails, so nothing downstream would send
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["violations"].value == 1
    assert "no…" in check.metadata["examples"].value and "noel" not in check.metadata["examples"].value  # masked
