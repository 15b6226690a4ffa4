"""core.households read from the warehouse in chunks equals the in-memory implementation it
replaced (kept below as the oracle) on a hostile sample, on DuckDB and on Snowflake SQL."""

import hashlib
import random

import numpy as np
import pandas as pd
import pytest

from personalization_assets.identity.blocking import combine
from personalization_assets.identity.cluster import components
from personalization_assets.identity.households import HOUSEHOLD_COLUMNS, households, households_in_warehouse
from personalization_assets.identity.prepare import features


def _shared(customer, key, max_members):
    df = pd.DataFrame({"c": customer, "k": key})
    df = df[df["k"] >= 0].drop_duplicates()
    size = df.groupby("k")["c"].transform("size")
    df = df[(size >= 2) & (size <= max_members)]
    first = df.groupby("k")["c"].transform("first")
    m = first != df["c"]
    return first[m].to_numpy(), df.loc[m, "c"].to_numpy()


def oracle(records: pd.DataFrame, crosswalk: pd.DataFrame, max_members: int = 12) -> pd.DataFrame:
    """The implementation before issue 23 (every record's full matching features in memory)."""
    records = records.drop_duplicates("record_id", keep="last").reset_index(drop=True)
    f = features(records)
    keys = records["record_id"].astype(str).map(crosswalk.set_index("record_id")["customer_key"])
    ok = keys.notna().to_numpy()
    cust_codes, cust = pd.factorize(keys[ok])
    address = combine(f.codes["street"].astype(np.int64), f.codes["postcode"].astype(np.int64))[ok]
    mailbox = f.codes["email"].astype(np.int64)[ok]
    addr_edges, mail_edges = _shared(cust_codes, address, max_members), _shared(cust_codes, mailbox, max_members)
    left = np.concatenate([addr_edges[0], mail_edges[0]]).astype(np.int64)
    right = np.concatenate([addr_edges[1], mail_edges[1]]).astype(np.int64)
    label = components(len(cust), left, right)
    out = pd.DataFrame({"customer_key": np.asarray(cust, dtype=object), "label": label})
    anchor = out.groupby("label")["customer_key"].transform("min")
    out["household_id"] = anchor.map(lambda k: "hh_" + hashlib.sha1(k.encode()).hexdigest()[:16])
    out["household_size"] = out.groupby("label")["customer_key"].transform("size").astype("int64")
    out["shared_address"] = np.isin(np.arange(len(cust)), np.concatenate(addr_edges))
    out["shared_mailbox"] = np.isin(np.arange(len(cust)), np.concatenate(mail_edges))
    return out[HOUSEHOLD_COLUMNS].sort_values("customer_key", ignore_index=True)


