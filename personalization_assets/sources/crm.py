"""Incremental extraction from the CRM database over any SQLAlchemy URL.

The cursor is the pair (updated_at, customer_id): rows strictly after it, in that order, so that
rows sharing one `updated_at` are neither skipped nor read twice across pages and runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from . import SourceError

CUSTOMER_COLUMNS = [
    "customer_id", "first_name", "last_name", "email", "phone", "street", "city", "postcode",
    "country", "birth_date", "timezone", "locale", "email_opt_in", "consent_processing",
    "created_at", "updated_at",
]


@dataclass(frozen=True)
class CrmCursor:
    updated_at: datetime | None = None
    customer_id: int | None = None

    def to_json(self) -> dict:
        return {"updated_at": self.updated_at.isoformat() if self.updated_at else None,
                "customer_id": self.customer_id}

    @classmethod
    def from_json(cls, value: dict | None) -> CrmCursor:
        if not value or not value.get("updated_at"):
            return cls()
        return cls(datetime.fromisoformat(value["updated_at"]), int(value["customer_id"]))


def crm_metadata() -> tuple[sa.MetaData, sa.Table]:
    """The CRM's `customers` table as the demo seeds it and the extractor reads it."""
    metadata = sa.MetaData()
    table = sa.Table(
        "customers", metadata,
        sa.Column("customer_id", sa.BigInteger, primary_key=True),
        *(sa.Column(c, sa.String) for c in CUSTOMER_COLUMNS[1:12]),
        sa.Column("email_opt_in", sa.Boolean),
        sa.Column("consent_processing", sa.Boolean),
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Index("ix_customers_cursor", "updated_at", "customer_id"),
    )
    return metadata, table


def extract_customers(
    url: str, cursor: CrmCursor, *, page_size: int = 5000, connect_timeout: int = 10
) -> tuple[pd.DataFrame, CrmCursor]:
    """All customers changed after `cursor`, and the cursor to store once they are loaded."""
    _, table = crm_metadata()
    engine = _engine(url, connect_timeout)
    pages: list[pd.DataFrame] = []
    try:
        with engine.connect() as conn:
            while True:
                query = sa.select(table).order_by(table.c.updated_at, table.c.customer_id)
                if cursor.updated_at is not None:
                    query = query.where(
                        sa.or_(
                            table.c.updated_at > cursor.updated_at,
                            sa.and_(table.c.updated_at == cursor.updated_at,
                                    table.c.customer_id > cursor.customer_id),
                        )
                    )
                page = pd.DataFrame(conn.execute(query.limit(page_size)).mappings().all(),
                                    columns=CUSTOMER_COLUMNS)
                if page.empty:
                    break
                pages.append(page)
                last = page.iloc[-1]
                cursor = CrmCursor(pd.Timestamp(last["updated_at"]).to_pydatetime(),
                                   int(last["customer_id"]))
                if len(page) < page_size:
                    break
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError("crm", f"cannot read customers from {engine.url!r}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
    finally:
        engine.dispose()
    frame = pd.concat(pages, ignore_index=True) if pages else pd.DataFrame(columns=CUSTOMER_COLUMNS)
    return frame, cursor


def _engine(url: str, connect_timeout: int) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise SourceError("crm", f"invalid database URL: {exc}") from exc
    args: dict = {}
    if parsed.get_backend_name() == "postgresql":
        args["connect_timeout"] = connect_timeout
    elif parsed.get_backend_name() == "sqlite":
        args["timeout"] = connect_timeout
    return sa.create_engine(parsed, connect_args=args)


def write_customers(url: str, rows: list[dict]) -> None:
    """Create the CRM table if needed and upsert rows (the demo seeder and tests use this)."""
    metadata, table = crm_metadata()
    engine = _engine(url, 10)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            ids = [r["customer_id"] for r in rows]
            for start in range(0, len(ids), 1000):
                conn.execute(table.delete().where(table.c.customer_id.in_(ids[start:start + 1000])))
            if rows:
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()
