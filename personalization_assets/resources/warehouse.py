"""The `warehouse` resource: plain SQL on DuckDB locally and on Snowflake in production.

Assets that rebuild a whole table return a DataFrame and let the IO manager store it. Assets that
need more than that (incremental upserts with their cursor in one transaction, segment SQL that
must run inside the warehouse) use this resource. Both implementations yield the same plain
connection, `personalization_assets.warehouse.WarehouseConnection` (re-exported here for the other
resources); code outside the Dagster shells imports it from there.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ..warehouse import WarehouseConnection, connect_duckdb, identifier
from .snowflake_session import StepSession, current_step_session

__all__ = ["DuckDBWarehouse", "SnowflakeWarehouse", "Warehouse", "WarehouseConnection", "identifier",
           "duckdb_memory_limit"]

# DuckDB's own default buffer pool is 80% of RAM, and it lives in the Dagster step's process: a
# big mart would make the worker as large as the machine. Both settings read at connect time.
MEMORY_LIMIT_ENV = "WAREHOUSE_DUCKDB_MEMORY_LIMIT"  # e.g. "1.5GB", "800MB"
TEMP_DIRECTORY_ENV = "WAREHOUSE_DUCKDB_TEMP_DIRECTORY"  # where DuckDB spills (default: <database>.tmp)
DEFAULT_MEMORY_SHARE = 0.25  # of physical memory ...
# ... at most, so that a step stays within its 2 GB budget: each step starts from ~0.7 GB, and at 1M
# customers a 1.5 GB cap put every warehouse-heavy step at 2.1-2.3 GB; 768 MB kept them at or under
# 1.6 GB, spilling more, no slower (README, "bench.scale")
DEFAULT_MEMORY_CAP_MB = 768
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|KIB|MB|MIB|GB|GIB|TB|TIB)?\s*$", re.IGNORECASE)


def _physical_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a small machine
        return 4096


def duckdb_memory_limit(configured: str | None = None) -> str:
    """The DuckDB `memory_limit`: `configured`, else $WAREHOUSE_DUCKDB_MEMORY_LIMIT, else a quarter
    of physical memory capped at 768 MB (DuckDB spills sorts, joins and aggregates beyond it)."""
    value = configured or os.environ.get(MEMORY_LIMIT_ENV)
    if value:
        if not _SIZE.match(value):
            raise ValueError(f"DuckDB memory limit {value!r} (from {'config' if configured else MEMORY_LIMIT_ENV}) "
                             "is not a size: write it like '1.5GB' or '800MB'")
        return value.strip()
    return f"{max(256, min(DEFAULT_MEMORY_CAP_MB, int(_physical_memory_mb() * DEFAULT_MEMORY_SHARE)))}MB"


@contextlib.contextmanager
def connect_limited(database: str, memory_limit: str | None = None,
                    temp_directory: str | None = None) -> Iterator[WarehouseConnection]:
    """`connect_duckdb` with the memory limit and spill directory set on the connection."""
    with connect_duckdb(database) as conn:
        conn.execute(f"set memory_limit = '{duckdb_memory_limit(memory_limit)}'")  # validated above
        spill = temp_directory or os.environ.get(TEMP_DIRECTORY_ENV)
        if spill:
            conn.execute("set temp_directory = ?", [spill])
        yield conn


class Warehouse(dg.ConfigurableResource):
    """What assets annotate: either implementation below, chosen by the deployment."""

    def connect(self) -> contextlib.AbstractContextManager[WarehouseConnection]:
        raise NotImplementedError("use DuckDBWarehouse or SnowflakeWarehouse")


class DuckDBWarehouse(Warehouse):
    """Embedded DuckDB file: the default for `dagster dev` and the demo.

    `memory_limit` / `temp_directory` bound DuckDB's memory in the step's process; unset, they
    come from $WAREHOUSE_DUCKDB_MEMORY_LIMIT / $WAREHOUSE_DUCKDB_TEMP_DIRECTORY, else a quarter
    of physical memory capped at 768 MB, and DuckDB's default spill directory (`<database>.tmp`)."""

    database: str  # path of the DuckDB file
    memory_limit: str | None = None
    temp_directory: str | None = None

    def connect(self) -> contextlib.AbstractContextManager[WarehouseConnection]:
        return connect_limited(self.database, self.memory_limit, self.temp_directory)


class SnowflakeWarehouse(Warehouse):
    """Snowflake, for `DAGSTER_DEPLOYMENT=prod`, connected through dagster-snowflake's
    `SnowflakeResource` (its key-pair loading, authenticators and connection arguments).

    Sign in with exactly one of: a private key (`private_key_path`, or the PEM in `private_key`,
    optionally encrypted with `private_key_password`), `authenticator="oauth"` with the token file
    in `additional_snowflake_connection_args={"token_file_path": ...}`, or a password. The same
    fields as `SnowflakePandasIOManager`, so one set of settings configures both.
    """

    account: str
    user: str
    database: str
    warehouse: str | None = None
    role: str | None = None
    password: str | None = None
    private_key: str | None = None
    private_key_path: str | None = None
    private_key_password: str | None = None
    authenticator: str | None = None
    additional_snowflake_connection_args: dict[str, Any] | None = None

    def snowflake_resource(self, session: StepSession = StepSession()):
        """dagster-snowflake's resource; `session` adds the step's query tag and warehouse."""
        from dagster_snowflake import SnowflakeResource  # lazy: importing Snowflake costs seconds

        fields = {name: getattr(self, name) for name in type(self).model_fields}
        if session.warehouse:
            fields["warehouse"] = session.warehouse
        if session.query_tag:
            extra = dict(fields.get("additional_snowflake_connection_args") or {})
            extra["session_parameters"] = {**extra.get("session_parameters", {}), "QUERY_TAG": session.query_tag}
            fields["additional_snowflake_connection_args"] = extra
        return SnowflakeResource(paramstyle="qmark", **{k: v for k, v in fields.items() if v is not None})

    @contextlib.contextmanager
    def connect(self) -> Iterator[WarehouseConnection]:
        with self.snowflake_resource(current_step_session()).get_connection() as raw:
            try:
                yield WarehouseConnection(raw, "snowflake")
            except BaseException:
                raw.close()  # get_connection closes only on success
                raise
