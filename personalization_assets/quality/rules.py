"""Business rules of the staging tables, in one place: each is named, described, declares the columns
it reads and is a vectorized predicate (True = the row passes).

`apply_order_rules` and `apply_customer_rules` split a staged frame into valid rows and rejections
(`record_id, rule, message, raw_payload`), one rejection per rejected row: the first rule it fails,
in list order. They never raise on malformed input: a missing column or a rule that cannot be
evaluated rejects the rows it could not clear, with a message saying so.

Amounts are integer minor units. An order's total may differ from the sum of its line totals by at
most one minor unit per line (each line total may have been rounded once in the source).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import iso4217
import numpy as np
import pandas as pd

from ..normalize.email import validated

CLOCK_SKEW = timedelta(minutes=5)
# XXX ("no currency") and XTS (testing) are ISO 4217 codes, but never the currency of an order.
ISO_4217 = frozenset(c.code for c in iso4217.Currency) - {"XXX", "XTS"}
REJECTION_COLUMNS = ["record_id", "rule", "message", "raw_payload"]
ROUNDING_MINOR_PER_LINE = 1


@dataclass(frozen=True)
class RuleContext:
    now: datetime
    known_customer_ids: frozenset[str] = frozenset()
    known_statuses: frozenset[str] = frozenset()
    # facts of each order's lines, aligned with the rows of the orders frame
    first_bad_line: np.ndarray | None = None  # position in `lines` of its first failing line, or -1
    line_total_sum: np.ndarray | None = None  # sum of line_total_minor of its passing lines
    line_count: np.ndarray | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    columns: tuple[str, ...]
    passes: Callable[[pd.DataFrame, RuleContext], pd.Series]


@dataclass
class RuleResult:
    valid: pd.DataFrame
    rejections: pd.DataFrame


@dataclass
class OrderRuleResult:
    orders: pd.DataFrame
    lines: pd.DataFrame  # only the lines of valid orders
    rejections: pd.DataFrame  # one row per rejected order, plus one per orphan line


# -- robust column readers: malformed values read as missing, never raise ------------------------
def _text(s: pd.Series) -> pd.Series:
    """Strings stay, anything else (numbers, lists, dicts) becomes None."""
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return s.where(s.notna(), None)
    return s.map(lambda v: v if isinstance(v, str) else None)


def _number(s: pd.Series) -> pd.Series:
    """Real numbers as float; text, booleans and containers become NaN."""
    if pd.api.types.is_bool_dtype(s):
        return pd.Series(np.nan, index=s.index)
    if pd.api.types.is_numeric_dtype(s):  # numpy or nullable (Int64, Float64) dtypes
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index)
    numeric = s.map(lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)))
    return pd.to_numeric(s.where(numeric), errors="coerce").astype("float64")


def _utc(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s
    usable = s.map(lambda v: isinstance(v, (str, datetime, pd.Timestamp)))
    return pd.to_datetime(s.where(usable), utc=True, errors="coerce", format="ISO8601")


def _blank(value) -> bool:
    return isinstance(value, str) and not value.strip()


def _present(s: pd.Series) -> pd.Series:
    """Not null, and not a blank string."""
    if s.dtype != object and not isinstance(s.dtype, pd.StringDtype):
        return s.notna()
    present = s.notna().to_numpy()
    if pd.api.types.infer_dtype(s, skipna=True) == "string":  # all text: strip in numpy's C loop
        try:
            text = np.array(s.to_numpy()[present], dtype=np.dtypes.StringDType())
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so not for numpy; the slow path below
            pass
        else:
            present[present] = np.strings.str_len(np.strings.strip(text)) > 0
            return pd.Series(present, index=s.index)
    try:
        blanks = [v for v in pd.unique(s) if _blank(v)]
    except TypeError:  # unhashable values (lists, dicts)
        return s.notna() & ~s.map(_blank)
    return s.notna() & ~s.isin(blanks) if blanks else s.notna()


def _required(*columns: str) -> Callable[[pd.DataFrame, RuleContext], pd.Series]:
    def passes(df: pd.DataFrame, _ctx: RuleContext) -> pd.Series:
        ok = pd.Series(True, index=df.index)
        for c in columns:
            ok &= _present(df[c])
        return ok
    return passes


def _not_future(column: str) -> Callable[[pd.DataFrame, RuleContext], pd.Series]:
    def passes(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        ts = _utc(df[column])
        return ts.notna() & (ts <= pd.Timestamp(ctx.now) + CLOCK_SKEW)
    return passes


def _whole_number(s: pd.Series) -> pd.Series:
    n = _number(s)
    return n.notna() & np.isfinite(n) & (n == np.floor(n))


# -- the rules ------------------------------------------------------------------------------------
LINE_RULES = [
    Rule("order_lines.required", "order_id, line_no, sku, quantity, unit_price_minor and line_total_minor are required",
         ("order_id", "line_no", "sku", "quantity", "unit_price_minor", "line_total_minor"),
         _required("order_id", "line_no", "sku", "quantity", "unit_price_minor", "line_total_minor")),
    Rule("order_lines.quantity_positive", "quantity is a positive whole number", ("quantity",),
         lambda df, _: _whole_number(df["quantity"]) & (_number(df["quantity"]) > 0)),
    Rule("order_lines.amounts_non_negative", "unit price and line total are whole non-negative minor units",
         ("unit_price_minor", "line_total_minor"),
         lambda df, _: (_whole_number(df["unit_price_minor"]) & (_number(df["unit_price_minor"]) >= 0)
                        & _whole_number(df["line_total_minor"]) & (_number(df["line_total_minor"]) >= 0))),
    Rule("order_lines.unique_line_no", "an order numbers its lines once each", ("order_id", "line_no"),
         lambda df, _: ~pd.DataFrame({"o": _text(df["order_id"]), "n": _number(df["line_no"])}).duplicated()),
]

LINES_VALID = "orders.lines_valid"  # stands for the first failing line rule of the order

ORDER_RULES = [
    Rule("orders.required", "order_id, status, currency, total_minor, is_guest and created_at are required",
         ("order_id", "status", "currency", "total_minor", "is_guest", "created_at"),
         _required("order_id", "status", "currency", "total_minor", "is_guest", "created_at")),
    Rule("orders.order_id_text", "order_id is text", ("order_id",), lambda df, _: _text(df["order_id"]).notna()),
    Rule("orders.unique_order_id", "an order_id appears once (the first row is kept)", ("order_id",),
         lambda df, _: ~_text(df["order_id"]).duplicated()),
    Rule("orders.status_known", "status is in the lookup of known order statuses", ("status",),
         lambda df, ctx: _text(df["status"]).isin(ctx.known_statuses)),
    Rule("orders.currency_iso4217", "currency is an ISO 4217 code", ("currency",),
         lambda df, _: _text(df["currency"]).isin(ISO_4217)),
    Rule("orders.total_non_negative", "total is whole non-negative minor units (refunds are their own events)",
         ("total_minor",), lambda df, _: _whole_number(df["total_minor"]) & (_number(df["total_minor"]) >= 0)),
    Rule("orders.created_at_not_future", f"created_at is a time no later than now + {CLOCK_SKEW}",
         ("created_at",), _not_future("created_at")),
    Rule("orders.unknown_customer", "customer_record_id, when set, is a known customer (released when it arrives)",
         ("customer_record_id",),
         lambda df, ctx: df["customer_record_id"].isna() | _text(df["customer_record_id"]).isin(ctx.known_customer_ids)),
    Rule("orders.customer_or_guest", "an order without a customer is flagged as a guest order",
         ("customer_record_id", "is_guest"),
         lambda df, _: df["customer_record_id"].notna() | df["is_guest"].map(lambda v: v is True or v is np.True_)),
    Rule(LINES_VALID, "every line of the order passes the line rules", ("order_id",),
         lambda df, ctx: ctx.first_bad_line < 0),
    Rule("orders.total_matches_lines",
         f"total equals the sum of line totals within {ROUNDING_MINOR_PER_LINE} minor unit per line",
         ("order_id", "total_minor"),
         lambda df, ctx: _total_matches(df, ctx)),
]

CUSTOMER_RULES = [
    Rule("customers.required", "record_id, email and created_at are required", ("record_id", "email", "created_at"),
         _required("record_id", "email", "created_at")),
    Rule("customers.email_valid", "email is a syntactically valid address (email-validator, no DNS)", ("email",),
         lambda df, _: _valid_emails(df["email"])),
    Rule("customers.created_at_not_future", f"created_at is a time no later than now + {CLOCK_SKEW}",
         ("created_at",), _not_future("created_at")),
]


def _total_matches(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    tolerance = ctx.line_count * ROUNDING_MINOR_PER_LINE
    return (_number(df["total_minor"]) - ctx.line_total_sum).abs() <= tolerance


def is_valid_email(address) -> bool:
    """email-validator's verdict, syntax only (no DNS), with its defaults: the addresses we store are
    plain, so no display names or quoted local parts. Same verdict as `normalize.email`."""
    return isinstance(address, str) and validated(address)[0] is not None


def _valid_emails(s: pd.Series) -> pd.Series:
    text = _text(s)
    verdicts = {e: is_valid_email(e) for e in text.dropna().unique()}
    return text.map(verdicts).eq(True)


# -- the engine -----------------------------------------------------------------------------------
def _first_failures(frame: pd.DataFrame, rules: list[Rule], ctx: RuleContext) -> tuple[np.ndarray, dict[str, str]]:
    """Per row the name of the first failing rule (None when all pass), and why a rule could not run."""
    failed = np.full(len(frame), None, dtype=object)
    errors: dict[str, str] = {}
    for rule in rules:
        pending = pd.isna(failed)
        if not pending.any():
            break
        missing = [c for c in rule.columns if c not in frame.columns]
        if missing:
            errors[rule.name] = f"column missing: {', '.join(missing)}"
            passes = np.zeros(len(frame), dtype=bool)
        else:
            try:
                passes = pd.Series(rule.passes(frame, ctx), index=frame.index).eq(True).to_numpy()
            except Exception as exc:  # a malformed frame must quarantine its rows, not crash staging
                errors[rule.name] = f"rule could not be evaluated: {type(exc).__name__}: {str(exc)[:200]}"
                passes = np.zeros(len(frame), dtype=bool)
        failed[pending & ~passes] = rule.name
    return failed, errors


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts; a frame without columns still has its rows (to_dict would drop them)."""
    return frame.to_dict("records") if len(frame.columns) else [{} for _ in range(len(frame))]


