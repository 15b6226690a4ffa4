"""The event bus contract shared by the collector, the raw events asset and the trigger consumers.

An offset is a positive int that only grows in commit order, so a consumer that stores "the last
offset I processed" never misses a record that commits later with a smaller number. Offsets need
not be dense (the Redis implementation derives them from stream ids).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class BusRecord:
    offset: int
    message_id: str
    received_at: datetime
    event: dict


@dataclass(frozen=True)
class Appended:
    """Result of appending one event: its offset, and whether it was a duplicate of a stored one
    (then `offset` is the offset of the record stored first)."""

    offset: int
    duplicate: bool


@runtime_checkable
class EventBus(Protocol):
    def append(self, events: Sequence[dict]) -> list[int]:
        """Durable when it returns; an event whose messageId was stored within the dedup window is
        not stored again and its entry is the offset of the first copy."""
        ...

    def append_detailed(self, events: Sequence[dict]) -> list[Appended]: ...

    def read(self, after_offset: int, limit: int = 1000) -> list[BusRecord]: ...

    def read_group(
        self, group: str, consumer: str, limit: int = 1000, block_ms: int = 0
    ) -> list[BusRecord]:
        """Records after the group's committed position that are not yet acknowledged."""
        ...

    def ack(self, group: str, offsets: Sequence[int]) -> None: ...

    def last_offset(self) -> int: ...

    def close(self) -> None:
        """Release the connection and any background thread; `with open_bus(url) as bus:` calls it."""
        ...

    def __enter__(self) -> "EventBus": ...

    def __exit__(self, *exc) -> None: ...


DEFAULT_DEDUP_WINDOW_S = 24 * 3600


def message_id_of(event: dict) -> str:
    """The event's messageId; events without one get a fresh id (they cannot be deduplicated)."""
    mid = event.get("messageId")
    if isinstance(mid, str) and mid:
        return mid
    return f"bus-{uuid.uuid4()}"
