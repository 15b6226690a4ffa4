"""`staging.customers` in bounded memory: only the CRM rows that changed since they were last
staged are staged again, a fixed number of rows at a time, and upserted into the table.

The warehouse decides what changed. Each raw row has a fingerprint (a hash of its values and of
`logic_version()`, which changes with the staging code, rules, normalizers and seeds), and
`ops.staged_customer_rows` keeps the fingerprint of every row as it was last staged, with whether
it passed. A row is staged again when its
fingerprint is new or different, or when it passed but is no longer in `staging.customers` (an
erasure deleted it). This is exact where a high-water mark on `updated_at` is not: the raw load
re-reads an hour before its watermark, so a late commit can arrive with an `updated_at` older than
rows already staged. Staged rows whose raw row is gone are deleted.

Each chunk is read, staged by `stage_customers` (the same function as a whole-table restage, so
the rows are the same; its normalizers run once per distinct value of the chunk), and written in
its own transaction together with the fingerprints of its valid rows: a run that fails half-way
keeps the chunks it committed and the next run goes on from there. The rejections are merged into
the quarantine once, at the end. The Python process holds one chunk and the run's rejections,
never the table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..heap import collecting
from ..sources.crm import CUSTOMER_COLUMNS
from .common import Staged
from .customers import stage_customers

STATE_SCHEMA, STATE_TABLE = "ops", "staged_customer_rows"
STATE = f"{STATE_SCHEMA}.{STATE_TABLE}"
TODO = "_crm_customer_keys"  # temporary: every raw row's key and fingerprint, the changed ones numbered
CHUNK_ROWS = 50_000
# Bump when something outside `logic_version()`'s files changes what a row stages to.
LOGIC_VERSION = "customers-2"
STATE_COLUMNS = {"record_key": "object", "fingerprint": "object", "valid": "bool"}


def logic_version() -> str:
    """LOGIC_VERSION plus a hash of what decides how a row stages: the source of the staging
    function, the business rules and the normalizers, and the packaged seeds (country synonyms,
    e-mail providers, role addresses). Any change there re-stages every row once."""
    from .. import normalize
    from ..quality import rules
    from . import common, customers

    digest = hashlib.sha256(LOGIC_VERSION.encode())
    package = Path(normalize.__file__).parent
    for path in [Path(customers.__file__), Path(common.__file__), Path(rules.__file__), *sorted(package.glob("*.py")),
                 *sorted((package / "seeds").glob("*.csv"))]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint_sql(alias: str = "r") -> str:
    """A 64-bit hash of the logic version and every raw column, as text; the warehouse's own `hash`
    of several values (DuckDB and Snowflake both have one; each keeps to its own), ten times
    faster than md5 over the concatenated text. Bind: [logic_version()]."""
    return f"cast(hash(cast(? as varchar), {', '.join(f'{alias}.{c}' for c in CUSTOMER_COLUMNS)}) as varchar)"


def key_sql(alias: str = "r", fingerprint: str = "fingerprint") -> str:
    """The row's record id ("crm:<customer_id>"); a row without a key is known by its fingerprint."""
    return f"coalesce('crm:' || cast({alias}.customer_id as varchar), 'row:' || {fingerprint})"


@dataclass
class IncrementalRun:
    rows_in: int = 0  # raw rows staged in this run (changed ones only)
    valid: int = 0
    chunks: int = 0
    deleted: int = 0  # staged rows whose raw row is gone
    raw_total: int = 0
    full: bool = False
    quarantined: list[pd.DataFrame] = field(default_factory=list)  # rejections, chunk by chunk

    @property
    def rejections(self) -> pd.DataFrame:
        from .common import concat_rejections
        return concat_rejections(self.quarantined)


def prepare_state(conn) -> None:
    """Create `ops.staged_customer_rows` if missing (DDL before any transaction)."""
    conn.prepare_table(STATE_SCHEMA, STATE_TABLE, pd.DataFrame({c: pd.Series(dtype=t)
                                                                for c, t in STATE_COLUMNS.items()}))


def _select_changed(conn, version: str, full: bool, reopen: str | None) -> int:
    """Key every raw row into the temporary table TODO, numbering the changed ones (`n`, else
    null) for chunking; returns how many changed."""
    staged = conn.table_exists("staging", "customers")
    unchanged = (f"exists (select 1 from {STATE} s where s.record_key = c.record_key "
                 f"and s.fingerprint = c.fingerprint and (not s.valid"
                 + (" or exists (select 1 from staging.customers t where t.record_id = c.record_key)))"
                    if staged else "))"))
    changed = "true" if full else f"not {unchanged}"
    if reopen and not full:  # the open quarantined records too: re-validated with today's rules and clock
        changed += f" or c.record_key in (select record_id from {reopen} where status = 'open')"
    conn.execute(f"""create or replace temporary table {TODO} as
select customer_id, record_key, fingerprint,
       case when changed then row_number() over (partition by changed order by record_key) end as n
from (select c.*, {changed} as changed
      from (select customer_id, {key_sql('k')} as record_key, fingerprint
            from (select r.customer_id, {fingerprint_sql('r')} as fingerprint from raw.crm_customers r) k) c) t
""", [version])
    return int(conn.scalar(f"select count(n) from {TODO}") or 0)


