"""The places outside the warehouse that hold people, each able to erase one for good.

Every store answers `erase(ids)` (rows removed) and `remaining(ids)` (rows still there), so that
`erasure.forget` can verify them with the warehouse. The event buses (behavioural and e-mail
events, and their quarantines), the trigger guard store, the trigger ledger and checkpoint, the
provider export files in the landing folder, and the file destination's exports (through the
erasure queue). `rewrite_duckdb_file` drops the deleted bytes from the embedded warehouse.
"""

from __future__ import annotations

import contextlib

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .destinations import FileExport
from .erasure_match import Identifiers, Matcher


def _owns(ids: Identifiers):
    """payload (bytes or text) -> whether it is the person's; a substring test skips the JSON
    parse of everything that cannot be."""
    matcher, needles = Matcher(ids), sorted(ids.prefilter())

    def owns(payload) -> bool:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        low = text.lower()
        return any(n in low for n in needles) and matcher.owns(text)
    return owns


@dataclass
class BusStore:
    """One topic of an event bus (SQLite file or Redis stream)."""

    url: str
    topic: str | None = None
    name: str = ""

    def __post_init__(self):
        self.name = self.name or f"bus:{self.topic or 'events'}"

    def _open(self):
        from ..bus import open_bus

        return open_bus(self.url, topic=self.topic)

    def _run(self, method: str, ids: Identifiers) -> int:
        if self.url.startswith("sqlite:") and not Path(self.url.split("://", 1)[1].split("?")[0]).exists():
            return 0  # no bus file: nothing was ever stored there
        bus = self._open()
        try:
            return getattr(bus, method)(_owns(ids), sorted(ids.prefilter()))
        finally:
            bus.close()

    def erase(self, ids: Identifiers) -> int:
        return self._run("erase", ids)

    def remaining(self, ids: Identifiers) -> int:
        return self._run("remaining", ids)


def _guard_ids(ids: Identifiers) -> set[str]:
    return ids.user_ids | ids.customer_keys | ids.source_ids | ids.anonymous_ids


@dataclass
class GuardStore:
    path: Path
    name: str = "trigger_guard"

    def _provider(self):
        from ..realtime.guards import SqliteGuardProvider

        return SqliteGuardProvider(self.path)

    def _traits(self):
        from ..audiences.traits_store import TraitStore

        return TraitStore(self.path)  # the computed traits copied beside the guard state

    def erase(self, ids: Identifiers) -> int:
        guard = self._provider()
        try:
            removed = guard.erase(_guard_ids(ids))
        finally:
            guard.close()
        return removed + self._traits().erase(_guard_ids(ids))

    def remaining(self, ids: Identifiers) -> int:
        guard = self._provider()
        try:
            held = guard.holds(_guard_ids(ids))
        finally:
            guard.close()
        return held + self._traits().holds(_guard_ids(ids))


@dataclass
class LedgerStore:
    path: Path
    name: str = "trigger_ledger"

    def _call(self, method: str, ids: Identifiers) -> int:
        if not self.path.exists():
            return 0
        from ..realtime.ledger import Ledger

        ledger = Ledger(self.path)
        try:
            return getattr(ledger, method)(_guard_ids(ids))
        finally:
            ledger.close()

    def erase(self, ids: Identifiers) -> int:
        return self._call("erase", ids)

    def remaining(self, ids: Identifiers) -> int:
        return self._call("holds", ids)


@dataclass
class DeliveryStore:
    """The delivery outbox (recipient, rendered e-mail), its payload copy, or the holdout exposure log."""

    path: Path
    table: str  # "outbox", "delivery_payloads" or "exposures"
    name: str = "delivery"

    def _open(self):
        from ..delivery.outbox import Outbox
        from ..delivery.payloads import PayloadStore
        from ..experiments.holdouts import ExposureLog

        return {"outbox": Outbox, "delivery_payloads": PayloadStore, "exposures": ExposureLog}[self.table](self.path)

    def erase(self, ids: Identifiers) -> int:
        if not self.path.exists():
            return 0
        store = self._open()
        try:
            return store.erase(_guard_ids(ids))
        finally:
            store.close()

    def remaining(self, ids: Identifiers) -> int:
        if not self.path.exists():
            return 0
        import sqlite3

        keys = sorted(_guard_ids(ids))
        if not keys:
            return 0
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            marks = ",".join("?" * len(keys))
            where = f"customer_id in ({marks})" + (f" or customer_key in ({marks})" if self.table == "exposures" else "")
            args = keys * (2 if self.table == "exposures" else 1)
            left = conn.execute(f"select count(*) from {self.table} where {where}", args).fetchone()[0]
            if self.table == "exposures" and conn.execute(
                    "select 1 from sqlite_master where type = 'table' and name = 'send_hours'").fetchone():
                # the sender's copy of preferred send hours lives in the same file
                left += conn.execute(f"select count(*) from send_hours where customer_key in ({marks})", keys).fetchone()[0]
            return left


