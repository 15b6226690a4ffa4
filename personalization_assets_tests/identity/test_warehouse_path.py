"""core.customers on the warehouse path (PERSONALIZATION_IDENTITY_PATH=warehouse) against the memory path.

On a hostile fixture (families sharing addresses, shared mailboxes, common names: the household
generator): the same table schemas, clusters that agree, stable and inherited keys (keys.assign_keys
semantics), golden records equal to survivorship over the same clusters, decisions and unmerges
obeyed and kept, and a later memory-path run that is full, not incremental from this crosswalk.
"""

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from bench.identity.households import generate_households
from personalization_assets.assets.core import _shape_golden, customers
from personalization_assets.identity import MatchConfig
from personalization_assets.identity.decisions import decision_row, record_decision
from personalization_assets.identity.keys import assign_keys, key_for
from personalization_assets.identity.survivorship import golden_records
from personalization_assets.identity.warehouse import PATH_SETTING
from personalization_assets.identity.warehouse_outputs import assign_keys_sql
from personalization_assets.resources.io_manager import AtomicDuckDBIOManager, StagedTable
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets_tests.identity.identity_factory import population

STATE = {}
TABLES = ("core.customers", "core.customer_crosswalk", "core.merge_evidence")


@dg.asset(key=["staging", "customers"])
def staged_customers() -> pd.DataFrame:
    return STATE["customers"]


def _hostile(n: int = 1200) -> pd.DataFrame:
    """Households of the generator with the staged columns survivorship reads; one person's latest
    record opts out of e-mail (consent must follow survivorship, not the first record)."""
    d = generate_households(n, seed=5).drop(columns=["household", "role"])
    rng = np.random.default_rng(5)
    d["email"] = d["email_key"]
    d["email_opt_in"] = True
    d["consent_processing"] = True
    d["timezone"], d["locale"] = "Australia/Sydney", "en-AU"
    d["created_at"] = d["updated_at"] - pd.to_timedelta(rng.integers(1, 400, len(d)), unit="D")
    d.loc[d.index % 7 == 0, "source"] = "shop"
    entity = d["entity"].value_counts()
    many = d[d["entity"] == entity[entity >= 2].index[0]].sort_values("updated_at")
    d.loc[many.index[-1], "email_opt_in"] = False
    d.loc[d.index[-25:], "phone"] = "+61298765432"  # a switchboard: a key shared past max_key_group
    STATE["opted_out"] = many["record_id"].tolist()
    return d.drop(columns=["entity"])


def _run(db, monkeypatch, path, config=None):
    monkeypatch.setenv(PATH_SETTING, path)
    result = dg.materialize(
        [staged_customers, customers],
        resources={"io_manager": AtomicDuckDBIOManager(database=db), "warehouse": DuckDBWarehouse(database=db)},
        run_config={"ops": {"customers": {"config": config}}} if config else None)
    assert result.success
    meta = {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("customers")}
    return meta["customers"]["resolution"].data


def _read(db, name):
    with duckdb.connect(db, read_only=True) as con:
        return con.sql(f"select * from {name}").df()


def _schema(db, name):
    schema, table = name.split(".")
    with duckdb.connect(db, read_only=True) as con:
        return con.execute("select column_name, data_type from information_schema.columns where table_schema = ? "
                           "and table_name = ? order by ordinal_position", [schema, table]).fetchall()


def _keys(db):
    return _read(db, "core.customer_crosswalk").set_index("record_id")["customer_key"].sort_index()


def _pairs(keys: pd.Series) -> set:
    out = set()
    for members in keys.groupby(keys).groups.values():
        ids = sorted(members)
        out |= {(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]}
    return out


def _components(ids, edges: pd.DataFrame) -> pd.Series:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pos = pd.Series(np.arange(len(ids)), index=ids)
    a, b = pos[edges["left_record_id"]].to_numpy(), pos[edges["right_record_id"]].to_numpy()
    g = coo_matrix((np.ones(a.size), (a, b)), shape=(len(ids), len(ids)))
    return pd.Series(connected_components(g, directed=False)[1], index=ids)


def _f1(a: set, b: set) -> float:
    return 1.0 if not a and not b else 2 * len(a & b) / (len(a) + len(b))


