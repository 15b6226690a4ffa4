"""Signed webhooks of the e-mail platforms, mounted by the collector at /webhooks."""

from .app import create_webhook_app

__all__ = ["create_webhook_app"]
