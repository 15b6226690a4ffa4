"""Phone numbers in E.164 via ``phonenumbers``, with the customer's country as default region.

``phone`` is the E.164 form ("+447700900123") or None; ``phone_issue`` says why not:
``missing``, ``unparseable: <phonenumbers' reason>`` or ``not a valid number for region XX``.
A number valid in the default region is accepted with one metadata check; otherwise
``phonenumbers.is_valid_number`` decides in whatever region the number belongs to (a Canadian
number of a US customer is valid). Each distinct (raw, region) pair is parsed once.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from ._unique import apply_unique_pairs, is_missing, to_frame

COLUMNS = ["phone", "phone_issue"]


def region_code(value: Any) -> str | None:
    """An ISO alpha-2 region phonenumbers knows, upper-cased, or None."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def normalize_one(raw: Any, region: Any) -> tuple[str | None, str | None]:
    if is_missing(raw):
        return None, "missing"
    text = _as_text(raw)
    if text is None:
        return None, "missing" if isinstance(raw, str) else f"unparseable: not a phone number ({type(raw).__name__})"
    default = region_code(region)
    try:
        number = phonenumbers.parse(text, default)
    except NumberParseException as exc:
        return None, f"unparseable: {exc.args[0] if exc.args else exc}"
    valid = (default is not None and phonenumbers.is_valid_number_for_region(number, default)) \
        or phonenumbers.is_valid_number(number)
    if not valid:
        where = phonenumbers.region_code_for_country_code(number.country_code)
        return None, f"not a valid number for region {where if where != 'ZZ' else default or 'unknown'}"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), None


def normalize_phones(raw: pd.Series, region: pd.Series) -> pd.DataFrame:
    """Columns ``phone, phone_issue`` aligned with ``raw``; ``region`` is the default ISO alpha-2."""
    region = region.reindex(raw.index) if not region.index.equals(raw.index) else region
    codes, results = apply_unique_pairs(raw, region, normalize_one)
    return to_frame(codes, results, dict.fromkeys(COLUMNS), raw.index)
