"""Segment definitions: small YAML files in `definitions/`, validated and ordered.

A definition names a rule over profile fields; it never holds SQL, so marketers can review it
and the compiler can guarantee bind parameters, known fields and the same SQL on every warehouse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

import jsonschema
import yaml

_WINDOW = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

CONDITION = {
    "type": "object",
    "properties": {
        "field": {"type": "string"},
        "op": {"enum": ["=", "!=", "<", "<=", ">", ">=", "in", "is_null", "not_null",
                        "within", "older_than"]},
        "value": {},
        "field_ref": {"type": "string"},
        "window": {"type": "string", "pattern": _WINDOW.pattern},
    },
    "required": ["field", "op"],
    "additionalProperties": False,
}
DEFINITION_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "description": {"type": "string", "minLength": 10},
        "priority": {"type": "integer"},
        "sendable": {"type": "boolean"},
        "refresh": {"type": "string", "pattern": r"^\S+ \S+ \S+ \S+ \S+$"},
        "exclusions": {"type": "array", "items": {"type": "string"}},
        "holdout": {"type": ["string", "number"]},  # `holdout: 10%`, read by experiments/holdouts.py
        "holdout_stratify_by": {"enum": ["rfm_segment"]},
        "rule": {"$ref": "#/$defs/rule"},
    },
    "required": ["name", "description", "priority", "refresh", "rule"],
    "additionalProperties": False,
    "$defs": {"rule": {"oneOf": [
        CONDITION,
        {"type": "object", "properties": {"all": {"type": "array", "minItems": 1,
                                                  "items": {"$ref": "#/$defs/rule"}}},
         "required": ["all"], "additionalProperties": False},
        {"type": "object", "properties": {"any": {"type": "array", "minItems": 1,
                                                  "items": {"$ref": "#/$defs/rule"}}},
         "required": ["any"], "additionalProperties": False},
    ]}},
}


class DefinitionError(ValueError):
    """A segment definition is invalid; the message names the segment and the problem."""


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    rule: dict[str, Any]
    priority: int
    refresh: str  # cron: how often the email team needs it fresh
    exclusions: tuple[str, ...] = ()
    sendable: bool = True


def parse_window(text: str) -> timedelta:
    match = _WINDOW.match(text)
    if not match:
        raise DefinitionError(f"window {text!r} must look like 15m, 2h, 7d or 4w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def from_dict(data: dict[str, Any], origin: str = "<dict>") -> Segment:
    try:
        jsonschema.validate(data, DEFINITION_SCHEMA)
    except jsonschema.ValidationError as err:
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise DefinitionError(f"{origin}: {path}: {err.message}") from None
    return Segment(name=data["name"], description=" ".join(data["description"].split()),
                   rule=data["rule"], priority=data["priority"], refresh=data["refresh"],
                   exclusions=tuple(data.get("exclusions", ())), sendable=data.get("sendable", True))


def load_builtin() -> list[Segment]:
    """Every `definitions/*.yaml` shipped with the package, in evaluation order."""
    folder = resources.files(__package__) / "definitions"
    found = [from_dict(yaml.safe_load(f.read_text()), origin=f.name)
             for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".yaml")]
    return ordered(found)


def ordered(segments: list[Segment]) -> list[Segment]:
    """Excluded segments first (their membership must exist), otherwise by priority, high first."""
    by_name = {s.name: s for s in segments}
    if len(by_name) != len(segments):
        raise DefinitionError("two segment definitions share a name")
    for s in segments:
        unknown = set(s.exclusions) - set(by_name)
        if unknown:
            raise DefinitionError(f"segment {s.name!r} excludes unknown segments {sorted(unknown)}")
    done: list[Segment] = []
    pending = sorted(segments, key=lambda s: (-s.priority, s.name))
    while pending:
        ready = [s for s in pending if set(s.exclusions) <= {d.name for d in done}]
        if not ready:
            raise DefinitionError(f"exclusion cycle among {[s.name for s in pending]}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done
