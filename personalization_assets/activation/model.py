"""What every destination receives and answers, and the interface they all implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

# Sync modes, as reverse-ETL tools name them.
UPSERT, MIRROR, EVENTS = "upsert", "mirror", "events"
MODES = (UPSERT, MIRROR, EVENTS)
# Operations on one row. `unsubscribe` propagates the suppression list; `delete` erases a person.
ADD, CHANGE, REMOVE, EVENT, UNSUBSCRIBE = "added", "changed", "removed", "event", "unsubscribe"


@dataclass(frozen=True)
class SyncRow:
    """One change for one person at one destination.

    `idempotency_key` is derived from (destination, segment, person, state version), so a retried
    or re-run sync sends the same key for the same change and the receiver can drop the copy.
    """

    row_key: str
    customer_key: str | None
    email: str | None
    op: str
    segment: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""


@dataclass(frozen=True)
class RowResult:
    row_key: str
    ok: bool
    error: str | None = None
    retryable: bool = False


class Destination(Protocol):
    """A place rows are delivered to. `send` never raises for a row-level refusal: it answers one
    RowResult per row. It raises only when the whole batch could not be attempted (then every row
    of the batch counts as failed and retryable)."""

    name: str
    batch_size: int
    modes: frozenset[str]

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]: ...

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        """Erase these people at the destination (GDPR). Raises when it could not."""


class DeliveryError(RuntimeError):
    """A batch could not be delivered (after the transport's own retries)."""

    def __init__(self, message: str, retryable: bool = True, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def all_ok(rows: Sequence[SyncRow]) -> list[RowResult]:
    return [RowResult(r.row_key, True) for r in rows]


def all_failed(rows: Sequence[SyncRow], error: str, retryable: bool) -> list[RowResult]:
    return [RowResult(r.row_key, False, error, retryable) for r in rows]
