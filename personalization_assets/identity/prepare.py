"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence.
Non-Latin letters are kept as they are.
"""

from __future__ import annotations

import jellyfish
import numpy as np
import pandas as pd

from personalization_assets.identity.config import (
    PLACEHOLDER_EMAIL_DOMAINS,
    PLACEHOLDER_EMAIL_LOCALS,
    PLACEHOLDER_TOKENS,
)
from personalization_assets.identity.nicknames import canonical_names

MATCH_COLUMNS = ("record_id", "source", "source_id", "first_name", "last_name", "email_key",
                 "phone", "street", "city", "postcode", "birth_date", "country", "updated_at")
OPTIONAL_COLUMNS = ("national_id",)


def on_uniques(s: pd.Series, fn) -> pd.Series:
    """Apply a (slow, string) transform once per distinct value; returns a categorical, so
    later factorizing (blocking, comparison) reuses its integer codes instead of hashing text."""
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    if len(uniq) == 0:
        return pd.Series(pd.Categorical.from_codes(codes, []), index=s.index)
    res = fn(pd.Series(np.asarray(uniq, dtype=object), dtype="string"))
    res_codes, cats = pd.factorize(res, use_na_sentinel=True)
    final = np.where(codes >= 0, res_codes[np.maximum(codes, 0)], -1)
    return pd.Series(pd.Categorical.from_codes(final, np.asarray(cats, dtype=object)), index=s.index)


def _text(s: pd.Series) -> pd.Series:
    s = s.astype("string").str.normalize("NFKD").str.replace(r"[\u0300-\u036f]", "", regex=True)
    return s.str.casefold().str.strip()


def _null_placeholders(s: pd.Series) -> pd.Series:
    s = s.where(~s.isin(PLACEHOLDER_TOKENS))
    return s.where(s.str.len() > 0)


def clean_name(s: pd.Series) -> pd.Series:
    return _null_placeholders(_text(s).str.replace(r"[\W\d_]+", "", regex=True))


def clean_words(s: pd.Series) -> pd.Series:
    out = _text(s).str.replace(r"[^\w]+", " ", regex=True).str.replace("_", " ").str.strip()
    return _null_placeholders(out.str.replace(r"\s+", " ", regex=True))


def clean_birth(s: pd.Series) -> pd.Series:
    """Birth date as YYYYMMDD text; invalid-but-present digit strings are kept (typos still match)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y%m%d").astype("string")
    raw = s.astype("string").str.strip()
    digits = raw.str.replace(r"[-/. ]", "", regex=True)
    ok = digits.str.fullmatch(r"\d{8}").fillna(False)
    parsed = pd.to_datetime(raw.where(~ok), errors="coerce", format="mixed").dt.strftime("%Y%m%d")
    return digits.where(ok, parsed.astype("string")).where(lambda x: x != "19000101")


def clean_phone(s: pd.Series) -> pd.Series:
    digits = s.astype("string").str.replace(r"\D", "", regex=True)
    tail = digits.str[-7:]
    fake = tail.str.fullmatch(r"(\d)\1{6}|1234567|7654321|0123456").fillna(False)
    return digits.where(~fake & (digits.str.len() >= 7))


def clean_email(s: pd.Series) -> pd.Series:
    s = s.astype("string").str.strip().str.casefold()
    parts = s.str.extract(r"^(.*)@([^@]*)$")
    local, domain = parts[0], parts[1]
    bad = local.isin(PLACEHOLDER_EMAIL_LOCALS) | domain.isin(PLACEHOLDER_EMAIL_DOMAINS)
    return s.where(~bad & s.str.contains("@", regex=False).fillna(False))


def features(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record, positional index, with the columns the matcher compares and blocks on."""
    get = lambda c: records[c] if c in records else pd.Series(pd.NA, index=records.index)  # noqa: E731
    f = pd.DataFrame({"record_id": records["record_id"].astype(str).to_numpy()})
    f["source"] = get("source").astype("string").to_numpy()
    f["source_id"] = get("source_id").astype("string").to_numpy()
    f["fn"] = on_uniques(get("first_name"), clean_name).to_numpy()
    f["ln"] = on_uniques(get("last_name"), clean_name).to_numpy()
    nick = canonical_names()
    f["fn_canon"] = on_uniques(f["fn"], lambda u: u.map(lambda v: nick.get(v, v)))
    f["birth"] = on_uniques(get("birth_date"), clean_birth).to_numpy()
    f["street"] = on_uniques(get("street"), clean_words).to_numpy()
    f["city"] = on_uniques(get("city"), clean_words).to_numpy()
    f["postcode"] = on_uniques(get("postcode"), lambda u: _null_placeholders(
        _text(u).str.replace(r"\s+", "", regex=True))).to_numpy()
    f["email"] = on_uniques(get("email_key"), clean_email).to_numpy()
    f["email_local"] = on_uniques(f["email"], lambda u: u.str.extract(r"^(.*)@", expand=False).str.replace(
        r"[^\w]", "", regex=True))
    f["phone"] = on_uniques(get("phone"), clean_phone).to_numpy()
    f["national_id"] = on_uniques(get("national_id"), lambda u: _null_placeholders(
        _text(u).str.replace(r"\W", "", regex=True))).to_numpy()
    f["ln_sdx"] = on_uniques(f["ln"], lambda u: u.map(jellyfish.soundex))
    f["fn_sdx"] = on_uniques(f["fn"], lambda u: u.map(jellyfish.soundex))
    f["updated_at"] = pd.to_datetime(get("updated_at"), utc=True, errors="coerce").to_numpy()
    return f


def record_hash(records: pd.DataFrame) -> np.ndarray:
    """Content hash of the matching columns, to detect changed records between runs."""
    cols = [c for c in MATCH_COLUMNS + OPTIONAL_COLUMNS if c in records and c != "updated_at"]
    return pd.util.hash_pandas_object(records[cols], index=False, categorize=True).to_numpy()