@dataclass
class LandingStore:
    """Provider export files; `rewritten` keeps the new checksums for the file ledger."""

    folder: Path
    name: str = "landing_files"
    rewritten: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    def erase(self, ids: Identifiers) -> int:
        from ..email_events.files import erase

        self.rewritten |= erase(self.folder, _owns(ids))
        return sum(n for *_, n in self.rewritten.values())

    def remaining(self, ids: Identifiers) -> int:
        from ..email_events.files import holds

        return holds(self.folder, _owns(ids))

    def record_loaded(self, conn) -> None:
        """A rewritten file is already loaded: its new checksum goes into `ops.email_files`, so
        the loader does not read it again (its rows are in the warehouse, minus the person's)."""
        if not self.rewritten or not conn.table_exists("ops", "email_files"):
            return
        for name, (old, new, _) in self.rewritten.items():
            conn.execute("update ops.email_files set checksum = ? where name = ? and checksum = ?", [new, name, old])


@dataclass
class LocalExports:
    """The file destination's exports (CSV and Parquet). A store of `forget`, and the `file`
    destination of the erasure queue, whose rows it then confirms."""

    directory: Path
    name: str = "file"
    batch_size: int = 50_000
    modes: frozenset[str] = frozenset()

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        for fmt in ("csv", "parquet"):
            FileExport(self.directory, format=fmt).delete(emails, customer_keys)

    def send(self, rows, batch_key):
        raise NotImplementedError("LocalExports only erases; syncs use FileExport")

    def erase(self, ids: Identifiers) -> int:
        found = self.remaining(ids)
        if found:
            self.delete(sorted(ids.kind("emails")), sorted(ids.kind("customer_keys")))
        return found

    def remaining(self, ids: Identifiers) -> int:
        """Export rows that still name the person (address or customer key)."""
        found = 0
        keys, emails = ids.kind("customer_keys"), ids.kind("emails")
        for fmt in ("csv", "parquet"):
            export = FileExport(self.directory, format=fmt)
            for path in export.files():
                frame = export._read(path)
                found += int((frame["email"].fillna("").str.lower().isin(emails) | frame["customer_key"].isin(keys)).sum())
        return found


def rewrite_duckdb_file(path: Path) -> None:
    """Copy the database into a new file and put it in place of the old one.

    DuckDB keeps deleted values in the file: a DELETE, CHECKPOINT, VACUUM, or even a rewritten
    table leaves them in blocks it has freed but not overwritten. A copy holds only live rows.
    Needs the file to itself (no other process may have it open)."""
    import duckdb

    path = Path(path)
    fresh = path.with_name(f".{path.name}.rewrite")
    for leftover in (fresh, Path(f"{fresh}.wal")):
        leftover.unlink(missing_ok=True)
    conn = duckdb.connect(str(path))
    try:
        conn.execute("checkpoint")
        source = conn.execute("select current_database()").fetchone()[0]
        conn.execute("attach ? as erasure_copy", [str(fresh)])
        conn.execute(f'copy from database "{source}" to erasure_copy')
        conn.execute("detach erasure_copy")
    finally:
        conn.close()
    copied = _version(path)
    with fresh.open("rb") as fh:
        os.fsync(fh.fileno())
    if _version(path) != copied:  # a run wrote in the moment between close and swap: keep its rows
        fresh.unlink()
        raise OSError(f"{path} changed while it was being rewritten; run forget again when no run writes it")
    os.replace(fresh, path)
    Path(f"{path}.wal").unlink(missing_ok=True)  # closed cleanly above: nothing left to replay


def _version(path: Path) -> tuple[int, int, bool]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, Path(f"{path}.wal").exists()


def local_stores(data_dir: Path, bus_url: str, email_bus_url: str, landing: Path) -> list:
    """The stores of a local deployment (the paths the CLI and the assets use)."""
    stores: list = []
    for url in (bus_url, email_bus_url):
        topic = _topic(url)
        stores += [BusStore(url, topic, name=f"bus:{topic}"), BusStore(url, f"{topic}_quarantine",
                                                                      name=f"bus:{topic}_quarantine")]
    return stores + [GuardStore(data_dir / "trigger_guard.sqlite"), LedgerStore(data_dir / "triggers.sqlite"),
                     DeliveryStore(data_dir / "outbox.sqlite", "outbox", name="delivery_outbox"),
                     DeliveryStore(data_dir / "delivery_payloads.sqlite", "delivery_payloads", name="delivery_payloads"),
                     DeliveryStore(data_dir / "exposures.sqlite", "exposures", name="delivery_exposures"),
                     LandingStore(landing), LocalExports(data_dir / "exports")]


def _topic(url: str) -> str:
    from urllib.parse import parse_qsl, urlsplit

    params = dict(parse_qsl(urlsplit(url).query))
    return params.get("table") or params.get("stream") or "events"


def leftover_bytes(path: Path, ids: Identifiers) -> int:
    """Copies of the person's own identifiers in a file's raw bytes (ASCII case ignored)."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes().lower()
    return sum(data.count(v.encode()) for v in ids.searchable())


def dagster_runs_mentioning(home: Path | None, ids: Identifiers) -> list[str]:
    """Runs whose stored events (a local instance's SQLite files) hold one of the person's
    identifiers: runs from before previews were masked. Stored metadata cannot be edited; the
    operator deletes those runs (`dagster run delete <id>`)."""
    runs = Path(home) / "history" / "runs" if home else None
    if runs is None or not runs.is_dir():
        return []
    needles = [v.encode() for v in ids.searchable()]
    found = []
    for db in sorted(runs.glob("*.db")):
        data = db.read_bytes().lower()
        if any(n in data for n in needles):
            found.append(db.name if db.stem == "index" else db.stem)  # index.db: the shared event index
    return found
