"""Mailchimp Marketing API 3.0: audience members and static-segment membership.

Documented calls and limits:
- `POST /lists/{list_id}` batch subscribe or update, at most 500 members per call
  (`update_existing: true` makes it an upsert; `status: unsubscribed` propagates suppressions);
- `POST /lists/{list_id}/segments/{segment_id}` with `members_to_add` / `members_to_remove`,
  at most 500 e-mails in each;
- `POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent` to erase a person
  (subscriber_hash = MD5 of the lower-cased address).
Authentication is HTTP Basic with any user name and the API key; the data centre is the key's
suffix (`...-us6` -> https://us6.api.mailchimp.com/3.0).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

from ..http import HttpTransport
from ..model import ADD, CHANGE, MIRROR, REMOVE, UNSUBSCRIBE, UPSERT, DeliveryError, RowResult, SyncRow, all_failed

MAX_MEMBERS = 500


def base_url_for(api_key: str) -> str:
    _, _, dc = api_key.rpartition("-")
    if not dc:
        raise ValueError("a Mailchimp API key ends with its data centre, e.g. '...-us6'")
    return f"https://{dc}.api.mailchimp.com/3.0"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def merge_fields(payload: dict) -> dict:
    fields = {"FNAME": payload.get("first_name"), "LNAME": payload.get("last_name")}
    return {k: v for k, v in fields.items() if isinstance(v, str) and v}


@dataclass
class MailchimpAudience:
    api_key: str
    list_id: str
    segment_ids: dict[str, str]  # our segment name -> Mailchimp static segment id
    transport: HttpTransport
    base_url: str = ""
    name: str = "mailchimp"
    batch_size: int = MAX_MEMBERS
    modes: frozenset[str] = frozenset({UPSERT, MIRROR})
    _auth: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self):
        if not 0 < self.batch_size <= MAX_MEMBERS:
            raise ValueError(f"Mailchimp accepts at most {MAX_MEMBERS} members per batch call")
        self.base_url = (self.base_url or base_url_for(self.api_key)).rstrip("/")
        self._auth = {"Authorization": "Basic " + base64.b64encode(f"anystring:{self.api_key}".encode()).decode()}

    def _post(self, path: str, body: dict) -> dict:
        return self.transport.request("POST", f"{self.base_url}{path}", body, self._auth).json()

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]:
        refused: dict[str, str] = {}
        for r in rows:
            if not r.email:
                refused[r.row_key] = "no e-mail address: Mailchimp identifies members by e-mail"
        try:
            self._members(rows, refused)
            self._segments(rows, refused)
        except DeliveryError as exc:
            return all_failed(rows, str(exc), exc.retryable)
        return [RowResult(r.row_key, r.row_key not in refused, refused.get(r.row_key)) for r in rows]

    def _members(self, rows: Sequence[SyncRow], refused: dict[str, str]) -> None:
        members = [{"email_address": r.email, "status": "unsubscribed" if r.op == UNSUBSCRIBE else "subscribed",
                    "merge_fields": merge_fields(r.payload)}
                   for r in rows if r.email and r.op in (ADD, CHANGE, UNSUBSCRIBE)]
        if not members:
            return
        answer = self._post(f"/lists/{self.list_id}", {"members": members, "update_existing": True})
        bad = {e.get("email_address", "").lower(): e.get("error") or "refused" for e in answer.get("errors", []) or []}
        for r in rows:
            if r.email and r.email.lower() in bad:
                refused[r.row_key] = bad[r.email.lower()]

    def _segments(self, rows: Sequence[SyncRow], refused: dict[str, str]) -> None:
        by_segment: dict[str, dict[str, list[SyncRow]]] = {}
        for r in rows:
            if r.email and r.row_key not in refused and r.op in (ADD, CHANGE, REMOVE):
                side = "members_to_remove" if r.op == REMOVE else "members_to_add"
                by_segment.setdefault(r.segment, {}).setdefault(side, []).append(r)
        for segment, sides in by_segment.items():
            if segment not in self.segment_ids:
                for r in (r for side in sides.values() for r in side):
                    refused[r.row_key] = f"no Mailchimp static segment configured for {segment!r}"
                continue
            body = {side: [r.email for r in members] for side, members in sides.items()}
            answer = self._post(f"/lists/{self.list_id}/segments/{self.segment_ids[segment]}", body)
            for err in answer.get("errors", []) or []:
                bad = {e.lower() for e in err.get("email_addresses", [])}
                for r in (r for side in sides.values() for r in side if r.email.lower() in bad):
                    refused[r.row_key] = err.get("error") or "refused"

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        for email in emails:
            try:
                self.transport.request("POST", f"{self.base_url}/lists/{self.list_id}/members/"
                                       f"{subscriber_hash(email)}/actions/delete-permanent", {}, self._auth)
            except DeliveryError as exc:
                if exc.status != 404:  # 404: never subscribed there, nothing to erase
                    raise
