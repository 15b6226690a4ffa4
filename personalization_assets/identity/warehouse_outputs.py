"""The warehouse path's outputs in the memory path's shapes, built by SQL where the records are.

- keys: ``assign_keys_sql`` is keys.assign_keys as SQL (inherit a previous key by majority, else
  a key from the cluster's smallest record id, clashes resolved the same way);
- crosswalk: ``crosswalk_sql`` gives output.crosswalk_frame's columns (strongest rule, best
  probability, record hash, previous key);
- evidence: ``link_evidence_sql`` (per link: levels, field weights, final weight) and
  ``evidence_sql`` (used links, cannot-links, review cases, held links, the model row:
  output.evidence_frame + review_rows + resolve._held_links);
- golden records: ``golden_in_chunks`` runs survivorship.golden_records (the same function)
  over bounded chunks of clusters (a hash bucket of customer_key), never over all records, and
  writes each chunk into a table.

Names given to these functions are trusted identifiers (never user input). DuckDB's SQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pyarrow as pa

from personalization_assets.heap import collecting
from personalization_assets.identity.compare import LEVELS
from personalization_assets.identity.features_sql import HASHED
from personalization_assets.identity.incremental import HELD
from personalization_assets.identity.output import EVIDENCE_FIELDS, RULE_RANK
from personalization_assets.warehouse import WarehouseConnection, query_arrow_strings

CROSSWALK_COLUMNS = ["record_id", "customer_key", "source", "rule", "match_probability", "record_hash",
                     "previous_customer_key"]
EVIDENCE_COLUMNS = (["left_record_id", "right_record_id", "customer_key", "rule", "match_probability",
                     "match_weight", "tf_adjustment", "household_adjustment"]
                    + [c for f in EVIDENCE_FIELDS for c in (f, f"{f}_weight")] + ["detail"])
GOLDEN_CHUNK_RECORDS = 200_000  # records per chunk of golden records (a few hundred MB of frames at most)


def _do(con, sql: str) -> None:
    con.execute(sql).fetchall()


def latest_rows(source: str, columns: set[str]) -> str:
    """One row per record_id of ``source`` (the latest ``updated_at``), as features_sql reads it."""
    if "updated_at" not in columns:
        return f"select * from {source}"
    return (f"select * from {source} qualify row_number() over (partition by record_id "
            "order by updated_at desc nulls last) = 1")


def assign_keys_sql(con, labeled: str, previous: str | None, out: str) -> None:
    """keys.assign_keys over relation ``labeled`` (record_id, label): temp table ``out``
    (record_id, label, customer_key, prev). ``previous``: a table (record_id, customer_key)."""
    prev = (f"left join (select record_id, any_value(customer_key) as prev from {previous} group by record_id) p "
            "using (record_id)") if previous else ""
    _do(con, f"""create or replace temp table _keys_df as
        select l.record_id, l.label, {'p.prev' if previous else 'cast(null as varchar) as prev'}
        from {labeled} l {prev}""")
    # each previous key goes to the label holding most of its records (ties: the oldest record id);
    # a label with several keys keeps the one backed by most records (same ties)
    _do(con, """create or replace temp table _keys_winner as
        with votes as (select prev, label, count(*) as n, min(record_id) as anchor from _keys_df
                       where prev is not null group by prev, label),
        per_key as (select * from votes qualify row_number() over (partition by prev order by n desc, anchor) = 1)
        select label, prev as key from per_key
        qualify row_number() over (partition by label order by n desc, anchor) = 1""")
    _do(con, """create or replace temp table _keys_fresh as
        select label, min(record_id) as anchor, 'cus_' || left(sha1(min(record_id)), 16) as key, 0 as tries
        from _keys_df where label not in (select label from _keys_winner) group by label""")
    while True:  # rare: the anchor's key is still held by another cluster: anchor#1, anchor#2, ...
        clash = con.execute("select count(*) from _keys_fresh where key in (select key from _keys_winner)")
        if clash.fetchall()[0][0] == 0:
            break
        _do(con, """update _keys_fresh set tries = tries + 1,
                    key = 'cus_' || left(sha1(anchor || '#' || cast(tries + 1 as varchar)), 16)
                    where key in (select key from _keys_winner)""")
    _do(con, f"""create or replace temp table {out} as
        select d.record_id, d.label, coalesce(w.key, f.key) as customer_key, d.prev
        from _keys_df d left join _keys_winner w using (label) left join _keys_fresh f using (label)""")
    for t in ("_keys_df", "_keys_winner", "_keys_fresh"):
        _do(con, f"drop table if exists {t}")


def crosswalk_sql(source: str, columns: set[str], previous: str | None) -> str:
    """The crosswalk rows (output.crosswalk_frame's columns plus cluster_size), from the temp
    tables of a warehouse run: _identity_keys, _identity_features, _identity_edges."""
    rank = "case rule " + " ".join(f"when '{r}' then {k}" for r, k in RULE_RANK.items()) + " else 99 end"
    hashed = ", ".join(f"cast({c} as varchar)" for c in HASHED if c in columns)
    src_col = "cast(source as varchar)" if "source" in columns else "cast(null as varchar)"
    # the record hash as features_sql.clean_frame computes it (over the same text of the same columns)
    src = (f"left join (select record_id, {src_col} as source, printf('%016x', hash({hashed})) as record_hash "
           f"from ({latest_rows(source, columns)})) s on s.record_id = k.record_id")
    return f"""
    with ends as (select a as pos, rule, prob from _identity_edges where used
                  union all select b, rule, prob from _identity_edges where used),
    best as (select pos, rule from ends qualify row_number() over (partition by pos order by {rank}, prob desc) = 1),
    scored as (select pos, least(max(prob), 1.0) as match_probability from ends
               where rule not in ('carried', 'manual_link') group by pos)
    select k.record_id, k.customer_key, count(*) over (partition by k.label) as cluster_size,
           s.source, coalesce(b.rule, 'singleton') as rule,
           cast(m.match_probability as double) as match_probability,
           s.record_hash, k.prev as previous_customer_key
    from _identity_keys k join _identity_features f on f.record_id = k.record_id
    left join best b on b.pos = f.pos left join scored m on m.pos = f.pos {src}"""


def _label(f: str) -> str:
    return f"case lv_{f} " + " ".join(f"when {k} then '{x}'" for k, x in enumerate(LEVELS[f])) + " end"


def link_evidence_sql(scored: str, fields: list[str]) -> str:
    """Every edge of _identity_edges by record id, its rule, probability (at most 1), whether a
    cluster used it and, for links, the evidence columns of output.evidence_frame (``scored``:
    scores_sql over the links)."""
    per_field = [f"{_label(f) if f in fields else 'null'} as {f}, "
                 f"{'p_' + f if f in fields else 'null'}::double as {f}_weight" for f in EVIDENCE_FIELDS]
    return f"""
    select l.record_id as left_record_id, r.record_id as right_record_id, e.rule,
           least(e.prob, 1.0) as match_probability, e.used, e.is_link,
           s.weight::double as match_weight, s.tf_adjustment::double as tf_adjustment,
           s.household_adjustment::double as household_adjustment, {', '.join(per_field)}
    from _identity_edges e join _identity_features l on l.pos = e.a join _identity_features r on r.pos = e.b
    left join (select a, b, weight, tf_adjustment, household_adjustment,
                      {', '.join([f'lv_{f}' for f in fields] + [f'p_{f}' for f in fields]) or '1 as none'}
               from ({scored})) s on e.is_link and s.a = e.a and s.b = e.b"""


def evidence_sql(edges: str, crosswalk: str, cannot: str, review: str, model) -> str:
    """The merge evidence, output.evidence_frame's rows and columns: used links and forced links,
    cannot-links, review cases (``review:<reason>``), links the clustering left out (``held_link``;
    duplicates of a pair and rule keep the later kind), then the model row. ``cannot``: a relation
    (left_record_id, right_record_id); ``review``: (left_record_id, right_record_id, reason, score,
    evidence)."""
    fields = ", ".join(c for f in EVIDENCE_FIELDS for c in (f, f"{f}_weight"))
    nulls = ", ".join(f"null::varchar as {f}, null::double as {f}_weight" for f in EVIDENCE_FIELDS)
    key = f"(select customer_key from {crosswalk} k where k.record_id = x.left_record_id)"
    detail = json.dumps(model.to_dict()).replace("'", "''")
    return f"""
    with x as (
      select 0 as kind, left_record_id, right_record_id, rule, match_probability, match_weight, tf_adjustment,
             household_adjustment, {fields}, null::varchar as detail from {edges} where used
      union all
      select 0, left_record_id, right_record_id, 'cannot_link', 0.0, null, null, null, {nulls}, null from {cannot}
      union all
      select 1, left_record_id, right_record_id, 'review:' || reason, score, null, null, null, {nulls}, evidence
      from {review}
      union all
      select 2, left_record_id, right_record_id, '{HELD}', match_probability, null, null, null, {nulls}, null
      from {edges} where is_link and not used),
    kept as (select * from x qualify row_number() over (
               partition by left_record_id, right_record_id, rule order by kind desc) = 1)
    select left_record_id, right_record_id, {key} as customer_key, rule, match_probability::double
             as match_probability, match_weight, tf_adjustment, household_adjustment, {fields}, detail
    from kept x
    union all
    select null, null, null, 'model', {float(model.match_rate)!r}, null, null, null, {nulls}, '{detail}'"""


def golden_in_chunks(con, source: str, columns: list[str], crosswalk: str, golden: Callable, out: str,
                     chunk_records: int = GOLDEN_CHUNK_RECORDS) -> int:
    """``golden(records, keys)`` (a frame of golden records) over the latest row of each record
    of ``source`` (``columns`` of it), a bounded chunk of whole clusters at a time (by a hash
    bucket of customer_key), each chunk's result inserted into table ``out`` (replaced); its rows.
    A column a chunk holds only nulls of takes the table's type, else the source's, else text."""
    have = set(con.sql(f"select * from {source} limit 0").columns)
    cols = ", ".join(f's."{c}"' for c in columns if c in have)
    _do(con, f"""create or replace temp table _golden_in as
        select {cols}, k.customer_key from ({latest_rows(source, have)}) s join {crosswalk} k using (record_id)""")
    _do(con, f"drop table if exists {out}")
    types = dict(zip(*_arrow_types(con, "_golden_in")))
    written = 0
    try:
        n = con.execute("select count(*) from _golden_in").fetchall()[0][0]
        buckets = max(1, math.ceil(n / chunk_records))
        for b in collecting(range(buckets)):  # each chunk's cycles go before the next
            records = query_arrow_strings(WarehouseConnection(con, "duckdb"),
                                          f"select * exclude (customer_key), customer_key from _golden_in "
                                          f"where hash(customer_key) % {buckets} = {b}")
            if not len(records):
                continue
            chunk = pa.Table.from_pandas(golden(records.drop(columns="customer_key"), records["customer_key"]),
                                         preserve_index=False)
            del records
            for i, field in enumerate(chunk.schema):
                if pa.types.is_null(field.type):
                    chunk = chunk.set_column(i, field.name, pa.nulls(len(chunk), types.get(field.name, pa.string())))
            con.register("_golden_chunk", chunk)
            try:
                _do(con, f"insert into {out} by name select * from _golden_chunk" if written
                    else f"create table {out} as select * from _golden_chunk")
            finally:
                con.unregister("_golden_chunk")
            if not written:
                types.update(zip(*_arrow_types(con, out)))
            written += len(chunk)
    finally:
        _do(con, "drop table if exists _golden_in")
    return written


def _arrow_types(con, table: str) -> tuple[list[str], list[pa.DataType]]:
    schema = con.sql(f"select * from {table} limit 0").fetch_arrow_table().schema
    return schema.names, schema.types
