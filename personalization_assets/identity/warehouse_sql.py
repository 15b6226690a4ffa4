"""The SQL of the warehouse identity path: features, blocking, comparison levels, scoring.

Written in DuckDB's dialect and translated for Snowflake by ``to_snowflake`` (sqlglot plus a
map of the functions that differ). Every expression mirrors the in-memory engine:
- levels: ``compare.Comparator`` (names compared crossed when swapped, nicknames, birth-date
  swaps, OSA distances up to 1 as ``damerau_levenshtein``, which equals OSA there, or for
  dates, postcodes and phones from Hamming, capped at 2: ``_within_one``);
- blocking: ``blocking.blocking_keys`` with the same sorted neighbourhood in big blocks;
- weights: ``evidence.PairScorer`` (term frequencies, households, conflicts).
One known difference on both warehouses: the street's ``fuzz.ratio`` (an Indel ratio, which
neither warehouse has) is computed from the Damerau-Levenshtein distance as
``2 * dl - |len a - len b|``, an upper bound of the Indel distance that equals it unless the
best alignment mixes insertions and deletions (a moved word, a letter moved far): 99.3 % of
FEBRL 1's street levels agree. ``test_warehouse.py`` measures every level against the engine.

Snowflake (``to_snowflake``): JAROWINKLER_SIMILARITY is an integer 0-100, so a similarity is
rounded to two digits before the level cuts; EDITDISTANCE has no transpositions, so a swapped
pair of characters is two edits (a postcode or phone typo loses one level). On FEBRL 1's pairs
the translated levels agree with DuckDB's for 98.5 % (postcode/city) to 99.97 % (names) of
pairs, run on fakesnow. Not translated: the cleaning of features_sql.py (``\p{L}`` classes,
``strip_accents``, ``list_sort``), which Snowflake spells differently or lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personalization_assets.identity.features_sql import _sql as clean_sql

# field -> highest level (exact), as compare.LEVELS
TOP = {"first_name": 4, "last_name": 4, "birth_date": 4, "street": 4, "postcode_city": 4, "email": 2,
       "phone": 3, "national_id": 4}
# field -> (feature column, [columns whose presence makes the field present])
FIELD_COLUMNS = {"first_name": ["fn"], "last_name": ["ln"], "birth_date": ["birth"], "street": ["street"],
                 "postcode_city": ["postcode", "city"], "email": ["email"], "phone": ["phone"],
                 "national_id": ["national_id"]}
TF_COLUMNS = {"first_name": "fn", "last_name": "ln", "email": "email", "phone": "phone", "street": "street"}
# blocking.blocking_keys as column tuples (names_any_order: the unordered pair of the two)
BLOCKING_KEYS = {
    "surname_sound_birth_month": ("ln_sdx", "birth_ym"),
    "postcode_surname_sound": ("postcode", "ln_sdx"),
    "email_local": ("email_block",),
    "names_any_order": ("case when ln is not null then least(fn, ln) end",
                        "case when fn is not null then greatest(fn, ln) end"),
    "nickname_surname": ("fn_canon", "ln_sdx"),
    "birth_date_first_initial": ("birth", "fn_init"),
    "birth_date_surname_initial": ("birth", "ln_init"),
    "national_id": ("national_id",),
    "phone_tail": ("phone_tail",),
    "name_sounds_any_order": ("case when ln_sdx is not null then least(fn_sdx, ln_sdx) end",
                              "case when fn_sdx is not null then greatest(fn_sdx, ln_sdx) end"),
    "street_postcode": ("street", "postcode"),
    "postcode_street_number": ("postcode", "street_number"),
    "birth_date_postcode": ("birth", "postcode"),
    "first_name_postcode": ("fn_canon", "postcode", "ln_init"),
    "national_id_digits": ("nid_sorted",),
}
EXACT_KEYS = ("email", "phone", "source_key")
PLACEHOLDER_COLUMNS = ("fn", "ln", "birth", "street", "city", "postcode", "email", "phone", "national_id")


def soundex(col: str) -> str:
    """American Soundex as jellyfish computes it, in portable SQL (translate + regexp_replace):
    h and w are dropped (they keep the last code), other uncoded letters separate codes, runs
    of one code collapse, the first letter's code is dropped, three digits, zero-padded."""
    def coded(x: str) -> str:
        return f"regexp_replace(translate({x}, 'bfpvcgjkqsxzdtlmnr', '111122222222334556'), '[^0-9]', '.', 'g')"

    s = coded(f"left({col}, 1)") + " || " + coded(f"regexp_replace(substr({col}, 2), '[hw]', '', 'g')")
    for d in "123456":
        s = f"regexp_replace({s}, '{d}+', '{d}', 'g')"
    digits = f"left(regexp_replace(substr({s}, 2), '[^0-9]', '', 'g'), 3)"
    return f"case when {col} is not null then upper(left({col}, 1)) || rpad({digits}, 3, '0') end"


