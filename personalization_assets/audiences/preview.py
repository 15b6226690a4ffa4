"""An audience's size now, its overlap with the others, and sample members with the evidence
(which of its conditions each one meets): what `personalization audience preview` prints and what
each audience asset shows in the UI.

It stays fast at a million customers: only the events the rules can read are resolved to customers
(once, into a temporary table, with only the columns they read); the members are computed once
(membership_sql: counts and sums in one grouped pass), and the size, the samples (a LIMIT) and every
overlap (one pass over the other audiences' stored tables) read them; only counts and a few keys come
back; the evidence is evaluated for those few members only, on copies of their rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..marts.inputs import Sql
from .model import EVENT_COLUMNS, Audience, ComputedCond, EventCond, EventFilter, conditions
from .sql import Relations, membership_sql, to_dialect
from .warehouse import CUSTOMERS_VIEW, EVENTS_VIEW, create_views, split_streamable

PROFILES = "marts.customer_profiles"
SCHEMA = "audiences"  # each audience asset's membership: audiences.<name> (customer_key, as_of)
RECENT_EVENTS = "audience_preview_events"  # temporary: the events the previewed rules can read
MEMBERS = "audience_preview_members"  # temporary: the previewed audience's members
SAMPLE = "audience_preview_sample"  # temporary: the sampled members' customer (profile) rows
SAMPLE_EVENTS = "audience_preview_sample_events"  # temporary: their events


class PreviewError(ValueError):
    """The warehouse cannot evaluate this audience yet; the message says what to materialize."""


@dataclass
class Preview:
    name: str
    size: int
    overlap: dict[str, int]  # other audience -> members in both
    samples: dict[str, list[str]]  # member -> conditions met, as written

    def markdown(self) -> str:
        """The preview for the UI (member keys as given: mask them before showing PII)."""
        lines = [f"**{self.name}**: {self.size} members", "", "| overlap with | members in both |", "|---|---|"]
        lines += [f"| {name} | {n} |" for name, n in sorted(self.overlap.items(), key=lambda kv: (-kv[1], kv[0]))]
        lines += ["", "| member | conditions met |", "|---|---|"]
        lines += [f"| {m} | {'; '.join(met) or '(a combination of any:)'} |" for m, met in self.samples.items()]
        return "\n".join(lines)


def preview(conn: Sql, audience: Audience, others: list[Audience], as_of: datetime,
            relations: Relations, samples: int = 5, stored: dict[str, str] | None = None,
            members: str | None = None) -> Preview:
    """`stored` names a table (customer_key) holding an other audience's membership as last refreshed
    (its asset's table): the overlap reads it instead of evaluating that audience again. `members`
    is such a table for the audience itself (the asset's own metadata), else it is evaluated now."""
    known = {a.name: a for a in others}
    known[audience.name] = audience
    rivals = [o for o in others if o.name != audience.name]
    stored = stored or {}
    sql, params = (f"select customer_key from {members}", []) if members else \
        membership_sql(audience, as_of, known, relations)
    # The members are computed once, into a temporary table that the size, the samples and the
    # overlaps all read (only counts and the first few keys come back).
    conn.execute(to_dialect(f"create or replace temporary table {MEMBERS} as {sql}", conn.dialect), params)
    head = conn.query(f"select (select count(*) from {MEMBERS}) as size, (select string_agg(customer_key, chr(31) "
                      f"order by customer_key) from (select customer_key from {MEMBERS} order by customer_key "
                      f"limit {int(samples)}) s) as sample")
    overlap = dict.fromkeys((o.name for o in rivals), 0)
    if rivals:
        # One pass for every overlap: each other membership (its stored table, else evaluated now)
        # tagged with its position, probed against the members; each key counts once per audience.
        parts, oparams = [], []
        for i, other in enumerate(rivals):
            if other.name in stored:
                parts.append(f"select {i} as i, customer_key from {stored[other.name]}")
            else:
                osql, op = membership_sql(other, as_of, known, relations)
                parts.append(f"select {i} as i, customer_key from ({osql}) o{i}")
                oparams += op
        others_sql = " union all ".join(parts)
        counts = conn.query(f"select o.i as i, count(distinct o.customer_key) as n from ({others_sql}) o "
                            f"where o.customer_key in (select customer_key from {MEMBERS}) group by o.i", oparams)
        for i, n in zip(counts["i"], counts["n"]):
            overlap[rivals[int(i)].name] = int(n)
    sample = head["sample"].iloc[0]
    keys = str(sample).split(chr(31)) if isinstance(sample, str) and sample else []
    return Preview(audience.name, int(head["size"].iloc[0]), overlap,
                   evidence(conn, audience, known, keys, as_of, relations))


def evidence(conn: Sql, audience: Audience, known: dict[str, Audience], members: list[str], as_of: datetime,
             relations: Relations) -> dict[str, list[str]]:
    """For each member, the leaf conditions of the rule it meets, as written (one query per condition,
    on these members only: their rows of the customers relation (and of the traits when these are
    the same relation) and their events are copied to small temporary tables first)."""
    out: dict[str, list[str]] = {m: [] for m in members}
    if not members:
        return out
    marks = ", ".join("?" for _ in members)
    conn.execute(to_dialect(f"create or replace temporary table {SAMPLE} as select * from {relations.customers} "
                            f"where customer_key in ({marks})", conn.dialect), members)
    conn.execute(to_dialect(f"create or replace temporary table {SAMPLE_EVENTS} as select * from {relations.events} "
                            f"where customer_key in ({marks})", conn.dialect), members)
    same = relations.traits == relations.customers
    few = replace(relations, customers=SAMPLE, traits=SAMPLE if same else relations.traits, events=SAMPLE_EVENTS)
    for cond in conditions(audience.rule):
        single = replace(audience, rule=cond, exclusions=())
        for m in conn.query(*membership_sql(single, as_of, known, few))["customer_key"]:
            out[str(m)].append(getattr(cond, "text", "") or repr(cond))
    return out


def _tables(conn: Sql) -> set[str]:
    """Every `schema.table` (lower case) the preview may read, from one look at the catalog."""
    frame = conn.query("select lower(table_schema) as s, lower(table_name) as t from information_schema.tables "
                       "where lower(table_schema) in (?, ?, ?, ?)", ["marts", "staging", "core", SCHEMA])
    return {f"{s}.{t}" for s, t in zip(frame["s"], frame["t"])}


def _reads(audiences: list[Audience]) -> list[tuple[EventFilter, float | None]]:
    """Each event filter these rules read, with how far back from the instant (None: all history).
    A follow-up (`not_followed_by`) comes after its event, so it is within the same reach."""
    out: list[tuple[EventFilter, float | None]] = []
    for a in audiences:
        for cond in conditions(a.rule):
            if isinstance(cond, EventCond):
                out.append((cond.match, cond.window.start))
                if cond.not_followed_by is not None:
                    out.append((cond.not_followed_by, cond.window.start))
            elif isinstance(cond, ComputedCond):
                out.append((cond.trait.match, cond.trait.window.start))
    return out


def _columns(audiences: list[Audience]) -> list[str]:
    """The event columns these rules read (filters, sums, computed traits), in EVENT_COLUMNS order."""
    used: set[str] = set()
    for a in audiences:
        for cond in conditions(a.rule):
            filters = []
            if isinstance(cond, EventCond):
                filters = [cond.match, cond.not_followed_by]
                used.add(cond.of or "")
            elif isinstance(cond, ComputedCond):
                filters = [cond.trait.match]
                used.add(cond.trait.of or "")
            used |= {col for f in filters if f is not None for col, _ in f.where}
    return [c for c in EVENT_COLUMNS if c in used]


def recent_events(conn: Sql, audiences: list[Audience], as_of: datetime, has_identity: bool) -> str:
    """A temporary table shaped like `warehouse.EVENTS_VIEW` (customer_key, event, ts and the event
    columns these rules read) holding only the events these rules can read at `as_of` (matching one
    of their filters, within its reach), so every condition reads it instead of resolving all of
    history again. The filters apply to `staging.events` itself (its event time prunes whole row
    groups, as it is stored in arrival order), and only the identities of those events are looked
    up; each condition still applies its own exact window."""
    slack = timedelta(seconds=1)  # the table may hold a little more; never less
    parts, params = [], []
    for match, reach in _reads(audiences):
        part = f"e.event in ({', '.join('?' for _ in match.events)})"
        params += list(match.events)
        for col, vals in match.where:  # a whitelisted column (model.EVENT_COLUMNS)
            part += f" and e.{col} in ({', '.join('?' for _ in vals)})"
            params += list(vals)
        if reach is not None:
            part += " and e.timestamp >= ?"
            params.append(as_of - timedelta(seconds=reach) - slack)
        parts.append(f"({part})")
    # Plain conjuncts first: the scan applies them itself (the OR of the filters it cannot).
    reads = _reads(audiences)
    names = sorted({n for match, _ in reads for n in match.events}) or [""]
    reaches = [r for _, r in reads]
    outer, outer_params = [f"e.event in ({', '.join('?' for _ in names)})"], [*names]
    if reaches and None not in reaches:
        outer.append("e.timestamp >= ?")
        outer_params.append(as_of - timedelta(seconds=max(reaches)) - slack)
    cols = "".join(f", e.{c}" for c in _columns(audiences))  # only these: each column read costs
    picked = (f"select e.user_id, e.anonymous_id, e.event, epoch(e.timestamp) as ts{cols} "
              f"from staging.events e where e.timestamp <= ? and {' and '.join(outer)} "
              f"and ({' or '.join(parts) or 'false'})")
    if has_identity:  # the same resolution as the view (its joins, on each identity type's rows)
        sql = (f"select coalesce(mu.customer_key, ma.customer_key, ev.user_id, 'anon:' || ev.anonymous_id) "
               f"as customer_key, ev.* exclude (user_id, anonymous_id) from ({picked}) ev "
               "left join (select identity, customer_key from core.identity_map where identity_type = 'user_id') mu "
               "on mu.identity = ev.user_id "
               "left join (select identity, customer_key from core.identity_map where identity_type = 'anonymous_id') "
               "ma on ma.identity = ev.anonymous_id")
    else:
        sql = (f"select coalesce(ev.user_id, 'anon:' || ev.anonymous_id) as customer_key, "
               f"ev.* exclude (user_id, anonymous_id) from ({picked}) ev")
    conn.execute(to_dialect(f"create or replace temporary table {RECENT_EVENTS} as {sql}", conn.dialect),
                 [as_of + slack, *outer_params, *params])
    return RECENT_EVENTS


def on_warehouse(conn: Sql, audience: Audience, others: list[Audience], as_of: datetime,
                 samples: int = 5, use_stored: bool = True, members: str | None = None) -> Preview:
    """The preview on the warehouse: profiles for trait conditions, staged events (resolved to
    customers) for event conditions, the other audiences' asset tables for the overlap where they
    exist (`use_stored`), everything else evaluated at `as_of`."""
    have = _tables(conn)
    has_profiles, has_events = PROFILES in have, "staging.events" in have
    has_identity = "core.identity_map" in have
    others = [o for o in others if o.name != audience.name]
    if not has_profiles:  # without profiles only event-based audiences can be evaluated
        others = split_streamable(others)[0]
        refused = split_streamable([audience])[1]
        if refused:
            raise PreviewError(f"{next(iter(refused.values()))}; the warehouse has no marts.customer_profiles "
                               "yet: materialize the profiles first")
    stored = {o.name: f"{SCHEMA}.{o.name}" for o in others if f"{SCHEMA}.{o.name}" in have} if use_stored else {}
    events = EVENTS_VIEW
    if has_events:
        if not has_profiles:  # the customers are those of the events view (the profiles need no view)
            create_views(conn, conn.dialect, has_identity)
        live = [audience, *(o for o in others if o.name not in stored)]  # its evidence, at least
        known = {a.name: a for a in [*others, audience]}
        closure = {x for a in live for x in _excluded(a, known)}
        events = recent_events(conn, [*live, *(known[x] for x in closure)], as_of, has_identity)
    relations = Relations(customers=PROFILES if has_profiles else CUSTOMERS_VIEW, events=events)
    return preview(conn, audience, others, as_of, relations, samples, stored, members)


def _excluded(audience: Audience, known: dict[str, Audience]) -> set[str]:
    """Every audience this one's exclusions reach (their rules are inlined in its SQL)."""
    out: set[str] = set()
    todo = list(audience.exclusions)
    while todo:
        name = todo.pop()
        if name not in out and name in known:
            out.add(name)
            todo += list(known[name].exclusions)
    return out


def store_membership(conn: Sql, audience: Audience, known: dict[str, Audience], as_of: datetime) -> int:
    """Evaluate the audience at `as_of` into its asset's table `audiences.<name>` (customer_key,
    as_of), replacing what it held. Returns its size."""
    has_profiles = conn.table_exists("marts", "customer_profiles")
    events = EVENTS_VIEW
    if conn.table_exists("staging", "events"):
        create_views(conn, conn.dialect, conn.table_exists("core", "identity_map"))
        events = recent_events(conn, [audience, *(known[x] for x in _excluded(audience, known))], as_of,
                               conn.table_exists("core", "identity_map"))
    relations = Relations(customers=PROFILES if has_profiles else CUSTOMERS_VIEW, events=events)
    sql, params = membership_sql(audience, as_of, known, relations)
    conn.execute(f"create schema if not exists {SCHEMA}")
    table = f"{SCHEMA}.{audience.name}"  # a lower_snake name (model.parse): a safe identifier
    conn.execute(f"create or replace table {table} as select customer_key, cast(? as timestamp with time zone) "
                 f"as as_of from ({sql}) m", [as_of, *params])
    return int(conn.query(f"select count(*) as n from {table}")["n"].iloc[0])
