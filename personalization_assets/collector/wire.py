"""Segment HTTP Tracking API wire format: body decoding, write key, size limits.

Pure functions over bytes and headers, so they are tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib

from .deepjson import DeepError, InvalidJSON, loads_tolerant, orjson_loads

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")


class WireError(Exception):
    """A request the collector answers with an error status and {"code","message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Gunzip when asked, never inflating more than `limit` bytes (a gzip bomb is a 413)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        data = raw
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=47)  # 32+15: gzip or zlib header, auto-detected
        try:
            data = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise WireError(400, "invalid_body", f"body is not valid {encoding}: {exc}") from exc
        if inflater.unconsumed_tail:
            data = data + b"x"  # more than limit+1 bytes were pending: over the limit
        elif not inflater.eof:  # e.g. the CRC/size trailer cut off: the body may be incomplete
            raise WireError(400, "invalid_body", f"{encoding} body is truncated (no end of stream)")
        elif inflater.unused_data:  # a second gzip member or trailing bytes would be ignored
            raise WireError(400, "invalid_body", f"{encoding} body has data after its end of stream"
                            " (a second gzip member?); send one member")
    else:
        raise WireError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")
    if len(data) > limit:
        raise WireError(413, "payload_too_large", f"body exceeds {limit} bytes after decompression")
    return data


# A run of 19+ digits may be an integer beyond 64 bits, which orjson reads as a float (losing it).
_LONG_DIGITS = re.compile(rb"\d{19,}")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json_object(data: bytes) -> dict:
    """The body as a JSON object. Integers beyond 64 bits stay exact Python ints, and a string with a
    lone surrogate escape ("\\ud800", a JavaScript string cut mid-emoji) is read as such: the
    collector then quarantines the one event that holds it, since the bus's JSON cannot store it.
    A part nested deeper than the parser reads (1024 levels) becomes a `TooDeep` (deepjson.py), so
    that one such event is quarantined instead of the whole batch refused."""
    try:
        body = loads_tolerant(data, _load_part)
    except InvalidJSON as exc:
        raise WireError(400, "invalid_json", f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise WireError(400, "invalid_json", "body must be a JSON object")
    return body


def _load_part(data: bytes):
    """One part of the body: orjson, or the exact reader for the rare parts orjson cannot read
    faithfully (integers beyond 64 bits, lone surrogates)."""
    try:
        value = orjson_loads(data)
    except InvalidJSON as exc:
        if "surrogate" not in str(exc):
            raise
        return _exact(data)
    if _LONG_DIGITS.search(data):  # rare: re-read exactly (orjson already vouched for the syntax)
        return _exact(data)
    return value


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is beyond the range of a double")
    return value


def _exact(data: bytes):
    """The stdlib parser, for the rare parts orjson cannot read faithfully; as strict as orjson
    otherwise (no NaN/Infinity, no number that overflows a double)."""
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:  # its limit is Python's stack, lower than orjson's: split further
        raise DeepError("nested too deeply") from None
    except ValueError as exc:
        raise InvalidJSON(str(exc)[:200]) from None


def write_key_from(authorization: str | None, body: dict) -> str | None:
    """Basic base64("KEY:"), Bearer KEY, or `writeKey` in the body, in that order."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.split(":", 1)[0] or None
        if scheme.lower() == "bearer":
            return value.strip() or None
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


def events_from(body: dict, endpoint_type: str | None) -> tuple[list, dict]:
    """The events of a request and the batch-level fields (sentAt, context) that apply to each.

    A single-event endpoint's type wins over the body's, as Segment's does.
    """
    if endpoint_type is None:
        batch = body.get("batch")
        if not isinstance(batch, list):
            raise WireError(400, "invalid_batch", 'body must have a "batch" array of events')
        shared = {k: body[k] for k in ("sentAt", "context") if k in body}
        return batch, shared
    event = {k: v for k, v in body.items() if k != "writeKey"}
    event["type"] = endpoint_type
    return [event], {}
