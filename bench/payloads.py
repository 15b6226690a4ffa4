"""Benchmark: personalization payloads from a built warehouse (a demo's, for example).

    personalization demo --scale 3 --data-dir /tmp/b/d --dagster-home /tmp/b/h
    python -m bench.payloads --warehouse /tmp/b/d/warehouse.duckdb [--repeat 3]

Reads the warehouse (a copy, so a running demo keeps its file) and prints, per repeat, the time of
the SQL that selects the rows, the time of the whole build, and the Python time per payload.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from personalization_assets.marts import payloads
from personalization_assets.resources.warehouse import WarehouseConnection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="a DuckDB file holding marts.customer_profiles")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(args.warehouse, copy)
        conn = WarehouseConnection(duckdb.connect(str(copy), read_only=True), "duckdb")
        for i in range(args.repeat):
            start = time.perf_counter()
            payloads._rows(conn, payloads.InputTables(), "marts.customer_profiles", "marts.segment_membership")
            sql = time.perf_counter() - start
            start = time.perf_counter()
            frame = payloads.build_payloads(conn)
            total = time.perf_counter() - start
            per = (total - sql) / max(1, len(frame)) * 1e6
            print(f"run {i + 1}: payloads={len(frame)} sql_s={sql:.2f} build_s={total:.2f} python_us_per_payload={per:.0f}")


if __name__ == "__main__":
    main()
