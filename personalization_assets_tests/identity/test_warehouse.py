"""The warehouse path of identity resolution against the in-memory engine, as the engine is now.

Same candidate pairs, same comparison levels, same scores and conflicts, and pairwise F1 within
0.002 on FEBRL 1 and on a small sample of the household generator. The Snowflake translation
is checked as text and run on fakesnow.
"""

import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from bench.identity.households import generate_households
from personalization_assets.identity import MatchConfig, resolve
from personalization_assets.identity import warehouse as warehouse_module
from personalization_assets.identity.blocking import blocking_keys, candidate_pairs
from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.evidence import PairScorer
from personalization_assets.identity.exact import exact_edges
from personalization_assets.identity.links import union_pairs
from personalization_assets.identity.namesakes import cap_table
from personalization_assets.identity.prepare import features
from personalization_assets.identity.training import train
from personalization_assets.identity.warehouse import (
    PATH_SETTING,
    WAREHOUSE_FROM_RECORDS,
    SqlComparator,
    _helper_tables,
    _present_fields,
    choose_path,
    resolve_in_warehouse,
)
from personalization_assets.identity.warehouse_sql import (
    BLOCKING_KEYS,
    candidates_statements,
    compare_tiles,
    features_sql,
    finished_features_sql,
    levels_sql,
    position_spans,
    scores_sql,
    to_snowflake,
)
from personalization_assets_tests.conftest import FIXTURES, require_module

FEBRL = FIXTURES / "febrl" / "dataset1.csv"


def _febrl() -> pd.DataFrame:
    raw = pd.read_csv(FEBRL, skipinitialspace=True, dtype=str)
    street = (raw["street_number"].fillna("") + " " + raw["address_1"].fillna("")).str.strip()
    df = pd.DataFrame({"record_id": raw["rec_id"], "source": "febrl", "source_id": raw["rec_id"],
                       "first_name": raw["given_name"], "last_name": raw["surname"],
                       "street": street.where(street != ""), "city": raw["suburb"], "postcode": raw["postcode"],
                       "birth_date": raw["date_of_birth"], "national_id": raw["soc_sec_id"]})
    df["entity"] = df["record_id"].str.extract(r"rec-(\d+)", expand=False)
    return df


def _households() -> pd.DataFrame:
    return generate_households(2000, seed=3).drop(columns=["household", "role"])


