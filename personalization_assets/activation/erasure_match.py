"""Which warehouse rows belong to the person being erased, and which still mention them.

Exactness: a row belongs to the person when a *key* column holds one of the person's keys
(customer keys, source record ids, tracked user and anonymous ids, their orders and events), or an
address column holds one of the person's addresses that nobody else has. Attribute values that
people can share (a phone, a street, a name) are never a reason to delete a row: the person's
phone goes because the rows holding it are theirs. Text columns that hold documents (JSON
payloads) are parsed, and a row is the person's when an identifier appears as a whole value (or,
for short numeric ids, under an id field such as `userId`).

Verification (`residual_hits`) searches every text column for the identifiers that are only the
person's, with word boundaries, so it also finds what the ownership rules missed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# key column -> the identifier kinds it holds
OWNER_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_key": ("customer_keys",), "previous_customer_key": ("customer_keys",), "row_key": ("customer_keys",),
    "record_id": ("record_ids", "order_ids", "message_ids"), "customer_record_id": ("record_ids",),
    "left_record_id": ("record_ids",), "right_record_id": ("record_ids",),
    "customer_id": ("source_ids", "user_ids"), "user_id": ("user_ids",), "anonymous_id": ("anonymous_ids",),
    "identity": ("user_ids", "anonymous_ids"), "email": ("emails",), "email_raw": ("emails",),
    "email_key": ("emails",), "order_id": ("order_ids",), "message_id": ("message_ids",),
}
LONG_KINDS = ("customer_keys", "record_ids", "anonymous_ids", "emails", "order_ids", "message_ids")
SHORT_KINDS = ("user_ids", "source_ids")  # numeric CRM ids: matched only under an id field
ID_FIELDS = {"userid", "user_id", "customer_id", "customerid", "external_id", "externalid"}


@dataclass
class Identifiers:
    """Everything that identifies one person. `shared_*` are the person's values that another
    customer also holds: kept out of every deletion and of the residual search."""

    customer_keys: set[str] = field(default_factory=set)
    record_ids: set[str] = field(default_factory=set)
    source_ids: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    anonymous_ids: set[str] = field(default_factory=set)
    order_ids: set[str] = field(default_factory=set)
    message_ids: set[str] = field(default_factory=set)
    shared_emails: set[str] = field(default_factory=set)
    shared_phones: set[str] = field(default_factory=set)

    def kind(self, name: str) -> set[str]:
        values = {v.strip().lower() for v in getattr(self, name) if isinstance(v, str) and v.strip()}
        if name == "emails":
            values -= self.shared_emails
        return values

    def values(self) -> set[str]:
        """The person's own identifiers (shared ones excluded), lower-cased."""
        out = {v for k in (*LONG_KINDS, *SHORT_KINDS) for v in self.kind(k)}
        return out | {p.strip().lower() for p in self.phones if p and p.strip()} - self.shared_phones

    def searchable(self) -> set[str]:
        """Values the residual search looks for anywhere (long enough not to match by chance)."""
        own_phones = {p.strip().lower() for p in self.phones if p and len(p.strip()) >= 8} - self.shared_phones
        return {v for k in ("customer_keys", "record_ids", "anonymous_ids", "emails") for v in self.kind(k)
                if len(v) >= 8} | own_phones

    def prefilter(self) -> set[str]:
        """Substrings that every document mentioning the person contains (cheap SQL filter)."""
        found = {v for k in ("customer_keys", "record_ids", "anonymous_ids", "emails", "order_ids") for v in self.kind(k)}
        for v in self.kind("user_ids") | self.kind("source_ids"):
            found |= {f'"{v}"', f": {v}", f":{v}"}
        return found


def leaves(value: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """(field, scalar) pairs of a JSON document; JSON inside a string is opened too."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v, key)
    elif isinstance(value, str) and value[:1] in ("{", "["):
        try:
            yield from leaves(json.loads(value), key)
        except ValueError:
            yield key, value
    else:
        yield key, value


def _email_pattern(emails: set[str]) -> re.Pattern | None:
    """An address as a whole token (inside `demo.campaign.anna@x.org` too, not inside `joanna@x.org`)."""
    if not emails:
        return None
    alternatives = "|".join(re.escape(e) for e in sorted(emails, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9_%+\-])(?:{alternatives})(?![a-z0-9\-])")


class Matcher:
    """Decides whether one text value (a key or a document) belongs to the person."""

    def __init__(self, ids: Identifiers):
        self.long = {v for k in LONG_KINDS for v in ids.kind(k)}
        self.short = ids.kind("user_ids") | ids.kind("source_ids")
        self.emails = _email_pattern(ids.kind("emails"))
        needles = sorted(ids.searchable(), key=len, reverse=True)
        self.residual = re.compile("(?<![a-z0-9])(?:" + "|".join(map(re.escape, needles)) + ")(?![a-z0-9])") \
            if needles else None

    def owns(self, text: Any) -> bool:
        if not isinstance(text, str):
            return False
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        for key, value in leaves(doc):
            if value is None or isinstance(value, (bool, float)):
                continue
            v = str(value).strip().lower()
            if v in self.long or (key and key.lower() in ID_FIELDS and v in self.short):
                return True
            if self.emails is not None and isinstance(value, str) and "@" in v and self.emails.search(v):
                return True
        return False

    def mentions(self, text: Any) -> bool:
        """A residual hit: an identifier as a whole token, or a short id under an id field."""
        if not isinstance(text, str):
            return False
        low = text.lower()
        if self.residual is not None and self.residual.search(low):
            return True
        if self.emails is not None and self.emails.search(low):
            return True
        return bool(self.short) and any(s in low for s in self.short) and self.owns(text)
