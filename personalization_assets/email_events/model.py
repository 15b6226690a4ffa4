"""The one shape every provider's event is normalized into, and the rules shared by all providers."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from email_validator import EmailNotValidError, validate_email

# Canonical types. Only hard bounces are `bounce`: soft ones (mailbox full, greylisting) are
# `soft_bounce`, so downstream suppression (which suppresses on `bounce`) never drops a live address.
EVENT_TYPES = ("processed", "delivered", "deferred", "open", "click", "bounce", "soft_bounce",
               "dropped", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe")
SUPPRESSION_REASONS = {"bounce": "hard_bounce", "spamreport": "spam_report",
                       "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe"}

EMAIL_EVENT_COLUMNS = ["provider", "provider_event_id", "type", "email", "customer_key", "campaign_id",
                       "message_id", "url", "timestamp", "bounce_class", "is_machine", "raw_payload"]


@dataclass(frozen=True)
class Normalized:
    provider: str
    provider_event_id: str
    type: str
    email: str
    timestamp: datetime  # UTC
    customer_key: str | None = None
    campaign_id: str | None = None
    message_id: str | None = None
    url: str | None = None
    bounce_class: str | None = None  # hard | soft, bounces only
    is_machine: bool = False  # Apple MPP opens, link-scanner clicks: not engagement
    raw_payload: str = "{}"

    @property
    def bus_message_id(self) -> str:
        """Provider retries carry the same event id, so the bus stores them once."""
        return f"{self.provider}:{self.provider_event_id}"

    def to_record(self) -> dict[str, Any]:
        return {"provider": self.provider, "provider_event_id": self.provider_event_id, "type": self.type,
                "email": self.email, "customer_key": self.customer_key, "campaign_id": self.campaign_id,
                "message_id": self.message_id, "url": self.url, "timestamp": self.timestamp.isoformat(),
                "bounce_class": self.bounce_class, "is_machine": self.is_machine,
                "raw_payload": self.raw_payload}


@dataclass(frozen=True)
class Rejected:
    """An event that cannot be normalized: it goes to quarantine with the rule and the reason."""

    provider: str
    record_id: str
    rule: str
    message: str
    raw_payload: str


class Invalid(ValueError):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


# `json.dumps(event, sort_keys=True, default=str)`, with its encoder made once: `json.dumps` with
# options builds a new encoder per call (~1 µs of each event's normalization).
_RAW_JSON = json.JSONEncoder(sort_keys=True, default=str)


def raw_json(event: Any) -> str:
    return _RAW_JSON.encode(event)


def normalize_email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("email.missing", "event has no recipient e-mail address")
    address, problem = _validated(value.strip())
    if problem is not None:
        raise Invalid("email.invalid", f"recipient {value!r} is not a valid address: {problem}")
    return address


# A mailing sends many events to each recipient (delivered, open, click...): validate each distinct
# address once, not each event. Bounded, so a long-running loader's memory stays flat.
@functools.lru_cache(maxsize=65_536)
def _validated(address: str) -> tuple[str, str | None]:
    """(normalized address, None), or (the input, why it is not a valid address)."""
    try:
        return validate_email(address, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as exc:
        return address, str(exc)


def utc_timestamp(value: Any) -> datetime:
    """Unix seconds (int, float or numeric string) or ISO 8601 with an offset -> aware UTC."""
    if isinstance(value, bool) or value is None or value == "":
        raise Invalid("timestamp.missing", "event has no timestamp")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("timestamp.invalid", f"timestamp {value!r} is neither unix seconds nor ISO 8601") from None
        if parsed.tzinfo is None:
            raise Invalid("timestamp.naive", f"timestamp {value!r} has no UTC offset")
        return parsed.astimezone(timezone.utc)
    if not (0 < seconds < 32503680000):  # year 3000
        raise Invalid("timestamp.invalid", f"timestamp {value!r} is out of range")
    return datetime.fromtimestamp(seconds, timezone.utc)


def text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
