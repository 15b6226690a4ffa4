"""Households: the people (golden customers) who share a postal address or a mailbox.

A household is not a person: the matcher keeps its members apart, and marketing uses this
table for household frequency caps ("one catalogue per letterbox"). Customers are joined when
two of them share a normalized street and postcode, or an e-mail mailbox; a value shared by
more than ``max_members`` customers (an apartment block without flat numbers, an office
switchboard address) is a building, not a household, and joins nobody.

Bounded memory: the warehouse hands over only each record's customer key, street, postcode and
e-mail key, ``CHUNK_ROWS`` at a time; each chunk is cleaned by the matcher's own SQL
(features_sql.py, in a local DuckDB, so DuckDB and Snowflake warehouses give the same keys) and
kept as Arrow strings; the groups and the connected components then run over integer codes
and the edges only. On DuckDB (``households_in_duckdb``) nothing but the edges leaves the
warehouse: the same cleaning SQL and the groups run there, the components over the members of
shared groups in Python, and the table is written there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.blocking import combine
from personalization_assets.identity.cluster import components
from personalization_assets.identity.features_sql import HASHED, TEXT_SOURCES, _sql as clean_sql, clean_frame

HOUSEHOLD_COLUMNS = ["customer_key", "household_id", "household_size", "shared_address", "shared_mailbox"]
MAX_MEMBERS = 12
CHUNK_ROWS = 100_000
SOURCES = ["street", "postcode", "email_key"]  # the raw columns behind the keys
# staging.customers' record_id is unique (its Pandera model), so no record counts twice
KEYS_SQL = ("select c.customer_key, s.street, s.postcode, s.email_key from staging.customers s "
            "join core.customer_crosswalk c on c.record_id = cast(s.record_id as varchar)")


def _shared(customer: np.ndarray, key: np.ndarray, max_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (customer, customer) between the customers holding the same key value, as stars."""
    df = pd.DataFrame({"c": customer, "k": key})
    df = df[df["k"] >= 0].drop_duplicates()
    size = df.groupby("k")["c"].transform("size")
    df = df[(size >= 2) & (size <= max_members)]
    first = df.groupby("k")["c"].transform("first")
    m = first != df["c"]
    return first[m].to_numpy(), df.loc[m, "c"].to_numpy()


def _cleaned(chunk: pd.DataFrame) -> dict[str, pa.Array]:
    """The chunk's customer keys and cleaned street, postcode and e-mail (null where missing)."""
    codes, values, _ = clean_frame(chunk[[c for c in SOURCES if c in chunk]])
    out = {"customer_key": pa.array(chunk["customer_key"].astype(str), type=pa.string())}
    for col in ("street", "postcode", "email"):
        out[col] = values[col].take(pa.array(codes[col], mask=codes[col] < 0))
    return out


def _codes(values: list[pa.Array]) -> np.ndarray:
    """int64 codes of one column over all chunks, equal values equal codes (-1 = missing)."""
    enc = pa.chunked_array(values, type=pa.string()).combine_chunks().dictionary_encode()
    return np.asarray(enc.indices.fill_null(-1), dtype=np.int64)


def household_table(chunks: Iterable[pd.DataFrame], max_members: int = MAX_MEMBERS) -> pd.DataFrame:
    """``households`` over frames of (customer_key, street, postcode, email_key) rows, one per
    record: only Arrow strings and integer arrays are kept between the chunks."""
    parts: dict[str, list[pa.Array]] = {"customer_key": [], "street": [], "postcode": [], "email": []}
    for chunk in chunks:
        if len(chunk):
            for col, arr in _cleaned(chunk).items():
                parts[col].append(arr)
    if not parts["customer_key"]:
        return pd.DataFrame(columns=HOUSEHOLD_COLUMNS)
    enc = pa.chunked_array(parts.pop("customer_key")).combine_chunks().dictionary_encode()
    cust_codes, cust = enc.indices.to_numpy(), enc.dictionary.to_numpy(zero_copy_only=False)
    address = combine(_codes(parts.pop("street")), _codes(parts.pop("postcode")))
    mailbox = _codes(parts.pop("email"))
    addr_edges, mail_edges = _shared(cust_codes, address, max_members), _shared(cust_codes, mailbox, max_members)
    del address, mailbox, cust_codes
    left = np.concatenate([addr_edges[0], mail_edges[0]]).astype(np.int64)
    right = np.concatenate([addr_edges[1], mail_edges[1]]).astype(np.int64)
    label = components(len(cust), left, right)
    out = pd.DataFrame({"customer_key": cust, "label": label})
    anchor = out.groupby("label")["customer_key"].transform("min")
    out["household_id"] = anchor.map(lambda k: "hh_" + hashlib.sha1(k.encode()).hexdigest()[:16])
    out["household_size"] = out.groupby("label")["customer_key"].transform("size").astype("int64")
    out["shared_address"] = np.isin(np.arange(len(cust)), np.concatenate(addr_edges))
    out["shared_mailbox"] = np.isin(np.arange(len(cust)), np.concatenate(mail_edges))
    return out[HOUSEHOLD_COLUMNS].sort_values("customer_key", ignore_index=True)


