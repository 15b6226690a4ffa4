"""Core layer: one golden record per person, a stable customer_key, a crosswalk, the evidence
of every merge, and which customer each tracking identity belongs to.

Thin shell over `personalization_assets.identity`: the previous crosswalk and evidence are read
back from the warehouse so keys stay stable, unmerges persist, and small changes are matched
incrementally. Two paths (identity/warehouse.py choose_path, by record count or
PERSONALIZATION_IDENTITY_PATH): in memory (resolve(), incremental when it can), or in the
warehouse (DuckDB only; full runs; the staged records stay in DuckDB, golden records are built
a chunk of clusters at a time). Both give the same tables, obey the same decisions and unmerges
and keep keys stable; a warehouse run leaves no prepared records and a state version that makes
the next memory run full (keys inherited), never incremental from the warehouse's crosswalk.
"""

import json
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from ..heap import releasing
from ..identity import MatchConfig, ResolvedState, resolve
from ..identity.stitch import IDENTITY_MAP_OUTPUT, identity_map_sql
from ..identity.state import STATE_VERSION, Prepared
from ..identity.decisions import read_decisions
from ..identity.features_sql import HASHED, TEXT_SOURCES
from ..identity.households import households_in_duckdb, households_in_warehouse
from ..identity.review import review_queue
from ..identity.survivorship import NAME_FIELDS, RECENT_FIELDS, golden_records
from ..identity.warehouse import Constraints, explain_path, resolve_in_warehouse
from ..identity.warehouse_outputs import CROSSWALK_COLUMNS, evidence_sql, golden_in_chunks
from ..resources.faults import fault_point
from ..resources.io_manager import COMMIT_GROUP, StagedTable, verify_tables
from ..resources.warehouse import Warehouse, identifier
from ..warehouse import column_types, query_arrow_strings
from .common import EAGER, WAREHOUSE_POOL, frame_metadata, read_table

GOLDEN_COLUMNS = ["customer_key", "email", "first_name", "last_name", "phone", "country",
                  "timezone", "locale", "email_opt_in", "consent_processing", "created_at",
                  "updated_at", "source_records"]
# Golden records, crosswalk and evidence describe one resolution: they commit together or not at all
# (a crosswalk without its evidence would drop unmerges; see resources/io_manager.py).
IDENTITY_TABLES = ["core.customers", "core.customer_crosswalk", "core.merge_evidence"]
# The columns of staging.customers that identity reads (matching, survivorship, created_at), of
# its ~30: the *_raw and *_issue columns stay in the warehouse. Text comes Arrow-backed: at a
# million records the staged input is ~0.3 GB instead of ~1.5 GB of Python strings.
STAGED_COLUMNS = list(dict.fromkeys(("record_id", *HASHED, *TEXT_SOURCES, *NAME_FIELDS, *RECENT_FIELDS,
                                     "created_at", "updated_at")))
# A jump in the share of records merged away by more than this (absolute) fails the check.
MERGE_RATE_JUMP = 0.05


class IdentityConfig(dg.Config):
    """Run config: record-id groups to split off their cluster (kept by all later runs)."""

    unmerge: list[list[str]] = []
    full_rebuild: bool = False


# the previous run's prepared records (identity/state.py Prepared) and the state version they were
# written with: not part of the commit group, so a torn write only costs the next run its shortcut
# (resolve() checks their record hashes against the crosswalk's and prepares everything again)
PREPARED_TABLE, STATE_TABLE = ("core", "identity_prepared"), ("core", "identity_state")


