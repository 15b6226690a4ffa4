"""Where webhook events wait for the warehouse: their own bus (file or stream), never mixed with
behavioural events, so the behavioural consumers (raw.events, the trigger engine) never see them."""

from __future__ import annotations

import os

from .model import Normalized, Rejected

TOPIC = "email_events"


def email_events_bus_url() -> str:
    """EMAIL_EVENTS_BUS_URL, else a SQLite file next to the behavioural bus (read when called)."""
    from ..settings import data_dir

    return os.environ.get("EMAIL_EVENTS_BUS_URL", f"sqlite:///{data_dir() / 'email_events.db'}?table={TOPIC}")


def bus_event(event: Normalized) -> dict:
    """messageId = provider:provider_event_id, so a provider's retries are stored once."""
    return {"messageId": event.bus_message_id, **event.to_record()}


def quarantine_event(rejected: Rejected) -> dict:
    return {"messageId": f"{rejected.record_id}:{rejected.rule}", "provider": rejected.provider,
            "record_id": rejected.record_id, "rule": rejected.rule, "message": rejected.message,
            "raw_payload": rejected.raw_payload}