def features_sql(source: str, columns: set[str], max_group: int) -> str:
    """One row per record of ``source`` (positions ``pos`` by record id): the cleaned matching
    columns of features_sql.py plus canonical first name, soundex codes, birth-date parts,
    term-frequency counts and the placeholder flag of resolve._placeholder_profiles. ``ov_fn``,
    ``ov_birth`` and ``ord`` are placeholders that ``finished_features_sql`` fills in."""
    from personalization_assets.identity.features_sql import HASHED, TEXT_SOURCES

    def text(c):
        return f"cast(d.{c} as varchar) as {c}" if c in columns else f"cast(null as varchar) as {c}"

    cols = list(dict.fromkeys(TEXT_SOURCES + HASHED))
    # one row per record id: the latest, or without updated_at the first by its values
    latest = ", ".join(["updated_at desc nulls last"] if "updated_at" in columns else
                       [f"{c} nulls first" for c in cols if c in columns])
    dedupe = f"qualify row_number() over (partition by record_id order by {latest}) = 1"
    # positions by record id: ranked on the ids alone, not by a sort of every column
    src = (f"select r._row, {', '.join(text(c) for c in cols)} from (select * from {source} {dedupe}) d "
           f"join (select record_id, row_number() over (order by record_id) - 1 as _row "
           f"from (select distinct record_id from {source})) r on r.record_id is not distinct from d.record_id")
    hashed = [c for c in HASHED if c in columns]
    # counts by aggregate and join, not count() over (partition by ...): a window sorts, a hash
    # aggregate does not (6 windows were most of this query). Only values held twice or more are
    # joined (a term frequency weighs two records holding one value): most emails, phones and
    # streets are held once, and joining all of them built hash tables of ~10M values at 10M
    counts = [(c, f"select {c}, count(*) as cnt_{c} from named where {c} is not null group by {c} "
                  "having count(*) > 1") for c in TF_COLUMNS.values()]
    joins = " ".join(f"left join ({q}) using ({c})" for c, q in counts)
    held = ", ".join(f"case when {c} is not null then coalesce(cnt_{c}, 1) end as cnt_{c}" for c in TF_COLUMNS.values())
    return f"""
    with src as materialized ({src}),
    cleaned as materialized ({clean_sql(hashed)}),
    -- soundex once per distinct name: its regular expressions cost more than anything else here
    sounds as (select v, {soundex('v')} as sdx from (select fn as v from cleaned union select ln from cleaned)
               where v is not null),
    named as materialized (
      select c.*, c._row as pos, s.record_id, coalesce(k.canon, c.fn) as fn_canon, ls.sdx as ln_sdx,
             fs.sdx as fn_sdx, hash({', '.join('c.' + x for x in PLACEHOLDER_COLUMNS)}) as profile
      from cleaned c join src s on s._row = c._row left join _identity_nick_canon k on k.name = c.fn
      left join sounds ls on ls.v = c.ln left join sounds fs on fs.v = c.fn),
    profiles as (select profile, count(*) > {int(max_group)} as placeholder from named group by profile)
    select * exclude (_row, record_hash, profile) replace ({held}), left(birth, 4) as b_year,
           substr(birth, 5, 4) as b_md, substr(birth, 7, 2) || substr(birth, 5, 2) as b_dm,
           left(national_id, 3) || array_to_string(list_sort(string_split(substr(national_id, 4), '')), '')
             as nid_sorted,
           false as ov_fn, false as ov_birth, cast(null as bigint) as ord
    from named {joins} join profiles using (profile)"""


