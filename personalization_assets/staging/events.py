"""Bus events (`raw.events`) -> `staging.events`: one row per messageId, flat columns, the event
name mapped to its tracking-plan code, exact minor units."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


def stage_events(raw: pd.DataFrame, *, now: datetime) -> Staged:
    """First arrival of each messageId; events without identity or with absurd times are quarantined."""
    frame = raw.drop_duplicates(subset=["message_id"], keep="first").reset_index(drop=True)
    payloads = frame["payload"].map(_payload)
    ids = frame["message_id"].astype(str)
    ts = pd.to_datetime(payloads.map(lambda p: p.get("timestamp")), utc=True, errors="coerce", format="ISO8601")
    no_identity = payloads.map(lambda p: not (p.get("userId") or p.get("anonymousId")))
    keep, parts = first_failures(frame, ids, [
        (payloads.map(lambda p: not p), "events.payload", "payload is not a JSON object"),
        (no_identity, "events.identity", "neither userId nor anonymousId"),
        (ts.isna(), "events.timestamp", "timestamp missing or unparseable"),
        (ts > pd.Timestamp(now) + CLOCK_SKEW, "events.timestamp_future", "timestamp in the future beyond clock skew"),
    ])
    p, kept = payloads[keep], frame[keep.to_numpy()]
    props = p.map(_props)
    name = p.map(lambda e: e.get("event") if isinstance(e.get("event"), str) else None)
    codes = map_lookup(name, "event_names")
    currency = props.map(lambda q: q.get("currency").strip().upper() if isinstance(q.get("currency"), str) else None)
    amounts = props.map(_amount)
    value = to_minor(amounts.where(currency.notna()), currency)["amount_minor"]
    text = lambda key: props.map(lambda q: None if q.get(key) is None else str(q.get(key)))  # noqa: E731
    out = pd.DataFrame({
        "message_id": ids[keep], "type": p.map(lambda e: e.get("type")),
        "event": name.map(lambda n: n.lower() if n else None), "event_code": codes["value"], "event_raw": name,
        "user_id": p.map(lambda e: e.get("userId")), "anonymous_id": p.map(lambda e: e.get("anonymousId")),
        "timestamp": ts[keep], "received_at": utc(kept["received_at"]).to_numpy(),
        "cart_id": text("cart_id"), "checkout_id": text("checkout_id"), "order_id": text("order_id"),
        "sku": text("sku"), "category": text("category"), "currency": currency,
        "value_minor": value, "properties": props.map(json_text), "context": p.map(lambda e: json_text(e.get("context") or {})),
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
