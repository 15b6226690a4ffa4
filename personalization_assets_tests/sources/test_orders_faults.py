"""The orders API (the demo server on 127.0.0.1) sending bad orders: they go to quarantine with
their reason and the good ones load; a future `updated_at` never freezes the cursor; late commits
inside the look-back window load; a listing that stops early is a failure, not a SUCCESS."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from personalization_assets.assets import raw
from personalization_assets.demo.orders_api_server import ApiBehaviour, OrdersApiServer
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import OrdersApi
from personalization_assets.sources.orders_api import OrdersApiClient

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PAST = NOW - timedelta(days=2)


def _order(order_id, updated_at=PAST, **values):
    stamp = updated_at.isoformat() if isinstance(updated_at, datetime) else updated_at
    return {"order_id": order_id, "customer_id": None, "email": "g@example.org", "status": "paid",
            "currency": "EUR", "total": "1.00", "lines": [], "created_at": PAST.isoformat(),
            "updated_at": stamp, **values}


def _write(directory, orders):
    (directory / "orders.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders))


def _good(n, start=0):
    return [_order(f"o{i:03d}", PAST + timedelta(minutes=i)) for i in range(start, start + n)]


def _load(tmp_path, behaviour=None, page_size=5):
    with OrdersApiServer(tmp_path, behaviour or ApiBehaviour()) as server:
        api = OrdersApi(base_url=server.url, client_id="demo-client", client_secret="demo-secret",
                        page_size=page_size, max_attempts=2)
        return dg.materialize([raw.shop_orders], resources={**resources_for("local"), "orders_api": api},
                              raise_on_error=False)


def _query(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _errors(result):
    return [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]


def test_bad_orders_are_quarantined_and_the_good_ones_load(local_env, tmp_path):
    keyless = [{"customer_id": "x", "updated_at": PAST.isoformat(), "total": "1.00"},
               {"customer_id": "y", "updated_at": PAST.isoformat(), "total": "2.00"}]
    _write(tmp_path, _good(12) + keyless + [_order("bad-stamp", "31/02/2026 25:00"),
                                            _order("future", NOW + timedelta(days=1460))])
    result = _load(tmp_path)
    assert result.success, _errors(result)
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select count(*) from raw.shop_orders")[0][0] == 12
    rules = _query(db, "select record_id, rule from quarantine.shop_orders order by rule, record_id")
    assert [r for r in rules if not r[0].startswith("sha256:")] == [
        ("future", "raw.updated_at_future"), ("bad-stamp", "raw.updated_at_invalid")]
    assert [rule for r, rule in rules if r.startswith("sha256:")] == ["raw.key_missing"] * 2  # two, not one
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'shop_orders'")[0][0])
    assert datetime.fromisoformat(cursor["updated_since"]) == PAST + timedelta(minutes=11)

    # Rerun: the look-back window reads the same orders again and nothing doubles or moves.
    loaded = _query(db, "select order_id, loaded_at from raw.shop_orders order by 1")
    assert _load(tmp_path).success
    assert _query(db, "select order_id, loaded_at from raw.shop_orders order by 1") == loaded
    assert len(_query(db, "select * from quarantine.shop_orders")) == len(rules)


def test_future_order_does_not_freeze_the_cursor_and_late_commits_load(local_env, tmp_path):
    orders = _good(3) + [_order("future", datetime(2030, 1, 1, tzinfo=timezone.utc))]
    _write(tmp_path, orders)
    assert _load(tmp_path).success
    db = local_env / "warehouse.duckdb"
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'shop_orders'")[0][0])
    assert datetime.fromisoformat(cursor["updated_since"]) < NOW

    # A real change now, and one committed late with an updated_at before the cursor.
    orders += [_order("new", NOW - timedelta(minutes=1)), _order("late", PAST - timedelta(minutes=30))]
    _write(tmp_path, orders)
    assert _load(tmp_path).success
    assert {o for (o,) in _query(db, "select order_id from raw.shop_orders")} == {
        "o000", "o001", "o002", "new", "late"}
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'shop_orders'")[0][0])
    assert datetime.fromisoformat(cursor["updated_since"]) <= datetime.now(timezone.utc) - timedelta(minutes=5)


def test_a_duplicate_order_id_is_never_dropped_silently(local_env, tmp_path):
    _write(tmp_path, [
        _order("twice", PAST), _order("twice", PAST + timedelta(minutes=5), status="shipped"),  # an update
        _order("clash", PAST, total="1.00"), _order("clash", PAST, total="9.00"),  # contradicting versions
    ])
    result = _load(tmp_path)
    assert result.success, _errors(result)
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select order_id, status from raw.shop_orders") == [("twice", "shipped")]
    (record, rule, payload), = _query(db, "select record_id, rule, raw_payload from quarantine.shop_orders")
    assert (record, rule) == ("clash", "raw.duplicate_key")
    assert sorted(version["total"] for version in json.loads(payload)) == ["1.00", "9.00"]  # both kept
    metadata = result.asset_materializations_for_node("raw__shop_orders")[0].metadata
    assert metadata["superseded_versions"].value == 1  # the older version of "twice", reported


def test_a_listing_that_stops_early_fails_and_writes_nothing(local_env, tmp_path):
    _write(tmp_path, _good(30))
    result = _load(tmp_path, ApiBehaviour(drop_next_after=2))  # page 2 of 6 has no next link
    assert not result.success
    assert "pagination ended after 10 of the 30 orders" in _errors(result)[0]
    tables = {t for (t,) in _query(local_env / "warehouse.duckdb", "select table_name from information_schema.tables")}
    assert "shop_orders" not in tables


def test_the_client_reads_the_reported_total(tmp_path):
    _write(tmp_path, _good(12))
    with OrdersApiServer(tmp_path) as server:
        client = OrdersApiClient(server.url, "demo-client", "demo-secret", page_size=5)
        assert sum(len(p) for p in client.iter_order_pages(None)) == 12
        assert (client.reported_total, client.received) == (12, 12)
        pages = OrdersApiClient(server.url, "demo-client", "demo-secret", page_size=5)
        server.behaviour.drop_next_after = 1
        with pytest.raises(Exception, match="pagination ended after 5 of the 12"):
            list(pages.iter_order_pages(None))


def test_a_cursor_frozen_in_the_future_by_older_code_heals(local_env, tmp_path):
    from personalization_assets.assets.common import prepare_cursors, write_cursor
    from personalization_assets.warehouse import WarehouseConnection

    db = local_env / "warehouse.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db)) as raw_conn:
        conn = WarehouseConnection(raw_conn, "duckdb")
        prepare_cursors(conn)
        write_cursor(conn, "shop_orders", {"updated_since": "2030-01-01T00:00:00+00:00"})
    _write(tmp_path, _good(4))
    result = _load(tmp_path)
    assert result.success, _errors(result)
    assert _query(db, "select count(*) from raw.shop_orders")[0][0] == 4
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'shop_orders'")[0][0])
    assert datetime.fromisoformat(cursor["updated_since"]) == PAST + timedelta(minutes=3)


class _NoTotalApi:
    """An orders API on 127.0.0.1 that reports no total and pages by `next_cursor`; from page
    `drop_after` on, its pages come without a cursor (the listing ends there, silently)."""

    def __init__(self, orders: list[dict], page_size: int, drop_after: int):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._reply({"access_token": "t", "expires_in": 300})

            def do_GET(self):
                start = int(parse_qs(urlparse(self.path).query).get("cursor", ["0"])[0])
                end = start + page_size
                body = {"orders": orders[start:end]}
                if end < len(orders) and end // page_size < drop_after:
                    body["next_cursor"] = str(end)
                self._reply(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_listing_without_a_total_warns_that_it_cannot_be_checked(local_env):
    """Finding 7 of issue 17: an API that reports no total cannot tell a listing cut short from a
    complete one; the load says so, as a warning in its run and in its metadata."""
    import logging

    api = _NoTotalApi(_good(12), page_size=5, drop_after=1)  # 5 of 12 orders, then no cursor
    try:
        resource = OrdersApi(base_url=api.url, client_id="c", client_secret="s", page_size=5, max_attempts=2)
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([raw.shop_orders], instance=instance, raise_on_error=False,
                                    resources={**resources_for("local"), "orders_api": resource})
            assert result.success, _errors(result)
            warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    finally:
        api.close()
    assert any("reported no total" in w and "5 orders received" in w for w in warnings), warnings
    metadata = result.asset_materializations_for_node("raw__shop_orders")[0].metadata
    assert metadata["received"].value == 5 and metadata["reported_total"].value is None
