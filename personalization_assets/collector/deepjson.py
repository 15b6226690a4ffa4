"""Read a JSON body whose parts nest deeper than the parser allows, keeping every other part.

orjson refuses a document nested more than 1024 levels, and so a whole batch would be refused
(400) for one event nested that deep: the client drops all its events, the good ones too. When
the parser says "too deep", `loads_tolerant` splits the document at its top levels (the body, its
`batch` or `events` array, each event, each event field) without parsing, parses each part on its
own, and puts a `TooDeep` in place of a part that is still too deep. The caller quarantines the
event holding it, with its reason, and takes the rest. Any other syntax error is still an error.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import orjson

# A JSON string (escapes included) or one structural character; everything else between them
# (numbers, literals, whitespace) is left to the parser of each part.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
SPLIT_LEVELS = 4  # body -> batch -> event -> field: deeper than that a part stays TooDeep


class TooDeep:
    """A JSON value nested too deeply to parse, in place of its value; `size` is its length in bytes."""

    __slots__ = ("size",)

    def __init__(self, text: bytes) -> None:
        self.size = len(text)

    def __repr__(self) -> str:
        return f"<TooDeep {self.size} bytes>"


class DeepError(Exception):
    """Raised by a part loader when the part is nested too deeply for it."""


class InvalidJSON(ValueError):
    """The body is not JSON (a syntax error somewhere, not depth)."""


def orjson_loads(data: bytes) -> Any:
    """The default part loader: orjson, with its depth error told apart from other errors."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise DeepError(str(exc)) from None
        raise InvalidJSON(str(exc)) from None


def loads_tolerant(data: bytes, load: Callable[[bytes], Any] = orjson_loads, levels: int = SPLIT_LEVELS) -> Any:
    """`load(data)`, or, when that raises DeepError, the document rebuilt from its parts with
    TooDeep in place of each part still too deep within `levels` splits. Raises InvalidJSON."""
    try:
        return load(data)
    except DeepError:
        pass
    data = data.strip()
    if levels <= 0 or data[:1] not in (b"{", b"["):
        return TooDeep(data)
    parts = _children(data)
    if data[:1] == b"[":
        return [loads_tolerant(value, load, levels - 1) for _, value in parts]
    out = {}
    for key, value in parts:
        name = orjson_loads(key)
        if not isinstance(name, str):
            raise InvalidJSON("object keys must be strings")
        out[name] = loads_tolerant(value, load, levels - 1)
    return out


def _children(data: bytes) -> list[tuple[bytes | None, bytes]]:
    """(key text or None, value text) of each member of the object or array `data`, found by
    scanning for strings and brackets only (iterative: any depth). Raises InvalidJSON."""
    is_object = data[:1] == b"{"
    close = b"}" if is_object else b"]"
    depth, start, key = 0, 1, None
    out: list[tuple[bytes | None, bytes]] = []

    def member(end: int) -> None:
        value = data[start:end].strip()
        if not value or (is_object and key is None):
            raise InvalidJSON("a member is missing its key or value")
        out.append((key, value))

    for match in _TOKEN.finditer(data, 1):
        token = match.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            if depth:
                depth -= 1
                continue
            if token != close or data[match.end():].strip():
                raise InvalidJSON("unbalanced brackets")
            if out or key is not None or data[start:match.start()].strip():
                member(match.start())
            return out
        elif depth:
            continue
        elif token == b":":
            if not is_object or key is not None:
                raise InvalidJSON("unexpected ':'")
            key, start = data[start:match.start()].strip(), match.end()
        else:  # ","
            member(match.start())
            key, start = None, match.end()
    raise InvalidJSON("unterminated document")


def holds_too_deep(value: Any, levels: int = SPLIT_LEVELS + 1) -> bool:
    """Whether `value` holds a TooDeep within the levels where loads_tolerant puts them."""
    if isinstance(value, TooDeep):
        return True
    if levels <= 0:
        return False
    if isinstance(value, dict):
        return any(holds_too_deep(v, levels - 1) for v in value.values())
    if isinstance(value, list):
        return any(holds_too_deep(v, levels - 1) for v in value)
    return False