def test_warehouse_path_gives_the_memory_paths_tables(tmp_path, monkeypatch):
    STATE["customers"] = _hostile()
    mem, wh = str(tmp_path / "mem.duckdb"), str(tmp_path / "wh.duckdb")
    assert _run(mem, monkeypatch, "memory")["path"] == "memory"
    res = _run(wh, monkeypatch, "warehouse")
    assert res["path"] == "warehouse" and "PERSONALIZATION_IDENTITY_PATH=warehouse" in res["path_reason"]
    for name in TABLES:
        assert _schema(wh, name) == _schema(mem, name), name
    km, kw = _keys(mem), _keys(wh)
    assert (km.index == kw.index).all()
    pm, pw = _pairs(km), _pairs(kw)
    f1 = _f1(pm, pw)
    print(f"pairwise F1 warehouse vs memory: {f1:.4f} ({len(pm)} vs {len(pw)} pairs)")
    assert f1 >= 0.99 and len(pw) > 100  # the fixture merges many records
    # the record hash is the memory path's (same columns, same hash)
    hm, hw = (_read(db, "core.customer_crosswalk").set_index("record_id")["record_hash"].sort_index() for db in (mem, wh))
    assert (hm == hw).all()
    # golden records: survivorship over the warehouse path's own clusters, as the memory path shapes them
    staged = STATE["customers"]
    keys = kw.reindex(staged["record_id"]).reset_index(drop=True)
    g = golden_records(staged, keys, MatchConfig().source_priority)
    g["cluster_size"] = g["source_records"]
    expected = _shape_golden(g, staged["created_at"].groupby(keys.to_numpy()).min())
    got = _read(wh, "core.customers")
    assert list(got.columns) == list(expected.columns)
    got, expected = (x.sort_values("customer_key").reset_index(drop=True) for x in (got, expected))
    for c in expected.columns:
        e, o = expected[c], got[c]
        if pd.api.types.is_datetime64_any_dtype(o):
            e, o = pd.to_datetime(e, utc=True), pd.to_datetime(o, utc=True)
        assert (e.isna() == o.isna()).all() and (e[e.notna()].astype(str) == o[o.notna()].astype(str)).all(), c
    # the person whose latest record opted out is not sendable, on both paths
    for db in (mem, wh):
        key = _keys(db)[STATE["opted_out"][-1]]
        row = _read(db, "core.customers").set_index("customer_key").loc[key]
        assert row["email_opt_in"] == False  # noqa: E712
    # evidence: the same kinds of rows (rule names), a model row, per-field levels on fuzzy links
    em, ew = (_read(db, "core.merge_evidence") for db in (mem, wh))
    assert (ew["rule"] == "model").sum() == 1
    assert set(ew["rule"]) - {"held_link"} <= set(em["rule"]) | {"review:conflict", "review:ambiguous"}
    fuzzy = ew[ew["rule"] == "fuzzy"]
    assert len(fuzzy) and fuzzy["first_name"].notna().all() and fuzzy["first_name_weight"].notna().all()
    used = ew[~ew["rule"].isin(["model", "cannot_link", "held_link"]) & ~ew["rule"].str.startswith("review:")]
    # review cases: the same shared keys and placeholders; a pair's evidence has the memory path's levels
    rm, rw = (e[e["rule"].str.startswith("review:")] for e in (em, ew))
    whole = lambda r: set(r.loc[r["right_record_id"].isna() & ~r["rule"].eq("review:ambiguous"), "rule"])  # noqa: E731
    assert "review:shared_key:phone" in whole(rm) and whole(rw) == whole(rm)
    both = rm.merge(rw, on=["left_record_id", "right_record_id", "rule"], suffixes=("_m", "_w")).dropna(
        subset=["right_record_id"])
    assert len(both) >= 10
    fields = ["first_name", "last_name", "birth_date", "street", "postcode_city", "email", "phone"]
    for m, w in zip(both["detail_m"], both["detail_w"]):
        jm, jw = json.loads(m), json.loads(w)
        assert {f: jm.get(f) for f in fields} == {f: jw.get(f) for f in fields}
    # the links a cluster used join exactly its records: every merge has its evidence
    assert (kw[used["left_record_id"]].to_numpy() == kw[used["right_record_id"]].to_numpy()).all()
    assert _pairs(_components(kw.index, used)) == pw


def test_keys_stable_inherited_and_the_next_memory_run_is_full(tmp_path, monkeypatch):
    STATE["customers"] = _hostile(800)
    db = str(tmp_path / "wh.duckdb")
    _run(db, monkeypatch, "memory")
    k0 = _keys(db)
    _run(db, monkeypatch, "warehouse")
    k1 = _keys(db)
    labels = pd.factorize(k1.to_numpy())[0]
    assert (k1.to_numpy() == assign_keys(k1.index.to_numpy(object), labels, k0)).all()
    assert (k1 == k0).mean() > 0.95  # most clusters are the memory path's: they keep their keys
    with duckdb.connect(db, read_only=True) as con:
        assert not con.execute("select count(*) from information_schema.tables where table_name = "
                               "'identity_prepared'").fetchall()[0][0]
    _run(db, monkeypatch, "warehouse")
    assert (_keys(db) == k1).all()  # stable across warehouse runs
    res = _run(db, monkeypatch, "memory")
    assert res["mode"] == "full" and "version" in res["mode_reason"]
    k3 = _keys(db)
    assert (k3.to_numpy() == assign_keys(k3.index.to_numpy(object), pd.factorize(k3.to_numpy())[0], k1)).all()
    assert _run(db, monkeypatch, "memory")["mode"] == "incremental"  # its own state again


