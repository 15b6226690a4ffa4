"""Raw assets: a failing source fails the asset, moves no cursor and writes nothing; reruns never double."""

import json

import dagster as dg
import duckdb
import pytest

from personalization_assets.assets import raw
from personalization_assets.demo.orders_api_server import ApiBehaviour, OrdersApiServer
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import CrmDatabase, OrdersApi


def _orders(directory, n):
    rows = [{"order_id": f"o{i}", "customer_id": None, "email": f"g{i}@example.org", "status": "paid",
             "currency": "EUR", "total": "1.00", "lines": [],
             "created_at": "2026-01-01T10:00:00+00:00", "updated_at": f"2026-01-01T10:{i:02d}:00+00:00"}
            for i in range(n)]
    rows.append({"customer_id": "x", "updated_at": "2026-01-01T11:00:00+00:00"})  # no order_id
    (directory / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _tables(db):
    with duckdb.connect(str(db), read_only=True) as conn:
        return {f"{s}.{t}" for s, t in conn.execute(
            "select table_schema, table_name from information_schema.tables").fetchall()}


def _scalar(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchone()[0]


def test_unreachable_crm_fails_cleanly_and_writes_nothing(local_env):
    resources = {**resources_for("local"), "crm": CrmDatabase(url="postgresql+psycopg2://x@127.0.0.1:1/none")}
    result = dg.materialize([raw.crm_customers], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "crm: cannot read customers" in failure.step_failure_data.error.message
    assert "raw.crm_customers" not in _tables(local_env / "warehouse.duckdb")


def test_orders_failure_mid_stream_keeps_cursor_and_table(local_env, tmp_path):
    _orders(tmp_path, 30)
    base = resources_for("local")
    db = local_env / "warehouse.duckdb"
    with OrdersApiServer(tmp_path) as server:
        api = OrdersApi(base_url=server.url, client_id="demo-client", client_secret="demo-secret")
        ok = dg.materialize([raw.shop_orders], resources={**base, "orders_api": api})
    assert ok.success
    assert _scalar(db, "select count(*) from raw.shop_orders") == 30
    assert _scalar(db, "select count(*) from quarantine.shop_orders") == 1
    cursor = _scalar(db, "select cursor_json from ops.cursors where name = 'shop_orders'")

    # New orders arrive, but the API breaks after the first page: nothing moves.
    _orders(tmp_path, 45)
    behaviour = ApiBehaviour(fail_after=1)
    with OrdersApiServer(tmp_path, behaviour) as server:
        api = OrdersApi(base_url=server.url, client_id="demo-client", client_secret="demo-secret",
                        max_attempts=1, page_size=5)
        failed = dg.materialize([raw.shop_orders], resources={**base, "orders_api": api},
                                raise_on_error=False)
    assert not failed.success
    assert _scalar(db, "select count(*) from raw.shop_orders") == 30
    assert _scalar(db, "select cursor_json from ops.cursors where name = 'shop_orders'") == cursor

    # Healthy again: the new orders load once, and a repeat run changes nothing.
    with OrdersApiServer(tmp_path, ApiBehaviour(rate_limit_every=2)) as server:
        api = OrdersApi(base_url=server.url, client_id="demo-client", client_secret="demo-secret")
        for _ in range(2):
            assert dg.materialize([raw.shop_orders], resources={**base, "orders_api": api}).success
            assert _scalar(db, "select count(*) from raw.shop_orders") == 45
            assert _scalar(db, "select count(distinct order_id) from raw.shop_orders") == 45
            assert _scalar(db, "select count(*) from quarantine.shop_orders") == 1
    assert json.loads(_scalar(db, "select cursor_json from ops.cursors where name = 'shop_orders'")) == {
        "updated_since": "2026-01-01T10:44:00+00:00"}
