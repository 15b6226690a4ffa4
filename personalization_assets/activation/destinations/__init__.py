"""Destinations, one interface (`activation.model.Destination`): signed webhook, Braze, Mailchimp,
files (CSV, Parquet) and SMTP."""

from .braze import BrazeTrack
from .files import FileExport
from .mailchimp import MailchimpAudience
from .smtp import SmtpMail
from .webhook import SignedWebhook

__all__ = ["BrazeTrack", "FileExport", "MailchimpAudience", "SignedWebhook", "SmtpMail"]
