"""Compile a segment rule into one SQL predicate over `marts.customer_profiles` (alias `p`).

Only whitelisted profile fields can appear; every value and every window boundary is a bind
parameter. Windows are resolved against the run's `as_of` in Python, so the SQL has no date
arithmetic and reads the same on DuckDB and Snowflake.

Window semantics (both ends inclusive, tested at the boundary):
  within W      field >= as_of - W     (happened in the last W)
  older_than W  field <= as_of - W     (at least W ago)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import DefinitionError, Segment, parse_window

# Profile fields a rule may use, by kind. Timestamps accept windows; numbers and text values.
FIELDS: dict[str, str] = {
    "last_carted_at": "timestamp", "last_viewed_at": "timestamp", "last_order_at": "timestamp",
    "first_order_at": "timestamp", "last_engaged_at": "timestamp", "customer_created_at": "timestamp",
    "orders_count": "number", "historical_value_minor": "number", "predicted_value_minor": "number",
    "aov_minor": "number", "recency_days": "number", "p_alive": "number", "r_score": "number",
    "f_score": "number", "m_score": "number", "email_opens": "number", "email_clicks": "number",
    "rfm_segment": "text", "country": "text", "locale": "text", "top_category_1": "text",
    "email_opt_in": "boolean",
}
COMPARISONS = {"=", "!=", "<", "<=", ">", ">="}


def _field(name: str, segment: str) -> str:
    if name not in FIELDS:
        raise DefinitionError(f"segment {segment!r}: unknown field {name!r}; known: {sorted(FIELDS)}")
    return f"p.{name}"


def _condition(cond: dict[str, Any], as_of: datetime, segment: str, params: list[Any]) -> str:
    column, op = _field(cond["field"], segment), cond["op"]
    if op == "is_null":
        return f"{column} is null"
    if op == "not_null":
        return f"{column} is not null"
    if op in ("within", "older_than"):
        if FIELDS[cond["field"]] != "timestamp" or "window" not in cond:
            raise DefinitionError(f"segment {segment!r}: {op} needs a timestamp field and a window")
        params.append(as_of - parse_window(cond["window"]))
        return f"{column} {'>=' if op == 'within' else '<='} ?"
    if "field_ref" in cond:
        if op not in COMPARISONS:
            raise DefinitionError(f"segment {segment!r}: {op} cannot compare two fields")
        return f"{column} {op} {_field(cond['field_ref'], segment)}"
    if "value" not in cond:
        raise DefinitionError(f"segment {segment!r}: condition on {cond['field']} needs a value")
    if op == "in":
        values = list(cond["value"]) if isinstance(cond["value"], (list, tuple)) else [cond["value"]]
        params.extend(values)
        return f"{column} in ({', '.join('?' for _ in values)})"
    params.append(cond["value"])
    return f"{column} {op} ?"


def _rule(rule: dict[str, Any], as_of: datetime, segment: str, params: list[Any]) -> str:
    for joiner in ("all", "any"):
        if joiner in rule:
            parts = [_rule(r, as_of, segment, params) for r in rule[joiner]]
            return "(" + (" and " if joiner == "all" else " or ").join(parts) + ")"
    return _condition(rule, as_of, segment, params)


def compile_rule(segment: Segment, as_of: datetime) -> tuple[str, list[Any]]:
    """(predicate SQL, its bind parameters in order)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    params: list[Any] = []
    return _rule(segment.rule, as_of, segment.name, params), params
