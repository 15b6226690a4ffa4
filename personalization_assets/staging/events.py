"""Bus events (`raw.events`) -> `staging.events`: one row per messageId, flat columns, the event
name mapped to its tracking-plan code, exact minor units."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import compress

import orjson
import pandas as pd

from ..normalize import map_lookup, to_minor
from .common import UTC, Staged, concat_rejections, first_failures, json_text, typed, unmapped_counts, utc

CLOCK_SKEW = timedelta(minutes=5)
EVENT_COLUMNS = ["message_id", "type", "event", "event_code", "event_raw", "user_id", "anonymous_id",
                 "timestamp", "received_at", "cart_id", "checkout_id", "order_id", "sku", "category",
                 "currency", "value_minor", "properties", "context"]


def _payload(text) -> dict:
    if not isinstance(text, str):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)  # NaN and Infinity, which orjson refuses
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _props(p: dict) -> dict:
    props = p.get("properties")
    return props if isinstance(props, dict) else {}


def _amount(props: dict):
    for key in ("revenue", "value", "price"):
        if props.get(key) is not None:
            return props[key]
    return None


TEXT_PROPERTIES = ("cart_id", "checkout_id", "order_id", "sku", "category")
_FIELDS = ("is_object", "has_identity", "timestamp", "type", "event_raw", "user_id", "anonymous_id",
           *TEXT_PROPERTIES, "currency", "amount", "properties", "context")


def _flat(text) -> tuple:
    """One payload decoded and read at once (`_FIELDS`); the decoded event is dropped right after,
    so a chunk holds its flat values, not tens of thousands of nested dicts."""
    p = _payload(text)
    props = _props(p)
    name, currency = p.get("event"), props.get("currency")
    return (bool(p), bool(p.get("userId") or p.get("anonymousId")), p.get("timestamp"), p.get("type"),
            name if isinstance(name, str) else None, p.get("userId"), p.get("anonymousId"),
            *(None if props.get(key) is None else str(props.get(key)) for key in TEXT_PROPERTIES),
            currency.strip().upper() if isinstance(currency, str) else None, _amount(props),
            json_text(props), json_text(p.get("context") or {}))


def _flat_columns(payloads: pd.Series) -> dict[str, tuple]:
    """`_flat` of every payload: a tuple of each field's values, in the payloads' order (a
    Series is made only of the rows kept, `_inferred`)."""
    rows = [_flat(text) for text in payloads]
    return dict(zip(_FIELDS, zip(*rows) if rows else ((),) * len(_FIELDS)))


def _inferred(values: Sequence, index: pd.Index) -> pd.Series:
    """The values typed from what they hold (as `Series.map` types its results); text when empty."""
    return pd.Series(list(values), index=index, dtype=None if len(values) else object)


def stage_events(raw: pd.DataFrame, *, now: datetime) -> Staged:
    """First arrival of each messageId; events without identity or with absurd times are quarantined."""
    frame = raw.drop_duplicates(subset=["message_id"], keep="first").reset_index(drop=True)
    f = _flat_columns(frame["payload"])
    ids = frame["message_id"].astype(str)
    ts = pd.to_datetime(_inferred(f["timestamp"], frame.index), utc=True, errors="coerce", format="ISO8601")
    keep, parts = first_failures(frame, ids, [
        (~pd.Series(f["is_object"], index=frame.index, dtype=bool), "events.payload", "payload is not a JSON object"),
        (~pd.Series(f["has_identity"], index=frame.index, dtype=bool), "events.identity",
         "neither userId nor anonymousId"),
        (ts.isna(), "events.timestamp", "timestamp missing or unparseable"),
        (ts > pd.Timestamp(now) + CLOCK_SKEW, "events.timestamp_future", "timestamp in the future beyond clock skew"),
    ])
    checked = ("is_object", "has_identity", "timestamp")
    kept = keep.to_numpy()
    whole = bool(kept.all())  # as a rule: the rows of the few rejected events are left out below
    f = {key: _inferred(column if whole else list(compress(column, kept)), frame.index[kept])
         for key, column in f.items() if key not in checked}
    name, currency = f["event_raw"], f["currency"]
    codes = map_lookup(name, "event_names")
    value = to_minor(f["amount"].where(currency.notna()), currency)["amount_minor"]
    out = pd.DataFrame({
        "message_id": ids[keep], "type": f["type"],
        "event": name.map(lambda n: n.lower() if n else None), "event_code": codes["value"], "event_raw": name,
        "user_id": f["user_id"], "anonymous_id": f["anonymous_id"],
        "timestamp": ts[keep], "received_at": utc(frame["received_at"][keep]),
        **{key: f[key] for key in TEXT_PROPERTIES}, "currency": currency,
        "value_minor": value, "properties": f["properties"], "context": f["context"],
    }, columns=EVENT_COLUMNS).reset_index(drop=True)
    out = typed(out, {"timestamp": UTC, "received_at": UTC, "value_minor": "Int64"})
    return Staged(out, concat_rejections(parts),
                  {"event_names": unmapped_counts(name, codes["unmapped"])})


@dataclass
class StagedEvents:
    """What staging a window of events chunk by chunk produced: counts, a sample of the valid rows
    (typed as the table), the rejections (few) and the unmapped event names, over every chunk."""

    rows_in: int = 0
    valid_rows: int = 0
    sample: pd.DataFrame | None = None
    rejected: list[pd.DataFrame] = field(default_factory=list)
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)
    offsets: tuple[int, int] | None = None  # lowest and highest bus offset read

    def add(self, raw: pd.DataFrame, staged: Staged, sample_rows: int = 10) -> None:
        self.rows_in += len(raw)
        self.valid_rows += len(staged.valid)
        if self.sample is None or (self.sample.empty and len(staged.valid)):
            self.sample = staged.valid.head(sample_rows)  # typed as the table even when empty
        if len(staged.quarantined):
            self.rejected.append(staged.quarantined)
        for lookup, counts in (staged.unmapped or {}).items():
            total = self.unmapped.setdefault(lookup, {})
            for value, n in counts.items():
                total[value] = total.get(value, 0) + n
        if len(raw):
            low, high = int(raw["bus_offset"].min()), int(raw["bus_offset"].max())
            self.offsets = (low, high) if self.offsets is None else (min(low, self.offsets[0]), max(high, self.offsets[1]))

    @property
    def quarantined(self) -> pd.DataFrame:
        return concat_rejections(self.rejected)
