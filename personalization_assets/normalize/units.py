"""Weights in grams and lengths in millimetres, the one unit each is stored in.

Units are read by ``match_key`` ("KG", " kg ", "Kilograms"); factors are exact definitions
(1 lb = 453.59237 g, 1 oz = 28.349523125 g, 1 in = 25.4 mm), applied in float64. Values are
numbers or plain decimal strings; anything else, or an unknown unit, leaves the value missing
with ``unit_issue``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ._unique import apply_unique
from .money import NotAnAmount, to_decimal
from .text import key_one

GRAMS = {
    **dict.fromkeys(["mg", "milligram", "milligrams"], Decimal("0.001")),
    **dict.fromkeys(["g", "gr", "gram", "grams", "gramme", "grammes"], Decimal(1)),
    **dict.fromkeys(["kg", "kilo", "kilos", "kilogram", "kilograms"], Decimal(1000)),
    **dict.fromkeys(["t", "tonne", "tonnes"], Decimal(1_000_000)),
    **dict.fromkeys(["oz", "ounce", "ounces"], Decimal("28.349523125")),
    **dict.fromkeys(["lb", "lbs", "pound", "pounds"], Decimal("453.59237")),
}
MILLIMETRES = {
    **dict.fromkeys(["mm", "millimetre", "millimetres", "millimeter", "millimeters"], Decimal(1)),
    **dict.fromkeys(["cm", "centimetre", "centimetres", "centimeter", "centimeters"], Decimal(10)),
    **dict.fromkeys(["m", "metre", "metres", "meter", "meters"], Decimal(1000)),
    **dict.fromkeys(["in", "inch", "inches", '"'], Decimal("25.4")),
    **dict.fromkeys(["ft", "foot", "feet", "'"], Decimal("304.8")),
    **dict.fromkeys(["yd", "yard", "yards"], Decimal("914.4")),
}


def _number(value: Any) -> tuple[float, str | None]:
    try:
        return float(to_decimal(value)), None
    except NotAnAmount as exc:
        return np.nan, str(exc).replace("amount", "value")


def _factor(unit: Any, factors: dict[str, Decimal]) -> tuple[float, str | None]:
    key = key_one(unit)
    if key not in factors:
        return np.nan, "missing unit" if key is None else f"unknown unit: {str(unit)[:20]}"
    return float(factors[key]), None


def _frame(value: pd.Series, unit: pd.Series, factors: dict[str, Decimal], column: str) -> pd.DataFrame:
    """Value and unit are normalized per distinct value each, then combined in float64."""
    unit = unit if unit.index.equals(value.index) else unit.reindex(value.index)
    value_codes, numbers = apply_unique(value, _number)
    unit_codes, units = apply_unique(unit, lambda u: _factor(u, factors))
    with np.errstate(over="ignore", invalid="ignore"):
        product = np.array([n for n, _ in numbers])[value_codes] * np.array([f for f, _ in units])[unit_codes]
    issues = np.array([i for _, i in units], dtype=object)[unit_codes]
    value_issues = np.array([i for _, i in numbers], dtype=object)[value_codes]
    issues = np.where(issues == None, value_issues, issues)  # noqa: E711 (elementwise)
    too_large = np.isinf(product) & (issues == None)  # noqa: E711
    issues[too_large] = "value out of range"
    product[np.isinf(product)] = np.nan
    return pd.DataFrame({column: pd.array(product, dtype="Float64"), "unit_issue": issues}, index=value.index)


def to_grams(value: pd.Series, unit: pd.Series) -> pd.DataFrame:
    """Columns ``grams`` (Float64) and ``unit_issue``, aligned with ``value``."""
    return _frame(value, unit, GRAMS, "grams")


def to_millimetres(value: pd.Series, unit: pd.Series) -> pd.DataFrame:
    """Columns ``millimetres`` (Float64) and ``unit_issue``, aligned with ``value``."""
    return _frame(value, unit, MILLIMETRES, "millimetres")
