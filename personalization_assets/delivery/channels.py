"""Where a rendered e-mail goes: SMTP, a signed webhook (an ESP's send API), or Braze.

Each send carries the fire's idempotency key: as the Message-ID over SMTP, as `Idempotency-Key`
(and the row's `idempotency_key`) on the webhook. Braze's `/users/track` takes no idempotency key,
so over Braze, as over SMTP, a crash may repeat the message in flight (at most one per crash).
Every channel takes tokens from the sync engine's bucket (`activation/ratelimit.py`); a 429 halves
its rate and its Retry-After blocks the bucket and postpones the row.

A channel raises `SendError(retryable=...)`; the sender decides what to do with it (outbox backoff).
"""

from __future__ import annotations

import smtplib
from datetime import datetime, timezone
from email.header import Header
from email.policy import compat32
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, parseaddr
from typing import Protocol

from ..activation.destinations.braze import BrazeTrack
from ..activation.destinations.smtp import message_id
from ..activation.destinations.webhook import SignedWebhook
from ..activation.http import HttpTransport
from ..activation.model import EVENT, SyncRow
from ..activation.ratelimit import TokenBucket
from .outbox import Row


_SMTP_POLICY = compat32.clone(linesep="\r\n")


class SendError(Exception):
    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after = reason, retryable, retry_after


class Channel(Protocol):
    name: str
    bucket: TokenBucket

    def send(self, row: Row) -> str | None:
        """Deliver one e-mail or raise SendError; may return a note kept with the `sent` state."""

    def close(self) -> None: ...


class SmtpChannel:
    """One kept-open SMTP connection, re-opened after any error."""

    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, bucket: TokenBucket, *, username: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout: float = 10.0):
        self.host, self.port, self.sender, self.bucket = host, port, sender, bucket
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout
        self._smtp: smtplib.SMTP | None = None
        self._envelope_from = parseaddr(sender)[1] or sender

    def message(self, row: Row) -> MIMEMultipart:
        """multipart/alternative, text then HTML. Built with the compat32 MIME classes: the
        header-registry `EmailMessage` costs several times more CPU per message on the send path."""
        msg = MIMEMultipart("alternative")
        msg["From"] = self.sender
        msg["To"] = row.recipient
        msg["Subject"] = Header(row.subject or "", "utf-8").encode() if not (row.subject or "").isascii() \
            else (row.subject or "")
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id(row.idempotency_key, self.sender)
        if row.unsubscribe_url:
            msg["List-Unsubscribe"] = f"<{row.unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.attach(MIMEText(row.text_body or "", "plain", "utf-8"))
        msg.attach(MIMEText(row.html or "", "html", "utf-8"))
        return msg

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            self._smtp = smtp
        return self._smtp

    def send(self, row: Row) -> None:
        data = self.message(row).as_bytes(policy=_SMTP_POLICY)  # CRLF: sendmail sends bytes as they are
        self.bucket.acquire()
        try:
            refused = self._connection().sendmail(self._envelope_from, [row.recipient], data)
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError(f"recipient refused: {sorted(exc.recipients)}", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            if exc.smtp_code == 421 or 400 <= exc.smtp_code < 500:  # try later (greylisting, busy)
                raise SendError(f"smtp {exc.smtp_code}: {exc.smtp_error!r}", retryable=True) from None
            raise SendError(f"smtp {exc.smtp_code}: {exc.smtp_error!r}", retryable=False) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise SendError(f"smtp {self.host}:{self.port}: {type(exc).__name__}: {exc}", retryable=True) from None
        if refused:
            raise SendError(f"recipient refused: {sorted(refused)}", retryable=False)
        self.bucket.succeeded()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _row(row: Row, payload: dict) -> SyncRow:
    return SyncRow(row_key=row.idempotency_key, customer_key=row.customer_id, email=row.recipient, op=EVENT,
                   segment=row.trigger, payload=payload, idempotency_key=row.idempotency_key)


def _http_error(bucket: TokenBucket, reason: str, retryable: bool) -> SendError:
    blocked = bucket.blocked_until - bucket.clock()  # a 429's Retry-After, as the bucket recorded it
    return SendError(reason, retryable, blocked if blocked > 0 else None)


class WebhookChannel:
    """A POST per e-mail, signed (HMAC-SHA256), with `Idempotency-Key: <fire's key>`: an ESP-style
    send API that drops a repeated key delivers each fire once."""

    name = "webhook"

    def __init__(self, url: str, secret: str, bucket: TokenBucket, timeout: float = 10.0):
        # One attempt per call and no sleep inside: the outbox owns the retries (durable, with jitter).
        self.bucket = bucket
        self.hook = SignedWebhook(url, secret, HttpTransport(bucket, timeout=timeout, max_attempts=1, backoff=0.0))

    def send(self, row: Row) -> None:
        doc = {"to": row.recipient, "subject": row.subject, "html": row.html, "text": row.text_body,
               "trigger": row.trigger, "list_unsubscribe": row.unsubscribe_url}
        result = self.hook.send([_row(row, doc)], row.idempotency_key)[0]
        if not result.ok:
            raise _http_error(self.bucket, result.error or "refused", result.retryable)

    def close(self) -> None:
        self.hook.transport.session.close()


class BrazeChannel:
    """A custom event per fire on `/users/track` (a Braze action-based campaign sends the e-mail);
    the event carries the idempotency key as a property for the campaign's re-eligibility rules."""

    name = "braze"

    def __init__(self, base_url: str, api_key: str, bucket: TokenBucket, timeout: float = 10.0):
        self.bucket = bucket
        self.braze = BrazeTrack(base_url, api_key, HttpTransport(bucket, timeout=timeout, max_attempts=1, backoff=0.0),
                                batch_size=1)

    def send(self, row: Row) -> None:
        payload = {"name": f"{row.trigger}_fired", "time": datetime.now(timezone.utc).isoformat(),
                   "idempotency_key": row.idempotency_key, "subject": row.subject}
        result = self.braze.send([_row(row, payload)], row.idempotency_key)[0]
        if not result.ok:
            raise _http_error(self.bucket, result.error or "refused by Braze", result.retryable)

    def close(self) -> None:
        self.braze.transport.session.close()


class PreviewChannel:
    """Delivers nothing: each e-mail is kept in the outbox and shown on the outbox page. For a
    local demo without a mail server (`personalization deliver --channel preview`)."""

    name = "preview"

    def __init__(self, bucket: TokenBucket):
        self.bucket = bucket

    def send(self, row: Row) -> str:
        self.bucket.acquire()
        return "preview: kept on the outbox page, not delivered"

    def close(self) -> None:
        pass
