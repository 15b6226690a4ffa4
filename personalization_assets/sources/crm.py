"""Incremental extraction from the CRM database over any SQLAlchemy URL.

Rows are read in (updated_at, customer_id) order from the watermark minus the look-back window
(`incremental.py`), page by page on that pair, so rows sharing one `updated_at` are neither skipped
nor read twice across pages. Values are read as the database holds them, never through a
SQLAlchemy type that converts them: its SQLite Boolean reads the text "false" as True, and its
DateTime raises on one malformed date. `screen_customers` then sets aside the rows that cannot be
loaded (no key, no usable `updated_at`, a date that is not a date, text that is not UTF-8), each
with its reason, so that one bad row never holds back the good ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..normalize import parse_timestamps
from . import SourceError
from .incremental import RAW_RULE_PREFIX, WINDOW, IncrementalWindow, Screened, screen

CUSTOMER_COLUMNS = [
    "customer_id", "first_name", "last_name", "email", "phone", "street", "city", "postcode",
    "country", "birth_date", "timezone", "locale", "email_opt_in", "consent_processing",
    "created_at", "updated_at",
]
TIME_COLUMNS = ("created_at", "updated_at")
# Everything else lands in raw as text exactly as stored (consent flags included: they are
# parsed, explicitly, in staging by `normalize.consent`).
TEXT_COLUMNS = [c for c in CUSTOMER_COLUMNS if c not in ("customer_id", *TIME_COLUMNS)]
KEY_INVALID = RAW_RULE_PREFIX + "key_invalid"
CREATED_AT_INVALID = RAW_RULE_PREFIX + "created_at_invalid"
TEXT_ENCODING = RAW_RULE_PREFIX + "text_encoding"


@dataclass(frozen=True)
class CrmCursor:
    """The watermark: the latest `updated_at` loaded (never later than now - the safety lag)."""

    updated_at: datetime | None = None

    def to_json(self) -> dict:
        return {"updated_at": self.updated_at.isoformat() if self.updated_at else None}

    @classmethod
    def from_json(cls, value: dict | None) -> CrmCursor:
        if not value or not value.get("updated_at"):
            return cls()
        stamp = datetime.fromisoformat(value["updated_at"])  # older cursors were naive UTC
        return cls(stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc))


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


def _as_stored(column: sa.Column):
    """The column's value as the driver returns it, without SQLAlchemy's type conversion."""
    return sa.type_coerce(column, sa.types.NullType())


def _naive_utc(moment: datetime) -> datetime:
    """The CRM keeps naive UTC times (`staging.SOURCE_FORMATS["crm"]`)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def extract_customers(url: str, read_from: datetime | None, *, page_size: int = 5000,
                      connect_timeout: int = 10) -> pd.DataFrame:
    """Every customer row with `updated_at` at or after `read_from` (all rows when None), values as
    stored; plus, on every call, the rows that cannot be positioned (no key or no `updated_at`),
    so that they reach quarantine instead of vanishing."""
    _, table = crm_metadata()
    engine = _engine(url, connect_timeout)
    stored = [_as_stored(c).label(c.name) for c in table.columns]
    key, stamp = _as_stored(table.c.customer_id), _as_stored(table.c.updated_at)
    positioned = sa.and_(table.c.customer_id.is_not(None), table.c.updated_at.is_not(None))
    if read_from is not None:
        positioned = sa.and_(positioned, table.c.updated_at >= _naive_utc(read_from))
    rows: list = []
    try:
        with engine.connect() as conn:
            after = None
            while True:
                query = sa.select(*stored).where(positioned).order_by(table.c.updated_at, table.c.customer_id)
                if after is not None:  # keyset on the stored values themselves: nothing is parsed here
                    last_stamp = sa.bindparam("last_stamp", after[0], type_=sa.types.NullType())
                    last_key = sa.bindparam("last_key", after[1], type_=sa.types.NullType())
                    query = query.where(sa.or_(stamp > last_stamp, sa.and_(stamp == last_stamp, key > last_key)))
                page = conn.execute(query.limit(page_size)).all()
                rows.extend(page)
                if len(page) < page_size:
                    break
                after = (page[-1].updated_at, page[-1].customer_id)
            unpositioned = sa.or_(table.c.customer_id.is_(None), table.c.updated_at.is_(None))
            rows.extend(conn.execute(sa.select(*stored).where(unpositioned)).all())
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError("crm", f"cannot read customers from {engine.url!r}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
    finally:
        engine.dispose()
    return pd.DataFrame([tuple(r) for r in rows], columns=CUSTOMER_COLUMNS, dtype=object)


def _text(value) -> str | None:
    """A stored value as raw text: booleans as true/false, whole numbers without ".0", dates ISO."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _integer(value) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _not_utf8(values: pd.Series) -> pd.Series:
    """Text decoded with surrogateescape holds lone surrogates where its bytes were not UTF-8."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in ("string", "mixed", "bytes"):  # no text at all
        return pd.Series(False, index=values.index)
    texts = values.dropna().tolist() if kind == "string" else [v for v in values if isinstance(v, str)]
    try:
        "".join(texts).encode("utf-8")  # the common case, checked in one call
        return pd.Series(False, index=values.index)
    except UnicodeEncodeError:
        pass

    def bad(value) -> bool:
        try:
            value.encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True
    return values.map(lambda v: isinstance(v, str) and bad(v))


def _as_text(values: pd.Series) -> pd.Series:
    """`_text` of every value; the common column shapes (all text, all integers, all booleans) at once."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    present = values.notna()
    if kind in ("string", "empty"):
        return values.astype(object).where(present, None)
    if kind == "integer":
        return pd.Series(pd.array(values.tolist(), dtype="Int64").astype(str), index=values.index,
                         dtype=object).where(present, None)
    if kind == "boolean":
        return values.map({True: "true", False: "false"}).astype(object).where(present, None)
    return values.map(_text).astype(object)


def screen_customers(frame: pd.DataFrame, *, now: datetime, day_first: bool = False, assume_tz: str = "UTC",
                     window: IncrementalWindow = WINDOW) -> Screened:
    """The rows of an extraction that can be loaded into `raw.crm_customers` (typed: integer key,
    UTC times, everything else text as stored), and the rest as rejections with their reason."""
    frame = frame.reset_index(drop=True)
    present = frame["customer_id"].notna()
    keys = frame["customer_id"].map(_integer)
    record_ids = "crm:" + keys.astype(object).where(keys.notna(), frame["customer_id"]).astype(str)
    updated = parse_timestamps(frame["updated_at"], day_first=day_first, assume_tz=assume_tz)
    created = parse_timestamps(frame["created_at"], day_first=day_first, assume_tz=assume_tz)
    created_given = created["ts_issue"].ne("missing")
    bad_text = pd.DataFrame({c: _not_utf8(frame[c]) for c in CUSTOMER_COLUMNS if c not in TIME_COLUMNS})

    def encoding(rows: pd.Series) -> pd.Series:
        return pd.Series(["not valid UTF-8 (its bytes are shown escaped in the payload): "
                          + ", ".join(bad_text.columns[flags]) for flags in bad_text[rows].to_numpy()],
                         index=frame.index[rows], dtype=object)

    def bad_created(rows: pd.Series) -> pd.Series:
        return ("created_at " + frame.loc[rows, "created_at"].map(lambda v: repr(_text(v))[:60])
                + " is not a timestamp: " + created.loc[rows, "ts_issue"].fillna("").astype(str))

    screened = screen(frame, key="customer_id", stamps=updated, record_ids=record_ids, now=now, window=window,
                      checks=[
                          (present & keys.isna(), KEY_INVALID, "customer_id is not an integer"),
                          (bad_text.any(axis=1), TEXT_ENCODING, encoding),
                          (created_given & created["ts"].isna(), CREATED_AT_INVALID, bad_created),
                      ])
    typed = pd.DataFrame({
        "customer_id": pd.array(keys.where(keys.notna(), None).tolist(), dtype="Int64"),
        **{c: _as_text(frame[c]) for c in TEXT_COLUMNS},
        "created_at": created["ts"], "updated_at": updated["ts"],
    })[CUSTOMER_COLUMNS]
    screened.rows = typed.loc[screened.rows.index].reset_index(drop=True)
    return screened


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
    engine = sa.create_engine(parsed, connect_args=args)
    if parsed.get_backend_name() == "sqlite":
        # SQLite stores whatever bytes it is given; sqlite3 refuses a whole query over one value that
        # is not UTF-8. Decode leniently (lone surrogates mark the bad bytes) and quarantine that row.
        sa.event.listen(engine, "connect", _lenient_text)
    return engine


def _lenient_text(dbapi_connection, _record) -> None:
    dbapi_connection.text_factory = lambda data: data.decode("utf-8", "surrogateescape")


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
