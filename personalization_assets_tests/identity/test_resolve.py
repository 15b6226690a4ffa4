"""End-to-end behaviour of resolve(): stable keys, unmerge, incremental runs, bad input."""

import numpy as np
import pandas as pd
from personalization_assets_tests.identity.identity_factory import person, population

from personalization_assets.identity import MatchConfig, resolve
from personalization_assets.identity.blocking import candidate_pairs
from personalization_assets.identity.prepare import features
from personalization_assets.identity.state import ResolvedState


def with_duplicates(n=80):
    base = population(n)
    dups = base.iloc[[1, 2, 3]].copy()
    dups["record_id"] = ["shop:1", "shop:2", "shop:3"]
    dups["source"], dups["email_key"], dups["phone"] = "shop", None, None
    dups["first_name"] = dups["first_name"].str[:-1] + "q"  # a typo, so only fuzzy can link
    dups["updated_at"] = pd.Timestamp("2026-05-01", tz="UTC")
    return pd.concat([base, dups], ignore_index=True)


def keys(res):
    return res.crosswalk.set_index("record_id")["customer_key"]


def test_fuzzy_duplicates_merge_with_field_evidence():
    res = resolve(with_duplicates())
    k = keys(res)
    assert k["crm:1001"] == k["shop:1"] and k["crm:1002"] == k["shop:2"]
    assert res.golden.shape[0] == 80
    fz = res.evidence[res.evidence["rule"] == "fuzzy"]
    assert len(fz) == 3 and (fz["last_name"] == "exact").all() and fz["match_weight"].gt(0).all()


def test_keys_stable_when_unrelated_records_arrive():
    first = resolve(with_duplicates())
    more = pd.concat([with_duplicates(), population(30, seed=99).assign(
        record_id=lambda d: "web:" + d["record_id"])], ignore_index=True)
    second = resolve(more, previous=first.state())
    k1, k2 = keys(first), keys(second)
    assert (k2.reindex(k1.index) == k1).all()
    # and a run from scratch reproduces them as well
    assert (keys(resolve(more)).reindex(k1.index) == k1).all()


def test_unmerge_is_kept_by_later_runs():
    df = with_duplicates()
    first = resolve(df)
    split = resolve(df, previous=first.state(), unmerges=[["shop:1"]])
    k = keys(split)
    assert k["shop:1"] != k["crm:1001"]
    assert k["crm:1001"] == keys(first)["crm:1001"]  # the original keeps its key
    later = resolve(df, previous=split.state())
    assert keys(later)["shop:1"] != keys(later)["crm:1001"]
    assert (later.evidence["rule"] == "cannot_link").any()


def test_incremental_run_scores_only_new_records_and_agrees_with_full_run():
    df = with_duplicates(200)
    first = resolve(df)
    new = df.iloc[[10]].copy()
    new["record_id"], new["source"], new["email_key"], new["phone"] = "shop:99", "shop", None, None
    grown = pd.concat([df, new], ignore_index=True)
    inc = resolve(grown, previous=first.state())
    assert inc.stats["mode"] == "incremental"
    assert inc.stats["scored_records"] == 1
    # exactly the pairs a full run would block that touch the new record, nothing else
    a, b, _ = candidate_pairs(features(grown), MatchConfig().max_block_size, window=MatchConfig().block_window)
    assert inc.stats["candidate_pairs"] == int(((a == len(df)) | (b == len(df))).sum())
    assert keys(inc)["shop:99"] == keys(first)["crm:1010"]
    full = resolve(grown)
    same = keys(full).groupby(keys(full)).ngroup()
    assert (same.reindex(keys(inc).index).groupby(keys(inc)).nunique() == 1).all()
    assert len(inc.evidence[inc.evidence["rule"] == "fuzzy"]) == len(full.evidence[full.evidence["rule"] == "fuzzy"])


def test_changed_record_is_rescored_incrementally():
    df = with_duplicates(120)
    first = resolve(df)
    changed = df.copy()
    changed.loc[changed["record_id"] == "shop:1", ["first_name", "last_name", "birth_date", "street", "postcode"]] = \
        ["Zed", "Quux", "2001-01-01", "1 other way", "ZZ1 1ZZ"]
    inc = resolve(changed, previous=first.state())
    assert inc.stats["mode"] == "incremental"
    assert keys(inc)["shop:1"] != keys(inc)["crm:1001"]
    assert keys(inc)["crm:1001"] == keys(first)["crm:1001"]