def _previous(conn) -> tuple[ResolvedState | None, str]:
    """The saved state to resolve from, and why a run from it is incremental or full."""
    if not conn.table_exists("core", "customer_crosswalk") and not conn.table_exists("core", "merge_evidence"):
        return None, "full: no saved state"
    verify_tables(conn, ["core.customer_crosswalk", "core.merge_evidence"])  # never resolve from a torn state
    state = ResolvedState.from_tables(read_table(conn, "core", "customer_crosswalk", []),
                                      read_table(conn, "core", "merge_evidence", []))
    if state is None:
        return None, "full: no saved state"
    version = conn.scalar(f"select version from {'.'.join(STATE_TABLE)}") if conn.table_exists(*STATE_TABLE) else None
    if version != STATE_VERSION or state.model is None:
        # another matcher wrote it: keep its keys (a full run inherits them), not its model or clusters
        return replace(state, model=None), f"full: saved state version {version}, this engine's {STATE_VERSION}"
    # The saved golden records are not carried over: a record whose matching fields are unchanged
    # keeps its cluster, but its other fields (consent, opt-outs) may have changed, and a stale
    # golden record would keep an opted-out person sendable. resolve() rebuilds them all.
    if conn.table_exists(*PREPARED_TABLE):
        state.prepared = Prepared(_read_prepared(conn))
    return state, "incremental when few records changed"


def _read_prepared(conn) -> pa.Table:
    """The saved prepared records, record_hash back to uint64 (stored as bigint). DuckDB hands them
    over as Arrow: no pandas frame of a million rows' Python strings on the way."""
    name = ".".join(PREPARED_TABLE)
    table = (conn.raw.sql(f"select * from {name}").to_arrow_table() if conn.dialect == "duckdb"
             else pa.Table.from_pandas(conn.query(f"select * from {name}"), preserve_index=False))
    at = table.schema.get_field_index("record_hash")
    hashes = table.column(at)
    return table.set_column(at, "record_hash", pa.chunked_array([c.view(pa.uint64()) for c in hashes.chunks],
                                                                pa.uint64()))


def _save_prepared(conn, res) -> None:
    """This run's prepared records and the state version, for the next run. DuckDB inserts them
    from Arrow, text still dictionary-encoded (no plain copy of a million rows' strings, no pandas
    frame); Snowflake's loader takes a pandas frame of plain strings."""
    prepared = res.prepared
    table = _hashes_as_int64(pa.table({c: prepared.column(c) for c in prepared.columns}))
    version = pd.DataFrame({"version": [STATE_VERSION], "records": [table.num_rows]})
    # DDL before the transaction (Snowflake commits on DDL); the column types follow the pandas frame's
    conn.prepare_table(*PREPARED_TABLE, table.slice(0, 0).to_pandas(types_mapper=pd.ArrowDtype))
    conn.prepare_table(*STATE_TABLE, version)
    with conn.transaction():
        if conn.dialect == "duckdb":
            _replace_from_arrow(conn, PREPARED_TABLE, table)
        else:
            del table
            frame = _hashes_as_int64(prepared.to_table()).to_pandas(types_mapper=pd.ArrowDtype)
            conn.replace_frame(*PREPARED_TABLE, frame)
        conn.replace_frame(*STATE_TABLE, version)


def _hashes_as_int64(table: pa.Table) -> pa.Table:
    """A warehouse has no uint64: record_hash as int64 of the same 64 bits."""
    at = table.schema.get_field_index("record_hash")
    return table.set_column(at, "record_hash", pa.chunked_array([c.view(pa.int64()) for c in table.column(at).chunks],
                                                                pa.int64()))


def _replace_from_arrow(conn, name: tuple[str, str], table: pa.Table) -> None:
    """DuckDB: make the existing table `name` hold exactly the rows of the Arrow `table`."""
    target, cols = ".".join(name), ", ".join(identifier(c) for c in table.column_names)
    conn.execute(f"delete from {target}")
    conn.raw.register("_arrow_rows", table)
    try:
        conn.execute(f"insert into {target} ({cols}) select {cols} from _arrow_rows")
    finally:
        conn.raw.unregister("_arrow_rows")


def merge_rate(records: int, customers: int) -> float:
    return 0.0 if records == 0 else 1 - customers / records


def merge_rate_check(previous: float | None, current: float) -> dg.AssetCheckResult:
    """Fails when the merge rate rises suddenly: usually a placeholder value or a bad rule
    gluing people together, which must not reach the marts."""
    jump = None if previous is None else current - previous
    return dg.AssetCheckResult(
        check_name="merge_rate_stable", asset_key=dg.AssetKey(["core", "customers"]),
        passed=jump is None or jump <= MERGE_RATE_JUMP,
        metadata={"merge_rate": current, "previous_merge_rate": previous if previous is not None else -1.0,
                  "allowed_jump": MERGE_RATE_JUMP})


