"""Build provider requests exactly as their docs describe, signed with keys made in the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class SendGridKeys:
    """An ECDSA P-256 keypair; `public_key` is the base64 DER string SendGrid shows in its settings."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int) -> dict:
        signature = self.private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp)}


def mailgun_body(signing_key: str, event_data: dict, timestamp: int, token: str | None = None) -> bytes:
    token = token or secrets.token_hex(25)
    signature = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def generic_headers(secret: str, body: bytes, timestamp: int) -> dict:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Webhook-Signature": f"sha256={digest}",
            "X-Webhook-Timestamp": str(timestamp)}


def sendgrid_events(now: int) -> list[dict]:
    """One of each documented SendGrid event type (fields from the Event Webhook reference)."""
    base = {"email": "Alice.Smith@Example.com", "timestamp": now - 60, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "category": ["cat facts"],
            "customer_key": "cust-1"}
    events = [
        {"event": "processed"}, {"event": "delivered", "response": "250 OK"},
        {"event": "open", "useragent": "Mozilla/5.0", "ip": "255.255.255.255"},
        {"event": "open", "sg_machine_open": True, "useragent": "Mozilla/5.0"},
        {"event": "click", "url": "https://shop.example.com/p/42", "url_offset": {"index": 0, "type": "html"}},
        {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 user unknown", "bounce_classification": "Invalid Address"},
        {"event": "bounce", "type": "blocked", "reason": "452 mailbox full", "bounce_classification": "Technical"},
        {"event": "deferred", "response": "400 try again later", "attempt": "5"},
        {"event": "dropped", "reason": "Bounced Address", "status": "5.0.0"},
        {"event": "spamreport"}, {"event": "unsubscribe"},
        {"event": "group_unsubscribe", "asm_group_id": 10, "url": "https://sendgrid.com?asm_group_id=10"},
    ]
    return [{**base, **e, "sg_event_id": f"sg-evt-{i}"} for i, e in enumerate(events)]