def _not_null(cols: Sequence[str]) -> str:
    return " and ".join(f"{c} is not null" for c in cols)


PAIR = 4294967296  # a pair (a, b) of record positions as one integer: a * PAIR + b


def block_pairs_sql(cols: Sequence[str], max_block: int, window: int, where: str = "true") -> str:
    """Pairs (``ab``: a < b, one integer) of records sharing the key ``cols``, each with the next
    ``window`` records of its block in (surname, first name, birth date, position) order
    (``ord``), blocks of at most ``max_block`` records (blocking.pairs_within_groups); ``ph``:
    either record is a placeholder profile. A block is named by the 64-bit hash of its key, so
    sorts and joins compare integers (two keys of one hash would share a block: with a million
    keys, odds of about 1 in 30 million)."""
    # block sizes by a hash aggregate, ranks by one window, both sides of the join from one copy.
    # Each record asks for the ranks it pairs with (unnest: the join sees one equality on (k, rn));
    # joined to a table of offsets instead, the optimizer joined every pair of a block on k first
    # and filtered the ranks after (at 10M records, 6.7 billion rows for one key)
    return f"""
    select * from (
      with keyed as materialized (
        select pos, ord, placeholder, hash({', '.join(cols)}) as k from _identity_features
        where {where} and {_not_null(cols)}),
      ok as (select k from keyed group by k having count(*) between 2 and {int(max_block)}),
      ranked as materialized (
        select pos, placeholder, k, row_number() over (partition by k order by ord) as rn
        from keyed semi join ok using (k)),
      wanted as (select pos, placeholder, k, unnest(range(rn + 1, rn + {int(window) + 1})) as want from ranked)
      select least(l.pos, r.pos) * {PAIR} + greatest(l.pos, r.pos) as ab, l.placeholder or r.placeholder as ph
      from wanted l join ranked r on r.k = l.k and r.rn = l.want)"""


def candidates_statements(out: str, max_block: int, window: int, max_group: int,
                          spans: Sequence[tuple[int, int]] | None = None) -> list[str]:
    """Statements that build table ``out`` (a, b, src, blocked): the candidate pairs of resolve():
    blocking keys and shared identifiers (groups of at most max_group), without placeholder
    profiles, plus same-source-id pairs among the others (``src``: links.accepted_links links
    them unless they conflict). Each key's pairs are stored by a statement of their own, then
    an aggregate on one integer per pair merges them: one query over every key held every
    key's blocks at once and ran out of memory at 10M records under a 2 GB limit. ``spans``
    (position_spans): one aggregate per span of ``a``, stored in that order, so that a tile of
    the comparison reads its span's row groups only (at 10M: 31 s for the tiles' copies, not 68 s
    through a copy of each span, for 18 s more of aggregates)."""
    parts = [block_pairs_sql(cols, max_block, window) for cols in BLOCKING_KEYS.values()]
    parts += [block_pairs_sql((c,), max_group, max_group - 1) for c in EXACT_KEYS]
    src = block_pairs_sql(("source_key",), max_group, max_group - 1, where="not placeholder")
    raw = f"{out}_raw"
    merged = [f"""insert into {out}
               select ab // {PAIR} as a, ab % {PAIR} as b, bool_or(src) as src, bool_or(not src) as blocked
               from {raw} {where} group by ab"""
              for where in ([f"where ab >= {x * PAIR} and ab < {y * PAIR}" for x, y in spans] if spans else [""])]
    return ([f"create or replace temp table {raw} (ab bigint, src boolean)"]
            + [f"insert into {raw} select ab, false from ({q}) where not ph" for q in parts]
            + [f"insert into {raw} select ab, true from ({src})",
               f"create or replace temp table {out} (a bigint, b bigint, src boolean, blocked boolean)"]
            + merged + [f"drop table {raw}"])