def _golden(res, staged: pd.DataFrame) -> pd.DataFrame:
    """The golden records in the table's column order. Shaped from the resolution's own frame
    (which it changes) without copying it: the columns are shared, and a missing one is all NaN."""
    created = None
    if "created_at" in staged:
        key = (res.crosswalk.set_index("record_id")["customer_key"]
               .reindex(staged["record_id"].to_numpy(object)).to_numpy())
        created = staged["created_at"].groupby(key).min()
    return _shape_golden(res.golden, created)


def _shape_golden(g: pd.DataFrame, created: pd.Series | None) -> pd.DataFrame:
    """Golden records (resolve()'s frame, changed in place) in the table's column order, created_at
    the earliest of the cluster's records (``created``: by customer_key)."""
    if created is not None:
        g["created_at"] = g["customer_key"].map(created)
    g["updated_at"] = g["last_updated"]
    lineage = [c for c in g.columns if c.endswith("_source")]
    extra = [c for c in g.columns if c not in GOLDEN_COLUMNS and c not in lineage and c != "last_updated"]
    return pd.DataFrame({c: g[c] if c in g else pd.Series(np.nan, index=g.index)
                         for c in GOLDEN_COLUMNS + extra + lineage}, copy=False)


def _arrow_text(frame: pd.DataFrame, skip=lambda column: False) -> pd.DataFrame:
    """The frame, its text columns changed in place to Arrow-backed strings (~15 bytes a value
    instead of a ~60-byte Python string) while the IO manager writes them, and for as long as a run
    that captures outputs (`dg.materialize`) keeps them. `skip`: columns to leave, such as the
    golden records' *_source ids, which share one Python string per record id across columns."""
    for column in frame.columns:
        values = frame[column]
        if not skip(column) and values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "string":
            frame[column] = pd.arrays.ArrowExtensionArray(pa.array(values, type=pa.string(), from_pandas=True))
    return frame