def households(records: pd.DataFrame, crosswalk: pd.DataFrame, max_members: int = MAX_MEMBERS) -> pd.DataFrame:
    """One row per customer: its household id (stable: derived from the smallest member key),
    the number of customers in it, and whether it was joined by an address and/or a mailbox."""
    if records.empty or crosswalk.empty:
        return pd.DataFrame(columns=HOUSEHOLD_COLUMNS)
    records = records.drop_duplicates("record_id", keep="last")
    keys = records["record_id"].astype(str).map(crosswalk.set_index("record_id")["customer_key"])
    rows = records.loc[keys.notna().to_numpy(), [c for c in SOURCES if c in records]]
    return household_table([rows.assign(customer_key=keys[keys.notna()].to_numpy())], max_members)


def households_in_warehouse(conn, max_members: int = MAX_MEMBERS, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """``households`` of staging.customers and core.customer_crosswalk, read ``chunk_rows`` at a
    time (DuckDB or Snowflake): never the customers' other columns, never all rows at once."""
    from personalization_assets.quality.table_checks import read_chunks

    return household_table(read_chunks(conn, KEYS_SQL, rows=chunk_rows), max_members)


def households_in_duckdb(con, out: str, max_members: int = MAX_MEMBERS) -> int:
    """``households`` of staging.customers and core.customer_crosswalk inside a DuckDB warehouse
    (``con``: its raw connection), written to table ``out`` (replaced); its rows. The keys are
    cleaned by features_sql's SQL where the records are, the shared groups are found by SQL, and
    only the members of shared groups (integers) come to Python, for the components."""
    keys = ("street", "postcode", "email_key")
    try:
        con.execute(f"create or replace temp table _hh_src as select row_number() over () as _row, "
                    f"k.* from ({KEYS_SQL}) k")
        columns = ", ".join(f"cast({c} as varchar) as {c}" if c in keys else f"cast(null as varchar) as {c}"
                            for c in dict.fromkeys(TEXT_SOURCES + HASHED))
        con.execute(f"""create or replace temp table _hh_clean as
            with src as (select _row, {columns} from _hh_src)
            select h.customer_key, k.street, k.postcode, k.email
            from ({clean_sql(["street"])}) k join _hh_src h using (_row)""")
        # the groups a household can come from: an address or a mailbox held by 2..max_members customers
        con.execute(f"""create or replace temp table _hh_groups as
            with held as (
              select distinct customer_key, 'address' as kind, street || '|' || postcode as k from _hh_clean
              where street is not null and postcode is not null
              union all
              select distinct customer_key, 'mailbox', email from _hh_clean where email is not null),
            sized as (select *, count(*) over (partition by kind, k) as n from held)
            select customer_key, kind, dense_rank() over (order by kind, k) - 1 as grp from sized
            where n between 2 and {int(max_members)}""")
        con.execute("""create or replace temp table _hh_nodes as select customer_key,
            row_number() over (order by customer_key) - 1 as node from (select distinct customer_key from _hh_groups)""")
        edges = con.execute("select n.node, g.grp from _hh_groups g join _hh_nodes n using (customer_key)").fetchnumpy()
        nodes = int(con.execute("select count(*) from _hh_nodes").fetchall()[0][0])
        groups = int(edges["grp"].max()) + 1 if len(edges["grp"]) else 0
        # members and groups are the vertices: members of one group, or of chained groups, are one household
        label = components(nodes + groups, np.asarray(edges["node"], np.int64),
                           nodes + np.asarray(edges["grp"], np.int64))[:nodes]
        del edges
        con.register("_hh_labels", pa.table({"node": np.arange(nodes, dtype=np.int64), "label": label}))
        try:
            con.execute(f"""create or replace table {out} as
                with members as (
                  select c.customer_key, coalesce('g' || l.label, 'c' || c.customer_key) as hh
                  from (select distinct customer_key from _hh_src) c
                  left join _hh_nodes n using (customer_key) left join _hh_labels l using (node)),
                sized as (select customer_key, min(customer_key) over (partition by hh) as anchor,
                                 count(*) over (partition by hh) as household_size from members)
                select s.customer_key, 'hh_' || left(sha1(s.anchor), 16) as household_id,
                       cast(s.household_size as bigint) as household_size,
                       s.customer_key in (select customer_key from _hh_groups where kind = 'address') as shared_address,
                       s.customer_key in (select customer_key from _hh_groups where kind = 'mailbox') as shared_mailbox
                from sized s order by s.customer_key""")
        finally:
            con.unregister("_hh_labels")
        return int(con.execute(f"select count(*) from {out}").fetchall()[0][0])
    finally:
        for t in ("_hh_src", "_hh_clean", "_hh_groups", "_hh_nodes"):
            con.execute(f"drop table if exists {t}")