def _osa(a: str, b: str, upto: int = 1, lev: str | None = None) -> str:
    """An edit distance with transpositions, exact up to ``upto`` (larger values only say "more"):
    Damerau-Levenshtein, which equals OSA up to 1. DuckDB's damerau_levenshtein is several
    times slower than levenshtein, so it only runs where a transposition can still matter.
    ``lev``: a column already holding levenshtein(a, b)."""
    lev = lev or f"levenshtein({a}, {b})"
    near = f"{lev} = 2 and length({a}) = length({b})" if upto == 1 else f"{lev} <= {2 * upto}"
    return (f"case when {a} is null or {b} is null then null when {a} = {b} then 0 "
            f"when {near} then damerau_levenshtein({a}, {b}) else {lev} end")


def _within_one(a: str, b: str) -> str:
    """OSA distance capped at 2 (2 = "two or more"): the levels of dates, postcodes and phones ask
    no more. Equal lengths: one substitution (Hamming 1) or one adjacent transposition (Hamming 2,
    and Damerau-Levenshtein 1); lengths one apart: one insertion (Levenshtein 1); else two or
    more. Hamming costs a fraction of an edit distance, which runs only where it can say 1."""
    return (f"case when {a} is null or {b} is null then null when {a} = {b} then 0 "
            f"when length({a}) = length({b}) then case when hamming({a}, {b}) = 1 then 1 "
            f"when hamming({a}, {b}) = 2 and damerau_levenshtein({a}, {b}) = 1 then 1 else 2 end "
            f"when abs(length({a}) - length({b})) = 1 then least(levenshtein({a}, {b}), 2) else 2 end")


def _jw(a: str, b: str) -> str:
    return (f"case when {a} is null or {b} is null then null when {a} = {b} then 1.0 "
            f"else cast(jaro_winkler_similarity({a}, {b}) as float) end")


def _f(x: float) -> str:
    return f"cast({x!r} as float)"


KEPT = ("fn", "ln", "street", "email", "phone", "generation", "cnt_fn", "cnt_ln", "cnt_street", "cnt_email",
        "cnt_phone", "ov_fn", "ov_birth")
# the feature columns levels_sql reads (a tile's slices of the features hold only these)
LEVEL_COLUMNS = tuple(dict.fromkeys(("pos", "fn", "ln", "street", "street_sorted", "city", "email", "phone", "b_year",
                                     "b_md", "b_dm", "birth", "postcode", "national_id") + KEPT))


