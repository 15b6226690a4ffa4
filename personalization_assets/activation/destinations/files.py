"""File export for bulk upload: one CSV or Parquet file per batch.

The file name is the batch key, and a file is written to a dot-name then renamed, so a retried
batch replaces its own file instead of adding a second one. Erasure rewrites every export file
without the person's rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..model import EVENTS, MIRROR, UPSERT, RowResult, SyncRow, all_ok

COLUMNS = ["idempotency_key", "op", "segment", "customer_key", "email", "payload"]


def rows_frame(rows: Sequence[SyncRow]) -> pd.DataFrame:
    return pd.DataFrame([{"idempotency_key": r.idempotency_key, "op": r.op, "segment": r.segment,
                          "customer_key": r.customer_key, "email": r.email,
                          "payload": json.dumps(r.payload, sort_keys=True, default=str)} for r in rows],
                        columns=COLUMNS)


@dataclass
class FileExport:
    directory: Path
    format: str = "csv"  # csv | parquet
    name: str = "file"
    batch_size: int = 50_000
    modes: frozenset[str] = frozenset({UPSERT, MIRROR, EVENTS})

    def __post_init__(self):
        if self.format not in ("csv", "parquet"):
            raise ValueError(f"file format must be csv or parquet, not {self.format!r}")
        self.directory = Path(self.directory)

    def _write(self, frame: pd.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name)
        if self.format == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def _read(self, path: Path) -> pd.DataFrame:
        return pd.read_csv(path, dtype=str) if self.format == "csv" else pd.read_parquet(path)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.rglob(f"*.{self.format}") if not p.name.startswith("."))

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]:
        segment = rows[0].segment if rows else "none"
        self._write(rows_frame(rows), self.directory / segment / f"{batch_key}.{self.format}")
        return all_ok(rows)

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        emails_l = {e.lower() for e in emails}
        keys = set(customer_keys)
        for path in self.files():
            frame = self._read(path)
            hit = frame["email"].fillna("").str.lower().isin(emails_l) | frame["customer_key"].isin(keys)
            if hit.any():
                self._write(frame[~hit], path)
