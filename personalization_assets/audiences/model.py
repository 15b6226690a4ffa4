"""The audience language: YAML in the style of the segment files, parsed into a small typed model.

A definition holds no SQL and no code. Conditions (under `rule:`, nested with `all:` / `any:`):

  {trait: orders_count, op: ">=", value: 2}                 profile trait (batch-only)
  {trait: last_order_at, op: within, window: 90d}           also older_than, is_null, field_ref
  {event: product viewed, where: {category: shoes}, count: ">= 3", within: 7d}
  {event: order completed, sum: value_minor, is: ">= 50000", within: 30d}
  {event: order completed, exists: false, within: 7d}
  {event: product added, exists: true, between: [1h, 7d],
   not_followed_by: {event: order completed, within: 7d}}   the abandonment shape
  {computed: top_category, op: "=", value: shoes}           a trait declared under `traits:`

Computed traits (`traits:`): {count: EVENT}, {sum: COLUMN, of: EVENT}, {last: COLUMN, of: EVENT},
{most_frequent: COLUMN, of: EVENT}, each with optional `where:` and `within:`.

Windows are half-open in event time: `within W` at instant t counts events with
t - W < ts <= t; `between [a, b]` counts t - b < ts <= t - a. So membership only changes at an
event's time plus a declared offset, which is what lets the stream run it with timers.
Unknown top-level keys (e.g. `holdout`, read by experiments) are kept in `extra`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

from ..realtime.definitions import parse_duration

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
# Event columns a filter, sum or computed trait may name: interpolated as identifiers, so listed.
EVENT_COLUMNS = {"category": "text", "sku": "text", "currency": "text", "cart_id": "text",
                 "checkout_id": "text", "order_id": "text", "value_minor": "number"}
_EXPR = re.compile(r"^\s*(>=|<=|!=|=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
KNOWN_KEYS = {"name", "description", "priority", "refresh", "lateness", "exclusions", "sendable",
              "traits", "rule", "on_enter"}


class DefinitionError(ValueError):
    """An audience definition is invalid; the message says where and what to write instead."""


@dataclass(frozen=True)
class Window:
    """Offsets back from the instant, in seconds: events with t - start < ts <= t - end.
    `start` None means unbounded (all history)."""
    end: float = 0.0
    start: float | None = None


@dataclass(frozen=True)
class EventFilter:
    events: tuple[str, ...]  # any of these names, lower case as staged
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(frozen=True)
class TraitCond:
    trait: str
    op: str
    value: Any = None
    window: float | None = None  # seconds, for within / older_than
    ref: str | None = None  # field_ref: compare with another trait
    text: str = ""


@dataclass(frozen=True)
class EventCond:
    match: EventFilter
    measure: str  # count | sum | exists
    op: str
    value: float
    window: Window
    of: str | None = None  # the summed column
    not_followed_by: EventFilter | None = None
    follow_within: float | None = None
    text: str = ""


@dataclass(frozen=True)
class ComputedTrait:
    name: str
    kind: str  # count | sum | last | most_frequent
    match: EventFilter
    window: Window
    of: str | None = None


@dataclass(frozen=True)
class ComputedCond:
    trait: ComputedTrait
    op: str
    value: Any
    text: str = ""


@dataclass(frozen=True)
class Group:
    joiner: str  # all | any
    parts: tuple["Rule", ...]


Rule = Union[TraitCond, EventCond, ComputedCond, Group]


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    rule: Rule
    priority: int = 0
    refresh: str | None = None
    lateness: float = 120.0
    exclusions: tuple[str, ...] = ()
    sendable: bool = True
    traits: dict[str, ComputedTrait] = field(default_factory=dict)
    on_enter: dict[str, Any] | None = None  # a trigger: "send when someone enters"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. holdout

    @property
    def is_trigger(self) -> bool:
        return self.on_enter is not None


def _seconds(value: Any, where: str) -> float:
    try:
        return parse_duration(value).total_seconds()
    except ValueError:
        raise DefinitionError(f"{where}: bad duration {value!r}; write e.g. 30m, 2h, 7d") from None


def _filter(raw: Any, where: str) -> EventFilter:
    if isinstance(raw, (str, list)):
        raw = {"event": raw}
    names = raw.get("event") if isinstance(raw, dict) else None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise DefinitionError(f"{where}: needs `event: <event name>` or a list of names")
    pairs = []
    for col, vals in (raw.get("where") or {}).items():
        if col not in EVENT_COLUMNS:
            raise DefinitionError(f"{where}: cannot filter on {col!r}; use one of {sorted(EVENT_COLUMNS)}")
        vals = tuple(vals) if isinstance(vals, (list, tuple)) else (vals,)
        if not vals:
            raise DefinitionError(f"{where}: filter on {col!r} needs at least one value")
        pairs.append((col, vals))
    return EventFilter(tuple(sorted({n.strip().lower() for n in names})), tuple(sorted(pairs)))


def _window(raw: dict, where: str, required: bool = True) -> Window:
    if "within" in raw and "between" in raw:
        raise DefinitionError(f"{where}: use either `within` or `between`, not both")
    if "within" in raw:
        return Window(0.0, _seconds(raw["within"], where))
    if "between" in raw:
        pair = raw["between"]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DefinitionError(f"{where}: `between` takes two durations, e.g. [1h, 7d]")
        end, start = _seconds(pair[0], where), _seconds(pair[1], where)
        if end >= start:
            raise DefinitionError(f"{where}: `between` [{pair[0]}, {pair[1]}]: the first must be shorter")
        return Window(end, start)
    if required:
        raise DefinitionError(f"{where}: an event condition needs `within: 7d` or `between: [1h, 7d]`")
    return Window()


def _comparison(text: Any, where: str) -> tuple[str, float]:
    m = _EXPR.match(str(text))
    if not m:
        raise DefinitionError(f"{where}: {text!r} is not a comparison; write e.g. \">= 3\"")
    return m.group(1), float(m.group(2))


def _column(col: Any, where: str, numeric: bool = False) -> str:
    if col not in EVENT_COLUMNS or (numeric and EVENT_COLUMNS[col] != "number"):
        allowed = [c for c, k in EVENT_COLUMNS.items() if not numeric or k == "number"]
        raise DefinitionError(f"{where}: column {col!r} unknown; use one of {allowed}")
    return col


def _op(raw: dict, where: str) -> str:
    if raw.get("op") not in COMPARISONS:
        raise DefinitionError(f"{where}: op {raw.get('op')!r} must be one of {COMPARISONS}")
    return raw["op"]


def _event_cond(raw: dict, where: str) -> EventCond:
    allowed = {"event", "where", "count", "sum", "is", "exists", "within", "between", "not_followed_by"}
    _strict(raw, allowed, where)
    match = _filter(raw, where)
    measures = [k for k in ("count", "sum", "exists") if k in raw]
    if len(measures) != 1:
        raise DefinitionError(f"{where}: say exactly one of count: \">= 3\", sum: COLUMN, exists: true|false")
    of = None
    if measures[0] == "count":
        op, value = _comparison(raw["count"], where)
    elif measures[0] == "sum":
        of = _column(raw["sum"], where, numeric=True)
        op, value = _comparison(raw.get("is"), where)
    else:
        if not isinstance(raw["exists"], bool):
            raise DefinitionError(f"{where}: exists must be true or false")
        op, value = (">", 0.0) if raw["exists"] else ("=", 0.0)
    follow, follow_within = None, None
    if "not_followed_by" in raw:
        nf = raw["not_followed_by"]
        follow = _filter(nf, f"{where}: not_followed_by")
        if isinstance(nf, dict) and "within" in nf:
            follow_within = _seconds(nf["within"], f"{where}: not_followed_by")
    return EventCond(match, measures[0], op, value, _window(raw, where), of, follow, follow_within,
                     text=_describe(raw))


def _trait_cond(raw: dict, where: str) -> TraitCond:
    _strict(raw, {"trait", "op", "value", "window", "field_ref"}, where)
    op = raw.get("op")
    if op in ("within", "older_than"):
        if "window" not in raw:
            raise DefinitionError(f"{where}: {op} needs a window, e.g. window: 7d")
        return TraitCond(raw["trait"], op, window=_seconds(raw["window"], where), text=_describe(raw))
    if op in ("is_null", "not_null"):
        return TraitCond(raw["trait"], op, text=_describe(raw))
    if op == "in":
        vals = raw.get("value")
        return TraitCond(raw["trait"], op, tuple(vals) if isinstance(vals, list) else (vals,), text=_describe(raw))
    _op(raw, where)
    if "field_ref" in raw:
        return TraitCond(raw["trait"], op, ref=raw["field_ref"], text=_describe(raw))
    if "value" not in raw:
        raise DefinitionError(f"{where}: condition on trait {raw['trait']!r} needs a value")
    return TraitCond(raw["trait"], op, raw["value"], text=_describe(raw))


def _computed_trait(name: str, raw: Any, where: str) -> ComputedTrait:
    if not _NAME.match(str(name)) or not isinstance(raw, dict):
        raise DefinitionError(f"{where}: trait {name!r} must be a lower_snake name with a mapping")
    _strict(raw, {"count", "sum", "last", "most_frequent", "of", "where", "within", "between"}, where)
    kinds = [k for k in ("count", "sum", "last", "most_frequent") if k in raw]
    if len(kinds) != 1:
        raise DefinitionError(f"{where}: say exactly one of count, sum, last, most_frequent")
    kind = kinds[0]
    if kind == "count":
        match, of = _filter({"event": raw["count"], "where": raw.get("where")}, where), None
    else:
        of = _column(raw[kind], where, numeric=kind == "sum")
        match = _filter({"event": raw.get("of"), "where": raw.get("where")}, where)
    return ComputedTrait(name, kind, match, _window(raw, where, required=False), of)


def _describe(raw: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in raw.items()) + "}"


def _strict(raw: dict, allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise DefinitionError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _rule(raw: Any, where: str, traits: dict[str, ComputedTrait]) -> Rule:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: a rule is a mapping, got {raw!r}")
    for joiner in ("all", "any"):
        if joiner in raw:
            _strict(raw, {joiner}, where)
            if not isinstance(raw[joiner], list) or not raw[joiner]:
                raise DefinitionError(f"{where}: {joiner} needs a non-empty list")
            return Group(joiner, tuple(_rule(r, f"{where}/{joiner}[{i}]", traits)
                                       for i, r in enumerate(raw[joiner])))
    if "event" in raw:
        return _event_cond(raw, where)
    if "trait" in raw:
        return _trait_cond(raw, where)
    if "computed" in raw:
        _strict(raw, {"computed", "op", "value"}, where)
        if raw["computed"] not in traits:
            raise DefinitionError(f"{where}: computed trait {raw['computed']!r} is not declared under traits:")
        if "value" not in raw:
            raise DefinitionError(f"{where}: condition on {raw['computed']!r} needs a value")
        return ComputedCond(traits[raw["computed"]], _op(raw, where), raw["value"], text=_describe(raw))
    raise DefinitionError(f"{where}: a condition starts with event:, trait:, computed:, all: or any:")


def parse(data: Any, origin: str = "<dict>") -> Audience:
    """One definition (a YAML mapping) -> Audience, or DefinitionError naming origin and place."""
    if not isinstance(data, dict):
        raise DefinitionError(f"{origin}: an audience definition is a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(f"{origin}: name must be lower_snake_case, got {name!r}")
    where = f"{origin}: audience {name!r}"
    if "rule" not in data:
        raise DefinitionError(f"{where}: needs a rule:")
    traits = {k: _computed_trait(k, v, f"{where}: traits/{k}") for k, v in (data.get("traits") or {}).items()}
    on_enter = data.get("on_enter")
    if on_enter is not None and not (isinstance(on_enter, dict) and "send" in on_enter):
        raise DefinitionError(f"{where}: on_enter needs `send: <template>`")
    exclusions = data.get("exclusions") or []
    if not isinstance(exclusions, list) or not all(isinstance(x, str) for x in exclusions):
        raise DefinitionError(f"{where}: exclusions is a list of audience names")
    priority = data.get("priority", 0)
    if not isinstance(priority, int):
        raise DefinitionError(f"{where}: priority must be an integer")
    return Audience(
        name=name, description=" ".join(str(data.get("description", "")).split()),
        rule=_rule(data["rule"], f"{where}: rule", traits), priority=priority,
        refresh=data.get("refresh"), lateness=_seconds(data.get("lateness", "2m"), where),
        exclusions=tuple(exclusions), sendable=bool(data.get("sendable", True)), traits=traits,
        on_enter=on_enter, extra={k: v for k, v in data.items() if k not in KNOWN_KEYS})


def ordered(audiences: list[Audience]) -> list[Audience]:
    """Excluded audiences first (their membership decides others), otherwise priority, high first."""
    by_name = {a.name: a for a in audiences}
    if len(by_name) != len(audiences):
        raise DefinitionError("two audience definitions share a name")
    for a in audiences:
        unknown = set(a.exclusions) - set(by_name)
        if unknown:
            raise DefinitionError(f"audience {a.name!r} excludes unknown audiences {sorted(unknown)}")
    done: list[Audience] = []
    pending = sorted(audiences, key=lambda a: (-a.priority, a.name))
    while pending:
        ready = [a for a in pending if set(a.exclusions) <= {d.name for d in done}]
        if not ready:
            raise DefinitionError(f"exclusion cycle among {[a.name for a in pending]}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def conditions(rule: Rule):
    """Every leaf condition of a rule, in order."""
    if isinstance(rule, Group):
        for part in rule.parts:
            yield from conditions(part)
    else:
        yield rule


TRIGGERS_FILE = "triggers.yaml"  # in definitions/: the trigger engine's timers (realtime/), not an audience


def load_builtin() -> list[Audience]:
    """Every `definitions/*.yaml` shipped with the package but `triggers.yaml`, in evaluation order."""
    import yaml
    from importlib import resources

    folder = resources.files(__package__) / "definitions"
    return ordered([parse(yaml.safe_load(f.read_text()), origin=f.name)
                    for f in sorted(folder.iterdir(), key=lambda f: f.name)
                    if f.name.endswith(".yaml") and f.name != TRIGGERS_FILE])