def levels_sql(pairs: str, fields: Sequence[str], sides: bool = True, left: str = "_identity_features",
               right: str = "_identity_features") -> str:
    """Agreement levels (columns lv_<field>) of the pairs (a, b, ...) of relation ``pairs``; the
    pairs' own columns are kept, and with ``sides`` both sides' l_/r_ columns of KEPT. ``left``
    and ``right``: the feature relations the pairs' a and b are looked up in (a part of
    _identity_features holding them, for compare_tiles)."""
    dropped = "" if sides else ", " + ", ".join(f"l_{c}, r_{c}" for c in KEPT)
    x, y = "l_ss", "r_ss"
    # Indel >= Levenshtein, so past 0.3 of the lengths the ratio is under 0.7 whatever the estimate
    edits = f"case when e_st >= 2 and e_st <= 0.3 * n_st then damerau_levenshtein({x}, {y}) else e_st end"
    ratio = (f"case when {x} is null or {y} is null then null when {x} = {y} then 1.0 else 1.0 - cast("
             f"2 * ({edits}) - abs(length({x}) - length({y})) as double) / n_st end")
    raw = {"birth": "bd", "postcode": "pd", "phone": "ph", "national_id": "ni"}
    edit_cols = ", ".join([f"l.{c} as l_{c}_, r.{c} as r_{c}_" for c in raw]
                          + ["levenshtein(l.national_id, r.national_id) as e_ni"])
    distances = ", ".join(_within_one(f"l_{c}_", f"r_{c}_") + f" as {v}" for c, v in raw.items()
                          if c != "national_id") + ", " + _osa("l_national_id_", "r_national_id_", 2, "e_ni") + " as ni"
    raw_cols = ", ".join([f"l_{c}_, r_{c}_" for c in raw] + ["e_ni", "l_ss", "r_ss", "e_st", "n_st"])
    lv = {
        "first_name": f"case when fs is null then 0 when fs >= {_f(1.0)} then 4 "
                      f"when fs >= {_f(0.92)} or nick then 3 when fs >= {_f(0.8)} then 2 else 1 end",
        "last_name": f"case when ls is null then 0 when ls >= {_f(1.0)} then 4 when ls >= {_f(0.92)} then 3 "
                     f"when ls >= {_f(0.8)} then 2 else 1 end",
        "birth_date": "case when bd is null then 0 when bd = 0 then 4 "
                      "when bd <= 1 or (byear and l_md = r_dm) then 3 when byear or bd <= 1 then 2 else 1 end",
        "street": "case when st is null then 0 when l_street = r_street then 4 when st >= 0.9 then 3 "
                  "when st >= 0.7 then 2 else 1 end",
        "postcode_city": "case when pd is null and cj is null then 0 when pd = 0 then 4 when pd <= 1 then 3 "
                         f"when cj >= {_f(0.88)} then 2 else 1 end",
        "email": "case when l_email is null or r_email is null then 0 when l_email = r_email then 2 else 1 end",
        "phone": "case when ph is null then 0 when ph = 0 then 3 when ph <= 1 then 2 else 1 end",
        "national_id": "case when ni is null then 0 when ni = 0 then 4 when ni <= 1 then 3 when ni <= 2 then 2 "
                       "else 1 end",
    }
    sides = ", ".join(f"l.{c} as l_{c}, r.{c} as r_{c}" for c in KEPT)
    # only the first name's level asks for nicknames (a join per pair)
    nick0, nicknames = ("n.a is not null", "\n                left join _identity_nick_pairs n on "
                        "n.a = least(l.fn, r.fn) and n.b = greatest(l.fn, r.fn)") \
        if "first_name" in fields else ("false", "")
    swapped = (f"coalesce(fl >= {_f(0.9)} and lf >= {_f(0.9)} and "
               f"fl + lf > coalesce(ff, {_f(0.0)}) + coalesce(ll, {_f(0.0)}) + {_f(0.2)}, false)")
    return f"""
    select * exclude (ff, ll, fl, lf, fs, ls, nick, nick0, swapped, bd, byear, l_md, r_dm, st, pd, cj, ph, ni{dropped}),
           {', '.join(f'{lv[f]} as lv_{f}' for f in fields)}
    from (
      select *, case when swapped then fl else ff end as fs, case when swapped then lf else ll end as ls,
             nick0 and not swapped as nick
      from (
        select *, {swapped} as swapped
        from (
          select *, case when fl >= {_f(0.9)} then {_jw('l_ln', 'r_fn')} end as lf
          from (
            select *, case when not coalesce(ff >= {_f(0.9)} and ll >= {_f(0.9)}, false)
                           then {_jw('l_fn', 'r_ln')} end as fl
            from (
              select * exclude ({raw_cols}), {distances}, {ratio} as st
              from (
                select p.*, {sides},
                       {_jw('l.fn', 'r.fn')} as ff, {_jw('l.ln', 'r.ln')} as ll, {nick0} as nick0,
                       l.b_year = r.b_year as byear, l.b_md as l_md, r.b_dm as r_dm, {_jw('l.city', 'r.city')} as cj,
                       {edit_cols}, l.street_sorted as l_ss, r.street_sorted as r_ss,
                       levenshtein(l.street_sorted, r.street_sorted) as e_st,
                       length(l.street_sorted) + length(r.street_sorted) as n_st
                from ({pairs}) p join {left} l on l.pos = p.a join {right} r on r.pos = p.b{nicknames}))))))"""


