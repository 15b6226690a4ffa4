"""A compiled yes/no check for the JSON Schema subset our tracking plan uses.

jsonschema walks the schema per event (~6k events/s); this turns each schema once into the source
of one straight-line Python function (nested closures ran ~7 us per event, the generated code
~1.5 us). It only answers "valid?": when it says no, or the schema uses a keyword it does not know
(Unsupported), jsonschema produces the violations, so messages stay jsonschema's. Equivalence with
jsonschema is property-tested.
"""

from __future__ import annotations

import re

IGNORED = {"$schema", "self", "description", "title"}
KNOWN = {"type", "const", "enum", "required", "properties", "items", "anyOf",
         "minimum", "minLength", "maxLength", "maxItems", "pattern"}

# JSON Schema type -> a Python expression over the value `{v}` (bool is not a number in JSON).
_TYPE_EXPR = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "null": "{v} is None",
    "boolean": "isinstance({v}, bool)",
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool))",
    "integer": "(isinstance({v}, int) and not isinstance({v}, bool)"
               " or isinstance({v}, float) and {v}.is_integer())",
}
_NUMBER = _TYPE_EXPR["number"]


class Unsupported(Exception):
    pass


class _Source:
    """Collects generated functions and the constants they refer to by name."""

    def __init__(self) -> None:
        self.defs: list[str] = []
        self.consts: dict[str, object] = {"_MISSING": object()}
        self._names = 0

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def const(self, value) -> str:
        name = self.name("_c")
        self.consts[name] = value
        return name

    def function(self, schema: dict) -> str:
        """Emit `def _fN(x)` returning schema validity; returns its name."""
        fname = self.name("_f")
        body = self.checks(schema, "x", 1)
        self.defs.append("\n".join([f"def {fname}(x):", *body, "    return True"]))
        return fname

    def checks(self, schema: dict, v: str, depth: int) -> list[str]:
        """Statements that `return False` when `v` breaks `schema`."""
        if not isinstance(schema, dict):
            raise Unsupported(type(schema).__name__)
        unknown = set(schema) - IGNORED - KNOWN
        if unknown:
            raise Unsupported(sorted(unknown))
        pad = "    " * depth
        out: list[str] = []

        def fail_if(cond: str) -> None:
            out.extend([f"{pad}if {cond}:", f"{pad}    return False"])

        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
            if not names or any(n not in _TYPE_EXPR for n in names):
                raise Unsupported(f"type {names!r}")
            fail_if("not (" + " or ".join(f"({_TYPE_EXPR[n].format(v=v)})" for n in names) + ")")
        for key in ("const", "enum"):
            if key in schema:
                values = [schema[key]] if key == "const" else schema[key]
                if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
                    raise Unsupported(key)
                fail_if(f"not (isinstance({v}, str) and {v} in {self.const(frozenset(values))})")
        if "minimum" in schema:
            fail_if(f"{_NUMBER.format(v=v)} and {v} < {self.const(schema['minimum'])}")
        if "minLength" in schema or "maxLength" in schema:
            lo, hi = self.const(schema.get("minLength", 0)), self.const(schema.get("maxLength", float("inf")))
            fail_if(f"isinstance({v}, str) and not ({lo} <= len({v}) <= {hi})")
        if "pattern" in schema:
            fail_if(f"isinstance({v}, str) and {self.const(re.compile(schema['pattern']))}.search({v}) is None")
        if "required" in schema:
            needed = " and ".join(f"{self.const(k)} in {v}" for k in schema["required"]) or "True"
            fail_if(f"isinstance({v}, dict) and not ({needed})")
        if "properties" in schema:
            inner = [f"{pad}if isinstance({v}, dict):"]
            for key, sub in schema["properties"].items():
                w = self.name("v")
                body = self.checks(sub, w, depth + 2)
                if body:
                    inner += [f"{pad}    {w} = {v}.get({self.const(key)}, _MISSING)",
                              f"{pad}    if {w} is not _MISSING:", *body]
            if len(inner) > 1:
                out += inner
        if "items" in schema:
            w = self.name("v")
            body = self.checks(schema["items"], w, depth + 2)
            if body:
                out += [f"{pad}if isinstance({v}, list):", f"{pad}    for {w} in {v}:", *body]
        if "maxItems" in schema:
            fail_if(f"isinstance({v}, list) and len({v}) > {self.const(schema['maxItems'])}")
        if "anyOf" in schema:
            alts = [self.function(s) for s in schema["anyOf"]]
            fail_if("not (" + " or ".join(f"{f}({v})" for f in alts) + ")")
        return out


def compile_schema(schema: dict):
    """A predicate equivalent to jsonschema validity for the supported keywords."""
    src = _Source()
    entry = src.function(schema)
    namespace = dict(src.consts)
    exec(compile("\n\n".join(src.defs), f"<schema {schema.get('self', {}).get('name', '?')}>", "exec"),
         namespace)
    return namespace[entry]
