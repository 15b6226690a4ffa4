"""The `warehouse` resource: plain SQL on DuckDB locally and on Snowflake in production.

Assets that rebuild a whole table return a DataFrame and let the IO manager store it. Assets that
need more than that (incremental upserts with their cursor in one transaction, segment SQL that
must run inside the warehouse) use this resource. Both implementations yield the same plain
connection, `personalization_assets.warehouse.WarehouseConnection` (re-exported here for the other
resources); code outside the Dagster shells imports it from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ..warehouse import WarehouseConnection, connect_duckdb, identifier
from .snowflake_session import StepSession, current_step_session

__all__ = ["DuckDBWarehouse", "SnowflakeWarehouse", "Warehouse", "WarehouseConnection", "identifier"]


class Warehouse(dg.ConfigurableResource):
    """What assets annotate: either implementation below, chosen by the deployment."""

    def connect(self) -> contextlib.AbstractContextManager[WarehouseConnection]:
        raise NotImplementedError("use DuckDBWarehouse or SnowflakeWarehouse")


class DuckDBWarehouse(Warehouse):
    """Embedded DuckDB file: the default for `dagster dev` and the demo."""

    database: str  # path of the DuckDB file

    def connect(self) -> contextlib.AbstractContextManager[WarehouseConnection]:
        return connect_duckdb(self.database)


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