OV = {"first_name": "ov_fn", "birth_date": "ov_birth"}


def differ_sql(field: str) -> str:
    """evidence.PairScorer._differ: two different values of a conflict field. First names are
    not two names when one typo apart, two typos apart at level 2 (similar), or one record's
    first name is the other's surname up to a typo. OSA up to 2 is Damerau-Levenshtein here
    (they differ only for a transposition with an insertion between)."""
    if field == "birth_date":
        return "lv_birth_date = 1"
    same = (f"coalesce({_osa('l_fn', 'r_fn', 2)} <= case when lv_first_name >= 2 then 2 else 1 end, false) "
            f"or coalesce({_osa('l_fn', 'r_ln')} <= 1, false) or coalesce({_osa('l_ln', 'r_fn')} <= 1, false)")
    return f"(lv_first_name between 1 and 2 and not ({same}))"


def outvoted_sql(fields: Sequence[str]) -> str:
    """evidence.PairScorer._outvoted: per record, whether the other records of its national id
    contradict its first name (ov_fn) or birth date (ov_birth): a value held by a strict majority
    (two or more) of the id's records is the person's; a record holding another value that
    differs from the majority's first holder is outvoted on that field, unless it is
    contradicted on both fields."""
    parts = []
    for field, column in (("first_name", "fn"), ("birth_date", "birth")):
        if field not in fields or "national_id" not in fields or not {"first_name", "birth_date"} <= set(fields):
            continue
        parts.append(f"""
        select '{field}' as field, f.pos as a, m.rep as b from _identity_features f join (
          select national_id, {column}, min(pos) as rep from (
            select national_id, {column}, pos, count(*) over (partition by national_id, {column}) as size,
                   count(*) over (partition by national_id) as held
            from _identity_features where national_id is not null and {column} is not null)
          where 2 * size > held and size >= 2 group by national_id, {column}) m
          on f.national_id = m.national_id and f.{column} <> m.{column}""")
    if not parts:
        return "select cast(null as bigint) as pos, false as ov_fn, false as ov_birth where false"
    hits = {f: f"bool_or(field = '{f}' and {differ_sql(f)})" for f in ("first_name", "birth_date")}
    return f"""
    select a as pos, {hits['first_name']} and not {hits['birth_date']} as ov_fn,
           {hits['birth_date']} and not {hits['first_name']} as ov_birth
    from ({levels_sql(' union all '.join(parts), fields)}) group by a"""


def finished_features_sql(fields: Sequence[str]) -> str:
    """_identity_features with what needs the whole table first: ``ov_fn`` and ``ov_birth``
    (outvoted_sql) and ``ord``, the records' rank in blocking order (surname, first name, birth
    date, position). The rank sorts four narrow columns of the stored table: inside the
    features query the same window sorted every column of every record, and spilled (at 3M
    records, 14 s of its 33 s)."""
    return f"""
    select f.* replace (coalesce(o.ov_fn, false) as ov_fn, coalesce(o.ov_birth, false) as ov_birth, r.ord as ord)
    from _identity_features f left join ({outvoted_sql(fields)}) o on o.pos = f.pos
    join (select pos, row_number() over (order by ln nulls first, fn nulls first, birth nulls first, pos) as ord
          from _identity_features) r on r.pos = f.pos"""


