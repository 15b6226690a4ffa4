"""The three experiment tables from the warehouse: assignments, exposures, results. No Dagster here.

`assets/experiments.py` wraps these; the results use `results.arm_results`, the same code as
`personalization lift`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from ..marts.inputs import input_ctes
from ..side_tables import side_tables
from .assign import CONTROL, GLOBAL_CONTROL, Experiment, apply_merges, assign_arm, assign_stratified
from .attribution import DEFAULT_WINDOW, attribute_in_duckdb, attribute_outcomes, attribution_sql
from .holdouts import EXPOSURE_COLUMNS, ExposureLog
from .moments import MOMENTS_SQL, moments_of_frame, results_from_moments
from .uplift_scores import TRAINING_SENDS, randomized_sends_sql

ASSIGNMENTS, EXPOSURES, RESULTS = "marts.experiment_assignments", "marts.experiment_exposures", "marts.experiment_results"
CROSSWALK_SNAPSHOT = ("ops", "experiment_crosswalk")  # record -> key at the last run: how merges are seen
PRE_PERIOD = timedelta(days=30)  # CUPED covariates: spend and visits in the 30 days before exposure


def exposure_log_path(data_dir: Path) -> Path:
    """Where `personalization deliver --holdouts` logs the stream's decisions (next to its outbox)."""
    return Path(data_dir) / "exposures.sqlite"


def _sendable_members(conn, segment: str) -> pd.DataFrame:
    if not conn.table_exists("marts", "segment_membership"):
        return pd.DataFrame(columns=["customer_key", "since", "rfm_segment"])
    rfm = ("p.rfm_segment" if conn.table_exists("marts", "customer_profiles") else "cast(null as varchar)")
    join = "left join marts.customer_profiles p on p.customer_key = m.customer_key" if "p." in rfm else ""
    return conn.query(f"select m.customer_key, m.since, {rfm} as rfm_segment from marts.segment_membership m {join}"
                      " where m.segment = ?", [segment])


def _merges(conn) -> list[tuple[str, str]]:
    """(absorbed key, surviving key) pairs since the last run, found in the warehouse: each key of
    the remembered crosswalk that no longer exists, with the key its first record (by record_id)
    has now; in that record order."""
    if not (conn.table_exists("core", "customer_crosswalk") and conn.table_exists(*CROSSWALK_SNAPSHOT)):
        return []
    return [(str(a), str(b)) for a, b, _ in conn.rows(f"""
        select b.customer_key, n.customer_key, b.record_id
        from {'.'.join(CROSSWALK_SNAPSHOT)} b join core.customer_crosswalk n on n.record_id = b.record_id
        where b.customer_key <> n.customer_key
          and b.customer_key not in (select customer_key from core.customer_crosswalk)
        qualify row_number() over (partition by b.customer_key order by b.record_id) = 1
        order by b.record_id""")]


ASSIGNMENT_COLUMNS = ["experiment", "kind", "customer_key", "arm", "stratum", "contaminated_by", "assigned_at"]
ASSIGN_CHUNK_ROWS = 100_000  # customers assigned at a time (their keys, arms and previous rows in memory)


def _keys_sql(conn, exp: Experiment) -> tuple[str, list]:
    """The experiment's customers (every golden customer, or the sendable members of its
    segment, with their stratum) and their previous row's arm and contamination."""
    empty = "select cast(null as varchar) as customer_key, cast(null as varchar) as stratum where false"
    if exp.kind != "segment":
        keys, params = ("select customer_key, cast(null as varchar) as stratum from core.customers"
                        if conn.table_exists("core", "customers") else empty), []
    elif conn.table_exists("marts", "segment_membership"):
        profiles = conn.table_exists("marts", "customer_profiles")
        keys = (f"select m.customer_key, coalesce({'r.rfm_segment' if profiles else 'null'}, 'unknown') as stratum "
                f"from marts.segment_membership m "
                f"{'left join marts.customer_profiles r on r.customer_key = m.customer_key' if profiles else ''} "
                "where m.segment = ?")
        params = [exp.target]
    else:
        keys, params = empty, []
    if not conn.table_exists("marts", "experiment_assignments"):
        return (f"select cast(customer_key as varchar) as customer_key, stratum, cast(null as varchar) as previous_arm, "
                f"cast(null as varchar) as previous_contaminated from ({keys}) k"), params
    return (f"select cast(k.customer_key as varchar) as customer_key, k.stratum, p.arm as previous_arm, "
            f"p.contaminated_by as previous_contaminated from ({keys}) k left join {ASSIGNMENTS} p "
            "on p.customer_key = k.customer_key and p.experiment = ?"), [*params, exp.name]


