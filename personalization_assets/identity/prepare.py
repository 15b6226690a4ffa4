"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence.
Non-Latin letters are kept as they are.
"""

from __future__ import annotations

import re
import unicodedata

import jellyfish
import numpy as np
import pandas as pd

from personalization_assets.identity.config import (
    PLACEHOLDER_EMAIL_DOMAINS,
    PLACEHOLDER_EMAIL_LOCALS,
    PLACEHOLDER_TOKENS,
)
from personalization_assets.identity.features_sql import clean_frame
from personalization_assets.identity.nicknames import canonical_names

MATCH_COLUMNS = ("record_id", "source", "source_id", "first_name", "last_name", "email_key",
                 "phone", "street", "city", "postcode", "birth_date", "country", "updated_at")
OPTIONAL_COLUMNS = ("national_id",)


def on_uniques(s: pd.Series, fn) -> pd.Series:
    """Apply ``fn`` (str -> str | None) once per distinct value; returns a categorical, so later
    factorizing (blocking, comparison) reuses its integer codes instead of hashing text."""
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    res = [fn(str(u)) for u in uniq]
    res_codes, cats = pd.factorize(np.array(res, dtype=object), use_na_sentinel=True)
    final = np.where(codes >= 0, res_codes[np.maximum(codes, 0)] if len(res) else -1, -1)
    return pd.Series(pd.Categorical.from_codes(final, np.asarray(cats, dtype=object)), index=s.index)


_ACCENTS = re.compile(r"[\u0300-\u036f]")
_NOT_LETTER = re.compile(r"[\W\d_]+")
_NOT_WORD = re.compile(r"[\W_]+")
_FAKE_TAIL = re.compile(r"(\d)\1{6}|1234567|7654321|0123456")


def _text(v: str) -> str:
    return _ACCENTS.sub("", unicodedata.normalize("NFKD", v)).casefold().strip()


def _real(v: str) -> str | None:
    return None if v in PLACEHOLDER_TOKENS else v


def clean_name(v: str) -> str | None:
    return _real(_NOT_LETTER.sub("", _text(v)))


def clean_words(v: str) -> str | None:
    return _real(" ".join(_NOT_WORD.sub(" ", _text(v)).split()))


def clean_code(v: str) -> str | None:
    """Postcodes and ids: letters and digits only."""
    return _real(_NOT_WORD.sub("", _text(v)))


def clean_birth(v: str) -> str | None:
    """Birth date as YYYYMMDD text; invalid-but-present digit strings are kept (typos still match)."""
    digits = re.sub(r"[-/. ]", "", v.strip())
    if len(digits) == 8 and digits.isdigit():
        return None if digits == "19000101" else digits
    stamp = pd.to_datetime(v, errors="coerce")
    return None if pd.isna(stamp) else stamp.strftime("%Y%m%d")


def clean_phone(v: str) -> str | None:
    digits = re.sub(r"\D", "", v)
    return None if len(digits) < 7 or _FAKE_TAIL.fullmatch(digits[-7:]) else digits


def clean_email(v: str) -> str | None:
    v = v.strip().casefold()
    local, at, domain = v.rpartition("@")
    if not at or not local or local in PLACEHOLDER_EMAIL_LOCALS or domain in PLACEHOLDER_EMAIL_DOMAINS:
        return None
    return v


def email_local(v: str) -> str | None:
    return _NOT_WORD.sub("", v.rpartition("@")[0]) or None


def features(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record, positional index, with the columns the matcher compares and blocks on."""
    get = lambda c: records[c] if c in records else pd.Series(pd.NA, index=records.index)  # noqa: E731
    f = pd.DataFrame({"record_id": records["record_id"].astype(str).to_numpy()})
    f["source"] = get("source").astype("string").to_numpy()
    f["source_id"] = get("source_id").astype("string").to_numpy()
    nick = canonical_names()
    for col, values in clean_frame(records).items():
        f[col] = values
    f["fn_canon"] = on_uniques(f["fn"], lambda v: nick.get(v, v)).array
    f["email_local"] = on_uniques(f["email"], email_local).array
    f["ln_sdx"] = on_uniques(f["ln"], jellyfish.soundex).array
    f["fn_sdx"] = on_uniques(f["fn"], jellyfish.soundex).array
    f["updated_at"] = pd.to_datetime(get("updated_at"), utc=True, errors="coerce").array
    return f


def record_hash(records: pd.DataFrame) -> np.ndarray:
    """Content hash of the matching columns, to detect changed records between runs."""
    cols = [c for c in MATCH_COLUMNS + OPTIONAL_COLUMNS if c in records and c != "updated_at"]
    return pd.util.hash_pandas_object(records[cols], index=False, categorize=True).to_numpy()
