"""Braze `POST /users/track`: user attributes, custom events and purchases.

Documented limits (braze.com/docs/api/api_limits): at most 75 objects per request, attributes,
events and purchases combined, and 3,000 requests per 3 seconds. Each row becomes one object:
segment membership is the array attribute `segments` ({"add": [...]} / {"remove": [...]}),
events-mode rows are custom events, unsubscribes set `email_subscribe` to "unsubscribed".
Erasure uses `POST /users/delete` (at most 50 external_ids per request), identity merges
`POST /users/merge` (at most 50 merge_updates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from ..http import HttpTransport
from ..model import ADD, CHANGE, EVENT, EVENTS, MIRROR, REMOVE, UNSUBSCRIBE, UPSERT, DeliveryError, RowResult, SyncRow, all_failed

MAX_OBJECTS = 75
MAX_DELETE_IDS = 50
MAX_MERGES = 50
# Payload fields Braze knows as standard attributes; the rest are custom attributes.
STANDARD = {"first_name", "last_name", "country", "language", "email", "phone", "time_zone"}


def _identity(row: SyncRow) -> dict:
    return {"external_id": row.customer_key} if row.customer_key else {"email": row.email}


def to_object(row: SyncRow) -> tuple[str, dict]:
    """(array name, object) for one row."""
    who = _identity(row)
    if row.op in (ADD, CHANGE):
        attrs = {k: v for k, v in row.payload.items() if v is not None and not isinstance(v, (dict, list))}
        return "attributes", {**who, **attrs, "email": row.email, "segments": {"add": [row.segment]}}
    if row.op == REMOVE:
        return "attributes", {**who, "segments": {"remove": [row.segment]}}
    if row.op == UNSUBSCRIBE:
        return "attributes", {**who, "email": row.email, "email_subscribe": "unsubscribed"}
    if row.op == EVENT:
        when = row.payload.get("time") or datetime.now(timezone.utc).isoformat()
        name = row.payload.get("name") or f"segment_{row.payload.get('change', 'event')}"
        props = {k: v for k, v in row.payload.items() if k not in ("time", "name")}
        return "events", {**who, "name": name, "time": when, "properties": {"segment": row.segment, **props}}
    raise ValueError(f"Braze cannot send op {row.op!r}")


@dataclass
class BrazeTrack:
    base_url: str  # the REST endpoint of the instance, e.g. https://rest.iad-01.braze.com
    api_key: str
    transport: HttpTransport
    name: str = "braze"
    batch_size: int = MAX_OBJECTS
    modes: frozenset[str] = frozenset({UPSERT, MIRROR, EVENTS})

    def __post_init__(self):
        if not 0 < self.batch_size <= MAX_OBJECTS:
            raise ValueError(f"Braze accepts at most {MAX_OBJECTS} objects per /users/track request")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(rows), MAX_OBJECTS):
            results += self._track(rows[start:start + MAX_OBJECTS])
        return results

    def _track(self, rows: Sequence[SyncRow]) -> list[RowResult]:
        body: dict[str, list] = {}
        index: dict[tuple[str, int], SyncRow] = {}
        for row in rows:
            array, obj = to_object(row)
            index[(array, len(body.setdefault(array, [])))] = row
            body[array].append(obj)
        try:
            answer = self.transport.request("POST", f"{self.base_url.rstrip('/')}/users/track", body, self._headers()).json()
        except DeliveryError as exc:
            return all_failed(rows, str(exc), exc.retryable)
        # Partial success: Braze lists the refused objects by array and index.
        refused = {}
        for err in answer.get("errors", []) or []:
            row = index.get((err.get("input_array"), err.get("index")))
            if row is not None:
                refused[row.row_key] = err.get("type") or "refused by Braze"
        return [RowResult(r.row_key, r.row_key not in refused, refused.get(r.row_key)) for r in rows]

    def merge_profiles(self, changes: Sequence) -> None:
        """`POST /users/merge` (at most 50 merges per request): the old profile's attributes,
        events and purchases move to the survivor and the old profile is removed. Braze has no
        unmerge: after one, the new key is created by the ordinary sync."""
        for start in range(0, len(changes), MAX_MERGES):
            updates = [{"identifier_to_merge": {"external_id": c.old_key},
                        "identifier_to_keep": {"external_id": c.new_keys[0]}} for c in changes[start:start + MAX_MERGES]]
            self.transport.request("POST", f"{self.base_url.rstrip('/')}/users/merge", {"merge_updates": updates},
                                   self._headers())

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        """By external_id: every profile this platform created carries one (the customer_key)."""
        keys = list(customer_keys)
        for start in range(0, len(keys), MAX_DELETE_IDS):
            self.transport.request("POST", f"{self.base_url.rstrip('/')}/users/delete",
                                   {"external_ids": keys[start:start + MAX_DELETE_IDS]}, self._headers())
