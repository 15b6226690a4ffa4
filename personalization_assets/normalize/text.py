"""Text: one clean form, a matching key and a display form.

- ``clean_text``: Unicode NFKC, trimmed, inner whitespace runs collapsed to one space, control
  characters dropped; empty or missing -> None. Non-text values are formatted with ``str``.
  Bidirectional controls (U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates, the
  U+200E/U+200F/U+061C marks) are dropped too: a right-to-left override in a name reorders what a
  reader sees ("Trojan Source" spoofing) and carries no part of the name itself.
- ``match_key``: the clean form case-folded (``str.casefold``, then NFKC again), for comparisons only.
- ``display_name``: the clean form with names proper-cased. A name typed in one case only
  (all lower or ALL UPPER) is recased; a name already in mixed case ("McDonald", "van der Berg",
  "DeVito") is kept as typed, because its owner chose it. Recasing capitalizes each word and each
  part after a hyphen, after a one-letter prefix with an apostrophe ("o'neil" -> "O'Neil") and
  after "Mc" ("mcdonald" -> "McDonald"); nobiliary particles ("van", "der", "de", "von", ...)
  stay lower case unless they start the name. "Mac" is left alone ("Mack", "Macy").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pandas as pd

from ._unique import apply_unique, is_missing, to_series

PARTICLES = frozenset({
    "van", "der", "den", "de", "del", "della", "di", "da", "das", "dos", "du", "la", "le",
    "von", "zu", "ten", "ter", "bin", "binti", "al",
})
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
BIDI_CONTROLS = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_APOSTROPHE_PREFIX = re.compile(r"^(\w)'(\w)", re.UNICODE)


def clean_one(value: Any) -> str | None:
    if is_missing(value):
        return None
    text = value if isinstance(value, str) else str(value)
    text = unicodedata.normalize("NFKC", BIDI_CONTROLS.sub("", _CONTROL.sub("", text)))
    text = " ".join(text.split())
    return text or None


def key_one(value: Any) -> str | None:
    text = clean_one(value)
    if text is None:
        return None
    # casefold can leave decomposed or compatibility forms: fold until stable (at most a few rounds).
    for _ in range(4):
        folded = " ".join(unicodedata.normalize("NFKC", text.casefold()).split())
        if folded == text:
            break
        text = folded
    return text or None


def _title_part(part: str) -> str:
    if not part:
        return part
    lower = part.lower()
    if lower.startswith("mc") and len(part) > 3 and part[2].isalpha():
        return "Mc" + _title_part(part[2:])
    if _APOSTROPHE_PREFIX.match(part):
        return part[0].upper() + "'" + _title_part(part[2:])
    return part[:1].title() + part[1:].lower()


def _recase(name: str) -> str:
    words = []
    for i, word in enumerate(name.split(" ")):
        if i > 0 and word.lower() in PARTICLES:
            words.append(word.lower())
        else:
            words.append("-".join(_title_part(p) for p in word.split("-")))
    return unicodedata.normalize("NFKC", " ".join(words))


def _single_case(text: str) -> bool:
    return text == text.lower() or text == text.upper()


def display_one(value: Any) -> str | None:
    text = clean_one(value)
    # Casing can change length or case class ("ß" -> "Ss"): recase until the form is stable.
    for _ in range(4):
        if text is None or not _single_case(text):
            break
        recased = _recase(text)
        if recased == text:
            break
        text = recased
    return text


def clean_text(s: pd.Series) -> pd.Series:
    """Clean form of every value (see the module docstring); index and name kept."""
    return to_series(*apply_unique(s, clean_one), s.index, name=s.name)


def match_key(s: pd.Series) -> pd.Series:
    """Case-folded clean form, for matching and deduplication only."""
    return to_series(*apply_unique(s, key_one), s.index, name=s.name)


def display_name(s: pd.Series) -> pd.Series:
    """Proper-cased clean form of a person's name (rule in the module docstring)."""
    return to_series(*apply_unique(s, display_one), s.index, name=s.name)
