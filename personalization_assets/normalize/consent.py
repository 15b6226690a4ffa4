"""Consent flags (email opt-in, consent to processing) read explicitly, never by truthiness.

A CRM stores these as booleans, 0/1 integers or text, and a driver's own boolean type may turn any
non-empty text into True (SQLAlchemy's SQLite Boolean reads "false" and "no" as True). So the
value is read here, once, from what the source really holds:

| given | means |
|---|---|
| ``True``/``False``; the integers ``1``/``0`` (and floats exactly 1.0/0.0) | consent / no consent |
| text, any case, surrounding whitespace ignored: ``true t yes y 1 on`` | consent |
| text: ``false f no n 0 off`` | no consent |
| missing (None, NaN, empty or blank text) | no consent: consent was never given (``consent_issue`` = "missing") |
| anything else ("maybe", "2", "ja", a list...) | unknown: ``consent`` is None with the reason in ``consent_issue`` |

An unknown value is never consent: callers quarantine the record instead of guessing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ._unique import apply_unique, to_frame

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off"})
MISSING = "missing"


def consent_one(value: Any) -> tuple[bool | None, str | None]:
    """(consent, issue) for one stored value; see the module docstring."""
    if value is None or value is pd.NA or value is pd.NaT:
        return False, MISSING
    if isinstance(value, (bool, np.bool_)):
        return bool(value), None
    if isinstance(value, (int, np.integer)):
        return (bool(value), None) if value in (0, 1) else (None, f"not a consent flag: {int(value)}")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return False, MISSING
        return (bool(value), None) if value in (0.0, 1.0) else (None, f"not a consent flag: {value!r}")
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return False, MISSING
        if word in TRUE_WORDS:
            return True, None
        if word in FALSE_WORDS:
            return False, None
        return None, f"not a consent flag: {value[:40]!r}"
    return None, f"not a consent flag: {type(value).__name__} {str(value)[:40]!r}"


def normalize_consent(s: pd.Series) -> pd.DataFrame:
    """Columns ``consent`` (True/False, None when unknown) and ``consent_issue``, aligned with ``s``."""
    codes, results = apply_unique(s, consent_one)
    return to_frame(codes, results, {"consent": None, "consent_issue": None}, s.index)
