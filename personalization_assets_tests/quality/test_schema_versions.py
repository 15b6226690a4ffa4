"""Schema files vs the registry of published versions, and the breaking-change comparator."""

import copy

import pytest

from personalization_assets.schemas import registry as reg

import json


def _published():
    return json.loads(reg.REGISTRY.read_text())["schemas"]


def test_every_schema_is_published_and_unchanged_or_properly_bumped():
    published = _published()
    current = reg.load_schemas()
    assert set(current) == set(published), "register new schemas in events/registry.json"
    problems = []
    for name, doc in current.items():
        last = published[name][-1]
        if doc["self"]["version"] == last["version"]:
            if reg.fingerprint(doc) != last["fingerprint"]:
                problems.append(f"{name}: schema changed without a version bump")
        else:
            problems += reg.version_problems(name, last["version"], last["schema"], doc)
    assert not problems, problems


def test_registry_fingerprints_match_frozen_copies():
    for name, versions in _published().items():
        for v in versions:
            assert reg.fingerprint(v["schema"]) == v["fingerprint"], name


BASE = {
    "self": {"name": "x", "version": "1-0-0"},
    "type": "object",
    "required": ["a"],
    "properties": {
        "a": {"type": "string"},
        "n": {"type": ["number", "null"], "minimum": 0},
        "kind": {"enum": ["x", "y"]},
        "items": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "integer"}}}},
    },
}


def _edit(fn):
    new = copy.deepcopy(BASE)
    fn(new)
    return new


@pytest.mark.parametrize("label,edit", [
    ("removed property", lambda s: s["properties"].pop("n")),
    ("new required", lambda s: s["required"].append("n")),
    ("narrowed type", lambda s: s["properties"]["n"].update(type="number")),
    ("narrowed enum", lambda s: s["properties"]["kind"].update(enum=["x"])),
    ("tighter minimum", lambda s: s["properties"]["n"].update(minimum=1)),
    ("nested narrowed", lambda s: s["properties"]["items"]["items"]["properties"]["q"].update(type="boolean")),
    ("closed object", lambda s: s.update(additionalProperties=False)),
])
def test_breaking_changes_detected(label, edit):
    assert reg.breaking_changes(BASE, _edit(edit)), label


@pytest.mark.parametrize("label,edit", [
    ("identical", lambda s: None),
    ("widened type", lambda s: s["properties"]["a"].update(type=["string", "null"])),
    ("widened enum", lambda s: s["properties"]["kind"].update(enum=["x", "y", "z"])),
    ("dropped requirement", lambda s: s.update(required=[])),
    ("looser minimum", lambda s: s["properties"]["n"].update(minimum=-5)),
    ("integer to number", lambda s: s["properties"]["items"]["items"]["properties"]["q"].update(type="number")),
    ("description", lambda s: s.update(description="docs only")),
])
def test_compatible_changes_not_flagged(label, edit):
    assert reg.breaking_changes(BASE, _edit(edit)) == [], label


def _versioned(edit, version):
    new = _edit(edit)
    new["self"]["version"] = version
    return new


def test_version_rules():
    drop = lambda s: s["properties"].pop("n")  # noqa: E731
    widen = lambda s: s["properties"]["kind"].update(enum=["x", "y", "z"])  # noqa: E731
    assert reg.version_problems("x", "1-0-0", BASE, _versioned(drop, "1-0-0"))  # no bump
    assert reg.version_problems("x", "1-0-0", BASE, _versioned(drop, "1-0-1"))  # breaking needs MODEL
    assert reg.version_problems("x", "1-0-0", BASE, _versioned(drop, "2-0-0")) == []
    assert reg.version_problems("x", "1-0-0", BASE, _versioned(widen, "1-0-1")) == []
    assert reg.version_problems("x", "1-0-0", BASE, _versioned(widen, "1-0-0"))
    assert reg.version_problems("x", "1-0-0", BASE, copy.deepcopy(BASE)) == []


def test_fingerprint_ignores_version_and_key_order():
    a = copy.deepcopy(BASE)
    b = json.loads(json.dumps(dict(reversed(list(BASE.items())))))
    b["self"]["version"] = "9-9-9"
    assert reg.fingerprint(a) == reg.fingerprint(b)
    assert reg.fingerprint(a) != reg.fingerprint(_edit(lambda s: s.update(required=[])))
