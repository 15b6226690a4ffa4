"""Money: exact amounts in ISO 4217 minor units, and conversion to a reporting currency.

- ``to_minor``: the amount as an exact ``Decimal`` times 10**minor_units (JPY 0, EUR 2, BHD 3),
  rounded half to even (banker's rounding, the usual rule for money) when the source has more
  decimals than the currency; ``excess_decimals="issue"`` makes that an issue instead. Only plain
  decimals with "." are read: "1,234.50" or "1.234,50" is an issue, never a guess.
- ``convert``: ``amount_minor`` at the rate of the order's UTC date from the dated seed table
  ``seeds/fx_rates.csv`` (monthly, see seeds/SOURCE.md). The rate used is the latest one on or
  before that date, at most ``FxRates.max_staleness`` (31 days) old; none -> ``fx_issue``
  "no FX rate for XXX on YYYY-MM-DD" and a missing amount, never a zero. Exact rational
  arithmetic (the rates are exact decimals), rounded half to even once, at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, DecimalException
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from iso4217 import Currency

from ._seeds import read_seed
from ._unique import apply_unique_pairs, is_missing, to_frame

INT64_MAX = 2**63 - 1
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?\Z")


class NotAnAmount(ValueError):
    """A value that is not a usable amount; the message says why."""


@cache
def _exponents() -> dict[str, int | None]:
    return {c.code: c.exponent for c in Currency}


def currency_code(value: Any) -> str | None:
    """The ISO 4217 code of ``value`` (trimmed, upper-cased) or None when it is not one."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if code in _exponents() else None


def minor_units(currency: str) -> int:
    """Decimal places of ``currency`` per ISO 4217 (EUR 2, JPY 0, BHD 3, CLF 4).

    Raises ValueError for an unknown code or one without minor units (XAU, XXX, ...).
    """
    code = currency_code(currency)
    if code is None:
        raise ValueError(f"unknown ISO 4217 currency: {currency!r}")
    exponent = _exponents()[code]
    if exponent is None:
        raise ValueError(f"{code} has no minor unit in ISO 4217 (N.A.): it is not money for orders")
    return exponent


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or is_missing(value):
        raise NotAnAmount("missing amount" if not isinstance(value, bool) else f"not a number: {value}")
    if isinstance(value, (int, np.integer)):
        return Decimal(int(value))
    if isinstance(value, (float, np.floating)):
        number = Decimal(repr(float(value)))
    elif isinstance(value, Decimal):
        number = value
    else:
        text = str(value).strip()
        if not _NUMBER.match(text):
            raise NotAnAmount(f"not a number: {text[:40]!r} (plain decimals with '.' only, no thousands separators)")
        number = Decimal(text)
    if not number.is_finite():
        raise NotAnAmount(f"not a number: {value}")
    return number


def _to_minor_one(amount: Any, currency: Any, excess: str) -> tuple[int | None, str | None]:
    code = currency_code(currency)
    if code is None:
        return None, "missing currency" if is_missing(currency) else f"unknown currency: {str(currency)[:20]!r}"
    exponent = _exponents()[code]
    if exponent is None:
        return None, f"{code} has no minor unit"
    try:
        scaled = to_decimal(amount).scaleb(exponent)
        rounded = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    except NotAnAmount as exc:
        return None, str(exc)
    except DecimalException:
        return None, f"amount out of range: {str(amount)[:40]}"
    if rounded != scaled and excess == "issue":
        return None, f"more than {exponent} decimals for {code}: {amount}"
    if abs(rounded) > INT64_MAX:
        return None, f"amount out of range: {str(amount)[:40]}"
    return int(rounded), None