def _previous_arms(conn, exp: Experiment, keys: list[str]) -> dict[str, str]:
    """The previous run's arms of these keys in the experiment."""
    if not conn.table_exists("marts", "experiment_assignments"):
        return {}
    found = conn.query_in(f"select customer_key, arm from {ASSIGNMENTS} where experiment = ? "
                          "and customer_key in ({values})", keys, [exp.name])
    return dict(zip(found["customer_key"], found["arm"]))


def _covered(conn, exp: Experiment, keys: list[str]) -> set[str]:
    """Which of `keys` the experiment covers now (golden customers, or members of its segment)."""
    if exp.kind != "segment":
        return conn.present("core.customers", "customer_key", keys) if conn.table_exists("core", "customers") else set()
    if not conn.table_exists("marts", "segment_membership"):
        return set()
    return set(conn.query_in("select customer_key from marts.segment_membership where segment = ? "
                             "and customer_key in ({values})", keys, [exp.target]).iloc[:, 0])


def _merge_outcome(conn, exp: Experiment, merges: list[tuple[str, str]], stratified: dict[str, str] | None
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """`apply_merges` over only the keys the merges name: (their arms after the merges, survivor ->
    absorbed key of a merge across arms). The arms before are the previous run's, overridden by
    the current ones of the keys the experiment covers (`stratified`: its arms, when balanced)."""
    if not merges:
        return {}, {}
    named = sorted({k for pair in merges for k in pair})
    previous = _previous_arms(conn, exp, named)
    if stratified is not None:
        current = {k: stratified[k] for k in named if k in stratified}
    else:
        sticky = exp.kind == "segment"  # a segment member keeps the arm of an earlier run
        current = {k: (previous.get(k) if sticky else None) or assign_arm(exp, k)
                   for k in _covered(conn, exp, named)}
    merged = apply_merges(exp, {**previous, **current}, merges)
    return merged.arms, {c["survivor_key"]: c["absorbed_key"] for c in merged.contaminated}


def assignment_frames(conn, experiments: list[Experiment], merges: list[tuple[str, str]], as_of: datetime,
                      chunk_rows: int = ASSIGN_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """`build_assignments`' rows, an experiment and `chunk_rows` customers at a time: each
    customer's previous row is joined in the warehouse, so memory follows the chunk, not the
    customers (every customer's key, previous arm and new arm in Python dicts peaked at 2.3 GB at
    3M customers). A stratified segment is read whole: balancing its strata needs every member.
    The previous rows are read from marts.experiment_assignments: write elsewhere until done."""
    from ..quality.table_checks import read_chunks_aside

    for exp in experiments:
        sql, params = _keys_sql(conn, exp)
        stratified = None
        if exp.kind == "segment" and exp.stratify_by:
            members = conn.query(sql, params)
            keys = members["customer_key"].astype(str).tolist()
            previous = {k: a for k, a in zip(keys, members["previous_arm"]) if isinstance(a, str)}
            stratified = assign_stratified(exp, dict(zip(keys, members["stratum"].astype(str))), previous)
            chunks = [members]
        else:
            chunks = read_chunks_aside(conn, sql, params, rows=chunk_rows)  # `conn` writes meanwhile
        after, contaminations = _merge_outcome(conn, exp, merges, stratified)
        for chunk in chunks:
            keys = chunk["customer_key"].astype(str).tolist()
            if stratified is not None:
                arms = [stratified[k] for k in keys]
            elif exp.kind == "segment":  # sticky
                arms = [a if isinstance(a, str) else assign_arm(exp, k) for k, a in zip(keys, chunk["previous_arm"])]
            else:
                arms = [assign_arm(exp, k) for k in keys]
            before = [c if isinstance(c, str) else None for c in chunk["previous_contaminated"]]
            frame = pd.DataFrame({
                "experiment": exp.name, "kind": exp.kind, "customer_key": keys,
                "arm": [after.get(k, a) for k, a in zip(keys, arms)],
                "stratum": [s if isinstance(s, str) else None for s in chunk["stratum"]],
                "contaminated_by": [contaminations.get(k, c) for k, c in zip(keys, before)],  # once contaminated, always
                "assigned_at": pd.Timestamp(as_of)})
            frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], utc=True)
            if len(frame):
                yield frame


