"""The activation tables in the warehouse: sync state, failed rows, results, suppression.

Created before any transaction (Snowflake commits implicitly on DDL). Column lists here are the
contract with monitoring (`sync_results`, `suppression_propagation`) and the marts (`suppression`).
"""

from __future__ import annotations

from ..marts.inputs import Sql

SCHEMA = "activation"
TS = "timestamp with time zone"

DDL = {
    # Last acknowledged state per destination, segment and row (a person, or an event for
    # events-only syncs). `present = false` is a tombstone: removed, but the version lives on so
    # a later re-add gets a new idempotency key.
    "sync_state": f"""destination varchar, segment varchar, row_key varchar, customer_key varchar,
        email varchar, payload_hash varchar, version bigint, present boolean, synced_at {TS}""",
    "sync_failed_rows": f"""destination varchar, segment varchar, row_key varchar, customer_key varchar,
        email varchar, op varchar, payload varchar, payload_hash varchar, error varchar,
        retryable boolean, attempts bigint, first_failed_at {TS}, last_failed_at {TS}""",
    "sync_results": f"""sync_id varchar, destination varchar, segment varchar, mode varchar,
        outcome varchar, rows bigint, started_at {TS}, finished_at {TS}""",
    # The sticky global list. email_sha256 alone (email null) marks an erased person.
    "suppression": f"""email varchar, customer_key varchar, reason varchar, source varchar,
        recorded_at {TS}, email_sha256 varchar""",
    "suppression_propagation": f"""email varchar, destination varchar, requested_at {TS},
        propagated_at {TS}""",
    # Identity merges/unmerges acknowledged by each destination (`identity_changes`).
    "identity_changes": f"""destination varchar, change_id varchar, kind varchar, old_key varchar,
        new_keys varchar, applied_at {TS}""",
    "erasure_queue": f"""erasure_id varchar, destination varchar, email varchar, customer_key varchar,
        queued_at {TS}, done_at {TS}, error varchar""",
}
LEDGER_DDL = f"""erasure_id varchar, requested_at {TS}, completed_at {TS}, identifier_sha256 varchar,
    identifiers_sha256 varchar, tables_scanned bigint, rows_deleted bigint, rows_remaining bigint,
    destinations_queued varchar, verified boolean, detail varchar"""


def prepare(conn: Sql, *names: str) -> None:
    conn.execute(f"create schema if not exists {SCHEMA}")
    for name in names or DDL:
        conn.execute(f"create table if not exists {SCHEMA}.{name} ({DDL[name]})")


def prepare_ledger(conn: Sql) -> None:
    conn.execute("create schema if not exists compliance")
    conn.execute(f"create table if not exists compliance.erasure_ledger ({LEDGER_DDL})")


def sha256_sql(conn: Sql, expression: str) -> str:
    """Hex SHA-256 of a varchar expression, spelled per warehouse."""
    return f"sha256({expression})" if conn.dialect == "duckdb" else f"sha2({expression}, 256)"