DATASETS = {"febrl1": _febrl, "households2k": _households}


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Records in record-id order: the warehouse numbers records so, and the same positions give
    the in-memory engine the same random pairs for u."""
    return df.sort_values("record_id", ignore_index=True)


def _warehouse(df: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("records_in", df.drop(columns="entity"))
    con.execute("create table records as select * from records_in").fetchall()
    con.unregister("records_in")
    return con


def _f1(truth: pd.Series, clusters: pd.Series) -> float:
    df = pd.DataFrame({"e": truth, "c": clusters.reindex(truth.index)})
    pairs = lambda s: float((s * (s - 1) // 2).sum())  # noqa: E731
    tp = pairs(df.groupby(["c", "e"]).size())
    p, r = tp / pairs(df.groupby("c").size()), tp / pairs(df.groupby("e").size())
    return 2 * p * r / (p + r)


@pytest.mark.parametrize("name", list(DATASETS))
def test_pairwise_f1_within_0002_of_the_engine(name):
    df = _ordered(DATASETS[name]())
    truth = df.set_index("record_id")["entity"]
    memory = resolve(df.drop(columns="entity"))
    con = _warehouse(df)
    res = resolve_in_warehouse(con, "records", "main.crosswalk")
    cw = con.execute("select record_id, customer_key from main.crosswalk").df()
    f1_memory = _f1(truth, memory.crosswalk.set_index("record_id")["customer_key"])
    f1_warehouse = _f1(truth, cw.set_index("record_id")["customer_key"])
    assert len(cw) == len(df) and cw["record_id"].is_unique
    assert abs(f1_warehouse - f1_memory) <= 0.002, (name, f1_memory, f1_warehouse, res.stats)
    assert res.stats["duplicates_merged"] > 0
    links = con.execute("select count(*) from main.crosswalk_links").fetchall()[0][0]
    assert links >= res.stats["duplicates_merged"]  # every merge stands on links


def test_features_keep_the_latest_row_of_a_record_in_record_id_order():
    """One row per record id, the latest ``updated_at`` winning; positions follow the record ids."""
    con = duckdb.connect()
    con.execute("""create table records as select * from (values
        ('r2', 'Ann', 'Lee', timestamp '2026-01-01'), ('r1', 'Bob', 'Ray', timestamp '2026-01-01'),
        ('r2', 'Anne', 'Lee', timestamp '2026-03-01'), ('r3', 'Cy', 'Orr', null), ('r1', 'Rob', 'Ray', null))
        t(record_id, first_name, last_name, updated_at)""")
    _helper_tables(con)
    columns = set(con.sql("select * from records limit 0").columns)
    got = con.execute(f"select pos, record_id, fn from ({features_sql('records', columns, 20)}) order by pos").fetchall()
    assert got == [(0, "r1", "bob"), (1, "r2", "anne"), (2, "r3", "cy")]
    # without updated_at a repeated id still gives one record (the first by its values)
    con.execute("create or replace table records as select * exclude (updated_at) from records")
    got = con.execute(f"select pos, record_id, fn from ({features_sql('records', columns - {'updated_at'}, 20)}) "
                      "order by pos").fetchall()
    assert got == [(0, "r1", "bob"), (1, "r2", "ann"), (2, "r3", "cy")]


def _setup(df: pd.DataFrame, cfg: MatchConfig):
    """Both engines' view of the same records: features, comparator, warehouse tables."""
    con = _warehouse(df)
    _helper_tables(con)
    columns = set(con.sql("select * from records limit 0").columns)
    con.execute(f"create temp table _identity_features as {features_sql('records', columns, cfg.max_key_group)}")
    fields = _present_fields(con)
    con.execute(f"create or replace temp table _identity_features as {finished_features_sql(fields)}").fetchall()
    f = features(df.drop(columns="entity"))
    return con, f, Comparator(f), fields