def namesakes_sql(fields: Sequence[str], max_group: int) -> str:
    """namesakes.ambiguous_records: positions (``pos``) of the records that lack the field telling
    apart two namesakes of their group whose records holding it differ on it; groups of more
    than ``max_group`` such records are left alone."""
    from personalization_assets.identity.namesakes import FIELD_COLUMN, GROUPS

    parts = []
    for cols, field in GROUPS:
        if field not in fields:
            continue
        column, key = FIELD_COLUMN[field], ", ".join(cols)
        known = f"""select pos, {key}, count(*) over (partition by {key}) as size from _identity_features
                    where {' and '.join(f'{c} is not null' for c in cols)} and {column} is not null"""
        on = " and ".join(f"l.{c} = r.{c}" for c in cols)
        pairs = (f"select l.pos as a, r.pos as b, {', '.join(f'l.{c} as k_{c}' for c in cols)} "
                 f"from ({known}) l join ({known}) r on {on} and l.pos < r.pos where l.size <= {int(max_group)}")
        two = f"select distinct {', '.join(f'k_{c}' for c in cols)} from ({levels_sql(pairs, fields)}) " \
              f"where {differ_sql(field)}"
        parts.append(f"""select f.pos from _identity_features f join ({two}) t
            on {' and '.join(f'f.{c} = t.k_{c}' for c in cols)} where f.{column} is null""")
    return " union ".join(parts) or "select cast(null as bigint) as pos where false"


def weight_case(f: str, table: np.ndarray) -> str:
    """The field's weight of its level (lv_<field>), from the model's weight table."""
    return f"case lv_{f} " + " ".join(f"when {lv} then {float(x)!r}" for lv, x in enumerate(table)) + " end"


def scores_sql(pairs: str, fields: Sequence[str], weights: Sequence[np.ndarray], prior: float,
               tf: dict[str, tuple[float, int]], household_extra: float, leveled: bool = False,
               caps: dict[str, np.ndarray] | None = None) -> str:
    """Levels, final match weight and probability, and conflicts of the pairs, as
    evidence.PairScorer.assess: ``weights`` are the model's log2(m/u) tables, ``tf`` maps a TF
    field to (u_ref, records holding a value). ``leveled``: ``pairs`` already holds the levels
    (levels_sql without sides), the sides are joined again (cheaper than keeping them)."""
    from personalization_assets.identity.namesakes import CONDITIONS

    col = {f: k for k, f in enumerate(fields)}
    plain = {f: weight_case(f, weights[k]) for f, k in col.items()}
    for name, cap in (caps or {}).items():  # FSModel.field_weights: namesakes.capped_weight
        _, field, agree, needs = CONDITIONS[name]
        inside = " and ".join([f"lv_{field} >= {agree}"] + [f"lv_{f} >= {lowest}" for f, lowest in needs])
        table = "case lv_" + field + " " + " ".join(f"when {lv} then {float(x)!r}" for lv, x in enumerate(cap)) + " end"
        plain[field] = f"case when {inside} then least({plain[field]}, {table}) else {plain[field]} end"
    plain = [f"{x} as p_{f}" for f, x in plain.items()]
    tfs = [f for f in tf if f in col]
    adj = [f"case when lv_{f} = {TOP[f]} and l_{TF_COLUMNS[f]} = r_{TF_COLUMNS[f]} then least(0.0, "
           f"log2({tf[f][0]!r} / (cast(l_cnt_{TF_COLUMNS[f]} as double) / {tf[f][1]}))) else 0.0 end as t_{f}"
           for f in tfs]
    w = [f"p_{f} + t_{f} as w_{f}" if f in tfs else f"p_{f} as w_{f}" for f in col]
    hh = [f for f in ("last_name", "street", "postcode_city") if f in col]
    hh_sql = "0.0"
    if len(hh) > 1:
        pos = [f"greatest(w_{f}, 0.0)" for f in hh]
        hh_sql = f"(greatest({', '.join(pos)}) - ({' + '.join(pos)})) * {1 - household_extra!r}"
    differ = {f: differ_sql(f) for f in ("first_name", "birth_date") if f in col}
    excused = " or ".join(f"({differ[f]} and (l_{OV[f]} or r_{OV[f]}))" for f in differ) or "false"
    n_fields = " + ".join(f"case when {x} then 1 else 0 end" for x in differ.values()) or "0"
    same_birth = f"lv_birth_date = {TOP['birth_date']}" if "birth_date" in col else "false"
    # an outvoted value excuses a pair's only conflicting field, never two of them
    conflicts = [f"({n_fields}) - case when ({n_fields}) = 1 and ({excused}) then 1 else 0 end",
                 "case when l_generation <> r_generation or ((l_generation is null) <> (r_generation is null) "
                 f"and not {same_birth}) then 1 else 0 end"]
    same_id = "lv_national_id >= 3" if "national_id" in col else "false"
    source = _with_sides(pairs) if leveled else levels_sql(pairs, fields)
    return f"""
    select *, 1.0 / (1.0 + pow(2.0, -weight)) as prob,
           n_conflicts >= 2 or (n_conflicts = 1 and not {same_id}) as conflict
    from (
      select *, {prior!r} + {' + '.join(f'w_{f}' for f in col) or '0.0'} + household_adjustment as weight
      from (
        select *, {hh_sql} as household_adjustment, {' + '.join(f't_{f}' for f in tfs) or '0.0'} as tf_adjustment,
               {' + '.join(conflicts)} as n_conflicts
        from (select *, {', '.join(w)}
              from (select *, {', '.join(plain + adj)} from ({source})))))"""