def hostile(n: int = 900, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records and a crosswalk: the same street and postcode spelled with case, accents, padding
    and punctuation, placeholder values, a street without a postcode and a postcode without a
    street, mailboxes shared by 2 to 20 customers (buildings), placeholder mailboxes, several
    records of one customer, and records the crosswalk does not know."""
    rng = random.Random(seed)
    streets = ["4 Ash Grove", " 4 ASH grove ", "4, Ash-Grove", "Rue de l'Église 3", "rue de l eglise 3", "n/a", "",
               None, "1 Tower Block", "12 Oak Rd", "Москва ул. Ленина 5"] + [f"{k} Elm Street" for k in range(60)]
    postcodes = ["LS6 2QT", "ls62qt", "LS6-2QT", "75001", " 75001 ", "unknown", None, ""] + [f"M{k} 1AA" for k in range(30)]
    mails = ["lee.family@mail.com", "LEE.Family@Mail.com ", "test@example.com", "x@test.com", "none", "", None,
             "office@corp.com"] + [f"p{k}@mail.com" for k in range(150)]
    rows, cross = [], []
    for i in range(n):
        rid = f"crm:{i}" if i % 9 else f"shop:{i}"
        rows.append({"record_id": rid, "street": rng.choice(streets), "postcode": rng.choice(postcodes),
                     "email_key": rng.choice(mails), "first_name": rng.choice(["Ann", "Tom", None]),
                     "last_name": "Lee", "source": rid.split(":")[0], "source_id": str(i)})
        if i % 17:  # the rest are unknown to the crosswalk
            cross.append({"record_id": rid, "customer_key": f"c{rng.randrange(n // 2):05d}"})  # some share a key
    return pd.DataFrame(rows), pd.DataFrame(cross)


def _load(conn, customers: pd.DataFrame, crosswalk: pd.DataFrame) -> None:
    for (schema, name), frame in {("staging", "customers"): customers, ("core", "customer_crosswalk"): crosswalk}.items():
        conn.prepare_table(schema, name, frame)
        conn.replace_frame(schema, name, frame)


def _reach(out: pd.DataFrame) -> None:
    """The sample reaches households of several sizes, by address and by mailbox, and buildings."""
    assert out["household_size"].max() > 2 and (out["household_size"] == 1).any()
    assert out["shared_address"].any() and out["shared_mailbox"].any()
    assert (out["shared_address"] & ~out["shared_mailbox"]).any()


@pytest.mark.parametrize("max_members", [2, 5, 12])
def test_households_equal_the_in_memory_implementation(max_members):
    records, crosswalk = hostile()
    expected = oracle(records, crosswalk, max_members)
    if max_members == 12:
        _reach(expected)
    pd.testing.assert_frame_equal(households(records, crosswalk, max_members), expected)


def test_households_read_in_chunks_from_duckdb_equal_the_oracle(duck):
    records, crosswalk = hostile(seed=5)
    crm = records[records["record_id"].str.startswith("crm:")]
    _load(duck, crm, crosswalk)
    expected = oracle(crm, crosswalk)
    _reach(expected)
    for chunk_rows in (64, 10_000):  # several chunks: equal values in different chunks still meet
        pd.testing.assert_frame_equal(households_in_warehouse(duck, chunk_rows=chunk_rows), expected)


def test_households_read_from_snowflake_equal_the_oracle():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    records, crosswalk = hostile(300, seed=11)
    with fakesnow_connection() as snow:
        _load(snow, records, crosswalk)
        got = households_in_warehouse(snow, chunk_rows=50)
    pd.testing.assert_frame_equal(got, oracle(records, crosswalk))


def test_no_records_known_to_the_crosswalk_is_an_empty_table(duck):
    records, crosswalk = hostile(50)
    assert households(records, crosswalk.assign(record_id="other:" + crosswalk.index.astype(str))).empty
    _load(duck, records, crosswalk.iloc[:0])
    assert list(households_in_warehouse(duck).columns) == HOUSEHOLD_COLUMNS


@pytest.mark.parametrize("max_members", [2, 12])
def test_households_in_duckdb_equal_the_oracle(duck, max_members):
    from personalization_assets.identity.households import households_in_duckdb

    records, crosswalk = hostile(seed=7)
    _load(duck, records, crosswalk)
    expected = oracle(records, crosswalk, max_members)
    if max_members == 12:
        _reach(expected)
    duck.ensure_schema("core")
    assert households_in_duckdb(duck.raw, "core.households_out", max_members) == len(expected)
    got = duck.query("select * from core.households_out")
    pd.testing.assert_frame_equal(got, expected)
    left = duck.query("select table_name from duckdb_tables() where table_name like '\\_hh%' escape '\\'")
    assert left.empty


def test_households_in_duckdb_of_no_known_records_is_an_empty_table(duck):
    from personalization_assets.identity.households import households_in_duckdb

    records, crosswalk = hostile(50)
    _load(duck, records, crosswalk.iloc[:0])
    assert households_in_duckdb(duck.raw, "core.households_out") == 0
    assert list(duck.query("select * from core.households_out").columns) == HOUSEHOLD_COLUMNS