def _chunk(conn, version: str, first: int, last: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw rows numbered (first, last] with their keys and fingerprints, in key order."""
    columns = ", ".join(f"r.{c}" for c in CUSTOMER_COLUMNS)
    rows = conn.query(f"""select {columns}, c.record_key, c.fingerprint from raw.crm_customers r
join {TODO} c on c.customer_id = r.customer_id where c.n > ? and c.n <= ?
union all
select {columns}, c.record_key, c.fingerprint from raw.crm_customers r
join {TODO} c on c.customer_id is null and r.customer_id is null and c.fingerprint = {fingerprint_sql('r')}
where c.n > ? and c.n <= ?
order by record_key""", [first, last, version, first, last])
    return rows[CUSTOMER_COLUMNS], rows[["record_key", "fingerprint"]]


def stage_changed_customers(conn, *, now: datetime, write_quarantine, prepare_staging,
                            full: bool = False, replay_open: bool = False, chunk_rows: int = CHUNK_ROWS,
                            quarantine: str = "quarantine.crm_customers") -> IncrementalRun:
    """Stage the changed CRM rows into `staging.customers`, `chunk_rows` at a time.

    `full` stages every raw row again; `replay_open` also stages the rows of the records open in
    `quarantine` (the quarantine replay: today's rules and `now` for them, unchanged or not).
    `prepare_staging(frame)` creates or widens `staging.customers` from a staged frame (DDL).
    `write_quarantine(rejections, checked_ids)` merges the run's rejections once, at the end, with
    the open `quarantine` records among the rows staged as `checked_ids` (so the quarantine table
    is read once per run, not once per chunk). The state of a rejected row is written in that same
    transaction: a run that stops before it stages those rows again next time.
    """
    run = IncrementalRun(full=full)
    prepare_staging(stage_customers(pd.DataFrame(columns=CUSTOMER_COLUMNS), now=now).valid)  # typed when empty
    if not conn.table_exists("raw", "crm_customers"):
        return run
    version = logic_version()
    prepare_state(conn)
    run.raw_total = int(conn.scalar("select count(*) from raw.crm_customers") or 0)
    schema, _, table = quarantine.partition(".")
    has_quarantine = conn.table_exists(schema, table)
    todo = _select_changed(conn, version, full, quarantine if replay_open and has_quarantine else None)
    gone = f"not exists (select 1 from {TODO} k where k.record_key = {{}})"
    with conn.transaction():  # what no longer has a raw row: its staged row and its state go
        run.deleted = int(conn.scalar(f"select count(*) from staging.customers t where {gone.format('t.record_id')}"))
        conn.execute(f"delete from staging.customers t where {gone.format('t.record_id')}")
        conn.execute(f"delete from {STATE} s where {gone.format('s.record_key')}")
    rejected_state = []
    for first in collecting(range(0, todo, chunk_rows)):  # each chunk's cycles go before the next
        last = first + chunk_rows
        raw, keys = _chunk(conn, version, first, last)
        result: Staged = stage_customers(raw, now=now)
        prepare_staging(result.valid)  # a chunk may bring a text column the table lacks
        passed = keys["record_key"].isin(set(result.valid["record_id"]))
        state = pd.DataFrame({"record_key": keys["record_key"], "fingerprint": keys["fingerprint"],
                              "valid": passed}).astype(STATE_COLUMNS)
        with conn.transaction():
            chunk_keys = f"(select record_key from {TODO} where n > ? and n <= ?)"
            conn.execute(f"delete from staging.customers where record_id in {chunk_keys}", [first, last])
            conn.insert_frame("staging", "customers", result.valid)
            conn.execute(f"delete from {STATE} where record_key in {chunk_keys}", [first, last])
            conn.insert_frame(STATE_SCHEMA, STATE_TABLE, state[passed.to_numpy()])
        rejected_state.append(state[~passed.to_numpy()])
        run.rows_in += len(raw)
        run.valid += len(result.valid)
        run.chunks += 1
        if len(result.quarantined):
            run.quarantined.append(result.quarantined)
    checked = (conn.query(f"select distinct record_id from {quarantine} where status = 'open' and record_id in "
                          f"(select record_key from {TODO} where n is not null)")["record_id"]
               if todo and has_quarantine else pd.Series([], dtype=object))
    with conn.transaction():
        if rejected_state:
            conn.insert_frame(STATE_SCHEMA, STATE_TABLE, pd.concat(rejected_state, ignore_index=True))
        write_quarantine(run.rejections, checked)
    conn.execute(f"drop table if exists {TODO}")
    return run
