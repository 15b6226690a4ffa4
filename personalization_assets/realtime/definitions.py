"""Declarative trigger definitions: a trigger is data (`audiences/definitions/triggers.yaml`), not code.

The engine interprets these records; a new trigger needs no new Python, only a block in the file
(or a `TriggerDefinition(...)`), which is what lets a marketer backtest a rule before turning it on.

`when:` (optional) holds conditions on computed traits in the audience language's shape,
`{computed: NAME, op: ">=", value: 1}` (a list is all of them; `all:`/`any:` nest), parsed by
`audiences/model.py`. NAME must be declared under `traits:` of an audience definition (the
trigger's own audience file, e.g. `cart_abandonment.yaml`): only those become columns of
`marts.computed_traits` and reach the engine's trait store. They are checked at decision time;
`trait_unknown: suppress` (default) or `send` says what to do for a customer the store has no
value for yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

ID_FIELDS = ("cart_id", "checkout_id", "order_id")
MATCH_FIELDS = ID_FIELDS + ("customer",)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The packaged triggers live beside the audiences they also are (issue 22): (package, file).
PACKAGED = ("personalization_assets.audiences.definitions", "triggers.yaml")
TRAIT_UNKNOWN = ("suppress", "send")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """`90s`, `30m`, `1h`, `3d` (or seconds as a number) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"bad duration {value!r}: use a number with a unit, e.g. 90s, 30m, 1h, 3d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class TriggerDefinition:
    name: str
    start_on: frozenset[str]
    cancel_on: frozenset[str]
    group_by: tuple[str, ...] = ("cart_id", "checkout_id")
    cancel_match: tuple[str, ...] = ("cart_id", "checkout_id", "customer")
    delay: timedelta = timedelta(hours=1)
    allowed_lateness: timedelta = timedelta(minutes=2)
    customer_window: timedelta = timedelta(hours=1)
    cooldown: timedelta = timedelta(hours=24)
    check_purchase: bool = True
    description: str = ""
    when: Any = None  # an audiences.model Rule of computed-trait conditions, checked at decision time
    trait_unknown: str = "suppress"  # a customer without a stored value: suppress | send

    def __post_init__(self) -> None:
        bad = [f for f in (*self.group_by, *self.cancel_match) if f not in MATCH_FIELDS]
        if bad or not self.group_by:
            raise ValueError(f"trigger {self.name!r}: group_by/cancel_match must be non-empty and"
                             f" use only {MATCH_FIELDS}, got {bad or 'nothing'}")
        if self.trait_unknown not in TRAIT_UNKNOWN:
            raise ValueError(f"trigger {self.name!r}: trait_unknown must be one of {TRAIT_UNKNOWN},"
                             f" got {self.trait_unknown!r}")
        if self.start_on & self.cancel_on:
            raise ValueError(f"trigger {self.name!r}: an event cannot both start and cancel it:"
                             f" {sorted(self.start_on & self.cancel_on)}")

    @cached_property
    def trait_conditions(self) -> tuple:
        """The leaf `computed:` conditions of `when` (ComputedCond), in order."""
        if self.when is None:
            return ()
        from ..audiences.model import conditions

        return tuple(conditions(self.when))

    @cached_property
    def memory(self) -> timedelta:
        """How long cancel events and fired sessions are remembered (event time)."""
        return self.delay + self.allowed_lateness + self.customer_window + timedelta(days=1)


@dataclass(frozen=True)
class QuietHours:
    start: time = time(21, 0)
    end: time = time(8, 0)
    default_timezone: str = "UTC"

    def __post_init__(self) -> None:
        ZoneInfo(self.default_timezone)  # fail at load time, not at 3 a.m.


@dataclass(frozen=True)
class Limits:
    cap_messages: int = 3
    cap_window: timedelta = timedelta(days=7)
    quiet_hours: QuietHours | None = field(default_factory=QuietHours)


@dataclass(frozen=True)
class TriggerSet:
    triggers: tuple[TriggerDefinition, ...]
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        names = [t.name for t in self.triggers]
        if len(set(names)) != len(names):
            raise ValueError(f"trigger names must be unique: {names}")

    def get(self, name: str) -> TriggerDefinition:
        for t in self.triggers:
            if t.name == name:
                return t
        raise KeyError(f"no trigger named {name!r}; known: {[t.name for t in self.triggers]}")

    def only(self, *names: str) -> "TriggerSet":
        return replace(self, triggers=tuple(self.get(n) for n in names))

    def with_overrides(self, **per_trigger: dict) -> "TriggerSet":
        """E.g. `with_overrides(cart_abandonment={"delay": "2s"})` (tests, demos, the CLI)."""
        out = []
        for t in self.triggers:
            changes = {k: _coerce(k, v) for k, v in per_trigger.get(t.name, {}).items()}
            out.append(replace(t, **changes))
        return replace(self, triggers=tuple(out))