def _payload(row: dict) -> str:
    return json.dumps(row, default=str, sort_keys=True)


def _record_id(value, payload: str) -> str:
    """The row's id, or a content hash when it has none (stable across reruns, so no duplicates)."""
    if isinstance(value, str) and value.strip():
        return value
    return "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _message(rule: Rule, row: dict, errors: dict[str, str]) -> str:
    if rule.name in errors:
        return f"{rule.description} ({errors[rule.name]})"
    shown = ", ".join(f"{c}={repr(row.get(c))[:80]}" for c in rule.columns)
    return f"{rule.description} ({shown})"


def _rejections(frame: pd.DataFrame, failed: np.ndarray, rules: list[Rule], errors: dict[str, str],
                id_column: str, extra: Callable[[dict, str], tuple[str, str, dict]] | None = None) -> pd.DataFrame:
    by_name = {r.name: r for r in rules}
    out = []
    mask = pd.notna(failed)
    for row, name in zip(_records(frame[mask]), failed[mask]):
        rule, message, payload_row = name, _message(by_name[name], row, errors), row
        if extra is not None:
            rule, message, payload_row = extra(row, name)
        payload = _payload(payload_row)
        out.append((_record_id(row.get(id_column), payload), rule, message, payload))
    return pd.DataFrame(out, columns=REJECTION_COLUMNS)


