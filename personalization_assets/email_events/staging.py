"""Staging rules for e-mail events: one row per provider event, and the suppression signals."""

from __future__ import annotations

import pandas as pd

from .model import EMAIL_EVENT_COLUMNS, SUPPRESSION_REASONS

SUPPRESSION_COLUMNS = ["email", "reason", "occurred_at", "customer_key", "provider", "provider_event_id"]


def events_frame(records: list[dict], extra: list[str] = ()) -> pd.DataFrame:
    """Normalized records (from the bus or files) -> typed frame, first copy of each provider event."""
    frame = pd.DataFrame(records, columns=[*EMAIL_EVENT_COLUMNS, *extra])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["is_machine"] = frame["is_machine"].fillna(False).astype(bool)
    for column in EMAIL_EVENT_COLUMNS:
        if column not in ("timestamp", "is_machine"):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame.drop_duplicates(subset=["provider", "provider_event_id"], keep="first").reset_index(drop=True)


SCANNER_WINDOW = pd.Timedelta(seconds=10)


def flag_scanner_clicks(events: pd.DataFrame, window: pd.Timedelta = SCANNER_WINDOW) -> pd.DataFrame:
    """Security gateways fetch every link as the message arrives; a human does not click within
    seconds of delivery. Such clicks and opens (same provider message) are marked `is_machine`."""
    delivered = (events[events["type"] == "delivered"].dropna(subset=["message_id"])
                 .groupby(["provider", "message_id"])["timestamp"].min().rename("delivered_at"))
    if delivered.empty:
        return events
    joined = events.join(delivered, on=["provider", "message_id"])
    fast = (joined["type"].isin(["click", "open"]) & joined["delivered_at"].notna()
            & (joined["timestamp"] - joined["delivered_at"] < window)
            & (joined["timestamp"] >= joined["delivered_at"]))
    out = events.copy()
    out["is_machine"] = out["is_machine"] | fast.to_numpy()
    return out


def suppressions(events: pd.DataFrame) -> pd.DataFrame:
    """Hard bounces, spam reports and unsubscribes: one row per (email, reason), its first time.

    Soft bounces never suppress (a full mailbox recovers); resubscribes do not lift a suppression
    here, the activation layer decides that with an explicit opt-in."""
    hits = events[events["type"].isin(list(SUPPRESSION_REASONS))].copy()
    hits["reason"] = hits["type"].map(SUPPRESSION_REASONS)
    hits = hits.sort_values(["timestamp", "provider", "provider_event_id"])
    first = hits.drop_duplicates(subset=["email", "reason"], keep="first")
    out = first.rename(columns={"timestamp": "occurred_at"})[SUPPRESSION_COLUMNS].reset_index(drop=True)
    out["occurred_at"] = pd.to_datetime(out["occurred_at"], utc=True)
    return out
