"""E-mail engagement from the sending platforms (SendGrid, Mailgun, generic HMAC webhooks and bulk
export files) normalized into one `email_events` shape. Plain Python: the webhooks and the Dagster
assets are thin shells over it."""

from .model import EMAIL_EVENT_COLUMNS, EVENT_TYPES, SUPPRESSION_REASONS, Normalized, Rejected
from .normalize import PROVIDERS, normalize

__all__ = ["EMAIL_EVENT_COLUMNS", "EVENT_TYPES", "PROVIDERS", "SUPPRESSION_REASONS", "Normalized",
           "Rejected", "normalize"]
