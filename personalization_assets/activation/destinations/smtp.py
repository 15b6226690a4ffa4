"""SMTP for triggered transactional e-mail (cart abandonment and the like).

Each row is one message: the payload holds the merge fields of `marts.personalization_payloads`
(and optionally `subject`). The body is rendered from the Jinja2 templates into a
multipart/alternative message with a plain-text and an HTML part. Headers carry RFC 8058 one-click
unsubscribe, and a Message-ID derived from the row's idempotency key, so a resent row is the same
message to the receiving side.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Sequence

from ...marts.render import render
from ..model import EVENTS, RowResult, SyncRow
from ..unsubscribe import unsubscribe_url

DEFAULT_SUBJECT = "Picked for you"


def message_id(key: str, sender: str) -> str:
    """RFC 5322 Message-ID derived only from an idempotency key and the From domain: a message
    resent after a crash carries the same id, so receivers and counts can tell it is a copy."""
    domain = sender.rsplit("@", 1)[-1].strip(">").strip() or "localhost"
    return f"<{key}@{domain}>"


@dataclass
class SmtpMail:
    host: str
    port: int
    sender: str  # From:, e.g. "Shop <news@shop.example>"
    unsubscribe_base_url: str  # https://shop.example/unsubscribe
    unsubscribe_secret: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 30.0
    name: str = "smtp"
    batch_size: int = 50  # messages per SMTP connection
    modes: frozenset[str] = frozenset({EVENTS})

    def message(self, row: SyncRow) -> EmailMessage:
        if not row.email:
            raise ValueError(f"row {row.row_key} has no recipient address")
        link = unsubscribe_url(self.unsubscribe_base_url, self.unsubscribe_secret, row.email)
        subject = row.payload.get("subject") or DEFAULT_SUBJECT
        merge = {k: v for k, v in row.payload.items() if k != "subject"}
        parts = render(merge, subject=subject, unsubscribe_url=link)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = row.email
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id(row.idempotency_key or row.row_key, self.sender)
        msg["List-Unsubscribe"] = f"<{link}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(parts["txt"])
        msg.add_alternative(parts["html"], subtype="html")
        return msg

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]:
        results: dict[str, RowResult] = {}
        messages = []
        for row in rows:
            try:
                messages.append((row, self.message(row)))
            except Exception as exc:  # a payload the template cannot render: this row fails, with why
                results[row.row_key] = RowResult(row.row_key, False, f"render: {type(exc).__name__}: {exc}")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                for row, msg in messages:
                    results[row.row_key] = self._deliver(smtp, row, msg)
        except (OSError, smtplib.SMTPException) as exc:
            for row, _ in messages:
                results.setdefault(row.row_key, RowResult(row.row_key, False, f"smtp: {exc}", True))
        return [results[r.row_key] for r in rows]

    @staticmethod
    def _deliver(smtp: smtplib.SMTP, row: SyncRow, msg: EmailMessage) -> RowResult:
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            return RowResult(row.row_key, False, f"recipient refused: {exc.recipients}", False)
        except smtplib.SMTPResponseException as exc:
            return RowResult(row.row_key, False, f"{exc.smtp_code} {exc.smtp_error!r}", 400 <= exc.smtp_code < 500)
        if refused:
            return RowResult(row.row_key, False, f"recipient refused: {refused}", False)
        return RowResult(row.row_key, True)

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        """SMTP keeps no audience: nothing to erase."""
