"""Event schema files, their SchemaVer versions and a breaking-change comparator.

The registry (events/registry.json) pins a fingerprint per published version, so an edited schema
without a version bump is caught; `breaking_changes` decides whether the bump must be a MODEL one.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent / "events"
REGISTRY = EVENTS_DIR / "registry.json"


def load_schemas() -> dict[str, dict]:
    """All event schemas by their `self.name`."""
    out = {}
    for path in sorted(EVENTS_DIR.glob("*.json")):
        if path.name == REGISTRY.name:
            continue
        doc = json.loads(path.read_text())
        out[doc["self"]["name"]] = doc
    return out


@lru_cache(maxsize=None)
def _cached() -> dict[str, dict]:
    return load_schemas()


def schema(name: str) -> dict:
    return _cached()[name]


def parse_version(version: str) -> tuple[int, int, int]:
    model, revision, addition = (int(p) for p in version.split("-"))
    return model, revision, addition


def fingerprint(doc: dict) -> str:
    """sha256 of the canonical JSON without the version, so only content changes move it."""
    body = json.loads(json.dumps(doc))
    body.get("self", {}).pop("version", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _types(node: dict) -> set[str] | None:
    t = node.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def breaking_changes(old: dict, new: dict, path: str = "$") -> list[str]:
    """Changes that can reject a payload the old schema accepted (need a MODEL bump).

    Covers removed properties, newly required fields, narrowed types/enums/consts and tightened
    numeric or length bounds; conservative rather than complete.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{path}: changed"]
    out: list[str] = []
    old_t, new_t = _types(old), _types(new)
    if new_t is not None and (old_t is None or not old_t <= new_t):
        if not (old_t and "integer" in old_t and "number" in new_t and old_t - {"integer"} <= new_t):
            out.append(f"{path}: type narrowed {sorted(old_t or ['any'])} -> {sorted(new_t)}")
    if "enum" in new and ("enum" not in old or not set(map(repr, old["enum"])) <= set(map(repr, new["enum"]))):
        out.append(f"{path}: enum narrowed")
    if "const" in new and old.get("const", object()) != new["const"]:
        out.append(f"{path}: const added or changed")
    for added in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        out.append(f"{path}.{added}: newly required")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in sorted(old_props):
        if name not in new_props:
            out.append(f"{path}.{name}: property removed")
        else:
            out.extend(breaking_changes(old_props[name], new_props[name], f"{path}.{name}"))
    for name in sorted(set(new_props) - set(old_props)):
        if new.get("additionalProperties", True) is not True or old.get("additionalProperties") is False:
            continue
        out.append(f"{path}.{name}: new constraint on a previously free property")
    for key in ("minimum", "exclusiveMinimum", "minLength", "minItems"):
        if key in new and (key not in old or new[key] > old[key]):
            out.append(f"{path}: {key} tightened")
    for key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems"):
        if key in new and (key not in old or new[key] < old[key]):
            out.append(f"{path}: {key} tightened")
    if "pattern" in new and new["pattern"] != old.get("pattern"):
        out.append(f"{path}: pattern added or changed")
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        out.append(f"{path}: additionalProperties closed")
    if "items" in new:
        out.extend(breaking_changes(old.get("items", {}), new["items"], f"{path}[]"))
    for key in ("anyOf", "allOf", "oneOf"):
        if json.dumps(old.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True) and key in new:
            out.append(f"{path}: {key} changed")
    return out


def version_problems(name: str, old_version: str, old_doc: dict, new_doc: dict) -> list[str]:
    """Why `new_doc` may not be published as its declared version after `old_doc`."""
    new_version = new_doc["self"]["version"]
    if fingerprint(old_doc) == fingerprint(new_doc):
        return [] if new_version == old_version else [f"{name}: version bumped without a change"]
    old_v, new_v = parse_version(old_version), parse_version(new_version)
    if new_v <= old_v:
        return [f"{name}: changed without a version bump (still {new_version})"]
    breaking = breaking_changes(old_doc, new_doc)
    if breaking and new_v[0] <= old_v[0]:
        return [f"{name}: breaking change needs a MODEL bump: " + "; ".join(breaking)]
    return []
