"""Timestamps to timezone-aware UTC, and IANA time zone names.

``parse_timestamps`` reads mixed formats and returns ``ts`` (``datetime64[ns, UTC]``) and
``ts_issue``:

- ISO 8601, with or without offset.
- Numeric dates "03/04/2024 10:00", "3.4.24", "03-04-2024 10:00 PM": the order of day and month
  is the source's ``day_first`` setting, never guessed per row; "13/04/2024" in a month-first
  source is an issue, not a silent swap. Two-digit years: 00-68 -> 20xx, 69-99 -> 19xx (as ``%y``).
  "2024/03/04" (year first) is always year-month-day.
- Epoch numbers (or digit strings): seconds below 1e11, milliseconds below 1e14, microseconds
  below 1e17, else nanoseconds (so seconds cover 1970-5138 and milliseconds 1973 onwards).
- Dates with a month name (RFC 2822 "Tue, 05 Mar 2024 10:00:00 +0100", "March 5, 2024") via
  ``email.utils`` (RFC 822 zones such as EST) and ``dateutil``; an unknown zone abbreviation
  ("XYZT") is an issue, not ignored.
- Naive times are local times in ``assume_tz``; a local time that does not exist or is ambiguous
  there (DST changes) is an issue.

Speed: each distinct value is parsed once; ISO 8601, plain day/month dates and epoch digit
strings are read column-wise (``_bulk_dates.py``, Arrow and pandas), the rest value by value.

``normalize_timezones`` maps a name to its IANA spelling in ``zoneinfo`` (case-insensitive).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import warnings
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dateutil import parser as dateutil_parser
from dateutil.parser import UnknownTimezoneWarning
from pytz.exceptions import InvalidTimeError  # what pandas raises for DST gaps and overlaps

from ._bulk_dates import DMY, EPOCH, ISO, NAT, arrow_strings, matches, parse_epochs, parse_iso, parse_numeric_dates
from ._unique import apply_unique, factorize, to_frame
from .text import clean_one

_TIME = r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*([AaPp][Mm])?)?"
_ZONE = r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})" + _TIME + _ZONE + r"\Z", re.I)
_YMD = re.compile(r"(\d{4})[/.](\d{1,2})[/.](\d{1,2})" + _TIME + _ZONE + r"\Z", re.I)
_EPOCH = re.compile(r"[+-]?\d{1,19}(?:\.\d+)?\Z")
_MONTH_NAME = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.I)
_RFC2822_ZONE = re.compile(r"\s(?:[+-]\d{4}|UT|GMT|[ECMP][SD]T|Z)\Z", re.I)  # zones email.utils knows
_NO_ZONE_ABBREVIATIONS = {"UTC": 0, "GMT": 0, "Z": 0}


class _Issue(Exception):
    """A value that is not a usable timestamp; the message becomes ``ts_issue``."""


def _localize(naive: pd.Timestamp, tz: str) -> pd.Timestamp:
    try:
        return naive.tz_localize(tz, ambiguous="raise", nonexistent="raise").tz_convert("UTC")
    except (InvalidTimeError, ValueError, OverflowError) as exc:
        raise _Issue(f"local time {naive} does not exist or is ambiguous in {tz}") from exc


def _from_epoch(number: int | float) -> pd.Timestamp:
    if isinstance(number, float) and not math.isfinite(number):
        raise _Issue(f"not a timestamp: {number}")
    magnitude = abs(number)
    unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
    return pd.Timestamp(number, unit=unit, tz="UTC")


def _from_fields(m: re.Match, year: int, month: int, day: int, tz: str) -> pd.Timestamp:
    hour, minute, second, fraction, ampm, zone = m.groups()[3:]
    hour = int(hour or 0)
    if ampm:
        if not 1 <= hour <= 12:
            raise _Issue(f"hour {hour} with {ampm.upper()}")
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    try:
        naive = pd.Timestamp(dt.datetime(year, month, day, hour, int(minute or 0), int(second or 0),
                                         int((fraction or "0")[:6].ljust(6, "0"))))
    except ValueError as exc:
        raise _Issue(f"invalid date or time: {exc}") from exc
    if zone is None:
        return _localize(naive, tz)
    offset = "+00:00" if zone.upper() in _NO_ZONE_ABBREVIATIONS else zone
    return naive.tz_localize(dt.timezone(pd.Timedelta(offset.replace(":", "")[:3] + "h")
                                         + pd.Timedelta(int(offset[0] + offset[-2:]), "min")))


def _from_text(text: str, *, day_first: bool, tz: str) -> pd.Timestamp:
    if _EPOCH.match(text):
        return _from_epoch(float(text) if "." in text else int(text))
    if m := _DMY.match(text):
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        if len(m[3]) == 2:
            year += 2000 if year <= 68 else 1900
        return _from_fields(m, year, *((b, a) if day_first else (a, b)), tz)
    if m := _YMD.match(text):
        return _from_fields(m, int(m[1]), int(m[2]), int(m[3]), tz)
    if not _MONTH_NAME.search(text):
        raise _Issue(f"unparseable timestamp: {text[:80]!r}")
    try:
        if not _RFC2822_ZONE.search(text):
            raise ValueError("not RFC 2822 with a zone email.utils knows")
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnknownTimezoneWarning)
            try:
                parsed = dateutil_parser.parse(text, dayfirst=day_first, tzinfos=_NO_ZONE_ABBREVIATIONS)
            except UnknownTimezoneWarning as exc:
                raise _Issue(f"unknown time zone in {text[:80]!r}") from exc
            except (ValueError, OverflowError, TypeError) as exc:
                raise _Issue(f"unparseable timestamp: {text[:80]!r}") from exc
    stamp = pd.Timestamp(parsed)
    return _localize(stamp, tz) if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _parse_one(value: Any, *, day_first: bool, tz: str) -> pd.Timestamp:
    if isinstance(value, bool):
        raise _Issue(f"not a timestamp: {value}")
    if isinstance(value, (int, np.integer)):
        return _from_epoch(int(value))
    if isinstance(value, (float, np.floating)):
        return _from_epoch(float(value))
    if isinstance(value, dt.datetime):
        stamp = pd.Timestamp(value)
        return _localize(stamp, tz) if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if isinstance(value, dt.date):
        return _localize(pd.Timestamp(value), tz)
    text = clean_one(value)
    if text is None:
        raise _Issue("missing")
    return _from_text(text, day_first=day_first, tz=tz)


def parse_timestamps(s: pd.Series, *, day_first: bool, assume_tz: str = "UTC") -> pd.DataFrame:
    """Columns ``ts`` (``datetime64[ns, UTC]``) and ``ts_issue``, aligned with ``s``."""
    ZoneInfo(assume_tz)  # a wrong setting is a configuration error: fail loudly here
    codes, uniques = factorize(s)
    nanos = np.full(len(uniques) + 1, NAT, dtype=np.int64)  # the last slot is for missing cells
    issues: list[str | None] = [None] * len(uniques) + ["missing"]
    rest = np.ones(len(uniques), dtype=bool)  # left for the per-value path
    is_text = np.fromiter((isinstance(v, str) for v in uniques), dtype=bool, count=len(uniques))
    positions = np.flatnonzero(is_text)
    texts = pc.utf8_trim_whitespace(arrow_strings(uniques[is_text].tolist()))
    if len(texts):
        iso = matches(texts, ISO)
        nanos[positions[iso]], iso_issues = parse_iso(texts.filter(pa.array(iso)), assume_tz)
        for i, issue in zip(positions[iso], iso_issues):
            issues[i] = issue
        rest[positions[iso]] = False
        for pattern, parse in ((DMY, lambda t: parse_numeric_dates(t, day_first=day_first, tz=assume_tz)),
                               (EPOCH, parse_epochs)):
            shape = matches(texts, pattern)
            if shape.any():
                read, ok = parse(texts.filter(pa.array(shape)))
                done = positions[shape][ok]
                nanos[done] = read[ok]
                rest[done] = False
    for i in np.flatnonzero(rest):
        value = uniques[i]
        try:
            nanos[i] = _parse_one(value, day_first=day_first, tz=assume_tz).as_unit("ns").value
        except _Issue as exc:
            issues[i] = str(exc)
        except (ValueError, OverflowError) as exc:  # out of the datetime64[ns] range, mostly
            issues[i] = f"timestamp out of range: {str(value)[:80]!r} ({exc})"
    ts = pd.Series(nanos[codes].view("M8[ns]"), index=s.index).dt.tz_localize("UTC")
    issue = pd.Series(np.asarray(issues, dtype=object)[codes], index=s.index, dtype=object)
    return pd.DataFrame({"ts": ts, "ts_issue": issue})


@cache
def _zone_names() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def _timezone_one(value: Any) -> tuple[str | None, str | None]:
    text = clean_one(value)
    if text is None:
        return None, "missing"
    name = _zone_names().get(text.replace(" ", "_").casefold())
    return (name, None) if name else (None, f"unknown time zone: {text[:80]}")


def normalize_timezones(s: pd.Series) -> pd.DataFrame:
    """Columns ``timezone`` (IANA name known to ``zoneinfo``) and ``timezone_issue``."""
    codes, results = apply_unique(s, _timezone_one)
    return to_frame(codes, results, {"timezone": None, "timezone_issue": None}, s.index)
