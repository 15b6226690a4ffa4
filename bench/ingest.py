"""Raw-layer ingestion throughput: CRM extraction (values as stored) and screening, orders screening.

    python -m bench.ingest [--customers 100000] [--orders 100000] [--bad-share 0.01]

CRM: a SQLite CRM file with `--customers` rows (a `--bad-share` of them with a text opt-out, a
malformed date, a future `updated_at` or no key) is read by `extract_customers` and screened by
`screen_customers` (typed raw rows + quarantined rows). Orders: `screen_orders` over generated
API orders with the same share of bad ones. Prints rows/s per step.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalization_assets.sources.crm import extract_customers, screen_customers  # noqa: E402
from personalization_assets.sources.orders_api import screen_orders  # noqa: E402

NOW = datetime.now(timezone.utc)


def _customers(n: int, bad_share: float, rng: random.Random) -> list[dict]:
    base = (NOW - timedelta(days=30)).replace(tzinfo=None)
    rows = []
    for i in range(n):
        row = {"customer_id": i, "first_name": "ann", "last_name": f"Lee{i}", "email": f"u{i}@example.org",
               "phone": "+49 30 1234567", "street": "Main St 1", "city": "Berlin", "postcode": "10115",
               "country": "DE", "birth_date": "1990-01-02", "timezone": "Europe/Berlin", "locale": "de-DE",
               "email_opt_in": 1, "consent_processing": 1, "created_at": str(base),
               "updated_at": str(base + timedelta(seconds=i))}
        if rng.random() < bad_share:
            fault = rng.choice(["opt_out", "date", "future", "key"])
            if fault == "opt_out":
                row["email_opt_in"] = "false"
            elif fault == "date":
                row["created_at"] = "31/02/2026"
            elif fault == "future":
                row["updated_at"] = "2030-01-01 00:00:00"
            else:
                row["customer_id"] = None
        rows.append(row)
    return rows


def _orders(n: int, bad_share: float, rng: random.Random) -> list[dict]:
    base = NOW - timedelta(days=30)
    orders = []
    for i in range(n):
        order = {"order_id": f"o{i}", "customer_id": str(i % 1000), "email": f"u{i}@example.org", "status": "paid",
                 "currency": "EUR", "total": "10.00", "created_at": base.isoformat(),
                 "updated_at": (base + timedelta(seconds=i)).isoformat(),
                 "lines": [{"line_no": 1, "sku": "A", "quantity": 1, "unit_price": "10.00"}]}
        if rng.random() < bad_share:
            fault = rng.choice(["stamp", "future", "key"])
            if fault == "stamp":
                order["updated_at"] = "yesterday"
            elif fault == "future":
                order["updated_at"] = "2030-01-01T00:00:00Z"
            else:
                del order["order_id"]
        orders.append(order)
    return orders


def _report(step: str, rows: int, seconds: float) -> None:
    print(f"{step:<28} {rows:>9,} rows  {seconds:7.2f} s  {rows / seconds:>10,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--bad-share", type=float, default=0.01)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'crm.sqlite'}"
        engine = sa.create_engine(url)
        metadata = sa.MetaData()
        table = sa.Table("customers", metadata, sa.Column("customer_id", sa.BigInteger, nullable=True),
                         *(sa.Column(c, sa.String) for c in ("first_name", "last_name", "email", "phone", "street",
                                                             "city", "postcode", "country", "birth_date", "timezone",
                                                             "locale", "email_opt_in", "consent_processing",
                                                             "created_at", "updated_at")),
                         sa.Index("ix_cursor", "updated_at", "customer_id"))
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), _customers(args.customers, args.bad_share, rng))
        engine.dispose()
        start = time.perf_counter()
        frame = extract_customers(url, None)
        _report("crm extract_customers", len(frame), time.perf_counter() - start)
        start = time.perf_counter()
        screened = screen_customers(frame, now=NOW)
        _report("crm screen_customers", len(frame), time.perf_counter() - start)
        print(f"  loaded {len(screened.rows):,}, quarantined {len(screened.rejected):,}")
    orders = _orders(args.orders, args.bad_share, rng)
    start = time.perf_counter()
    screened = screen_orders(orders, now=NOW)
    _report("orders screen_orders", len(orders), time.perf_counter() - start)
    print(f"  loaded {len(screened.rows):,}, quarantined {len(screened.rejected):,}")


if __name__ == "__main__":
    main()