@dg.multi_asset(
    outs={
        "golden": dg.AssetOut(key=["core", "customers"], tags={"pii": "true"}, automation_condition=EAGER,
                              metadata={COMMIT_GROUP: IDENTITY_TABLES},
                              description="One golden record per real person, keyed by a stable customer_key; "
                                          "each <field>_source column names the record the value came from."),
        "crosswalk": dg.AssetOut(key=["core", "customer_crosswalk"], automation_condition=EAGER, tags={"pii": "true"},
                                 metadata={COMMIT_GROUP: IDENTITY_TABLES},
                                 description="Every source customer record, its customer_key and the rule that "
                                             "joined it (exact key, fuzzy match or singleton)."),
        "evidence": dg.AssetOut(key=["core", "merge_evidence"], automation_condition=EAGER, tags={"pii": "true"},
                                metadata={COMMIT_GROUP: IDENTITY_TABLES},
                                description="Why records were merged: the exact rule, or per-field agreement "
                                            "levels and Fellegi-Sunter weights; unmerges as cannot_link rows."),
    },
    deps=[dg.AssetKey(["staging", "customers"])],
    check_specs=[dg.AssetCheckSpec("merge_rate_stable", asset=["core", "customers"], blocking=True,
                                   description="The share of records merged away did not jump since the last run.")],
    group_name="identity",
    pool=WAREHOUSE_POOL,
)
@releasing
def customers(context: dg.AssetExecutionContext, config: IdentityConfig, warehouse: Warehouse):
    """Resolve staged customer records into people: exact keys, then fuzzy matching. The path
    (identity/warehouse.py choose_path, by record count or PERSONALIZATION_IDENTITY_PATH): in
    memory, incremental when a saved state of this engine's version exists, full otherwise; or in
    the warehouse (DuckDB only), always full. The metadata's resolution says which and why."""
    with warehouse.connect() as conn:
        fault_point("before_load", "staging.customers")
        verify_tables(conn, ["staging.customers"], strict=False)
        rows_in = int(conn.scalar("select count(*) from staging.customers"))
        path, path_reason = explain_path(rows_in, conn.dialect)
    if path == "warehouse":
        yield from _customers_in_warehouse(context, config, warehouse, rows_in, path_reason)
        return
    with warehouse.connect() as conn:
        staged = _read_staged(conn)
        previous, why = _previous(conn)
        if config.full_rebuild:
            previous, why = None, "full: full_rebuild requested"
        decisions = read_decisions(conn)  # a person's link/unlink decisions bind every run
    res = resolve(staged, previous=previous, unmerges=config.unmerge, decisions=decisions)
    golden = _golden(res, staged)
    res.golden = None  # the output's frame holds its columns now
    sizes = golden["source_records"].value_counts().sort_index()
    stats = {k: v for k, v in res.stats.items() if k not in ("blocking", "stage_seconds")}
    stats.update(path="memory", path_reason=path_reason)
    if not why.startswith("incremental"):  # the asset's reason for a full run beats the engine's
        stats["mode_reason"] = why
    before = None
    if previous is not None and len(previous.crosswalk):
        before = merge_rate(len(previous.crosswalk), previous.crosswalk["customer_key"].nunique())
    now = merge_rate(len(staged), len(golden))
    context.log.info(f"identity run: {json.dumps(stats, default=str)}")
    golden_metadata = frame_metadata(
        golden, rows_in=len(staged), duplicates_merged=int(res.stats["duplicates_merged"]),
        merge_rate=now, cluster_size_distribution={str(k): int(v) for k, v in sizes.items()},
        held_for_review=len(res.review), review_reasons=res.review["reason"].value_counts().to_dict(),
        resolution=stats, stage_seconds=res.stats.get("stage_seconds", {}),
        blocking=res.stats.get("blocking", {}))
    crosswalk_metadata = frame_metadata(res.crosswalk, rules=res.crosswalk["rule"].value_counts().to_dict())
    # described: now compact, before DuckDB buffers the prepared records (~0.6 GB at a million)
    golden, crosswalk = _arrow_text(golden, skip=lambda c: c.endswith("_source")), _arrow_text(res.crosswalk)
    with warehouse.connect() as conn:
        _save_prepared(conn, res)
    yield dg.Output(golden, output_name="golden", metadata=golden_metadata)
    yield dg.Output(crosswalk, output_name="crosswalk", metadata=crosswalk_metadata)
    yield dg.Output(res.evidence, output_name="evidence", metadata=frame_metadata(
        res.evidence, rules=res.evidence["rule"].value_counts().to_dict()))
    yield merge_rate_check(before, now)


def _read_staged(conn) -> pd.DataFrame:
    """The staged columns identity reads (those the table has), text Arrow-backed, on DuckDB; the
    whole table elsewhere (as Snowflake's IO manager read it)."""
    if conn.dialect != "duckdb":
        return conn.query("select * from staging.customers")
    have = column_types(conn, "staging", "customers")
    cols = ", ".join(identifier(c) for c in STAGED_COLUMNS if c in have)
    return query_arrow_strings(conn, f"select {cols} from staging.customers")


# the work tables of a warehouse-path run (replaced by each run, dropped after it)
WORK_TABLE = "core._identity_run"
WAREHOUSE_STATE = STATE_VERSION + "+warehouse"  # not this engine's version: the next memory run is full
# the warehouse path's outputs, written where the records are; the IO manager renames them into place
STAGED = {"golden": "core._staged_customers", "crosswalk": "core._staged_customer_crosswalk",
          "evidence": "core._staged_merge_evidence"}


