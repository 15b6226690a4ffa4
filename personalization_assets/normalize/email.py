"""Email addresses: email-validator's normalized form, a matching key and quality flags.

- ``email``: ``email_validator.validate_email(..., check_deliverability=False).normalized`` of
  the value with surrounding whitespace (CR/LF included) trimmed, lower-cased (mailboxes are
  case-insensitive in practice); None when invalid, with the library's message in ``email_issue``.
- ``email_key``: the email with provider aliases removed, only for the providers in
  ``seeds/email_providers.csv`` that document how they ignore them (Gmail: dots and ``+tag``,
  googlemail.com -> gmail.com; Outlook/Hotmail, iCloud, Fastmail, Proton: ``+tag``). Other
  domains keep the address as is: a ``+`` or a dot may be significant there. Yahoo is left
  out on purpose: its ``base-keyword`` disposable addresses use a separate base name, not the
  mailbox name, so cutting at ``-`` does not give the account's address.
- ``email_disposable``: the domain or a parent domain is on the ``disposable-email-domains``
  blocklist (the PyPI package). The list spells internationalized domains in their ASCII
  (``xn--``) form, while email-validator normalizes them to Unicode: they are compared as ASCII.
- ``email_role``: the local part (before any ``+tag``) is a role mailbox from
  ``seeds/role_addresses.csv`` (info@, noreply@, postmaster@, ...).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any, NamedTuple

import idna
import pandas as pd
from disposable_email_domains import blocklist
from email_validator import EmailNotValidError, validate_email

from ._seeds import read_seed
from ._unique import apply_unique, is_missing, to_frame

EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit, as email-validator enforces it (UTF-8 bytes)
COLUMNS = {"email": None, "email_key": None, "email_disposable": "bool", "email_role": "bool", "email_issue": None}
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


class Provider(NamedTuple):
    canonical_domain: str
    ignores_dots: bool
    tag_separator: str


@cache
def providers() -> dict[str, Provider]:
    table = read_seed("email_providers.csv")
    return {r.domain: Provider(r.canonical_domain, r.ignores_dots == "true", r.tag_separator)
            for r in table.itertuples()}


@cache
def role_local_parts() -> frozenset[str]:
    return frozenset(read_seed("role_addresses.csv")["local_part"])


@lru_cache(maxsize=200_000)
def _domain(domain: str) -> tuple[str, int] | None:
    """(normalized form, longest UTF-8 length of its written, normalized and ASCII forms) of a
    domain as email-validator sees it, or None when it is invalid."""
    try:
        checked = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, max(len(d.encode()) for d in (domain, checked.domain, checked.ascii_domain))


def validated(text: str) -> tuple[str | None, str | None]:
    """(normalized address, None) or (None, reason): email-validator's decision and message, and
    its normalized form up to letter case (it lower-cases a few role mailboxes such as "Info").

    Fast path for the common shape (ASCII dot-atom local part): the domain, shared by many
    addresses, is validated once and cached, and the length limits are applied here.
    Anything else goes through ``validate_email`` itself.
    """
    local, at, domain = text.rpartition("@")
    if at and _DOT_ATOM.match(local):
        forms = _domain(domain)
        if forms and len(local) + 1 + forms[1] <= EMAIL_MAX_LENGTH:  # the local part is ASCII here
            return f"{local}@{forms[0]}", None
    try:
        return validate_email(text, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        return None, str(exc)


def matching_key(email: str) -> str:
    local, _, domain = email.rpartition("@")
    rule = providers().get(domain)
    if rule is None:
        return email
    base = local.split(rule.tag_separator, 1)[0] if rule.tag_separator else local
    if rule.ignores_dots:
        base = base.replace(".", "")
    return f"{base or local}@{rule.canonical_domain}"


@lru_cache(maxsize=100_000)
def is_disposable(domain: str) -> bool:
    if not domain.isascii():
        try:
            domain = idna.encode(domain).decode("ascii")
        except idna.IDNAError:
            pass  # not encodable: compare as written (the list has no such domain)
    labels = domain.split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


def is_role(local: str) -> bool:
    return local in role_local_parts() or local.split("+", 1)[0] in role_local_parts()


def _normalize_one(value: Any) -> tuple:
    if is_missing(value):
        return None, None, False, False, "missing"
    text = (value if isinstance(value, str) else str(value)).strip()
    if not text:
        return None, None, False, False, "missing"
    normalized, issue = validated(text)
    if normalized is None:
        return None, None, False, False, issue
    email = normalized.lower()
    local, _, domain = email.rpartition("@")
    return email, matching_key(email), is_disposable(domain), is_role(local), None


def normalize_emails(s: pd.Series) -> pd.DataFrame:
    """Columns ``email, email_key, email_disposable, email_role, email_issue``, aligned with ``s``."""
    codes, results = apply_unique(s, _normalize_one)
    return to_frame(codes, results, COLUMNS, s.index)