def _context(now: datetime | None, **kwargs) -> RuleContext:
    return RuleContext(now=now or datetime.now(timezone.utc), **kwargs)


def apply_customer_rules(customers: pd.DataFrame, *, now: datetime | None = None) -> RuleResult:
    """Valid staged customers and the rejections of the rest (record_id = the customer's record_id)."""
    ctx = _context(now)
    failed, errors = _first_failures(customers, CUSTOMER_RULES, ctx)
    return RuleResult(customers[pd.isna(failed)],
                      _rejections(customers, failed, CUSTOMER_RULES, errors, "record_id"))


def _ids(frame: pd.DataFrame, name: str) -> pd.Series:
    """The id column as text; blank, non-text or missing ids are None (they match nothing)."""
    if name not in frame.columns:
        return pd.Series(None, index=frame.index, dtype=object)
    ids = _text(frame[name])
    return ids.where(_present(ids), None)


def apply_order_rules(orders: pd.DataFrame, lines: pd.DataFrame, *, known_customer_ids: set[str],
                      known_statuses: set[str], now: datetime | None = None) -> OrderRuleResult:
    """Valid orders with their lines, and the rejections (record_id = order_id).

    `known_customer_ids` are in the space of `customer_record_id` (e.g. "crm:42"). An order whose
    line fails a line rule is rejected with that rule, and all its lines drop with it: never a
    partial order. Lines of no order in `orders` are rejected as `order_lines.orphan`.
    """
    line_failed, line_errors = _first_failures(lines, LINE_RULES, _context(now))
    order_ids, line_ids = _ids(orders, "order_id"), _ids(lines, "order_id")
    # one integer code per order id, shared by orders and lines (-1: no usable id)
    codes, uniques = pd.factorize(pd.concat([order_ids, line_ids], ignore_index=True))
    order_code, line_code = codes[:len(orders)], codes[len(orders):]
    n = len(uniques)
    bad, linked = pd.notna(line_failed), line_code >= 0
    first_bad = np.full(n + 1, len(lines), dtype="int64")  # slot n: orders without an id
    np.minimum.at(first_bad, line_code[bad & linked], np.flatnonzero(bad & linked))
    passing = ~bad & linked
    amounts = _number(lines["line_total_minor"]).to_numpy() if "line_total_minor" in lines.columns else np.zeros(len(lines))
    sums = np.bincount(line_code[passing], weights=amounts[passing], minlength=n + 1)
    counts = np.bincount(line_code[passing], minlength=n + 1)
    of_order = np.where(order_code >= 0, order_code, n)
    ctx = _context(now, known_customer_ids=frozenset(known_customer_ids), known_statuses=frozenset(known_statuses),
                   first_bad_line=np.where(first_bad[of_order] < len(lines), first_bad[of_order], -1),
                   line_total_sum=sums[of_order], line_count=counts[of_order])
    failed, errors = _first_failures(orders, ORDER_RULES, ctx)
    has_bad = ctx.first_bad_line >= 0
    first_bad_of = dict(zip(order_ids.to_numpy()[has_bad], ctx.first_bad_line[has_bad]))

    rejected_ids = set(order_ids[pd.notna(failed)].dropna())
    of_rejected = line_ids.isin(rejected_ids).to_numpy()
    line_rows = dict(zip(np.flatnonzero(of_rejected), _records(lines[of_rejected])))
    lines_of: dict[str, list[dict]] = {}
    for position, row in line_rows.items():
        lines_of.setdefault(line_ids.iat[position], []).append(row)

    def with_lines(row: dict, name: str) -> tuple[str, str, dict]:
        order_id = row.get("order_id")
        payload = {**row, "lines": lines_of.get(order_id, []) if isinstance(order_id, str) else []}
        if name != LINES_VALID:
            return name, _message(_by_name(name), row, errors), payload
        position = int(first_bad_of[order_id])
        line, rule = line_rows[position], _by_name(line_failed[position])
        return rule.name, f"line {line.get('line_no')}: {_message(rule, line, line_errors)}", payload

    rejections = _rejections(orders, failed, ORDER_RULES, errors, "order_id", with_lines)
    valid_code, known_code = np.zeros(n + 1, dtype=bool), np.zeros(n + 1, dtype=bool)
    valid_code[order_code[pd.isna(failed) & (order_code >= 0)]] = True
    known_code[order_code[order_code >= 0]] = True
    keep, orphan = valid_code[line_code], ~known_code[line_code]  # code -1 reads slot n: False
    orphans = pd.DataFrame(
        [(_record_id(r.get("order_id"), _payload(r)), "order_lines.orphan",
          f"line of an order that is not in this batch (order_id={str(r.get('order_id'))[:80]!r})", _payload(r))
         for r in _records(lines[orphan])], columns=REJECTION_COLUMNS)
    frames = [f for f in (rejections, orphans) if len(f)]
    all_rejections = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REJECTION_COLUMNS)
    return OrderRuleResult(orders[pd.isna(failed)], lines[keep], all_rejections)


def _by_name(name: str) -> Rule:
    return next(r for r in (*ORDER_RULES, *LINE_RULES) if r.name == name)


def rules_table() -> list[dict]:
    """Every rule with what it checks and reads, for docs and the UI."""
    return [{"rule": r.name, "description": r.description, "columns": list(r.columns)}
            for r in (*CUSTOMER_RULES, *ORDER_RULES, *LINE_RULES)]
