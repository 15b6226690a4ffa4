"""A record that fits two namesakes (father and son, twins) joins neither; one that fits one
person still merges; the warehouse finds the same records."""

import duckdb
import numpy as np
import pandas as pd
from personalization_assets_tests.identity.identity_factory import person, population

from bench.identity.households import generate_households
from personalization_assets.identity import MatchConfig, resolve
from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.evidence import PairScorer
from personalization_assets.identity.fellegi_sunter import FSModel
from personalization_assets.identity.namesakes import ambiguous_records, scorer_differ
from personalization_assets.identity.prepare import features
from personalization_assets.identity.warehouse import _helper_tables, _present_fields
from personalization_assets.identity.warehouse_sql import features_sql, namesakes_sql

HOME = {"street": "12 oak street", "city": "leeds", "postcode": "LS1 4AB"}


def _father_and_son(with_son: bool) -> pd.DataFrame:
    rows = [person("crm:f1", "John", "Smith", email="john.smith@mail.com", phone="+447700900001",
                   birth="1960-03-04", **HOME),
            person("shop:f2", "John", "Smith", email="john.smith@mail.com", birth="1960-03-04", **HOME),
            # no birth date, no e-mail, no phone: only name and address
            person("shop:x", "John", "Smith", **HOME)]
    if with_son:
        rows.append(person("crm:s1", "John", "Smith Jr", email="jsmith90@post.com", phone="+447700900777",
                           birth="1990-07-08", **HOME))
    return pd.concat([population(60), pd.DataFrame(rows)], ignore_index=True)


def test_a_dateless_record_of_a_father_and_son_name_joins_neither():
    res = resolve(_father_and_son(with_son=True))
    k = res.crosswalk.set_index("record_id")["customer_key"]
    assert k["crm:f1"] == k["shop:f2"]
    assert k["shop:x"] not in {k["crm:f1"], k["crm:s1"]}
    assert k["crm:s1"] != k["crm:f1"]
    amb = res.review[res.review["reason"] == "ambiguous"]
    assert "shop:x" in set(amb["left_record_id"])


def test_a_dateless_record_that_fits_one_person_still_merges():
    res = resolve(_father_and_son(with_son=False))
    k = res.crosswalk.set_index("record_id")["customer_key"]
    assert k["shop:x"] == k["crm:f1"] == k["shop:f2"]


def test_twins_a_record_without_first_name_joins_neither():
    twins = {"birth": "2001-05-06", "last": "Okafor", **HOME}
    rows = [person("crm:a", "Chidi", twins["last"], birth=twins["birth"], email="chidi@mail.com", **HOME),
            person("crm:b", "Emeka", twins["last"], birth=twins["birth"], email="emeka@mail.com", **HOME),
            person("shop:n", None, twins["last"], birth=twins["birth"], **HOME)]
    f = features(pd.DataFrame(rows))
    comp = Comparator(f)
    model = FSModel(comp.fields, [np.full(5, 0.2)] * len(comp.fields), [np.full(5, 0.2)] * len(comp.fields), 0.01)
    scorer = PairScorer(comp, model, 0.0, f.codes["generation"])
    amb = ambiguous_records(f.codes, scorer_differ(scorer), comp.fields, MatchConfig().max_key_group)
    assert amb.tolist() == [False, False, True]


def test_the_warehouse_finds_the_same_ambiguous_records():
    df = generate_households(3000, seed=5).drop(columns=["household", "role", "entity"])
    df = df.sort_values("record_id", ignore_index=True)  # the warehouse's positions
    cfg = MatchConfig()
    f = features(df)
    comp = Comparator(f)
    model = FSModel(comp.fields, [np.full(5, 0.2)] * len(comp.fields), [np.full(5, 0.2)] * len(comp.fields), 0.01)
    scorer = PairScorer(comp, model, 0.0, f.codes["generation"])
    memory = np.flatnonzero(ambiguous_records(f.codes, scorer_differ(scorer), comp.fields, cfg.max_key_group))
    con = duckdb.connect()
    con.register("records_in", df)
    con.execute("create table records as select * from records_in").fetchall()
    _helper_tables(con)
    columns = set(con.sql("select * from records limit 0").columns)
    con.execute(f"create temp table _identity_features as {features_sql('records', columns, cfg.max_key_group)}")
    fields = _present_fields(con)
    sql = np.sort(con.sql(namesakes_sql(fields, cfg.max_key_group)).df()["pos"].to_numpy())
    assert memory.size > 0
    assert sql.tolist() == memory.tolist()


def test_an_email_shared_by_namesakes_counts_as_often_as_namesakes_share_one():
    df = generate_households(3000, seed=5).drop(columns=["household", "role", "entity"])
    model = resolve(df).model
    u = model.conditional_u["email|names"]
    assert 0 < u < 0.5  # measured: namesakes with birth dates two people's, sharing an e-mail
    rows = [person("crm:a", "John", "Smith", email="john.smith@mail.com", **HOME),
            person("shop:b", "John", "Smith", email="john.smith@mail.com", street="9 elm road", city="york",
                   postcode="YO1 7HH")]
    f = features(pd.concat([population(60), pd.DataFrame(rows)], ignore_index=True))
    comp = Comparator(f)
    assert comp.fields == model.fields
    capped = PairScorer(comp, model, 0.0, f.codes["generation"])
    plain = PairScorer(comp, FSModel(model.fields, model.m, model.u, model.match_rate), 0.0, f.codes["generation"])
    a, b = np.array([60]), np.array([61])
    assert capped.assess(a, b).weight[0] < plain.assess(a, b).weight[0]