def _customers_in_warehouse(context, config: IdentityConfig, warehouse: Warehouse, rows_in: int, path_reason: str):
    """The warehouse path (identity/warehouse.py): the records stay in DuckDB and so do the
    outputs (staged tables the IO manager commits by renaming them); Python holds the links and a
    bounded chunk of clusters at a time for the golden records."""
    cfg = MatchConfig()
    with warehouse.connect() as conn:
        con, before, cannot, previous_keys = conn.raw, None, set(), None
        if not config.full_rebuild and conn.table_exists("core", "customer_crosswalk"):
            verify_tables(conn, ["core.customer_crosswalk", "core.merge_evidence"])
            n_prev, k_prev = conn.raw.execute("select count(*), count(distinct customer_key) "
                                              "from core.customer_crosswalk").fetchall()[0]
            if n_prev:
                before, previous_keys = merge_rate(n_prev, k_prev), "core.customer_crosswalk"
                cannot = set(con.execute("select left_record_id, right_record_id from core.merge_evidence "
                                         "where rule = 'cannot_link'").fetchall())
        decisions = read_decisions(conn)  # a person's link/unlink decisions bind every run
        link = decisions[decisions["decision"] == "link"]
        unlink = decisions[decisions["decision"] == "unlink"]
        given = Constraints(forced=list(zip(link["left_record_id"], link["right_record_id"])),
                            cannot=cannot | set(zip(unlink["left_record_id"], unlink["right_record_id"])),
                            unmerges=[list(g) for g in config.unmerge], previous_keys=previous_keys)
        conn.ensure_schema("core")
        res = resolve_in_warehouse(con, "staging.customers", WORK_TABLE, cfg, given)
        conn.execute(f"create or replace table {STAGED['crosswalk']} as select {', '.join(CROSSWALK_COLUMNS)} "
                     f"from {WORK_TABLE} order by record_id")
        con.register("_identity_cannot", pa.table({"left_record_id": pa.array([p[0] for p in sorted(res.cannot)],
                                                                               pa.string()),
                                                   "right_record_id": pa.array([p[1] for p in sorted(res.cannot)],
                                                                               pa.string())}))
        review = res.review.astype({"left_record_id": object, "right_record_id": object, "reason": object,
                                    "evidence": object})
        con.register("_identity_review", pa.Table.from_pandas(review, preserve_index=False, schema=pa.schema(
            [("left_record_id", pa.string()), ("right_record_id", pa.string()), ("reason", pa.string()),
             ("score", pa.float64()), ("evidence", pa.string())])))
        try:
            conn.execute(f"create or replace table {STAGED['evidence']} as " + evidence_sql(
                WORK_TABLE + "_edges", WORK_TABLE, "_identity_cannot", "_identity_review", res.model))
        finally:
            con.unregister("_identity_cannot")
            con.unregister("_identity_review")

        def golden_of(records: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
            g = golden_records(records, keys.reset_index(drop=True), cfg.source_priority)
            g["cluster_size"] = g["source_records"]  # as resolve()'s golden records
            created = records["created_at"].groupby(keys.to_numpy()).min() if "created_at" in records else None
            return _shape_golden(g, created)
        customers = golden_in_chunks(con, "staging.customers", STAGED_COLUMNS, WORK_TABLE, golden_of, STAGED["golden"])
        for suffix in ("", "_links", "_edges"):
            conn.execute(f"drop table if exists {WORK_TABLE}{suffix}")
        _save_warehouse_state(conn, int(conn.scalar(f"select count(*) from {STAGED['crosswalk']}")))
        stats = {k: v for k, v in res.stats.items() if k != "stage_seconds"}
        stats.update(mode="full", mode_reason="the warehouse path has no incremental run", path_reason=path_reason)
        now = merge_rate(rows_in, customers)
        context.log.info(f"identity run: {json.dumps(stats, default=str)}")
        sizes = _counts(conn, STAGED["golden"], "source_records")
        golden_metadata = _staged_metadata(
            conn, STAGED["golden"], "customer_key", rows_in=rows_in, duplicates_merged=int(stats["duplicates_merged"]),
            merge_rate=now, cluster_size_distribution={str(k): v for k, v in sizes.items()},
            held_for_review=len(res.review), review_reasons=res.review["reason"].value_counts().to_dict(),
            resolution=stats, stage_seconds=res.stats.get("stage_seconds", {}), blocking={})
        crosswalk_metadata = _staged_metadata(conn, STAGED["crosswalk"], "record_id",
                                              rules=_counts(conn, STAGED["crosswalk"], "rule"))
        evidence_metadata = _staged_metadata(conn, STAGED["evidence"], "left_record_id, right_record_id, rule",
                                             rules=_counts(conn, STAGED["evidence"], "rule"))
    yield dg.Output(StagedTable(STAGED["golden"]), output_name="golden", metadata=golden_metadata)
    yield dg.Output(StagedTable(STAGED["crosswalk"]), output_name="crosswalk", metadata=crosswalk_metadata)
    yield dg.Output(StagedTable(STAGED["evidence"]), output_name="evidence", metadata=evidence_metadata)
    yield merge_rate_check(before, now)


def _staged_metadata(conn, table: str, order: str, **extra) -> dict:
    """frame_metadata of a staged output: its row count, and its first rows in ``order`` as the preview."""
    metadata = frame_metadata(conn.query(f"select * from {table} order by {order} limit 10"), **extra)
    metadata["dagster/row_count"] = dg.MetadataValue.int(int(conn.scalar(f"select count(*) from {table}")))
    return metadata


def _counts(conn, table: str, column: str) -> dict:
    """Rows of ``table`` per value of ``column``, in value order."""
    return {k: int(n) for k, n in conn.raw.execute(f"select {column}, count(*) from {table} "
                                                   "group by 1 order by 1").fetchall()}


def _save_warehouse_state(conn, records: int) -> None:
    """No prepared records, and a state version not the memory engine's: a later memory-path run
    is full (keys inherited from the crosswalk), never incremental from a warehouse crosswalk."""
    version = pd.DataFrame({"version": [WAREHOUSE_STATE], "records": [records]})
    conn.prepare_table(*STATE_TABLE, version)
    with conn.transaction():
        conn.execute(f"drop table if exists {'.'.join(PREPARED_TABLE)}")
        conn.replace_frame(*STATE_TABLE, version)


IDENTITY_MAP_STAGED = "core._staged_identity_map"


@dg.asset(key=["core", "identity_map"], deps=[dg.AssetKey(["staging", "events"]), dg.AssetKey(["core", "customer_crosswalk"])],
          group_name="identity", pool=WAREHOUSE_POOL, tags={"pii": "true"}, automation_condition=EAGER)
@releasing
def identity_map(warehouse: Warehouse) -> dg.Output:
    """Which customer each tracking identity (userId, or an anonymousId stitched to a userId by an
    identify call or a login) belongs to, so pre-login events join the right customer. Built by
    one query in the warehouse (identity/stitch.py identity_map_sql)."""
    with warehouse.connect() as conn:
        verify_tables(conn, ["core.customer_crosswalk"])  # never from a torn identity commit
        if conn.table_exists("staging", "events"):
            sql = identity_map_sql("staging.events", "core.customer_crosswalk")
        else:
            sql = "select " + ", ".join(f"cast(null as {t}) as {c}" for c, t in zip(
                IDENTITY_MAP_OUTPUT, ["varchar"] * 5 + ["timestamptz"] * 2 + ["bigint"])) + " where false"
        unresolved_sql = "select count(*) from {} where identity_type = 'user_id' and customer_key is null"
        if conn.dialect == "duckdb":  # the table stays in the warehouse: the IO manager renames it into place
            conn.execute(f"create or replace temp table _identity_map_all as {sql}")
            unresolved = int(conn.scalar(unresolved_sql.format("_identity_map_all")))
            conn.execute(f"create or replace table {IDENTITY_MAP_STAGED} as "
                         "select * from _identity_map_all where customer_key is not null")
            conn.execute("drop table _identity_map_all")
            value = StagedTable(IDENTITY_MAP_STAGED)
            rows = conn.query(f"select * from {IDENTITY_MAP_STAGED} order by identity_type, identity limit 10")
            summary = conn.query(f"select identity_type, count(*) as n, count(*) filter (where users_on_device > 1) "
                                 f"as shared from {IDENTITY_MAP_STAGED} group by identity_type")
        else:  # Snowflake's IO manager stores frames: the map's rows come to Python, never the events
            every = conn.query(sql).rename(columns=str.lower)
            unresolved = int(((every["identity_type"] == "user_id") & every["customer_key"].isna()).sum())
            value = every[every["customer_key"].notna()].reset_index(drop=True)
            rows = value.sort_values(["identity_type", "identity"]).head(10)
            summary = value.groupby("identity_type", as_index=False).agg(
                n=("identity", "size"), shared=("users_on_device", lambda d: int((d > 1).sum())))
    metadata = frame_metadata(rows, identities_by_type={r.identity_type: int(r.n) for r in summary.itertuples()},
                              shared_devices=int(summary["shared"].sum()), unresolved_users=unresolved)
    metadata["dagster/row_count"] = dg.MetadataValue.int(int(summary["n"].sum()))
    return dg.Output(value, metadata=metadata)


@dg.asset(key=["core", "identity_review"], deps=[["core", "merge_evidence"], ["core", "customer_crosswalk"]],
          group_name="identity", pool=WAREHOUSE_POOL, tags={"pii": "true"}, automation_condition=EAGER)
def identity_review(warehouse: Warehouse) -> dg.Output[pd.DataFrame]:
    """Pairs and records the matcher would not decide alone (a household conflict, a weak chain, an
    identity limit, a shared identifier), with their evidence, and the decision a person took with
    `personalization identity link|unlink A B --reason ...` (status open or decided). Reads only
    the review rows of the evidence and their records' keys, not the whole identity tables."""
    with warehouse.connect() as conn:
        verify_tables(conn, ["core.merge_evidence", "core.customer_crosswalk"])  # never from a torn commit
        evidence = conn.query("select * from core.merge_evidence where rule like 'review:%'")
        crosswalk = conn.query(
            "select record_id, customer_key from core.customer_crosswalk where record_id in ("
            "select left_record_id from core.merge_evidence where rule like 'review:%' union "
            "select right_record_id from core.merge_evidence where rule like 'review:%')")
        decisions = read_decisions(conn)
    out = review_queue(evidence, crosswalk, decisions)
    return dg.Output(out, metadata=frame_metadata(
        out, reasons=out["reason"].value_counts().to_dict(), open=int((out["status"] == "open").sum())))


HOUSEHOLDS_STAGED = "core._staged_households"


@dg.asset(key=["core", "households"], deps=[["staging", "customers"], ["core", "customer_crosswalk"]],
          group_name="identity", pool=WAREHOUSE_POOL, tags={"pii": "true"}, automation_condition=EAGER)
@releasing
def households(warehouse: Warehouse) -> dg.Output:
    """Households: customers who share a postal address or a mailbox (never merged into one person),
    for household frequency caps. One row per customer with its household_id and size. On DuckDB
    built in the warehouse (only the members of shared groups come to Python, as integers); on
    Snowflake from the customers' keys, street, postcode and e-mail read in chunks
    (identity/households.py)."""
    with warehouse.connect() as conn:
        verify_tables(conn, ["core.customer_crosswalk"])  # never from a torn identity commit
        if conn.dialect == "duckdb":
            households_in_duckdb(conn.raw, HOUSEHOLDS_STAGED)
            value = StagedTable(HOUSEHOLDS_STAGED)
            sample = conn.query(f"select * from {HOUSEHOLDS_STAGED} order by customer_key limit 10")
            sizes = conn.query(f"select household_size, count(*) as customers, count(distinct household_id) as "
                               f"households from {HOUSEHOLDS_STAGED} group by 1 order by 1")
        else:
            value = sample = households_in_warehouse(conn)
            sizes = value.groupby("household_size", as_index=False).agg(
                customers=("customer_key", "size"), households=("household_id", "nunique"))
    metadata = frame_metadata(sample.head(10), households=int(sizes["households"].sum()),
                              household_size_distribution={str(r.household_size): int(r.customers)
                                                           for r in sizes.itertuples()})
    metadata["dagster/row_count"] = dg.MetadataValue.int(int(sizes["customers"].sum()))
    return dg.Output(value, metadata=metadata)


defs = dg.Definitions(assets=[customers, identity_map, identity_review, households])