def build_assignments(conn, experiments: list[Experiment], as_of: datetime) -> pd.DataFrame:
    """One row per (experiment, customer): arm, stratum, and whether a merge mixed two arms.

    Global and trigger experiments cover every golden customer (arm = hash, no memory needed);
    segment experiments cover the segment's members, stratified when declared (then sticky
    through the previous table). A merge keeps the survivor's arm and flags the survivor."""
    frames = list(assignment_frames(conn, experiments, _merges(conn), as_of))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    out["assigned_at"] = pd.to_datetime(out["assigned_at"], utc=True)
    return out


def write_assignments(conn, experiments: list[Experiment], as_of: datetime,
                      chunk_rows: int = ASSIGN_CHUNK_ROWS) -> pd.DataFrame:
    """Replace marts.experiment_assignments with `build_assignments`' rows, a chunk at a time
    through a side table (`<table>__next`, `side_tables.py`) copied in one transaction with the
    crosswalk remembered for the next run's merges (`ops.experiment_crosswalk`, by SQL). Returns
    the rows per (experiment, arm) with the contaminated ones."""
    schema, table = ASSIGNMENTS.split(".")
    merges = _merges(conn)
    first = pd.DataFrame({c: pd.Series(dtype=object) for c in ASSIGNMENT_COLUMNS})
    first["assigned_at"] = pd.to_datetime(first["assigned_at"], utc=True)
    snapshot, crosswalk = ".".join(CROSSWALK_SNAPSHOT), conn.table_exists("core", "customer_crosswalk")
    conn.ensure_schema(CROSSWALK_SNAPSHOT[0])
    conn.execute(f"create table if not exists {snapshot} (record_id varchar, customer_key varchar)")
    with side_tables(conn, schema, [table], "__next") as sides:
        conn.prepare_table(schema, sides.names[table], first)
        conn.prepare_table(schema, table, first)
        for frame in assignment_frames(conn, experiments, merges, as_of, chunk_rows):
            sides.insert(table, frame)
        with sides.swap(ASSIGNMENT_COLUMNS):  # every row is replaced, and the crosswalk remembered with them
            conn.execute(f"delete from {ASSIGNMENTS}")
            conn.execute(f"delete from {snapshot}")
            if crosswalk:
                conn.execute(f"insert into {snapshot} select record_id, customer_key from core.customer_crosswalk")
    return conn.query(f"select experiment, arm, count(*) as n, count(contaminated_by) as contaminated "
                      f"from {ASSIGNMENTS} group by experiment, arm order by experiment, arm")


def exposure_arms(conn, experiments: list[Experiment]) -> pd.DataFrame:
    """The assignments `build_exposures` looks up: the segment experiments' and the global
    control's arms of segment members, not every experiment's row of every customer (3.3 M rows
    at 1 M customers)."""
    segments = [e for e in experiments if e.kind == "segment"]
    if not segments or not conn.table_exists("marts", "segment_membership"):
        return pd.DataFrame(columns=["experiment", "customer_key", "arm"])
    names, targets = [e.name for e in segments] + [GLOBAL_CONTROL], sorted({e.target for e in segments})
    return conn.query(
        f"select experiment, customer_key, arm from {ASSIGNMENTS} where experiment in ({', '.join('?' * len(names))}) "
        "and customer_key in (select customer_key from marts.segment_membership "
        f"where segment in ({', '.join('?' * len(targets))}))", names + targets)


