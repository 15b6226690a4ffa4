"""Hand-built warehouse histories for the marts tests, on in-memory DuckDB or on fakesnow."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.conftest import require_module

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)

SCHEMAS = {
    "core.customers": {"customer_key": "varchar", "email": "varchar", "first_name": "varchar",
                       "last_name": "varchar", "country": "varchar", "timezone": "varchar",
                       "locale": "varchar", "email_opt_in": "boolean", "consent_processing": "boolean",
                       "created_at": "timestamp_tz", "currency": "varchar"},
    "core.customer_crosswalk": {"record_id": "varchar", "customer_key": "varchar"},
    "core.identity_map": {"identity_type": "varchar", "identity": "varchar", "customer_key": "varchar"},
    "staging.orders": {"order_id": "varchar", "customer_record_id": "varchar", "email": "varchar",
                       "status": "varchar", "currency": "varchar", "total_minor": "bigint",
                       "total_reporting_minor": "bigint", "fx_rate": "double",
                       "created_at": "timestamp_tz", "cart_id": "varchar"},
    "staging.order_lines": {"order_id": "varchar", "line_no": "bigint", "sku": "varchar",
                            "product_name": "varchar", "category": "varchar", "quantity": "bigint",
                            "unit_price_minor": "bigint", "line_total_minor": "bigint", "currency": "varchar"},
    "staging.events": {"message_id": "varchar", "type": "varchar", "event": "varchar", "user_id": "varchar",
                       "anonymous_id": "varchar", "timestamp": "timestamp_tz", "cart_id": "varchar",
                       "sku": "varchar", "category": "varchar", "currency": "varchar",
                       "value_minor": "bigint", "properties": "varchar"},
}
EMAIL_EVENTS = {"provider": "varchar", "provider_event_id": "varchar", "type": "varchar", "email": "varchar",
                "customer_key": "varchar", "timestamp": "timestamp_tz", "is_machine": "boolean"}
SUPPRESSION = {"email": "varchar", "customer_key": "varchar", "reason": "varchar"}


def ago(**kw) -> datetime:
    return NOW - timedelta(**kw)


class History:
    """Collects rows for customers, orders, lines and events, then writes them in one go."""

    def __init__(self):
        self.rows: dict[str, list[dict]] = {name: [] for name in SCHEMAS}
        self.email_events: list[dict] | None = None
        self.suppression: list[dict] | None = None
        self._n = 0

    def customer(self, key: str, **kw) -> str:
        row = {"customer_key": key, "email": f"{key}@example.com", "first_name": key.title(),
               "email_opt_in": True, "consent_processing": True, "created_at": ago(days=400),
               "timezone": "Europe/London", "locale": "en-GB", "country": "GB", "currency": "GBP"}
        row.update(kw)
        self.rows["core.customers"].append(row)
        self.rows["core.customer_crosswalk"].append({"record_id": f"crm:{key}", "customer_key": key})
        self.rows["core.identity_map"].append({"identity_type": "user_id", "identity": key, "customer_key": key})
        return key

    def order(self, key: str, at: datetime, total_minor: int = 5000, lines=(("SKU1", "shoes", 1),),
              status: str = "completed", cart_id: str | None = None) -> str:
        self._n += 1
        oid = f"o{self._n}"
        self.rows["staging.orders"].append({
            "order_id": oid, "customer_record_id": f"crm:{key}", "email": f"{key}@example.com",
            "status": status, "currency": "GBP", "total_minor": total_minor,
            "total_reporting_minor": total_minor, "fx_rate": 1.0, "created_at": at, "cart_id": cart_id})
        for i, (sku, category, qty) in enumerate(lines, start=1):
            self.rows["staging.order_lines"].append({
                "order_id": oid, "line_no": i, "sku": sku, "product_name": f"Product {sku}",
                "category": category, "quantity": qty, "unit_price_minor": total_minor // max(1, qty * len(lines)),
                "line_total_minor": total_minor // len(lines), "currency": "GBP"})
        return oid

    def event(self, key: str | None, event: str, at: datetime, sku: str = "SKU1", cart_id: str | None = "cart1",
              value_minor: int = 2500, anonymous_id: str | None = None, category: str = "shoes") -> None:
        self._n += 1
        self.rows["staging.events"].append({
            "message_id": f"m{self._n}", "type": "track", "event": event, "user_id": key,
            "anonymous_id": anonymous_id, "timestamp": at, "cart_id": cart_id, "sku": sku,
            "category": category, "currency": "GBP", "value_minor": value_minor, "properties": "{}"})

    def email_event(self, key: str, type_: str, at: datetime, is_machine: bool = False) -> None:
        self._n += 1
        self.email_events = self.email_events or []
        self.email_events.append({"provider": "sendgrid", "provider_event_id": f"e{self._n}", "type": type_,
                                  "email": f"{key}@example.com", "customer_key": None,
                                  "timestamp": at, "is_machine": is_machine})

    def suppress(self, reason: str, key: str | None = None, email: str | None = None) -> None:
        self.suppression = self.suppression or []
        self.suppression.append({"customer_key": key, "email": email, "reason": reason})

    def write(self, conn: WarehouseConnection) -> WarehouseConnection:
        tables = dict(SCHEMAS)
        data = dict(self.rows)
        if self.email_events is not None:
            tables["staging.email_events"], data["staging.email_events"] = EMAIL_EVENTS, self.email_events
        if self.suppression is not None:
            tables["activation.suppression"], data["activation.suppression"] = SUPPRESSION, self.suppression
        for name, columns in tables.items():
            schema = name.split(".")[0]
            conn.execute(f"create schema if not exists {schema}")
            ddl = ", ".join(f"{c} {t.replace('timestamp_tz', 'timestamptz') if conn.dialect == 'duckdb' else t}"
                            for c, t in columns.items())
            conn.execute(f"create or replace table {name} ({ddl})")
            marks = ", ".join("?" for _ in columns)
            for row in data[name]:
                conn.execute(f"insert into {name} values ({marks})", [row.get(c) for c in columns])
        return conn


@contextlib.contextmanager
def fakesnow_connection():
    fakesnow = require_module("fakesnow")
    import snowflake.connector

    from personalization_assets_tests.fakesnow_support import merge_in_transactions

    with merge_in_transactions(), fakesnow.patch():
        snowflake.connector.paramstyle = "qmark"
        raw = snowflake.connector.connect(database="warehouse", schema="public")
        try:
            yield WarehouseConnection(raw, "snowflake")
        finally:
            raw.close()


@pytest.fixture
def snow():
    with fakesnow_connection() as conn:
        yield conn
