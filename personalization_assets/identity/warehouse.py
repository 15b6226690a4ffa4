"""Identity resolution where the records live: the warehouse path of ``resolve``.

Two paths give one answer (pairwise F1 within 0.002, measured by test_warehouse.py and
``python -m bench.identity.warehouse``):
- **in memory** (``identity.resolve``): the records are read into the worker as a DataFrame;
  every feature (full, incremental, decisions, unmerges, golden records) is there.
- **in the warehouse** (``resolve_in_warehouse``): features, blocking, comparison levels
  (Jaro-Winkler, Levenshtein, exact, term frequencies) and Fellegi-Sunter scoring run as SQL
  (warehouse_sql.py) where the table is. Python trains the model on samples of pairs
  (random pairs for u, block samples for m, a candidate sample for the prior) and clusters
  over the links only, with the engine's own guards (cluster.py); a guard's question about
  a pair of records is answered by the same SQL. A person's decisions bind the clustering as
  in resolve(): link decisions are forced edges, unlink decisions and saved unmerges are
  cannot-links, and this run's unmerge groups are split off and clustered again. Keys follow
  keys.assign_keys (inherited from the previous crosswalk), and the crosswalk and the per-link
  evidence (levels, field weights) are shaped in SQL (warehouse_outputs.py). The worker never
  holds the records, only the links and the records they touch. Full runs only (no
  incremental run); ``core.customers`` builds golden records from it a chunk of clusters at
  a time (warehouse_outputs.golden_in_chunks). Review cases as the memory path's (a pair's
  evidence JSON included; a shared key's example is its smallest record id).

Which path runs: ``choose_path(n_records)``. The setting ``PERSONALIZATION_IDENTITY_PATH``
(read when called) is ``memory``, ``warehouse`` or ``auto`` (default): auto picks the
warehouse from ``WAREHOUSE_FROM_RECORDS`` records on.

The SQL is DuckDB's; ``warehouse_sql.to_snowflake`` translates it (JAROWINKLER_SIMILARITY,
EDITDISTANCE). Only DuckDB runs it end to end here: on Snowflake ``core.customers`` takes the
memory path whatever the setting (``explain_path``).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from personalization_assets.identity.cluster import Edges, Rules, cluster
from personalization_assets.identity.compare import LEVELS
from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.fellegi_sunter import FSModel, estimate_u
from personalization_assets.identity.namesakes import CONDITION_MAX_GROUP, cap_table, conditional_u
from personalization_assets.identity.nicknames import canonical_names, nickname_pairs
from personalization_assets.identity.resolve import MANUAL_PROB, PRIOR_SAMPLE_PAIRS
from personalization_assets.identity.scoring import SLACK
from personalization_assets.identity.training import (
    MAX_TRAINING_PAIRS,
    TRAINING_MAX_BLOCK,
    _fallback,
    match_rate,
    session_m,
)
from personalization_assets.identity.warehouse_sql import (
    FIELD_COLUMNS,
    LEVEL_COLUMNS,
    TF_COLUMNS,
    candidates_statements,
    compare_tiles,
    features_sql,
    finished_features_sql,
    levels_sql,
    namesakes_sql,
    position_spans,
    scores_sql,
    weight_case,
)
from personalization_assets.identity.warehouse_outputs import assign_keys_sql, crosswalk_sql, link_evidence_sql

PATH_SETTING = "PERSONALIZATION_IDENTITY_PATH"
WAREHOUSE_FROM_RECORDS = 500_000  # at 1M the step peaks at 1.8 GB, not 2.8 GB (README)
# records a side of a tile of candidate pairs compared in one statement (warehouse_sql.compare_tiles)
COMPARE_TILE = 3_000_000
# the fields each stage of the comparison adds (_compare); the last stage compares every field
COMPARE_STAGES = (
    ("birth_date", "email", "phone", "national_id"),
    ("birth_date", "email", "phone", "national_id", "first_name", "last_name", "postcode_city"),
)
EDGE_RULES = ("exact:source_id", "exact:email_key", "exact:phone", "fuzzy", "manual_link")  # an edge's rule
SOURCE_ID_PROB = 2.0  # links.SOURCE_ID_PROB: sorts first when clusters are built
# training.train's EM sessions as key columns: (key, fields left out of that session)
SESSIONS = (
    (("birth",), ("birth_date",)),
    (("postcode", "ln_sdx"), ("postcode_city", "street", "last_name")),
    (("fn_canon", "ln"), ("first_name", "last_name")),
    (("email",), ("email",)),
)


def choose_path(n_records: int, setting: str | None = None) -> str:
    """'memory' or 'warehouse': the setting if it names one, else by size."""
    setting = (setting or os.environ.get(PATH_SETTING) or "auto").strip().lower()
    if setting in ("memory", "warehouse"):
        return setting
    if setting != "auto":
        raise ValueError(f"{PATH_SETTING}={setting!r}: use memory, warehouse or auto")
    return "warehouse" if n_records >= WAREHOUSE_FROM_RECORDS else "memory"


def explain_path(n_records: int, dialect: str = "duckdb") -> tuple[str, str]:
    """choose_path and why, for a run's metadata. Only DuckDB runs the warehouse path: its
    Snowflake translation (warehouse_sql.to_snowflake) is not tested end to end."""
    setting = (os.environ.get(PATH_SETTING) or "auto").strip().lower()
    path = choose_path(n_records)
    why = (f"{PATH_SETTING}={setting}" if setting in ("memory", "warehouse")
           else f"auto: {n_records} records, the warehouse path from {WAREHOUSE_FROM_RECORDS}")
    if path == "warehouse" and dialect != "duckdb":
        return "memory", f"{why}, but on {dialect} the warehouse path's SQL is not tested end to end: memory"
    if path == "warehouse" and n_records == 0:
        return "memory", f"{why}, but there are no records: memory"
    return path, why


@dataclass
class Constraints:
    """What binds the clustering beyond the matcher (record ids): a person's link decisions
    (forced links), cannot-link pairs (unlink decisions, saved unmerges), this run's unmerge
    groups (resolve's run config), and the table of the last run's keys (record_id,
    customer_key) that keys are inherited from (keys.assign_keys semantics)."""

    forced: list[tuple[str, str]] = field(default_factory=list)
    cannot: set[tuple[str, str]] = field(default_factory=set)
    unmerges: list[list[str]] = field(default_factory=list)
    previous_keys: str | None = None

    def record_ids(self) -> set[str]:
        return ({r for p in self.forced for r in p} | {r for p in self.cannot for r in p}
                | {r for g in self.unmerges for r in g})


@dataclass
class WarehouseResolution:
    crosswalk_table: str       # record_id, customer_key, cluster_size, source, rule, match_probability,
                               # record_hash, previous_customer_key (the memory path's crosswalk columns)
    links_table: str           # a, b (record positions), left/right record ids, prob, rule
    model: FSModel
    review: pd.DataFrame       # left_record_id, right_record_id (None for a whole record), reason, score
    stats: dict = field(default_factory=dict)
    # <crosswalk_table>_edges: every link and forced link with its rule, whether a cluster used it,
    # and (links) per-field levels and weights, as evidence_frame has them
    edges_table: str = ""
    cannot: set = field(default_factory=set)  # the cannot-link pairs in force (record ids), new unmerges included


class SqlComparator:
    """compare.Comparator's ``fields`` and ``levels(a, b)``, answered by the warehouse."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fields: list[str]):
        self.con, self.fields = con, fields

    def levels(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.size == 0:
            return np.empty((0, len(self.fields)), np.uint8)
        t = _pairs_query(self.con, a, b, levels_sql("select * from _identity_pairs_in", self.fields)
                         + " order by i")
        return np.column_stack([t.column(f"lv_{f}").to_numpy() for f in self.fields]).astype(np.uint8)


def resolve_in_warehouse(con: duckdb.DuckDBPyConnection, source: str, crosswalk_table: str,
                         config: MatchConfig | None = None,
                         constraints: Constraints | None = None) -> WarehouseResolution:
    """Resolve the records of table/view ``source`` (staging.customers columns, one row per
    record_id; the latest ``updated_at`` wins) into ``crosswalk_table`` (replaced), with the
    links behind it in ``<crosswalk_table>_links``. ``source`` and the outputs are trusted
    identifiers (never user input)."""
    cfg = config or MatchConfig()
    _do(con, "set enable_progress_bar = false")
    # every order that matters is an ORDER BY; without this DuckDB buffers big results in order
    keep_order = con.sql("select current_setting('preserve_insertion_order')").fetchall()[0][0]
    _do(con, "set preserve_insertion_order = false")
    try:
        return _resolve(con, source, crosswalk_table, cfg, constraints or Constraints())
    finally:
        _do(con, f"set preserve_insertion_order = {'true' if keep_order else 'false'}")


def _resolve(con, source: str, crosswalk_table: str, cfg: MatchConfig, given: Constraints) -> WarehouseResolution:
    laps, t0 = {}, time.perf_counter()
    lap = _lap(laps)
    columns = set(con.sql(f"select * from {source} limit 0").columns)
    _helper_tables(con)
    _do(con, f"create or replace temp table _identity_features as {features_sql(source, columns, cfg.max_key_group)}")
    n = con.sql("select count(*) from _identity_features").fetchall()[0][0]
    fields = _present_fields(con)
    _do(con, f"create or replace temp table _identity_features as {finished_features_sql(fields)}")
    lap("features")
    for statement in candidates_statements("_identity_candidates", cfg.max_block_size, cfg.block_window,
                                           cfg.max_key_group, position_spans(n, COMPARE_TILE)):
        _do(con, statement)
    n_candidates = con.sql("select count(*) from _identity_candidates where blocked").fetchall()[0][0]
    lap("blocking")
    comp = SqlComparator(con, fields)
    model = _train(con, comp, n, n_candidates, cfg)
    lap("train")
    _compare(con, model, fields, cfg, n)
    lap("compare")
    tf = {}
    for f, c in TF_COLUMNS.items():
        if f in fields:
            present = con.sql(f"select count({c}) from _identity_features").fetchall()[0][0]
            if present:
                tf[f] = (max(float(model.u[fields.index(f)][-1]), 2.0 / present), present)
    caps = {name: cap_table(model, name) for name in model.conditional_u}

    def score(pairs: str, leveled: bool = False) -> str:
        return scores_sql(pairs, fields, model.weight_tables(), _prior(model), tf, cfg.household_extra, leveled,
                          caps)
    thr = float(cfg.threshold)
    rule = ("case when src then 'exact:source_id' " +
            ("when lv_email = 2 then 'exact:email_key' " if "email" in fields else "") +
            ("when lv_phone = 3 then 'exact:phone' " if "phone" in fields else "") + "else 'fuzzy' end")
    _do(con, f"""create or replace temp table _identity_scored as
        select a, b, src, blocked, prob, conflict, n_conflicts, {rule} as rule
        from ({score('select * from _identity_levels', leveled=True)})
        where (blocked and prob >= {thr!r}) or src""")
    links = con.sql(f"""select a, b, case when src then {SOURCE_ID_PROB} else prob end as prob, rule
        from _identity_scored where not conflict and (src or prob >= {thr!r}) order by src, a, b""").to_arrow_table()
    refused = con.sql(f"""select a, b, prob from _identity_scored
        where blocked and prob >= {thr!r} and conflict and n_conflicts <= 1 order by a, b""").to_arrow_table()
    lap("score")
    left, right = (links.column(c).to_numpy().astype(np.int64) for c in ("a", "b"))
    prob = links.column("prob").to_numpy().astype(float)
    # rules as small codes into EDGE_RULES, not a Python string per link (~70 MB at 1M links)
    coded = pc.index_in(links.column("rule"), value_set=pa.array(EDGE_RULES))
    assert coded.null_count == 0, "a link's rule is not one of EDGE_RULES"
    rule = coded.to_numpy().astype(np.int8)
    # a record that fits two namesakes links to neither (links.accepted_links); source-id links stay
    _do(con, f"create or replace temp table _identity_ambiguous as {namesakes_sql(fields, cfg.max_key_group)}")
    amb = con.sql("select pos from _identity_ambiguous").to_arrow_table().column("pos").to_numpy().astype(np.int64)
    held = (np.isin(left, amb) | np.isin(right, amb)) & (prob != SOURCE_ID_PROB)
    ambiguous = np.unique(np.concatenate([left[held], right[held]]))
    ambiguous = ambiguous[np.isin(ambiguous, amb)]
    left, right, prob, rule = left[~held], right[~held], prob[~held], rule[~held]
    # a person's link decisions join the links as forced edges (resolve._edges)
    at = _positions_of(con, given.record_ids())
    pairs = [(at[x], at[y]) for x, y in dict.fromkeys(given.forced) if x in at and y in at]
    fl, fr = (np.array([p[k] for p in pairs], np.int64) for k in (0, 1))
    e_left, e_right = np.concatenate([left, fl]), np.concatenate([right, fr])
    e_prob = np.concatenate([prob, np.full(fl.size, MANUAL_PROB)])
    e_rule = np.concatenate([rule, np.full(fl.size, EDGE_RULES.index("manual_link"), np.int8)])
    nodes = np.unique(np.concatenate([e_left, e_right]))
    attrs = _node_attributes(con, nodes, cfg)
    rules = Rules(assess=lambda x, y: _verdict(con, score, thr, nodes[x], nodes[y]),
                  identities=attrs["identities"], undecidable=attrs["undecidable"],
                  forced=np.arange(e_left.size) >= left.size)
    edges = Edges(np.searchsorted(nodes, e_left), np.searchsorted(nodes, e_right), e_prob)
    cannot = set(given.cannot)
    labels, review, used = cluster(nodes.size, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                   _node_pairs(cannot, at, nodes), rules)
    new_cannot = _unmerge_pairs(con, given.unmerges, at, nodes, labels)
    if new_cannot:  # resolve(): split off, then cluster again with the split as cannot-links
        cannot |= new_cannot
        at.update(_positions_of(con, {r for p in new_cannot for r in p} - at.keys()))
        labels, review, used = cluster(nodes.size, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                       _node_pairs(cannot, at, nodes), rules)
    lap("cluster")
    _write_edges(con, e_left, e_right, e_prob, e_rule, used, left.size, crosswalk_table + "_edges", score, fields)
    _write(con, nodes, labels, crosswalk_table, thr, source, given.previous_keys)
    review_out = _review(con, review, refused, nodes, ambiguous, score, fields, cfg.max_key_group)
    stats = {"path": "warehouse", "records": int(n), "candidate_pairs": int(n_candidates),
             "links": int(left.size), "customers": con.execute(
                 f"select count(distinct customer_key) from {crosswalk_table}").fetchall()[0][0],
             "em_match_rate": model.match_rate, "seconds": round(time.perf_counter() - t0, 3)}
    lap("outputs")
    stats["stage_seconds"] = laps
    stats["duplicates_merged"] = stats["records"] - stats["customers"]
    _drop_helpers(con)
    return WarehouseResolution(crosswalk_table, crosswalk_table + "_links", model, review_out, stats,
                               crosswalk_table + "_edges", cannot)


def _compare(con, model: FSModel, fields: list[str], cfg: MatchConfig, n: int) -> None:
    """Levels of the candidate pairs of ``n`` records that can link, into ``_identity_levels``.
    Term frequencies, caps and households only lower a weight, so a pair whose plain
    Fellegi-Sunter weight misses the threshold cannot link (scoring.matching_pairs), nor can one
    that misses it with every field not yet compared at its best weight. So the pairs pass stages
    (COMPARE_STAGES), each comparing more fields of the pairs the stage before kept: first the
    fields an equality or a Hamming distance decides (about half the pairs of the benchmark's
    blocks stop there), then the names and postcode/city, then every level of the pairs left, the
    street's edit distance of long strings included, plainly weighed. Big tables are compared a
    tile of record positions at a time (compare_tiles, COMPARE_TILE a side)."""
    thr = float(cfg.threshold)
    need = float(np.log2(thr / (1 - thr))) - SLACK
    tables = dict(zip(fields, model.weight_tables()))

    def reaches(known: list[str]) -> str:
        best = _prior(model) + sum(float(np.max(tables[f])) for f in fields if f not in known)
        return f"src or {' + '.join([repr(best)] + [weight_case(f, tables[f]) for f in known])} >= {need!r}"
    stages = [[f for f in fields if f in stage] for stage in COMPARE_STAGES]
    stages = [known for i, known in enumerate(stages) if known and known != (stages[i - 1] if i else [])]
    _do(con, "create or replace temp table _identity_levels as select * from "
             f"({levels_sql('select * from _identity_candidates', fields, sides=False)}) where false")
    tiles, spans = compare_tiles(n, COMPARE_TILE), position_spans(n, COMPARE_TILE)
    if len(tiles) > 1:
        _slice_features(con, spans)
    for a_span, b_span in tiles:
        pairs, left, right = "_identity_candidates", "_identity_features", "_identity_features"
        if len(tiles) > 1:
            pairs = _tile_pairs(con, a_span, b_span)
            left, right = (f"_identity_slice_{spans.index(span)}" for span in (a_span, b_span))
        kept = f"select * from {pairs}"
        for known in stages:
            kept = f"select a, b, src, blocked from ({levels_sql(kept, known, False, left, right)}) where {reaches(known)}"
        with _filters_stay(con):
            _do(con, f"""insert into _identity_levels
                select * from ({levels_sql(kept, fields, False, left, right)}) where {reaches(fields)}""")
    for t in ["tile"] + [f"slice_{k}" for k in range(len(spans))]:
        _do(con, f"drop table if exists _identity_{t}")


def _slice_features(con, spans: list[tuple[int, int]]) -> None:
    """Each span's slice of the features (only LEVEL_COLUMNS) as temp table _identity_slice_<k>:
    the features are stored by position, so a slice reads its own blocks of rows."""
    for k, (x, y) in enumerate(spans):
        _do(con, f"create or replace temp table _identity_slice_{k} as select {', '.join(LEVEL_COLUMNS)} "
                 f"from _identity_features where pos >= {x} and pos < {y}")


def _tile_pairs(con, a_span: tuple[int, int], b_span: tuple[int, int]) -> str:
    """The temp table of a tile's candidate pairs (compare_tiles). The candidates are stored span
    by span of ``a`` (candidates_statements), so the copy reads its span's row groups only."""
    (a0, a1), (b0, b1) = a_span, b_span
    _do(con, f"create or replace temp table _identity_tile as select * from _identity_candidates "
             f"where a >= {a0} and a < {a1} and b >= {b0} and b < {b1}")
    return "_identity_tile"


@contextmanager
def _filters_stay(con):
    """Keep filters where the query puts them: pushed below the projections of levels_sql, a
    filter on a level would compute each similarity again once per mention."""
    before = con.sql("select current_setting('disabled_optimizers')").fetchall()[0][0]
    _do(con, f"set disabled_optimizers = '{','.join(filter(None, [before, 'filter_pushdown']))}'")
    try:
        yield
    finally:
        _do(con, f"set disabled_optimizers = '{before}'")


def _do(con, sql: str) -> None:
    """Run a statement to completion (DuckDB 2 refuses new work while a result is unread)."""
    con.execute(sql).fetchall()


def _lap(laps: dict):
    t = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        laps[name] = round(now - t[0], 3)
        t[0] = now
    return lap


def _prior(model: FSModel) -> float:
    return float(np.log2(model.match_rate / (1 - model.match_rate)))


def _helper_tables(con) -> None:
    canon = canonical_names()
    con.register("_nick_canon_in", pa.table({"name": list(canon), "canon": list(canon.values())}))
    _do(con, "create or replace temp table _identity_nick_canon as select * from _nick_canon_in")
    pairs = sorted(nickname_pairs())
    con.register("_nick_pairs_in", pa.table({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]}))
    _do(con, "create or replace temp table _identity_nick_pairs as select * from _nick_pairs_in")
    con.unregister("_nick_canon_in")
    con.unregister("_nick_pairs_in")


def _drop_helpers(con) -> None:
    for t in ("features", "candidates", "levels", "scored", "nick_canon", "nick_pairs", "blocks",
              "ambiguous", "labeled", "keys", "edges"):
        _do(con, f"drop table if exists _identity_{t}")


def _present_fields(con) -> list[str]:
    counts = con.sql("select " + ", ".join(f"count({c}) as {c}" for c in
                                               ("fn", "ln", "birth", "street", "postcode", "city", "email", "phone",
                                                "national_id")) + " from _identity_features").fetchall()[0]
    have = dict(zip(("fn", "ln", "birth", "street", "postcode", "city", "email", "phone", "national_id"), counts))
    return [f for f, cols in FIELD_COLUMNS.items() if any(have[c] for c in cols)]


def _pairs_query(con, a: np.ndarray, b: np.ndarray, sql: str) -> pa.Table:
    con.register("_identity_pairs_in", pa.table({"i": np.arange(a.size, dtype=np.int64),
                                                 "a": a.astype(np.int64), "b": b.astype(np.int64)}))
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.unregister("_identity_pairs_in")


def _train(con, comp: SqlComparator, n: int, n_candidates: int, cfg: MatchConfig) -> FSModel:
    """training.train on samples of pairs drawn in the warehouse (same samples when they hold
    every pair; u from the same random record positions)."""
    rng = np.random.default_rng(cfg.seed)
    u = estimate_u(comp, n, cfg.u_sample_pairs, cfg.seed)
    sums, seen = [np.zeros_like(x) for x in u], np.zeros(len(u))
    for cols, excluded in SESSIONS:
        a, b = _session_pairs(con, cols, rng)
        if a.size < 50:
            continue
        keep = [k for k, f in enumerate(comp.fields) if f not in excluded]
        m = session_m(comp.levels(a, b)[:, keep], [comp.fields[k] for k in keep], [u[k] for k in keep], cfg)
        for j, k in enumerate(keep):
            sums[k] += m.m[j]
            seen[k] += 1
    model = FSModel(list(comp.fields), [s / c if c else _fallback(len(s)) for s, c in zip(sums, seen)], u, 0.5)
    model.conditional_u = conditional_u(lambda cols: _condition_groups(con, cols), comp.levels,
                                        list(comp.fields), cfg.seed)
    # a sample by the pairs' own hash: the same pairs whatever order the parallel blocking
    # stored them in (a reservoir follows that order, which changes with threads and plans)
    sample = "" if n_candidates <= PRIOR_SAMPLE_PAIRS else \
        f"order by hash(a, b, {int(cfg.seed)}), a, b limit {PRIOR_SAMPLE_PAIRS}"
    drawn = f"select a, b from _identity_candidates where blocked {sample}"
    cand = con.sql(f"select {', '.join('lv_' + f for f in comp.fields)} from "
                   f"({levels_sql(drawn, comp.fields, sides=False)})").to_arrow_table()
    levels = np.column_stack([cand.column(f"lv_{f}").to_numpy() for f in comp.fields]).astype(np.uint8) \
        if comp.fields else np.empty((cand.num_rows, 0), np.uint8)
    model.match_rate = min(match_rate(model, levels, n_candidates, n, cfg.household_extra), cfg.max_prior)
    return model


def _condition_groups(con, cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """namesakes.condition_groups in the warehouse: the positions of the records holding a birth
    date and every column of ``cols`` whose group (their values of ``cols``) holds 2 to
    CONDITION_MAX_GROUP of them, and the group as its first record's position (group_codes'
    order: first appearance). Only these integers come to Python, never a code per record."""
    held = " and ".join(f"{c} is not null" for c in cols)
    t = con.sql(f"""with firsts as (select {', '.join(cols)}, min(pos) as key from _identity_features
                                    where {held} group by all),
        keyed as (select f.pos, k.key from _identity_features f join firsts k using ({', '.join(cols)})
                  where f.birth is not null),
        sized as (select key from keyed group by key having count(*) between 2 and {CONDITION_MAX_GROUP})
        select pos, key from keyed semi join sized using (key) order by pos""").fetchnumpy()
    return np.asarray(t["pos"], np.int64), np.asarray(t["key"], np.int64)


def _session_pairs(con, cols: tuple[str, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """blocking.sample_pairs_within_groups in the warehouse: every pair of blocks of 2 to
    TRAINING_MAX_BLOCK records when they are few, else a uniform sample with replacement (the
    block by its pairs, two different members in it), drawn from block sizes only."""
    key, part = " and ".join(f"{c} is not null" for c in cols), ", ".join(cols)
    on = " and ".join(f"m.{c} = k.{c}" for c in cols)
    _do(con, f"""create or replace temp table _identity_blocks as
        select {part}, count(*) as size, row_number() over (order by {part}) - 1 as block
        from _identity_features where {key} group by {part} having count(*) between 2 and {TRAINING_MAX_BLOCK}""")
    sizes = con.sql("select size from _identity_blocks order by block").to_arrow_table().column(0).to_numpy()
    block_pairs = sizes * (sizes - 1) / 2
    members = f"""select k.block, m.pos, row_number() over (partition by k.block order by m.pos) - 1 as rn
                  from _identity_features m join _identity_blocks k on {on}"""
    if block_pairs.sum() <= MAX_TRAINING_PAIRS:
        t = con.sql(f"""with mem as ({members})
            select l.pos as a, r.pos as b from mem l join mem r on l.block = r.block and l.rn < r.rn
            """).to_arrow_table()
    else:
        block = rng.choice(sizes.size, MAX_TRAINING_PAIRS, p=block_pairs / block_pairs.sum())
        i = rng.integers(0, sizes[block])
        j = rng.integers(0, sizes[block] - 1)
        j += j >= i
        con.register("_identity_draws", pa.table({"block": block, "i": i, "j": j}))
        try:
            t = con.sql(f"""with mem as ({members})
                select l.pos as a, r.pos as b from _identity_draws d
                join mem l on l.block = d.block and l.rn = d.i join mem r on r.block = d.block and r.rn = d.j
                """).to_arrow_table()
        finally:
            con.unregister("_identity_draws")
    a, b = t.column("a").to_numpy().astype(np.int64), t.column("b").to_numpy().astype(np.int64)
    return np.minimum(a, b), np.maximum(a, b)


def _node_attributes(con, nodes: np.ndarray, cfg: MatchConfig) -> dict:
    """What the guards need of the linked records only: identifier codes for the identity
    limits (equal values, equal codes; -1 = none) and whether a birth date is missing
    (resolve._identities, Rules.undecidable). The codes are numbered in the warehouse: only
    integers come to Python (the values of 2M linked records as pandas objects took ~450 MB)."""
    def code(value: str, where: str) -> str:
        return f"case when {where} then dense_rank() over (order by {value}) - 1 else -1 end"
    limits = {name: limit for name, limit in cfg.identity_limits if name in ("email", "phone")}
    cols = [f"{code('f.' + name, f'f.{name} is not null')} as c{k}" for k, name in enumerate(limits)]
    for k, src in enumerate(cfg.unique_id_sources):
        held = "split_part(f.source_key, '|', 1) = '" + src.replace("'", "''") + "'"
        cols.append(f"{code('f.source_key', held)} as s{k}")
    con.register("_identity_nodes", pa.table({"i": np.arange(nodes.size, dtype=np.int64), "pos": nodes}))
    try:
        t = con.sql(f"""select {', '.join(cols + ['f.birth is null as no_birth'])}
                        from _identity_nodes x join _identity_features f on f.pos = x.pos order by x.i""").fetchnumpy()
    finally:
        con.unregister("_identity_nodes")
    ids = {name: (np.asarray(t[f"c{k}"], np.int64), limit) for k, (name, limit) in enumerate(limits.items())}
    for k, src in enumerate(cfg.unique_id_sources):
        ids[f"source_id:{src}"] = (np.asarray(t[f"s{k}"], np.int64), 1)
    return {"identities": ids, "undecidable": np.asarray(t["no_birth"], bool)}


def _verdict(con, score, threshold: float, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(conflict, linked) of record pairs, as resolve._verdict, scored by the warehouse."""
    t = _pairs_query(con, a, b, f"select conflict, prob from ({score('select * from _identity_pairs_in')}) order by i")
    conflict = t.column("conflict").to_numpy(zero_copy_only=False).astype(bool)
    return conflict, (t.column("prob").to_numpy() >= threshold) & ~conflict


def _write(con, nodes: np.ndarray, labels: np.ndarray, out: str, threshold: float, source: str,
           previous_keys: str | None) -> None:
    """The crosswalk: keys as keys.assign_keys gives them (inherited from ``previous_keys``, else
    from a cluster's smallest record id, as a full in-memory run gives them); the links behind it
    next to it."""
    con.register("_identity_labels", pa.table({"pos": nodes, "label": labels.astype(np.int64)}))
    try:
        _do(con, """create or replace temp table _identity_labeled as
            select f.record_id, f.pos, coalesce(l.label, -1 - f.pos) as label
            from _identity_features f left join _identity_labels l on l.pos = f.pos""")
    finally:
        con.unregister("_identity_labels")
    assign_keys_sql(con, "_identity_labeled", previous_keys, "_identity_keys")
    columns = set(con.sql(f"select * from {source} limit 0").columns)
    _do(con, f"create or replace table {out} as " + crosswalk_sql(source, columns, previous_keys))
    _do(con, f"""create or replace table {out}_links as
        select s.a, s.b, l.record_id as left_record_id, r.record_id as right_record_id,
               case when s.src then {SOURCE_ID_PROB} else s.prob end as match_probability, s.rule
        from _identity_scored s join _identity_features l on l.pos = s.a join _identity_features r on r.pos = s.b
        where not s.conflict and (s.src or (s.prob >= {threshold!r}
          and s.a not in (select pos from _identity_ambiguous) and s.b not in (select pos from _identity_ambiguous)))""")


def _write_edges(con, left, right, prob, rule, used, n_links: int, out: str, score, fields) -> None:
    """Every edge (record positions) with its rule and whether a cluster used it, and the links'
    levels and weights (link_evidence_sql), into table ``out``."""
    con.register("_identity_edges_in", pa.table({
        "a": left.astype(np.int64), "b": right.astype(np.int64), "prob": prob.astype(float),
        "rule": rule, "used": used[:left.size].astype(bool),
        "is_link": np.arange(left.size) < n_links}))
    try:
        names = "[" + ", ".join(f"'{r}'" for r in EDGE_RULES) + "]"
        _do(con, f"create or replace temp table _identity_edges as "
                 f"select * replace ({names}[rule + 1] as rule) from _identity_edges_in")
    finally:
        con.unregister("_identity_edges_in")
    _do(con, f"create or replace table {out} as " + link_evidence_sql(
        score("select a, b from _identity_edges where is_link"), fields))


def _positions_of(con, ids: set[str]) -> dict[str, int]:
    """Record id -> position, for the few records a person's decisions name."""
    if not ids:
        return {}
    con.register("_identity_ids", pa.table({"record_id": sorted(ids)}))
    try:
        t = con.sql("select f.record_id, f.pos from _identity_features f semi join _identity_ids i "
                    "on i.record_id = f.record_id").fetchall()
    finally:
        con.unregister("_identity_ids")
    return {r: int(p) for r, p in t}


def _node_pairs(pairs: set[tuple[str, str]], at: dict[str, int], nodes: np.ndarray) -> set[tuple[int, int]]:
    """Record-id pairs as pairs of node indices (pairs with a record in no edge cannot join anyway)."""
    out = set()
    for x, y in pairs:
        if x in at and y in at:
            i, j = np.searchsorted(nodes, [at[x], at[y]])
            if i < nodes.size and j < nodes.size and nodes[i] == at[x] and nodes[j] == at[y]:
                out.add((int(i), int(j)))
    return out


def _unmerge_pairs(con, unmerges: list[list[str]], at: dict[str, int], nodes: np.ndarray,
                   labels: np.ndarray) -> set[tuple[str, str]]:
    """resolve._unmerge_pairs over the nodes: each group's records against the rest of their cluster."""
    out = set()
    for group in unmerges:
        index = {g: int(np.searchsorted(nodes, at[g])) for g in group if g in at}
        index = {g: i for g, i in index.items() if i < nodes.size and nodes[i] == at[g]}
        for lab in {labels[i] for i in index.values()}:
            members = set(_record_ids(con, nodes[labels == lab]))
            ids = {g for g, i in index.items() if labels[i] == lab}
            out |= {(x, y) for x in ids for y in members - ids}
    return out


def _record_ids(con, positions: np.ndarray) -> list[str]:
    con.register("_identity_pos", pa.table({"pos": positions.astype(np.int64)}))
    try:
        return [r for (r,) in con.sql("select f.record_id from _identity_features f semi join _identity_pos p "
                                      "on p.pos = f.pos").fetchall()]
    finally:
        con.unregister("_identity_pos")


def _review(con, review: pd.DataFrame, refused: pa.Table, nodes: np.ndarray, ambiguous: np.ndarray, score,
            fields: list[str], max_group: int) -> pd.DataFrame:
    """Review cases with record ids (output.review_frame's columns): the guards' refusals, the pairs
    refused on one conflict and ambiguous records, a pair's evidence as output.pair_evidence gives
    it; then the shared keys refused (example: the smallest record id) and placeholder profiles."""
    left = nodes[review["left"].to_numpy(np.int64)] if len(review) else np.empty(0, np.int64)
    right = np.where(review["right"].to_numpy(np.int64) >= 0, nodes[np.maximum(review["right"].to_numpy(np.int64), 0)],
                     -1) if len(review) else np.empty(0, np.int64)
    cases = pd.DataFrame({"a": np.concatenate([left, refused.column("a").to_numpy(), ambiguous]),
                          "b": np.concatenate([right, refused.column("b").to_numpy(), np.full(ambiguous.size, -1)]),
                          "reason": list(review["reason"]) + ["conflict"] * refused.num_rows
                          + ["ambiguous"] * ambiguous.size,
                          "score": np.concatenate([review["score"].to_numpy(float), refused.column("prob").to_numpy(),
                                                   np.full(ambiguous.size, np.nan)])})
    cases["i"] = np.arange(len(cases), dtype=np.int64)
    con.register("_identity_cases", pa.Table.from_pandas(cases, preserve_index=False))
    try:
        pairs = con.sql("""select l.record_id as left_record_id, r.record_id as right_record_id, c.reason, c.score, c.i
            from _identity_cases c join _identity_features l on l.pos = c.a
            left join _identity_features r on r.pos = c.b order by c.i""").df()
        evidence = _pair_evidence(con.sql(f"""select i, {', '.join('lv_' + f for f in fields) or '1 as none'},
            weight, prob, tf_adjustment, household_adjustment, conflict
            from ({score('select i, a, b from _identity_cases where b >= 0')})""").df(), fields)
    finally:
        con.unregister("_identity_cases")
    pairs["evidence"] = pairs["i"].map(evidence).astype(object).where(pairs["i"].isin(evidence.index), None)
    keys = " union all ".join(
        f"select 'shared_key:{rule}' as reason, count(*) as score, min(record_id) as left_record_id "
        f"from _identity_features where {col} is not null group by {col} having count(*) > {int(max_group)}"
        for rule, col in (("email_key", "email"), ("phone", "phone"), ("source_id", "source_key")))
    extra = con.sql(f"""select left_record_id, null::varchar as right_record_id, reason, score::double as score
        from ({keys}) union all
        select record_id, null, 'placeholder_profile', null from _identity_features where placeholder""").df()
    extra["evidence"] = None
    return pd.concat([pairs.drop(columns="i"), extra], ignore_index=True)


def _pair_evidence(s: pd.DataFrame, fields: list[str]) -> pd.Series:
    """output.pair_evidence's JSON per scored pair (by its row ``i``)."""
    out = {}
    for row in s.itertuples(index=False):
        detail = {f: LEVELS[f][int(getattr(row, "lv_" + f))] for f in fields}
        detail.update(match_weight=round(float(row.weight), 3), match_probability=round(float(row.prob), 6),
                      tf_adjustment=round(float(row.tf_adjustment), 3),
                      household_adjustment=round(float(row.household_adjustment), 3), conflict=bool(row.conflict))
        out[row.i] = json.dumps(detail)
    return pd.Series(out, dtype=object)
