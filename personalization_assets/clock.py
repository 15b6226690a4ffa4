"""The platform's "now": the wall clock, or an instant pinned in `PERSONALIZATION_NOW`.

`personalization demo --now` pins it, so the same seed and the same now give the same tables
whatever the wall clock says (segment windows, recency, "no future timestamps" all read it). Read
when called, never at import, like `settings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

NOW_ENV = "PERSONALIZATION_NOW"


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as aware UTC; a naive one is taken as UTC. ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 instant (for example 2026-12-05T09:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The pinned instant when `PERSONALIZATION_NOW` is set, else the wall clock (aware UTC)."""
    pinned = os.environ.get(NOW_ENV, "").strip()
    if pinned:
        try:
            return parse_instant(pinned)
        except ValueError as exc:
            raise ValueError(f"{NOW_ENV}: {exc}") from None
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """`2026-12-05T09:00:00Z`: the spelling the CLI prints and accepts back."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@contextmanager
def pinned(moment: datetime) -> Iterator[datetime]:
    """Within the block, `utc_now()` (in this process and the processes it starts) is `moment`."""
    before = os.environ.get(NOW_ENV)
    os.environ[NOW_ENV] = iso(moment)
    try:
        yield moment
    finally:
        if before is None:
            os.environ.pop(NOW_ENV, None)
        else:
            os.environ[NOW_ENV] = before
