"""Provider payloads -> `Normalized`, following each provider's documented event format.

SendGrid Event Webhook: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
Mailgun webhooks (event-data): https://documentation.mailgun.com/docs/mailgun/user-manual/events/
Generic: {"id", "type" (one of EVENT_TYPES), "email", "timestamp", optional "customer_key",
"campaign_id", "message_id", "url", "bounce_class" (hard|soft), "is_machine"}.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from .model import (
    EVENT_TYPES, Invalid, Normalized, Rejected, normalize_email, raw_json, text, utc_timestamp,
)

SENDGRID_TYPES = {t: t for t in ("processed", "delivered", "deferred", "open", "click", "dropped",
                                 "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe")}
MAILGUN_TYPES = {"accepted": "processed", "rejected": "dropped", "delivered": "delivered",
                 "opened": "open", "clicked": "click", "unsubscribed": "unsubscribe",
                 "complained": "spamreport"}  # "failed" is split by severity below


def _field(event: dict, name: str) -> Any:
    value = event.get(name)
    if value is None or value == "":
        raise Invalid(f"{name}.missing", f"event has no {name!r}")
    return value


def _sendgrid(event: dict) -> dict:
    kind = str(_field(event, "event"))
    bounce_class = None
    if kind == "bounce":  # SendGrid: type "bounce" = permanent, "blocked" = temporary refusal
        bounce_class = "soft" if event.get("type") == "blocked" else "hard"
        kind = "bounce" if bounce_class == "hard" else "soft_bounce"
    elif kind not in SENDGRID_TYPES:
        raise Invalid("type.unknown", f"unknown SendGrid event type {kind!r}")
    return dict(provider_event_id=str(_field(event, "sg_event_id")), type=kind,
                email=event.get("email"), timestamp=event.get("timestamp"),
                customer_key=text(event.get("customer_key")),  # a custom arg set at send time
                campaign_id=text(event.get("singlesend_id") or event.get("marketing_campaign_id")
                                 or event.get("campaign_id")),
                message_id=text(event.get("sg_message_id")), url=text(event.get("url")),
                bounce_class=bounce_class,
                is_machine=bool(event.get("sg_machine_open")))  # Apple Mail Privacy Protection


def _mailgun(event: dict) -> dict:
    data = event.get("event-data", event)
    if not isinstance(data, dict):
        raise Invalid("shape", "Mailgun payload has no event-data object")
    kind = str(_field(data, "event"))
    bounce_class = None
    if kind == "failed":
        bounce_class = "hard" if data.get("severity") == "permanent" else "soft"
        kind = "bounce" if bounce_class == "hard" else "soft_bounce"
    elif kind in MAILGUN_TYPES:
        kind = MAILGUN_TYPES[kind]
    else:
        raise Invalid("type.unknown", f"unknown Mailgun event type {kind!r}")
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    variables = data.get("user-variables") if isinstance(data.get("user-variables"), dict) else {}
    client = data.get("client-info") if isinstance(data.get("client-info"), dict) else {}
    campaigns = data.get("campaigns") if isinstance(data.get("campaigns"), list) else []
    campaign = variables.get("campaign_id") or (campaigns[0].get("id") if campaigns and isinstance(campaigns[0], dict) else None)
    return dict(provider_event_id=str(_field(data, "id")), type=kind, email=data.get("recipient"),
                timestamp=data.get("timestamp"), customer_key=text(variables.get("customer_key")),
                campaign_id=text(campaign), message_id=text(headers.get("message-id")),
                url=text(data.get("url")), bounce_class=bounce_class,
                is_machine=bool(client.get("bot")))  # Mailgun names the bot (e.g. "apple", "gmail")


def _generic(event: dict) -> dict:
    kind = str(_field(event, "type"))
    bounce_class = event.get("bounce_class")
    if kind == "bounce" and bounce_class == "soft":
        kind = "soft_bounce"
    if kind not in EVENT_TYPES:
        raise Invalid("type.unknown", f"unknown event type {kind!r}; expected one of {', '.join(EVENT_TYPES)}")
    if kind in ("bounce", "soft_bounce"):
        bounce_class = "hard" if kind == "bounce" else "soft"
    return dict(provider_event_id=str(_field(event, "id")), type=kind, email=event.get("email"),
                timestamp=event.get("timestamp"), customer_key=text(event.get("customer_key")),
                campaign_id=text(event.get("campaign_id")), message_id=text(event.get("message_id")),
                url=text(event.get("url")), bounce_class=bounce_class,
                is_machine=event.get("is_machine") in (True, "true", "1", 1))


PROVIDERS: dict[str, Callable[[dict], dict]] = {"sendgrid": _sendgrid, "mailgun": _mailgun, "generic": _generic}


def _record_id(provider: str, event: Any) -> str:
    if isinstance(event, dict):
        data = event.get("event-data") if isinstance(event.get("event-data"), dict) else event
        for key in ("sg_event_id", "id"):
            if data.get(key):
                return f"{provider}:{data[key]}"
    return f"{provider}:sha256:{hashlib.sha256(raw_json(event).encode()).hexdigest()[:32]}"


def normalize(provider: str, event: Any) -> Normalized | Rejected:
    """One provider event -> a normalized event, or a rejection naming the rule it broke."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    raw = raw_json(event)
    try:
        if not isinstance(event, dict):
            raise Invalid("shape", f"event is a {type(event).__name__}, not a JSON object")
        fields = PROVIDERS[provider](event)
        fields["email"] = normalize_email(fields["email"])
        fields["timestamp"] = utc_timestamp(fields["timestamp"])
    except Invalid as exc:
        return Rejected(provider, _record_id(provider, event), exc.rule, str(exc), raw)
    return Normalized(provider=provider, raw_payload=raw, **fields)