EXPOSURE_TABLE_COLUMNS = ["experiment", "decision_key", "customer_id", "customer_key", "arm", "ghost", "exposed_at",
                          "source"]
EXPOSURE_CHUNK_ROWS = 100_000  # segment members turned into exposures at a time


def _trigger_exposures(exposure_log: Path | None) -> list[pd.DataFrame]:
    """The sender's decisions (ghosts included), from its exposure log, if there is one."""
    if exposure_log is None or not Path(exposure_log).exists():
        return []
    log = ExposureLog(exposure_log)
    try:
        rows = pd.DataFrame(log.rows(), columns=EXPOSURE_COLUMNS)
    finally:
        log.close()
    rows["exposed_at"] = pd.to_datetime(rows["exposed_at"], unit="s", utc=True)
    rows["source"] = "trigger"
    return [rows]


def _segment_exposures(exp: Experiment, glob: Experiment | None, members: pd.DataFrame, arm_of) -> list[pd.DataFrame]:
    """A held-out segment's members (customer_key, since) as exposures of its experiment (those
    outside the global control) and of the global control; `arm_of(experiment, keys)` gives the
    assigned arms (None where there is none yet: the global control's hash arm then)."""
    frames = []
    keys = members["customer_key"].astype(str)
    since = pd.to_datetime(members["since"], utc=True)
    in_global = (keys.map(lambda k: assign_arm(glob, k) == CONTROL) if glob is not None
                 else pd.Series(False, index=members.index))
    for name, mask in ((exp.name, ~in_global), (GLOBAL_CONTROL, pd.Series(True, index=members.index))):
        if name == GLOBAL_CONTROL and glob is None:
            continue
        part = pd.DataFrame({"experiment": name, "decision_key": f"segment:{exp.target}:" + keys[mask]
                             + ":" + since[mask].astype(str), "customer_id": None, "customer_key": keys[mask],
                             "exposed_at": since[mask], "source": "segment"})
        part["arm"] = [a or (assign_arm(glob, k) if name == GLOBAL_CONTROL else None)
                       for k, a in zip(part.customer_key, arm_of(name, part.customer_key))]  # not yet assigned: hash
        part = part[part.arm.notna()]
        part["ghost"] = (part["arm"] == CONTROL).astype(int)
        frames.append(part)
    return frames


def _exposure_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    out = (pd.concat([f[EXPOSURE_TABLE_COLUMNS] for f in frames], ignore_index=True) if frames
           else pd.DataFrame({c: pd.Series(dtype=object) for c in EXPOSURE_TABLE_COLUMNS}))
    out["ghost"] = out["ghost"].astype(bool)
    out["exposed_at"] = pd.to_datetime(out["exposed_at"], utc=True)
    return out


def build_exposures(conn, experiments: list[Experiment], assignments: pd.DataFrame,
                    exposure_log: Path | None) -> pd.DataFrame:
    """Every send decision with its arm: the stream's (the sender's exposure log, ghosts included)
    and the batch segments' (each member of a held-out segment, from when they joined it; a
    control member is a ghost). Suppressed people are in neither: the sender logs after its
    suppression check, and sendable segments never hold a suppressed customer. In memory, with
    the arms of `assignments`; `write_exposures` writes the same rows a chunk at a time."""
    frames = _trigger_exposures(exposure_log)
    arms = assignments.set_index(["experiment", "customer_key"])["arm"]
    glob = next((e for e in experiments if e.name == GLOBAL_CONTROL), None)
    for exp in experiments:
        if exp.kind == "segment":
            members = _sendable_members(conn, exp.target)
            if not members.empty:
                frames += _segment_exposures(exp, glob, members, lambda name, keys: [arms.get((name, k)) for k in keys])
    return _exposure_frame(frames).drop_duplicates(["experiment", "decision_key"], ignore_index=True)