def test_bad_input_never_crashes_nor_merges_everything():
    rows = [person(f"crm:{i}", "Test", "Test", email="test@example.com", phone="+440000000000",
                   street="1 test street", city="test", postcode="AA1 1AA") for i in range(60)]
    rows += [person("crm:a", None, None), person("crm:b", "", ""), {"record_id": "crm:c"},
             person("crm:d", "Владимир", "Иванов", birth="1980-01-02", email="влад@почта.рф"),
             person("crm:e", "Владимир", "Иванов", birth="1980-01-02", email="влад@почта.рф"),
             person("crm:f", "山田", "太郎", birth="1970-05-05")]
    res = resolve(pd.DataFrame(rows))
    sizes = res.golden["source_records"]
    assert sizes.max() <= 2                            # the 60 placeholders stay apart
    assert (res.review["reason"] == "placeholder_profile").sum() == 60
    k = keys(res)
    assert k["crm:d"] == k["crm:e"] and k["crm:a"] != k["crm:b"] and k["crm:f"] != k["crm:d"]
    assert len(res.crosswalk) == len(rows)


def test_empty_and_duplicate_record_ids():
    empty = resolve(pd.DataFrame(columns=["record_id", "first_name", "last_name"]))
    assert empty.golden.empty and empty.crosswalk.empty
    df = pd.DataFrame([person("crm:1", "Al", "Bo"), person("crm:1", "Al", "Bo", updated="2026-02-01T00:00:00Z")])
    res = resolve(df)
    assert len(res.crosswalk) == 1 and np.all(res.golden["source_records"] == 1)


def _same_partition(a: pd.Series, b: pd.Series) -> bool:
    """Both map record ids to cluster keys; True when they group the records alike."""
    b = b.reindex(a.index)
    return b.notna().all() and len(pd.DataFrame({"a": a, "b": b}).drop_duplicates()) == a.nunique() == b.nunique()


def test_incremental_run_equals_a_full_run_on_households(tmp_path):
    """Families sharing mailboxes and addresses, 2 % new records, a few changed and a few gone: the
    incremental run re-clusters only the clusters the change touches, and ends with the clusters,
    links and review cases of a full run with the same model."""
    from bench.identity.households import generate_households

    df = generate_households(4000, seed=11).drop(columns=["household", "role", "entity"])
    rng = np.random.default_rng(1)
    new = rng.random(len(df)) < 0.02
    first = resolve(df[~new].reset_index(drop=True))
    cur = df.copy()
    changed = rng.choice(np.flatnonzero(~new), 5, replace=False)
    cur.loc[changed, "first_name"] = cur.loc[changed, "first_name"].astype(str) + "x"
    cur = cur.drop(index=rng.choice(np.flatnonzero(~new), 5, replace=False)).reset_index(drop=True)

    inc = resolve(cur, previous=first.state())
    full = resolve(cur, model=first.model)
    assert inc.stats["mode"] == "incremental" and full.stats["mode"] == "full"
    assert inc.stats["clustered_records"] < len(cur) / 5
    assert _same_partition(keys(inc), keys(full))
    assert len(inc.golden) == len(full.golden) and len(inc.crosswalk) == len(cur)
    cols = ["left_record_id", "right_record_id", "rule"]
    pairs = lambda ev: set(map(tuple, ev.loc[ev["rule"] != "model", cols].fillna("").to_numpy()))  # noqa: E731
    assert pairs(inc.evidence) == pairs(full.evidence)
    # keys of untouched clusters never move
    k1 = keys(first)
    kept = k1.index.intersection(keys(inc).index)
    assert (keys(inc)[kept] == k1[kept]).mean() > 0.95
    # the same from a state read back with Arrow-backed columns (as the benchmark reads it)
    tables = {"crosswalk": first.crosswalk, "evidence": first.evidence, "golden": first.golden}
    for name, frame in tables.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    state = ResolvedState.from_tables(*(pd.read_parquet(tmp_path / f"{t}.parquet", dtype_backend="pyarrow")
                                        for t in tables))
    again = resolve(cur, previous=state)
    assert isinstance(again.crosswalk["record_id"].dtype, pd.ArrowDtype)  # carried rows stay Arrow
    assert _same_partition(keys(again).astype(str), keys(full)) and len(again.golden) == len(full.golden)
