"""Post operational alerts to a webhook (Slack-compatible JSON: a `text` field plus details)."""

from __future__ import annotations

import requests


def post_alert(url: str, title: str, details: dict, *, timeout: float = 5.0) -> int:
    """Send one alert; returns the HTTP status. Raises with the cause when it cannot be delivered."""
    response = requests.post(url, json={"text": title, **details}, timeout=timeout)
    response.raise_for_status()
    return response.status_code