def write_exposures(conn, experiments: list[Experiment], exposure_log: Path | None,
                    chunk_rows: int = EXPOSURE_CHUNK_ROWS) -> pd.DataFrame:
    """Replace marts.experiment_exposures with `build_exposures`' rows, the segment members read
    `chunk_rows` at a time with their arms joined in the warehouse (a held-out segment of a million
    members as frames of Python strings peaked at 2.3 GB at 3M customers), through a side table;
    a decision seen twice keeps its first row (an aggregate, which DuckDB spills). Returns the
    customers per (experiment, arm). DuckDB only (elsewhere `build_exposures`)."""
    from ..quality.table_checks import read_chunks_aside

    if conn.dialect != "duckdb":
        raise ValueError(f"write_exposures is written for DuckDB (got {conn.dialect}): use build_exposures")
    schema, table = EXPOSURES.split(".")
    typed = _exposure_frame([])
    glob = next((e for e in experiments if e.name == GLOBAL_CONTROL), None)
    assigned = conn.table_exists("marts", "experiment_assignments")
    members = conn.table_exists("marts", "segment_membership")
    order = iter(range(1 << 62))  # each row's place, for "the first row of a decision"
    with side_tables(conn, schema, [table], "__next") as sides:
        conn.prepare_table(schema, table, typed)
        conn.prepare_table(schema, sides.names[table], typed.assign(seq=pd.Series(dtype="int64")))

        def insert(frames: list[pd.DataFrame]) -> None:
            frame = _exposure_frame(frames)
            if len(frame):
                sides.insert(table, frame.assign(seq=[next(order) for _ in range(len(frame))]))
        insert(_trigger_exposures(exposure_log))
        for exp in (e for e in experiments if e.kind == "segment" and members):
            arms = (f"left join {ASSIGNMENTS} s on s.experiment = ? and s.customer_key = m.customer_key "
                    f"left join {ASSIGNMENTS} g on g.experiment = ? and g.customer_key = m.customer_key"
                    if assigned else "")
            sql = (f"select m.customer_key, m.since, {'s.arm' if assigned else 'null'} as segment_arm, "
                   f"{'g.arm' if assigned else 'null'} as global_arm from marts.segment_membership m {arms} "
                   "where m.segment = ?")
            for chunk in read_chunks_aside(conn, sql, ([exp.name, GLOBAL_CONTROL] if assigned else []) + [exp.target],
                                           rows=chunk_rows):  # `conn` writes the side table meanwhile
                if len(chunk):
                    by_name = {exp.name: dict(zip(chunk["customer_key"].astype(str), chunk["segment_arm"])),
                               GLOBAL_CONTROL: dict(zip(chunk["customer_key"].astype(str), chunk["global_arm"]))}
                    insert(_segment_exposures(exp, glob, chunk, lambda name, keys: [
                        a if isinstance(a, str) else None for a in map(by_name[name].get, keys)]))
        first = ", ".join(f"first_row.{c}" for c in EXPOSURE_TABLE_COLUMNS if c not in ("experiment", "decision_key"))
        struct = ", ".join(f"'{c}': {c}" for c in EXPOSURE_TABLE_COLUMNS if c not in ("experiment", "decision_key"))
        with conn.transaction():
            conn.execute(f"delete from {EXPOSURES}")
            conn.execute(f"insert into {EXPOSURES} ({', '.join(EXPOSURE_TABLE_COLUMNS)}) "
                         f"select experiment, decision_key, {first} from (select experiment, decision_key, "
                         f"arg_min({{{struct}}}, seq) as first_row from {sides.side(table)} "
                         "group by experiment, decision_key)")
    return conn.query(f"select experiment, arm, count(distinct customer_key) as n from {EXPOSURES} "
                      "group by experiment, arm order by experiment, arm")


_OUTCOMES = """select customer_key, created_at as occurred_at, 'order' as kind, value_minor from c_orders
  where customer_key is not null
union all select customer_key, ts, 'visit', cast(null as bigint) from c_events where customer_key is not null
union all select customer_key, ts, case when type = 'open' then 'email_open' else 'email_click' end, cast(null as bigint)
  from c_email where customer_key is not null and type in ('open', 'click') and not is_machine"""