def to_minor(amount: pd.Series, currency: pd.Series, *,
             excess_decimals: Literal["round", "issue"] = "round") -> pd.DataFrame:
    """Columns ``amount_minor`` (Int64) and ``amount_issue``, aligned with ``amount``."""
    currency = currency if currency.index.equals(amount.index) else currency.reindex(amount.index)
    codes, results = apply_unique_pairs(amount, currency, lambda a, c: _to_minor_one(a, c, excess_decimals))
    return to_frame(codes, results, {"amount_minor": "Int64", "amount_issue": None}, amount.index)


@dataclass(frozen=True)
class FxRates:
    """A dated table of ``rate_to_eur`` (EUR value of one unit) per currency."""

    frame: pd.DataFrame
    max_staleness: pd.Timedelta = pd.Timedelta(days=31)
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {}
        for code, rows in self.frame.sort_values("date").groupby("currency"):
            index[code] = (rows["date"].to_numpy(dtype="datetime64[D]"),
                           [Decimal(r) for r in rows["rate_to_eur"]])
        object.__setattr__(self, "_index", index)

    @classmethod
    def load(cls, path: str | Path | None = None) -> FxRates:
        """The seed table (default ``seeds/fx_rates.csv``) or a CSV with the same columns."""
        raw = read_seed("fx_rates.csv") if path is None else pd.read_csv(path, dtype=str, keep_default_na=False)
        frame = raw.assign(date=pd.to_datetime(raw["date"], format="%Y-%m-%d"),
                           currency=raw["currency"].str.strip().str.upper())
        return cls(frame[["date", "currency", "rate_to_eur"]])

    @property
    def currencies(self) -> list[str]:
        return sorted(self._index)

    def rate(self, currency: str, day: np.datetime64) -> Decimal | None:
        """EUR per unit of ``currency`` on ``day`` (latest on or before, within max_staleness)."""
        if currency == "EUR":
            return Decimal(1)
        if currency not in self._index:
            return None
        dates, rates = self._index[currency]
        i = int(np.searchsorted(dates, day, side="right")) - 1
        if i < 0 or (day - dates[i]) > self.max_staleness.to_timedelta64():
            return None
        return rates[i]


@cache
def default_rates() -> FxRates:
    return FxRates.load()


