"""Replay of the collector's edge quarantine (`quarantine.collector`) after a schema or rule fix.

Open rows are re-validated the way the collector validates (size limit, then `collector.validate`,
which is the structural checks plus the tracking plan of `quality/events.py`), enriched the way the
collector enriches, and appended to the event bus, from where `raw.events` ingests them. Each keeps
its messageId (or, when it had none, its quarantine record id), so the bus and `raw.events`
deduplicate it: replaying twice moves nothing twice. Moved rows become `replayed`; rows still
failing count one more attempt under the rule they fail now.

The original receivedAt is not in the quarantine table, so the replay uses the row's first_seen
(when the warehouse first saw the rejection) as the event's receivedAt.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Sequence

import orjson
import pandas as pd

from ..bus.base import EventBus
from ..collector.enrich import BadTimestamp, enrich
from ..collector.validate import validate as collector_validate
from ..collector.wire import MAX_EVENT_BYTES
from . import quarantine

if TYPE_CHECKING:
    from ..warehouse import WarehouseConnection

SOURCE = "collector"
Validator = Callable[[object], Sequence]  # event -> violations (objects with .rule and .message); empty = pass


@dataclass
class Revalidated:
    events: list[dict] = field(default_factory=list)  # enriched, ready for the bus
    record_ids: list[str] = field(default_factory=list)  # quarantine record id of each event
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=quarantine.REJECTED_COLUMNS))


@dataclass(frozen=True)
class ReplayReport:
    checked: int
    moved: int
    already_on_bus: int  # moved, but the bus already held that messageId (e.g. a client retry got in)
    still_failing: dict[str, int]


def _violations(payload, validator: Validator) -> list[tuple[str, str]]:
    try:
        size = len(orjson.dumps(payload))
    except TypeError as exc:
        return [("unserializable", f"event cannot be stored as JSON: {exc}")]
    if size > MAX_EVENT_BYTES:
        return [("event_too_large", f"event exceeds {MAX_EVENT_BYTES} bytes")]
    try:
        return [(str(v.rule), str(v.message)) for v in validator(payload)]
    except Exception as exc:  # a validator bug keeps the row in quarantine, it does not stop the replay
        return [("validator_error", f"{type(exc).__name__}: {str(exc)[:200]}")]


def revalidate(open_rows: pd.DataFrame, *, validator: Validator = collector_validate) -> Revalidated:
    """Split open quarantine rows (one per record, the latest payload) into events that now pass and
    rejections (with the rule they fail now). Pure: touches neither the bus nor the warehouse."""
    out = Revalidated()
    rejected = []
    latest = open_rows.sort_values("last_seen").drop_duplicates("record_id", keep="last")
    for record_id, text, first_seen in zip(latest["record_id"], latest["raw_payload"], latest["first_seen"]):
        try:
            payload = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:
            payload, problems = text, [("payload:json", f"stored payload is not JSON: {str(exc)[:200]}")]
        else:
            if isinstance(payload, dict) and not (isinstance(payload.get("messageId"), str) and payload["messageId"]):
                payload = {**payload, "messageId": str(record_id)}  # stable, so a second replay deduplicates
            problems = _violations(payload, validator)
        if not problems:
            try:
                out.events.append(enrich(payload, pd.Timestamp(first_seen).to_pydatetime(), {}))
                out.record_ids.append(str(record_id))
                continue
            except BadTimestamp as exc:
                problems = [(exc.field, str(exc))]
            except OverflowError as exc:
                problems = [("timestamp", f"cannot correct the timestamp: {exc}")]
        rejected.append({"source": SOURCE, "record_id": str(record_id), "rule": problems[0][0],
                         "message": "; ".join(m for _, m in problems), "raw_payload": text})
    out.rejected = pd.DataFrame(rejected, columns=quarantine.REJECTED_COLUMNS)
    return out


def replay_collector_quarantine(conn: WarehouseConnection, bus: EventBus, *, now: datetime,
                                validator: Validator = collector_validate) -> ReplayReport:
    """Move the open `quarantine.collector` rows that now pass onto `bus`; update the table.

    The bus append comes first: should the table update fail, the next replay appends the same
    messageIds again and the bus drops them as duplicates.
    """
    quarantine.prepare_table(conn, SOURCE)
    existing = conn.query(f"select * from quarantine.{SOURCE}")
    open_rows = existing[existing["status"] == quarantine.OPEN]
    result = revalidate(open_rows, validator=validator)
    appended = bus.append_detailed(result.events) if result.events else []
    checked = set(open_rows["record_id"].astype(str))
    merged = quarantine.merge(existing, result.rejected, checked_ids=checked, now=now)
    moved = merged["record_id"].isin(set(result.record_ids)) & (merged["status"] == quarantine.RELEASED) \
        & (merged["released_at"] == pd.Timestamp(now))
    merged.loc[moved, "status"] = quarantine.REPLAYED
    with conn.transaction():
        conn.replace_frame("quarantine", SOURCE, merged)
    return ReplayReport(checked=len(checked), moved=len(result.events),
                        already_on_bus=sum(a.duplicate for a in appended),
                        still_failing=dict(Counter(result.rejected["rule"])))