def _coerce(key: str, value):
    if key in ("delay", "allowed_lateness", "customer_window", "cooldown"):
        return parse_duration(value)
    if key in ("start_on", "cancel_on"):
        return frozenset(value)
    if key in ("group_by", "cancel_match"):
        return tuple(value)
    return value


def parse_when(raw: Any, where: str, traits: dict | None = None, name: str | None = None):
    """`when:` -> a Rule of computed-trait conditions (audiences/model.py parses it), or
    DefinitionError in one line naming the trigger and the condition. `traits`: the computed
    traits that may be named, by name (default: those the packaged audience definitions declare,
    i.e. the columns of `marts.computed_traits`; then a trigger `name` that is also a packaged
    audience must hold the same conditions in its rule)."""
    from ..audiences.model import ComputedCond, DefinitionError, _rule, conditions

    if raw is None:
        return None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise DefinitionError(f"{where}: when is a non-empty list of conditions, e.g."
                              f" [{{computed: views_7d, op: \">=\", value: 3}}]")
    packaged = traits is None
    if packaged:
        traits = declared_trait_index()
    rule = _rule({"all": raw}, f"{where}: when", traits)
    for leaf in conditions(rule):
        if not isinstance(leaf, ComputedCond):
            raise DefinitionError(f"{where}: when: {leaf.text}: only computed: conditions are checked at"
                                  " decision time (events belong in start_on/cancel_on, profile traits in"
                                  " the trigger's audience)")
    if packaged and name is not None:
        _in_audience(rule, name, where)
    return rule


def _in_audience(rule, name: str, where: str) -> None:
    """A trigger that is also a packaged audience (on_enter) must carry its `when:` conditions in
    that audience's rule too, so the warehouse audience, its stream compilation and the
    equivalence check evaluate the condition the engine checks."""
    from ..audiences.model import ComputedCond, DefinitionError, conditions, load_builtin

    audience = next((a for a in load_builtin() if a.name == name), None)
    if audience is None:
        return
    held = [(c.trait, c.op, c.value) for c in conditions(audience.rule) if isinstance(c, ComputedCond)]
    for leaf in conditions(rule):
        if (leaf.trait, leaf.op, leaf.value) not in held:
            raise DefinitionError(f"{where}: when: {leaf.text} is not in the rule of audience {name!r}"
                                  f" ({name}.yaml); add it there so both compilations check it too")


def declared_trait_index() -> dict:
    """Every computed trait the packaged audience definitions declare, by name."""
    from ..audiences.model import load_builtin
    from ..audiences.traits import declared_traits

    return declared_traits(load_builtin())


def _trigger(raw: dict, traits: dict | None = None) -> TriggerDefinition:
    raw = dict(raw)
    try:
        name = raw.pop("name")
        raw.pop("holdout", None)  # an experiment's holdout: read by experiments/holdouts.py
        when = parse_when(raw.pop("when", None), f"trigger {name!r}", traits, name)
        return TriggerDefinition(name=name, when=when, **{k: _coerce(k, v) for k, v in raw.items()})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad trigger definition {raw!r}: {exc}") from exc


def _hhmm(value: str) -> time:
    return time.fromisoformat(str(value))


def parse_trigger_set(doc: dict, traits: dict | None = None) -> TriggerSet:
    """`traits`: the computed traits `when:` may name (default: the packaged audiences' own)."""
    limits_raw = doc.get("limits") or {}
    cap = limits_raw.get("frequency_cap") or {}
    quiet = limits_raw.get("quiet_hours")
    limits = Limits(
        cap_messages=int(cap.get("max_messages", 3)),
        cap_window=parse_duration(cap.get("per", "7d")),
        quiet_hours=None if quiet is None else QuietHours(
            _hhmm(quiet.get("start", "21:00")), _hhmm(quiet.get("end", "08:00")),
            quiet.get("default_timezone", "UTC")),
    )
    return TriggerSet(tuple(_trigger(t, traits) for t in doc.get("triggers") or []), limits)


def load_trigger_set(path: str | Path | None = None, traits: dict | None = None) -> TriggerSet:
    """The triggers in `path`, or the packaged defaults (`audiences/definitions/triggers.yaml`)."""
    if path is None:
        text = resources.files(PACKAGED[0]).joinpath(PACKAGED[1]).read_text()
    else:
        text = Path(path).read_text()
    return parse_trigger_set(yaml.safe_load(text) or {}, traits)
