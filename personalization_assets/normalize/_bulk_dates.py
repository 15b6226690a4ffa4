"""Bulk paths of ``parse_timestamps``: whole columns at once with pyarrow and pandas.

Each returns UTC nanoseconds and a mask of the values it read; everything else (and every
value it could not read) goes to the per-value path in ``dates.py``, which gives the reason.
Tests check each bulk path against the per-value path or against pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# ISO 8601 shapes, as RE2 patterns for pyarrow: any ISO value, one with an offset, and the strict
# shape Arrow's own cast reads (the rest goes through pandas).
ISO = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
_ISO_AWARE = r"[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_ARROW_AWARE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}(?::?\d{2})?)$"
NAT = np.iinfo(np.int64).min
DMY = (r"^(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})[/.-](?P<year>\d{4})"
        r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?$")
EPOCH = r"^[+-]?\d{1,18}$"
_EPOCH_UNITS = [(1e11, 10**9), (1e14, 10**6), (1e17, 10**3)]  # |value| below -> nanoseconds per unit
_INT64_MAX = np.iinfo(np.int64).max


def arrow_strings(values: list[str]) -> pa.Array:
    """An Arrow string array; a value UTF-8 cannot encode (lone surrogates) becomes "" here, so it
    is left to the per-value path, which reports it."""
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):
        return pa.array([v if _encodable(v) else "" for v in values], pa.string())


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def matches(texts: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False)


def _aware_nanos(texts: pa.Array) -> np.ndarray:
    """UTC nanoseconds of ISO strings with an offset: Arrow's cast for its strict shape, else pandas."""
    out = np.full(len(texts), NAT, dtype=np.int64)
    strict = matches(texts, _ARROW_AWARE)
    if strict.any():
        try:
            cast = texts.filter(pa.array(strict)).cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
            out[strict] = cast.to_numpy(zero_copy_only=False)
            strict_done = strict
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2024-02-30: let pandas say which
            strict_done = np.zeros(len(texts), dtype=bool)
    else:
        strict_done = strict
    rest = ~strict_done
    if rest.any():
        values = pd.Series(texts.filter(pa.array(rest)).to_pylist(), dtype=object)
        parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        out[rest] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    return out


def parse_iso(texts: pa.Array, tz: str) -> tuple[np.ndarray, list[str | None]]:
    """Bulk ISO 8601 to UTC nanoseconds: offsets honoured, naive values read in ``tz``."""
    aware = matches(texts, _ISO_AWARE)
    nanos = np.full(len(texts), NAT, dtype=np.int64)
    bad_local = np.zeros(len(texts), dtype=bool)
    if aware.any():
        nanos[aware] = _aware_nanos(texts.filter(pa.array(aware)))
    if (~aware).any():
        naive = pd.to_datetime(pd.Series(texts.filter(pa.array(~aware)).to_pylist(), dtype=object),
                               format="ISO8601", errors="coerce")
        nanos[~aware] = _localize(naive, tz)
        bad_local[~aware] = (naive.notna() & (nanos[~aware] == NAT)).to_numpy()
    issues: list[str | None] = [None] * len(texts)
    for i in np.flatnonzero(nanos == NAT):
        text = texts[int(i)].as_py()
        issues[i] = (f"local time {text} does not exist or is ambiguous in {tz}" if bad_local[i]
                     else f"invalid ISO 8601 timestamp: {text[:80]!r}")
    return nanos, issues


def _localize(naive: pd.Series, tz: str) -> np.ndarray:
    """UTC nanoseconds of naive local times in ``tz`` (NaT where missing, nonexistent or ambiguous)."""
    local = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return local.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


def _int_field(parts: pa.StructArray, name: str) -> np.ndarray:
    field = parts.field(name)
    field = pc.if_else(pc.equal(field, ""), "0", field)
    return pc.cast(field, pa.int64()).to_numpy(zero_copy_only=False)


def parse_numeric_dates(texts: pa.Array, *, day_first: bool, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """"03/04/2024", "3.4.2024 10:00", "03-04-2024 10:00:05" (naive, 4-digit year): nanos and read-mask."""
    parts = pc.extract_regex(texts, DMY)
    a, b = _int_field(parts, "a"), _int_field(parts, "b")
    day, month = (a, b) if day_first else (b, a)
    fields = pd.DataFrame({"year": _int_field(parts, "year"), "month": month, "day": day,
                           "hour": _int_field(parts, "hour"), "minute": _int_field(parts, "minute"),
                           "second": _int_field(parts, "second")})
    in_range = ((fields["month"].between(1, 12)) & fields["day"].between(1, 31) & (fields["hour"] <= 23)
                & (fields["minute"] <= 59) & (fields["second"] <= 59)).to_numpy()  # pandas would roll over
    safe = fields.where(pd.DataFrame({c: in_range for c in fields.columns}), 1).astype(np.int64)
    naive = pd.to_datetime(safe, errors="coerce")
    nanos = _localize(naive, tz)
    return nanos, in_range & (nanos != NAT)


def parse_epochs(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Digit strings as epoch seconds, ms, us or ns by size (see ``dates.py``): nanos and read-mask."""
    values = pc.cast(texts, pa.int64()).to_numpy(zero_copy_only=False)
    per_unit = np.ones(len(values), dtype=np.int64)
    magnitude = np.abs(values.astype(np.float64))
    for limit, nanos in reversed(_EPOCH_UNITS):
        per_unit[magnitude < limit] = nanos
    fits = np.abs(values) <= _INT64_MAX // per_unit
    nanos = np.where(fits, values * np.where(fits, per_unit, 1), NAT)
    return nanos, fits & (nanos != NAT)
