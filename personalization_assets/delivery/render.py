"""A fire plus the customer's merge fields -> the e-mail: recipient, subject, HTML and text.

The body is the shipped template (`marts/render.py`, `templates/`), filled with the payload of
`marts.personalization_payloads` (cart, last viewed, recommendations, loyalty tier, discount) and
a signed one-click unsubscribe link for the recipient.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..activation.unsubscribe import unsubscribe_url
from ..marts.render import render

SUBJECTS = {"cart_abandonment": "You left something in your cart",
            "browse_abandonment": "Still thinking about it?"}
DEFAULT_SUBJECT = "Picked for you"


@dataclass(frozen=True)
class Unsubscribe:
    base_url: str  # https://shop.example/unsubscribe (RFC 8058 wants https)
    secret: str  # UNSUBSCRIBE_SECRET: keys the opaque tokens

    def url(self, email: str) -> str:
        return unsubscribe_url(self.base_url, self.secret, email)


@dataclass(frozen=True)
class Email:
    recipient: str
    subject: str
    html: str
    text: str
    unsubscribe_url: str


def render_fire(trigger: str, email: str, payload: dict, unsubscribe: Unsubscribe) -> Email:
    """Raises (jinja2 / ValueError) when the payload cannot fill the template: the fire then fails
    with that reason instead of sending a message with blanks in it."""
    if not email or "@" not in email:
        raise ValueError(f"no usable recipient address for this {trigger} fire")
    subject = payload.get("subject") or SUBJECTS.get(trigger, DEFAULT_SUBJECT)
    merge = {k: v for k, v in payload.items() if k != "subject"}
    link = unsubscribe.url(email)
    parts = render(merge, subject=subject, unsubscribe_url=link)
    return Email(email, subject, parts["html"], parts["txt"], link)
