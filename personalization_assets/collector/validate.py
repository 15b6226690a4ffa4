"""Per-event validation: the one function the collector calls, so the rules can be swapped.

It uses the quality gate (`personalization_assets.quality.validate_event`, JSON Schemas of the
events) when that module is installed, and otherwise the minimal structural checks below, which
are the fields the Segment spec makes mandatory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .wire import EVENT_TYPES

_REQUIRED_BY_TYPE = {"track": ("event",), "group": ("groupId",), "alias": ("previousId",)}
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str


def minimal_violations(event) -> list[Violation]:
    """Structural checks (timestamps are checked where they are parsed, in enrich)."""
    if not isinstance(event, dict):
        return [Violation("event_not_object", f"event must be a JSON object, got {type(event).__name__}")]
    kind = event.get("type")
    if not isinstance(kind, str):  # a list or object here is not hashable: never look it up
        kind = None if kind is None else repr(kind)[:40]
    who = event.get("userId") or event.get("anonymousId")
    if kind in _FAST_OK and type(who) in (str, int) and _FAST_OK[kind](event) \
            and not any(type(event.get(f, _D)) not in _OBJ_OK for f in _OBJECT_FIELDS):
        return []  # the common, valid case without building any message
    out: list[Violation] = []
    if kind not in EVENT_TYPES:
        out.append(Violation("type", f"type must be one of {', '.join(EVENT_TYPES)}, got {kind!r}"))
    if kind != "alias" and not (_nonempty(event.get("userId")) or _nonempty(event.get("anonymousId"))):
        out.append(Violation("identity", "userId or anonymousId is required"))
    for field in _REQUIRED_BY_TYPE.get(kind, ()):
        if not _nonempty(event.get(field)):
            out.append(Violation(field, f"{field} is required for {kind} events"))
    for field in _OBJECT_FIELDS:
        if field in event and event[field] is not None and not isinstance(event[field], dict):
            out.append(Violation(field, f"{field} must be an object"))
    return out


_D = {}
_OBJ_OK = (dict, type(None))
_FAST_OK = {
    "track": lambda e: isinstance(e.get("event"), str) and e["event"] != "",
    "identify": lambda e: True, "page": lambda e: True, "screen": lambda e: True,
    "group": lambda e: _nonempty(e.get("groupId")),
}


def _nonempty(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != ""


@lru_cache(maxsize=1)
def _quality_validator():
    try:
        from personalization_assets.quality import validate_event  # type: ignore[attr-defined]
    except ImportError:
        return None
    return validate_event


def _as_violation(v) -> Violation:
    if isinstance(v, Violation):
        return v
    if isinstance(v, dict):
        return Violation(str(v.get("rule") or v.get("path") or "schema"), str(v.get("message", v)))
    rule = getattr(v, "rule", None) or getattr(v, "path", None)
    message = getattr(v, "message", None)
    if rule is not None or message is not None:
        return Violation(str(rule or "schema"), str(message if message is not None else v))
    return Violation("schema", str(v))


def validate(event) -> list[Violation]:
    """Violations of one (already enriched) event; empty means accept."""
    structural = minimal_violations(event)
    if structural:
        return structural
    quality = _quality_validator()
    if quality is None:
        return []
    try:
        accepted, violations = quality(event)
    except Exception as exc:  # a validator bug must quarantine the event, not fail the batch
        return [Violation("validator_error", f"{type(exc).__name__}: {exc}")]
    if accepted is not None:
        return []
    return [_as_violation(v) for v in violations] or [Violation("schema", "rejected by the quality gate")]