def _days(on: pd.Series) -> pd.Series:
    """UTC calendar day of each value, as days since 1970-01-01 (Int64; NA when missing or unreadable)."""
    if isinstance(on.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(on.dtype):
        stamps = pd.to_datetime(on, utc=True)
    else:
        stamps = pd.to_datetime(on.astype(object).map(lambda v: str(v) if not is_missing(v) else None),
                                utc=True, errors="coerce", format="ISO8601")
    days = stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[D]")
    return pd.Series(pd.array(days.astype(np.int64), dtype="Int64"), index=on.index).mask(np.isnat(days))


def _factor(currency: Any, day: int | None, to: str, rates: FxRates) -> Fraction | str:
    """Multiplier from minor units of ``currency`` to minor units of ``to``, or the issue."""
    code = currency_code(currency)
    if code is None or _exponents()[code] is None:
        return f"no FX rate for {str(currency)[:20]}" if not is_missing(currency) else "missing currency"
    if code == to:
        return Fraction(1)
    if day is None:
        return "no date for the FX rate"
    date = np.datetime64(int(day), "D")
    source, target = rates.rate(code, date), rates.rate(to, date)
    if source is None or target is None:
        return f"no FX rate for {code if source is None else to} on {date}"
    return _ratio(source, target, minor_units(to) - _exponents()[code])


@lru_cache(maxsize=100_000)
def _ratio(source: Decimal, target: Decimal, shift: int) -> Fraction:
    """Exact minor-unit multiplier; rates repeat for a whole month, so this is computed rarely."""
    return Fraction(source) / Fraction(target) * Fraction(10) ** shift


def convert(amount_minor: pd.Series, currency: pd.Series, on: pd.Series, to: str = "EUR", *,
            rates: FxRates | None = None) -> pd.DataFrame:
    """Columns ``reporting_minor`` (Int64, minor units of ``to``) and ``fx_issue``, aligned with ``amount_minor``."""
    to = to.strip().upper()
    minor_units(to)  # an unknown reporting currency is a configuration error
    rates = rates or default_rates()
    currency = currency.reindex(amount_minor.index) if not currency.index.equals(amount_minor.index) else currency
    on = on.reindex(amount_minor.index) if not on.index.equals(amount_minor.index) else on
    pair_codes, factors = apply_unique_pairs(currency, _days(on), lambda c, d: _factor(c, d, to, rates))
    a, amount_issues = _integers(amount_minor)
    issue_of = np.array([f if isinstance(f, str) else None for f in factors] or [None], dtype=object)
    issues = issue_of[pair_codes]
    issues = np.where(issues == None, amount_issues, issues)  # noqa: E711 (elementwise)
    ok = issues == None  # noqa: E711
    values = np.zeros(len(a), dtype=np.int64)
    scaled, overflow = _scale(a[ok], pair_codes[ok], [f if isinstance(f, Fraction) else Fraction(0) for f in factors])
    values[ok] = scaled
    rows = np.flatnonzero(ok)[overflow]
    issues[rows] = f"converted amount does not fit Int64 minor units of {to}"
    ok[rows] = False
    return pd.DataFrame({"reporting_minor": pd.arrays.IntegerArray(values, ~ok),
                         "fx_issue": issues}, index=amount_minor.index)


def _integers(amount_minor: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 amounts (0 where unusable) and the issue of each unusable one."""
    try:
        amounts = pd.array(amount_minor, dtype="Int64")
        issues = np.where(np.asarray(amounts.isna()), "missing amount", None).astype(object)
        return amounts.to_numpy(dtype=np.int64, na_value=0), issues
    except (TypeError, ValueError, OverflowError):  # not all whole numbers: look at each value
        values, issues = np.zeros(len(amount_minor), dtype=np.int64), np.full(len(amount_minor), None, dtype=object)
        for i, value in enumerate(amount_minor.to_numpy(dtype=object)):
            if is_missing(value):
                issues[i] = "missing amount"
            elif isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, bool) \
                    and float(value).is_integer() and abs(int(value)) <= INT64_MAX:
                values[i] = int(value)
            else:
                issues[i] = f"not a whole number of minor units: {str(value)[:40]}"
        return values, issues


def _round_half_even(q, r, den):
    """q + r/den (0 <= r < den) rounded half to even."""
    return q + ((r > den - r) | ((r == den - r) & (q % 2 != 0)))


def _scale(a: np.ndarray, codes: np.ndarray, factors: list[Fraction]) -> tuple[np.ndarray, np.ndarray]:
    """round_half_even(a * factors[code]) per row, exactly: int64 where it cannot overflow, else Python
    ints; also the mask of results too large for int64."""
    num = np.array([f.numerator if f.numerator <= INT64_MAX else 0 for f in factors] or [0], dtype=np.int64)
    den = np.array([f.denominator if f.denominator <= INT64_MAX else 0 for f in factors] or [1], dtype=np.int64)
    row_num, row_den = num[codes], den[codes]
    fast = (row_num > 0) & (row_den > 0) & (a > -INT64_MAX) & (np.abs(a) <= INT64_MAX // np.maximum(row_num, 1))
    out = np.zeros(len(a), dtype=np.int64)
    overflow = np.zeros(len(a), dtype=bool)
    q, r = np.divmod(a[fast] * row_num[fast], row_den[fast])
    out[fast] = _round_half_even(q, r, row_den[fast])
    for i in np.flatnonzero(~fast):
        factor = factors[codes[i]]
        q, r = divmod(int(a[i]) * factor.numerator, factor.denominator)
        result = _round_half_even(q, r, factor.denominator)
        if abs(result) > INT64_MAX:
            overflow[i] = True
        else:
            out[i] = result
    return out, overflow