def test_assign_keys_sql_equals_assign_keys():
    rng = np.random.default_rng(11)
    for trial in range(20):
        n = 300
        rid = np.array([f"r{i:04d}" for i in rng.permutation(n)], object)
        labels = rng.integers(0, 120, n)
        prev_labels = rng.integers(0, 100, n)
        previous = pd.Series([f"cus_old{x}" for x in prev_labels], index=rid)
        previous = previous[rng.random(n) < 0.7]
        if trial % 2:  # a clash: a previous key equal to some cluster's fresh key, held by another cluster
            anchors = pd.Series(rid).groupby(labels).min()
            victim = anchors.iloc[0]
            previous[previous.index[:5]] = key_for(victim)
        expected = assign_keys(rid, labels, previous)
        con = duckdb.connect()
        con.register("labeled", pd.DataFrame({"record_id": rid, "label": labels}))
        con.register("prev_in", previous.rename("customer_key").rename_axis("record_id").reset_index())
        con.execute("create table prev as select * from prev_in")
        assign_keys_sql(con, "labeled", "prev", "out")
        got = dict(con.execute("select record_id, customer_key from out").fetchall())
        assert [got[r] for r in rid] == list(expected)


def test_decisions_and_unmerges_on_the_warehouse_path(tmp_path, monkeypatch):
    base = population(50)
    dup = base.iloc[[1]].assign(record_id="shop:1", source="shop", email_key=None, email=None, phone=None)
    STATE["customers"] = pd.concat([base, dup], ignore_index=True)
    db = str(tmp_path / "wh.duckdb")
    _run(db, monkeypatch, "warehouse")
    k = _keys(db)
    assert k["shop:1"] == k["crm:1001"] and k["crm:1002"] != k["crm:1003"]
    with DuckDBWarehouse(database=db).connect() as conn:
        record_decision(conn, decision_row("crm:1001", "shop:1", "unlink", "two people", "test"))
        record_decision(conn, decision_row("crm:1002", "crm:1003", "link", "one person", "test"))
    _run(db, monkeypatch, "warehouse")
    k = _keys(db)
    assert k["shop:1"] != k["crm:1001"] and k["crm:1002"] == k["crm:1003"]
    ev = _read(db, "core.merge_evidence")
    assert (ev["rule"] == "manual_link").sum() == 1

    # an unmerge through run config, kept by the next plain run (as cannot_link evidence)
    db2 = str(tmp_path / "wh2.duckdb")
    _run(db2, monkeypatch, "warehouse")
    assert _keys(db2)["shop:1"] == _keys(db2)["crm:1001"]
    _run(db2, monkeypatch, "warehouse", {"unmerge": [["shop:1"]]})
    k1 = _keys(db2)
    assert k1["shop:1"] != k1["crm:1001"]
    ev = _read(db2, "core.merge_evidence")
    assert ((ev["rule"] == "cannot_link") & (ev["left_record_id"] == "shop:1")).sum() == 1
    _run(db2, monkeypatch, "warehouse")
    k2 = _keys(db2)
    assert k2["shop:1"] != k2["crm:1001"] and (k2 == k1).all()
    _run(db2, monkeypatch, "memory")  # the memory path keeps the warehouse path's unmerge too
    k3 = _keys(db2)
    assert k3["shop:1"] != k3["crm:1001"]


def test_snowflake_and_empty_tables_take_the_memory_path(monkeypatch):
    from personalization_assets.identity.warehouse import explain_path

    monkeypatch.setenv(PATH_SETTING, "warehouse")
    assert explain_path(10, "duckdb")[0] == "warehouse"
    path, why = explain_path(10, "snowflake")
    assert path == "memory" and "snowflake" in why
    assert explain_path(0, "duckdb")[0] == "memory"


def test_the_warehouse_paths_outputs_stay_in_the_warehouse(tmp_path, monkeypatch):
    """The step hands the IO manager staged tables, not frames; the commit renames them into place
    (none is left behind) and each metadata row count is its table's."""
    STATE["customers"] = _hostile(600)
    db = str(tmp_path / "wh.duckdb")
    monkeypatch.setenv(PATH_SETTING, "warehouse")
    result = dg.materialize([staged_customers, customers], resources={
        "io_manager": AtomicDuckDBIOManager(database=db), "warehouse": DuckDBWarehouse(database=db)})
    assert result.success
    for output, table in (("golden", "customers"), ("crosswalk", "customer_crosswalk"), ("evidence", "merge_evidence")):
        assert isinstance(result.output_for_node("customers", output), StagedTable)
    meta = {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("customers")}
    with duckdb.connect(db, read_only=True) as con:
        left = con.execute("select table_name from information_schema.tables where table_name like '\\_%' "
                           "escape '\\'").fetchall()
        assert left == []
        for name in ("customers", "customer_crosswalk", "merge_evidence"):
            rows = con.execute(f"select count(*) from core.{name}").fetchone()[0]
            assert rows > 0 and meta[name]["dagster/row_count"].value == rows, name
        assert meta["customers"]["rows_in"].value == 600
        sizes = {int(k): v for k, v in meta["customers"]["cluster_size_distribution"].data.items()}
        assert sum(sizes.values()) == meta["customers"]["dagster/row_count"].value
        assert sum(k * v for k, v in sizes.items()) == 600
    shown = meta["customers"]["preview"].value  # masked: the asset is tagged pii
    assert shown.count("\n") >= 11 and not any(e in shown for e in STATE["customers"]["email"].dropna())
