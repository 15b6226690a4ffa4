"""A tiny marts layer on in-memory DuckDB: profiles, segment membership and changes, set by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from personalization_assets.activation.http import HttpTransport
from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.leaks import no_leaked_bus_thread  # noqa: F401 - autouse: tests close their buses

from .servers import FakeClock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


class Marts:
    def __init__(self, conn: WarehouseConnection):
        self.conn = conn
        conn.execute("create schema if not exists marts")
        conn.execute("create table marts.customer_profiles (customer_key varchar, email varchar, first_name varchar, "
                     "locale varchar, country varchar, timezone varchar, rfm_segment varchar, preferred_send_hour bigint)")
        conn.execute("create table marts.segment_membership (segment varchar, customer_key varchar, since timestamptz)")
        conn.execute("create table marts.segment_changes (run_at timestamptz, segment varchar, customer_key varchar, change varchar)")

    def people(self, n: int, start: int = 0) -> list[str]:
        keys = [f"cus_{i:06d}" for i in range(start, start + n)]
        self.conn.raw.executemany("insert into marts.customer_profiles values (?, ?, ?, 'en-GB', 'GB', 'Europe/London', 'loyal', 9)",
                                  [[k, f"{k}@example.com", f"Name{k[-3:]}"] for k in keys])
        return keys

    def members(self, segment: str, keys: list[str], at: datetime = NOW) -> None:
        """Replace the segment's membership, appending entered/exited changes like `run_segments`."""
        before = set(self.conn.query("select customer_key from marts.segment_membership where segment = ?", [segment])["customer_key"])
        self.conn.execute("delete from marts.segment_membership where segment = ?", [segment])
        if keys:
            self.conn.raw.executemany("insert into marts.segment_membership values (?, ?, ?)", [[segment, k, at] for k in keys])
        changes = [[at, segment, k, "entered"] for k in sorted(set(keys) - before)]
        changes += [[at, segment, k, "exited"] for k in sorted(before - set(keys))]
        if changes:
            self.conn.raw.executemany("insert into marts.segment_changes values (?, ?, ?, ?)", changes)

    def rename(self, key: str, first_name: str) -> None:
        self.conn.execute("update marts.customer_profiles set first_name = ? where customer_key = ?", [first_name, key])


@pytest.fixture
def marts(duck) -> Marts:
    return Marts(duck)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport(clock) -> HttpTransport:
    return HttpTransport(TokenBucket(rate=100, burst=10, clock=clock, sleep=clock.sleep), timeout=5, backoff=0.1)


@pytest.fixture(autouse=True)
def erasure_keys(tmp_path, monkeypatch):
    """Erasure queue keys under the test's tmp_path, never in the repo's data dir."""
    monkeypatch.setenv("ERASURE_KEY_DIR", str(tmp_path / "erasure_keys"))
    return tmp_path / "erasure_keys"