@pytest.mark.parametrize("tile", [None, 170])
@pytest.mark.parametrize("name", list(DATASETS))
def test_candidate_pairs_are_the_engines(name, tile):
    """The same pairs as the engine's blocking; merged span by span (``tile``), stored in the
    order of their spans of ``a``, which the comparison's tiles rely on to read little."""
    df, cfg = _ordered(DATASETS[name]()), MatchConfig()
    con, f, _, _ = _setup(df, cfg)
    assert set(BLOCKING_KEYS) == set(blocking_keys(f)), "a blocking key was added or removed in blocking.py"
    a, b, _ = candidate_pairs(f, cfg.max_block_size, window=cfg.block_window)
    ex, _ = exact_edges(f, cfg.max_key_group)
    a, b = union_pairs(a, b, ex["left"].to_numpy(), ex["right"].to_numpy(), len(f))
    spans = position_spans(len(f), tile) if tile else None
    for statement in candidates_statements("cand", cfg.max_block_size, cfg.block_window, cfg.max_key_group, spans):
        con.execute(statement).fetchall()
    got = con.execute("select a, b from cand where blocked").df()
    assert set(zip(got["a"], got["b"])) == set(zip(a.tolist(), b.tolist()))
    assert con.execute("select count(*) from cand").fetchall() == con.execute(
        "select count(distinct (a, b)) from cand").fetchall()
    if spans:
        stored = con.execute("select a from cand order by rowid").df()["a"].to_numpy()
        assert len(spans) > 1 and (np.diff(stored // tile) >= 0).all()


@pytest.mark.parametrize("n", [0, 1, 2, 7, 12])
@pytest.mark.parametrize("tile", [1, 3, 4, 50])
def test_compare_tiles_cover_every_pair_once(n, tile):
    tiles = compare_tiles(n, tile)
    for a in range(n):
        for b in range(a + 1, n):
            assert sum(a0 <= a < a1 and b0 <= b < b1 for (a0, a1), (b0, b1) in tiles) == 1, (a, b)
    assert all(a1 - a0 <= tile and b1 - b0 <= tile for (a0, a1), (b0, b1) in tiles)


def test_comparing_in_tiles_resolves_as_in_one_piece(monkeypatch):
    df = _ordered(_febrl())
    out = {}
    for tile in (10**9, 170):  # FEBRL 1's 1,000 records: one tile, then 6 x 7 / 2 = 21 tiles
        monkeypatch.setattr(warehouse_module, "COMPARE_TILE", tile)
        con = _warehouse(df)
        res = resolve_in_warehouse(con, "records", "main.crosswalk")
        out[tile] = (con.execute("select record_id, customer_key from main.crosswalk order by 1").fetchall(),
                     con.execute("select a, b, match_probability, rule from main.crosswalk_links order by 1, 2")
                     .fetchall(), res.stats["links"])
    assert len(compare_tiles(len(df), 170)) == 21
    assert out[170] == out[10**9]
    assert out[170][2] > 0



@pytest.mark.parametrize("name", list(DATASETS))
def test_comparing_in_stages_keeps_the_pairs_one_stage_keeps(monkeypatch, name):
    """A stage drops a pair only when it misses the threshold with every field not yet compared
    at its best weight: the staged comparison keeps the same pairs, with the same levels, as one
    comparison of every field, in one piece or in tiles."""
    df = _ordered(DATASETS[name]())
    staged = warehouse_module.COMPARE_STAGES
    monkeypatch.setattr(warehouse_module, "_drop_helpers", lambda con: None)
    kept = {}
    for stages, tile in (((), 10**9), (staged, 10**9), (staged, 700)):
        monkeypatch.setattr(warehouse_module, "COMPARE_STAGES", stages)
        monkeypatch.setattr(warehouse_module, "COMPARE_TILE", tile)
        con = _warehouse(df)
        resolve_in_warehouse(con, "records", "main.crosswalk")
        kept[stages, tile] = con.execute("select * from _identity_levels order by a, b").fetchall()
        candidates = con.execute("select count(*) from _identity_candidates").fetchall()[0][0]
    assert 0 < len(kept[(), 10**9]) < candidates
    assert kept[staged, 10**9] == kept[(), 10**9]
    assert kept[staged, 700] == kept[(), 10**9]

def _pairs(con, f, seed=1) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs plus random pairs: both kinds of pair the engine scores."""
    a, b, _ = candidate_pairs(f, MatchConfig().max_block_size, window=MatchConfig().block_window)
    rng = np.random.default_rng(seed)
    ra, rb = rng.integers(0, len(f), 3000), rng.integers(0, len(f), 3000)
    keep = ra != rb
    return np.r_[a, np.minimum(ra, rb)[keep]].astype(np.int64), np.r_[b, np.maximum(ra, rb)[keep]].astype(np.int64)


@pytest.mark.parametrize("name", list(DATASETS))
def test_comparison_levels_are_the_engines(name):
    df = _ordered(DATASETS[name]())
    con, f, comp, fields = _setup(df, MatchConfig())
    assert fields == comp.fields
    a, b = _pairs(con, f)
    ours, theirs = SqlComparator(con, fields).levels(a, b), comp.levels(a, b)
    for k, field in enumerate(fields):
        same = (ours[:, k] == theirs[:, k]).mean()
        # the street's Indel ratio is estimated from Levenshtein (warehouse_sql docstring)
        assert same >= (0.99 if field == "street" else 1.0), (field, same)


@pytest.mark.parametrize("name", list(DATASETS))
def test_scores_and_conflicts_are_the_engines(name):
    df, cfg = _ordered(DATASETS[name]()), MatchConfig()
    con, f, comp, fields = _setup(df, cfg)
    a, b = _pairs(con, f)
    model = train(f, comp, comp.levels(a, b), a.size, cfg)
    if "email" in fields:  # namesakes' shared e-mails weigh the same in both (2k records measure too few)
        model.conditional_u = {"email|names": 0.05}
    scorer = PairScorer(comp, model, cfg.household_extra, f.codes["generation"])
    theirs = scorer.assess(a, b)
    tf = {}
    for field, column in {"first_name": "fn", "last_name": "ln", "email": "email", "phone": "phone",
                          "street": "street"}.items():
        present = int((f.codes[column] >= 0).sum())
        if field in fields and present:
            tf[field] = (max(float(model.u[fields.index(field)][-1]), 2.0 / present), present)
    prior = float(np.log2(model.match_rate / (1 - model.match_rate)))
    con.register("pairs_in", pd.DataFrame({"i": np.arange(a.size), "a": a, "b": b}))
    caps = {name: cap_table(model, name) for name in model.conditional_u}
    ours = con.execute(scores_sql("select * from pairs_in", fields, model.weight_tables(), prior, tf,
                                  cfg.household_extra, caps=caps) + " order by i").df()
    same_street = ours["lv_street"].to_numpy() == theirs.levels[:, fields.index("street")] if "street" in fields \
        else np.ones(a.size, bool)
    assert (ours["conflict"].to_numpy() == theirs.conflict).all()
    assert (ours["n_conflicts"].to_numpy() == theirs.n_conflicts).all()
    assert np.abs(ours["weight"].to_numpy() - theirs.weight)[same_street].max() < 1e-3
    linked_ours = ours["prob"].to_numpy() >= cfg.threshold
    assert (linked_ours == (theirs.prob >= cfg.threshold))[same_street].all()


def test_capped_distance_is_osa_up_to_one():
    """Dates, postcodes and phones are compared by Hamming with Damerau-Levenshtein only where it
    can say 1: the result is OSA capped at 2 (2 = two or more edits), random strings included."""
    from rapidfuzz.distance import OSA

    from personalization_assets.identity.warehouse_sql import _within_one

    cases = [("19750312", "19750312"), ("19750312", "19750313"), ("19750312", "19750321"),
             ("19750312", "19753012"), ("19750312", "1975312"), ("19750312", "197503122"), ("0412", "041"),
             ("1234", "2143"), ("abcd", "bcda"), ("2000", "0200"), ("12", "1234"), ("", "1"), (None, "1")]
    rng = np.random.default_rng(5)
    cases += [("".join(rng.choice(list("0123"), rng.integers(3, 7))), "".join(rng.choice(list("0123"),
              rng.integers(3, 7)))) for _ in range(3000)]
    con = duckdb.connect()
    con.register("pairs_in", pd.DataFrame(cases, columns=["x", "y"]))
    got = con.execute(f"select {_within_one('x', 'y')} as d from pairs_in").df()["d"]
    want = [None if x is None else min(OSA.distance(x, y), 2) for x, y in cases]
    assert [None if pd.isna(g) else int(g) for g in got] == want


def test_choose_path_by_setting_or_size(monkeypatch):
    monkeypatch.delenv(PATH_SETTING, raising=False)
    assert choose_path(WAREHOUSE_FROM_RECORDS - 1) == "memory"
    assert choose_path(WAREHOUSE_FROM_RECORDS) == "warehouse"
    assert choose_path(10, "warehouse") == "warehouse"
    monkeypatch.setenv(PATH_SETTING, "memory")
    assert choose_path(10 * WAREHOUSE_FROM_RECORDS) == "memory"
    monkeypatch.setenv(PATH_SETTING, "fastest")
    with pytest.raises(ValueError, match=PATH_SETTING):
        choose_path(1)


def test_snowflake_translation_names_snowflake_functions():
    fields = ["first_name", "last_name", "birth_date", "street", "postcode_city", "email", "phone", "national_id"]
    weights = [np.linspace(-3, 5, 5 if f not in ("email", "phone") else (3 if f == "email" else 4)) for f in fields]
    sql = to_snowflake(scores_sql("select a, b from pairs", fields, weights, -10.0,
                                  {"first_name": (0.01, 100)}, 0.0))
    upper = sql.upper()
    assert "JAROWINKLER_SIMILARITY(" in upper and "EDITDISTANCE(" in upper
    assert "JARO_WINKLER_SIMILARITY" not in upper and "DAMERAU" not in upper and "LEVENSHTEIN(" not in upper
    # Snowflake's Jaro-Winkler is an integer 0-100: every use is scaled back to 0-1
    scaled = re.findall(r"JAROWINKLER_SIMILARITY\([^()]*\) / 100\.0", upper)
    assert len(scaled) == upper.count("JAROWINKLER_SIMILARITY(") > 0


def _load(cur, table: str, frame: pd.DataFrame) -> None:
    """A small frame into fakesnow through plain Snowflake SQL (write_pandas needs a real session)."""
    types = {"b": "boolean", "i": "number", "u": "number", "f": "float"}
    cols = ", ".join(f"{c} {types.get(frame[c].dtype.kind, 'varchar')}" for c in frame.columns)
    cur.execute(f"create or replace table {table} ({cols})")
    rows = [tuple(None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in r)
            for r in frame.itertuples(index=False)]
    one = f"({', '.join('?' * len(frame.columns))})"
    for start in range(0, len(rows), 500):  # one statement per 500 rows: fakesnow runs each statement
        chunk = rows[start:start + 500]
        cur.execute(f"insert into {table} values {', '.join([one] * len(chunk))}", [v for r in chunk for v in r])


def test_snowflake_translation_runs_on_fakesnow():
    """The translated levels run on fakesnow (Snowflake's functions emulated on DuckDB: it has
    JAROWINKLER_SIMILARITY as Snowflake's 0-100 integer and EDITDISTANCE) and agree with DuckDB's
    except where the integer Jaro-Winkler or the transposition-blind EDITDISTANCE move a value
    across a level boundary."""
    fakesnow = require_module("fakesnow")
    import snowflake.connector

    df = _ordered(_febrl())
    con, f, comp, fields = _setup(df, MatchConfig())
    a, b = _pairs(con, f)
    feats = con.execute("select * from _identity_features").df()
    nick = con.execute("""select * from _identity_nick_pairs where a in (select fn from _identity_features)
                          and b in (select fn from _identity_features)""").df()
    duck = SqlComparator(con, fields).levels(a, b)
    with fakesnow.patch():
        snowflake.connector.paramstyle = "qmark"
        sf = snowflake.connector.connect(database="warehouse", schema="public")
        try:
            cur = sf.cursor()
            _load(cur, "_identity_features", feats)
            _load(cur, "_identity_nick_pairs", nick)
            _load(cur, "pairs_in", pd.DataFrame({"i": np.arange(a.size), "a": a, "b": b}))
            cur.execute(to_snowflake(levels_sql("select * from pairs_in", fields) + " order by i"))
            names = [d[0].lower() for d in cur.description]
            rows = cur.fetchall()
        finally:
            sf.close()
    snow = np.array([[r[names.index(f"lv_{fld}")] for fld in fields] for r in rows], dtype=np.uint8)
    assert snow.shape == duck.shape
    agree = {fld: float((snow[:, k] == duck[:, k]).mean()) for k, fld in enumerate(fields)}
    print(agree)
    assert min(agree.values()) >= 0.97, agree


@pytest.mark.parametrize("sample", [None, 300])
def test_conditional_u_draws_the_engines_pairs_from_the_warehouse(monkeypatch, sample):
    """The groups conditional_u samples (records with a birth date sharing a first and last name)
    come from the warehouse as integers, and give the pairs the engine draws from per-record
    codes (pd.factorize by position), whatever order the rows are stored in: every pair when
    they are few, and the same sample (same seed) when they are more than the sample."""
    from personalization_assets.identity import namesakes

    if sample:
        monkeypatch.setattr(namesakes, "CONDITION_SAMPLE", sample)
    rng = np.random.default_rng(4)
    n = 3000
    fn = np.where(rng.random(n) < 0.05, [f"x{i}" for i in range(n)], rng.choice(["ann", "bob", "cy", "dé"], n,
                                                                                p=[0.6, 0.2, 0.15, 0.05]))
    values = pd.DataFrame({"pos": rng.permutation(n), "fn": np.where(rng.random(n) < 0.1, None, fn),
                           "ln": rng.choice(["li", "ng", "oh", "roe", "sue", None], n),
                           "birth": rng.choice([None, "19800101", "19790214"], n)})
    con = duckdb.connect()
    con.register("v", values)
    con.execute("create temp table _identity_features as select * from v")
    ordered = values.sort_values("pos")
    codes = {c: pd.factorize(ordered[c], use_na_sentinel=True)[0].astype(np.int64) for c in ("fn", "ln", "birth")}
    pos, key = warehouse_module._condition_groups(con, ("fn", "ln"))
    mem_pos, mem_key = namesakes.condition_groups(codes)(("fn", "ln"))
    assert pos.size < mem_pos.size  # groups of one and of over 50 records stay in the warehouse
    got = namesakes.condition_pairs(pos, key, np.random.default_rng(7))
    want = namesakes.condition_pairs(mem_pos, mem_key, np.random.default_rng(7))
    assert want[0].size == (sample or want[0].size) > 100
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all() and (got[0] < got[1]).all()


def _same_partition(codes: np.ndarray, values: pd.Series) -> bool:
    """Equal codes exactly where values are equal, and -1 exactly where they are missing."""
    expected = pd.factorize(values, use_na_sentinel=True)[0]
    if not ((codes == -1) == (expected == -1)).all():
        return False
    pairs = pd.DataFrame({"got": codes, "want": expected})[expected >= 0].drop_duplicates()
    return pairs["got"].is_unique and pairs["want"].is_unique


def test_node_attributes_code_the_linked_records_identifiers_in_the_warehouse():
    """The guards' identifier codes of the linked records (nodes, in their order): one code per
    distinct email, phone and id of a unique source (-1 for none, or another source's id), and
    whether the birth date is missing: what resolve._identities gives from the records."""
    rng = np.random.default_rng(5)
    n = 400
    features = pd.DataFrame({"pos": rng.permutation(n),
                             "email": rng.choice(["a@x.io", "b@x.io", None, "c@y.io"], n),
                             "phone": rng.choice(["+4412", None, "+4413"], n),
                             "birth": rng.choice([None, "19800101"], n),
                             "source_key": rng.choice(["shop|1", "shop|2", "crm|1", "o'neil|1", None], n)})
    con = duckdb.connect()
    con.register("v", features)
    con.execute("create temp table _identity_features as select * from v")
    nodes = np.sort(rng.choice(n, 150, replace=False))
    cfg = MatchConfig(unique_id_sources=("shop", "o'neil"))
    got = warehouse_module._node_attributes(con, nodes, cfg)
    rows = features.set_index("pos").loc[nodes]
    for name in ("email", "phone"):
        codes, limit = got["identities"][name]
        assert limit == dict(cfg.identity_limits)[name]
        assert _same_partition(codes, rows[name]), name
    for src in ("shop", "o'neil"):
        codes, limit = got["identities"][f"source_id:{src}"]
        own = rows["source_key"].where(rows["source_key"].str.split("|").str[0] == src)
        assert limit == 1 and _same_partition(codes, own), src
    assert (got["undecidable"] == rows["birth"].isna().to_numpy()).all()
    assert set(got["identities"]) == {"email", "phone", "source_id:shop", "source_id:o'neil"}