def position_spans(n_records: int, tile: int) -> list[tuple[int, int]]:
    """Ranges of record positions (from, to), end excluded, of at most ``tile`` records."""
    cuts = list(range(0, n_records, max(int(tile), 1))) + [n_records]
    return list(zip(cuts[:-1], cuts[1:])) or [(0, 0)]


def compare_tiles(n_records: int, tile: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Ranges of record positions ((a from, a to), (b from, b to)), ends excluded, that cover
    every pair a < b of ``n_records`` records once: tiles of at most ``tile`` records a side.
    Comparing a tile's pairs looks up two slices of the features, not all of them: at 10M
    records the two whole-table lookups of every candidate pair spilled past 69 GB and were stopped."""
    spans = position_spans(n_records, tile)
    return [(spans[i], spans[j]) for i in range(len(spans)) for j in range(i, len(spans))]


def _with_sides(levels: str) -> str:
    sides = ", ".join(f"l.{c} as l_{c}, r.{c} as r_{c}" for c in KEPT)
    return (f"select p.*, {sides} from ({levels}) p join _identity_features l on l.pos = p.a "
            f"join _identity_features r on r.pos = p.b")


def to_snowflake(sql: str) -> str:
    """The same query in Snowflake's dialect. sqlglot translates the syntax; the map fixes the
    functions whose meaning differs: JAROWINKLER_SIMILARITY returns an integer 0-100 (DuckDB a
    float 0-1), and Snowflake has neither Damerau-Levenshtein nor Hamming, so both become
    EDITDISTANCE (which equals Hamming where either is 1 on strings of equal length; an adjacent
    transposition then costs 2, one level lower for that field)."""
    import sqlglot
    from sqlglot import exp

    def fix(node):
        if isinstance(node, exp.JarowinklerSimilarity):
            return exp.Div(this=exp.Anonymous(this="JAROWINKLER_SIMILARITY", expressions=[node.this, node.expression]),
                           expression=exp.Literal.number("100.0"))
        if isinstance(node, exp.Anonymous) and node.name.lower() in ("damerau_levenshtein", "hamming"):
            return exp.Levenshtein(this=node.expressions[0], expression=node.expressions[1])
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(fix)
    return tree.sql(dialect="snowflake")