def read_outcomes(conn) -> pd.DataFrame:
    """Orders (purchases, revenue in reporting minor units), visits (product and cart views) and
    human email opens and clicks, each with its golden customer_key."""
    frame = conn.query(f"{input_ctes(conn)}\n{_OUTCOMES}")
    frame.columns = ["customer_key", "occurred_at", "kind", "value_minor"]
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def _warehouse_sources(conn) -> str:
    """The `with` clause of the attribution's inputs in the warehouse: `outcomes`, and `exposures`
    without contaminated members (as `build_results` leaves them out)."""
    return f"""{input_ctes(conn).rstrip()},
outcomes as ({_OUTCOMES}),
exposures as (select e.experiment, e.customer_key, e.arm, e.exposed_at from {EXPOSURES} e
  where not exists (select 1 from {ASSIGNMENTS} a where a.experiment = e.experiment
                    and a.customer_key = e.customer_key and a.contaminated_by is not null)),"""


def attributed_in_warehouse(conn, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """The attribution of `marts.experiment_exposures` computed inside a DuckDB warehouse (only
    the per-member rows come out), contaminated members left out, as `build_results` does."""
    return attribute_in_duckdb(conn.raw, _warehouse_sources(conn), window, PRE_PERIOD)


def randomized_in_warehouse(conn, limit: int = TRAINING_SENDS, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """The randomized sends an uplift model trains on (`uplift_scores.randomized_sends`), attributed
    and filtered inside a DuckDB warehouse: at most `limit` rows come out (a fixed sample beyond)."""
    attributed = f"({attribution_sql(_warehouse_sources(conn))}) attributed"
    return conn.raw.execute(randomized_sends_sql(attributed, limit),
                            [PRE_PERIOD.total_seconds(), window.total_seconds()]).df()


def results_in_warehouse(conn, experiments: list[Experiment], as_of: datetime,
                         window: timedelta = DEFAULT_WINDOW) -> tuple[pd.DataFrame, dict]:
    """`build_results` inside a DuckDB warehouse: the attribution and its per-arm moments are
    SQL, and only a few rows per experiment come out (`moments.py`), whatever the members."""
    attributed = attribution_sql(_warehouse_sources(conn))
    moments = conn.raw.execute(MOMENTS_SQL.format(attributed=f"({attributed}) attributed"),
                               [PRE_PERIOD.total_seconds(), window.total_seconds()]).df()
    return results_from_moments(experiments, moments, as_of)


def attributed_in_pandas(conn, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """`attributed_in_warehouse` for a warehouse that is not DuckDB: the same rule, in pandas."""
    exposures = conn.query(f"select * from {EXPOSURES}")
    contaminated = conn.query(f"select experiment, customer_key from {ASSIGNMENTS} where contaminated_by is not null")
    exposed = exposures.merge(contaminated.assign(_c=1), how="left", on=["experiment", "customer_key"])
    return attribute_outcomes(exposed[exposed._c.isna()].drop(columns="_c"), read_outcomes(conn), window, PRE_PERIOD)


def build_results(experiments: list[Experiment], exposures: pd.DataFrame, outcomes: pd.DataFrame,
                  assignments: pd.DataFrame, as_of: datetime, window: timedelta = DEFAULT_WINDOW) -> tuple[pd.DataFrame, dict]:
    """Per experiment, outcome and arm: n, mean, lift vs control (Welch), relative lift, p-value,
    the mSPRT always-valid p-value and the CUPED-adjusted lift with its variance reduction.
    Returns the table and the SRM test per experiment. Contaminated members are left out."""
    contaminated = assignments.loc[assignments.contaminated_by.notna(), ["experiment", "customer_key"]]
    exposed = exposures.merge(contaminated.assign(_c=1), how="left", on=["experiment", "customer_key"])
    exposed = exposed[exposed._c.isna()].drop(columns="_c")
    return results_from_attributed(experiments, attribute_outcomes(exposed, outcomes, window, PRE_PERIOD), as_of)


def results_from_attributed(experiments: list[Experiment], attributed: pd.DataFrame, as_of: datetime
                            ) -> tuple[pd.DataFrame, dict]:
    """`build_results` after attribution (one row per member with outcomes and covariates)."""
    return results_from_moments(experiments, moments_of_frame(attributed), as_of)

