"""An audience's size now, its overlap with the others, and sample members with the evidence
(which of its conditions each one meets): what `personalization audience preview` prints and what
each audience asset shows in the UI.

It stays fast at a million customers: counts and sums read the staged events per identity pair and
resolve each pair to its customer once (`sql.Relations.staged`); only the events the other
conditions read row by row are resolved per event, once, into a temporary table (preview_events.py);
the members are computed once (membership_sql: counts and sums in one grouped pass), and the size,
the samples (a LIMIT) and every overlap (one pass over the other audiences' stored tables) read them;
only counts and a few keys come back. The members table also shows which counts, sums and profile
traits each member meets; the rest of the evidence is evaluated for the sampled members only, on
copies of their rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ..marts.inputs import Sql
from .model import Audience, ComputedCond, EventCond, conditions
from .preview_events import IDENTITIES, STAGED, event_conditions, event_table
from .sql import Relations, evidence_leaves, membership_sql, row_conditions, to_dialect
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
        membership_sql(audience, as_of, known, relations, evidence=True)
    # The members are computed once, into a temporary table that the size, the samples and the
    # overlaps all read (only counts and the first few keys come back).
    conn.execute(to_dialect(f"create or replace temporary table {MEMBERS} as {sql}", conn.dialect), params)
    size, sample = conn.rows(f"select (select count(*) from {MEMBERS}) as size, (select string_agg(customer_key, "
                             f"chr(31) order by customer_key) from (select customer_key from {MEMBERS} order by "
                             f"customer_key limit {int(samples)}) s) as sample")[0]
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
        counts = conn.rows(f"select o.i as i, count(distinct o.customer_key) as n from ({others_sql}) o "
                           f"where o.customer_key in (select customer_key from {MEMBERS}) group by o.i", oparams)
        for i, n in counts:
            overlap[rivals[int(i)].name] = int(n)
    keys = str(sample).split(chr(31)) if isinstance(sample, str) and sample else []
    decided: dict[int, set[str]] = {}
    shown = [] if members else evidence_leaves(audience, known)
    if keys and shown:  # what the members table shows of its sampled members
        marks = ", ".join("?" for _ in keys)
        rows = conn.rows(f"select customer_key, {', '.join(f'ev{i}' for i in shown)} from {MEMBERS} "
                         f"where customer_key in ({marks})", keys)
        decided = {i: {str(r[0]) for r in rows if r[1 + n]} for n, i in enumerate(shown)}
    return Preview(audience.name, int(size), overlap,
                   evidence(conn, audience, known, keys, as_of, relations, decided))


def evidence(conn: Sql, audience: Audience, known: dict[str, Audience], members: list[str], as_of: datetime,
             relations: Relations, decided: dict[int, set[str]] | None = None) -> dict[str, list[str]]:
    """For each member, the leaf conditions of the rule it meets, as written. `decided` gives the
    members meeting some leaves (by position in the rule), already known; each other leaf is one
    query on these members only: their rows of the customers relation (and of the traits when these
    are the same relation) and, if a leaf reads events, their events are copied to small temporary
    tables first (from `relations.events`, or their staged events, resolved, for a leaf that
    `relations.staged` computes)."""
    decided = dict(decided or {})
    leaves = list(conditions(audience.rule))
    rest = [i for i in range(len(leaves)) if i not in decided]
    if members and rest:
        marks = ", ".join("?" for _ in members)
        conn.execute(to_dialect(f"create or replace temporary table {SAMPLE} as select * from {relations.customers} "
                                f"where customer_key in ({marks})", conn.dialect), members)
        reading = [leaves[i] for i in rest if isinstance(leaves[i], (EventCond, ComputedCond))]
        # their events are in `relations.events` unless the staged events are read for some of them
        in_events = not relations.staged or {id(c) for c in reading} <= {
            id(c) for c in row_conditions(audience, known, relations)}
        if reading and not in_events:
            event_table(conn, SAMPLE_EVENTS, reading, as_of, relations.identities, members)
        elif reading:
            conn.execute(to_dialect(f"create or replace temporary table {SAMPLE_EVENTS} as select * from "
                                    f"{relations.events} where customer_key in ({marks})", conn.dialect), members)
        same = relations.traits == relations.customers
        few = Relations(customers=SAMPLE, events=SAMPLE_EVENTS, traits=SAMPLE if same else relations.traits,
                        uplift=relations.uplift)
        for i in rest:
            single = replace(audience, rule=leaves[i], exclusions=())
            decided[i] = {str(r[0]) for r in conn.rows(*membership_sql(single, as_of, known, few))}
    return {m: [getattr(c, "text", "") or repr(c) for i, c in enumerate(leaves) if m in decided[i]] for m in members}


def _tables(conn: Sql) -> set[str]:
    """Every `schema.table` (lower case) the preview may read, from one look at the catalog."""
    rows = conn.rows("select lower(table_schema) as s, lower(table_name) as t from information_schema.tables "
                     "where lower(table_schema) in (?, ?, ?, ?)", ["marts", "staging", "core", SCHEMA])
    return {f"{s}.{t}" for s, t in rows}


def recent_events(conn: Sql, audiences: list[Audience], as_of: datetime, has_identity: bool) -> str:
    """A temporary table shaped like `warehouse.EVENTS_VIEW` holding only the events these rules
    can read at `as_of` (every event condition's: `preview_events.event_table`)."""
    return event_table(conn, RECENT_EVENTS, event_conditions(audiences), as_of, IDENTITIES if has_identity else None)


def on_staged(conn: Sql, relations: Relations, audiences: list[Audience], known: dict[str, Audience],
              as_of: datetime, has_identity: bool) -> Relations:
    """`relations` reading the staged events: counts and sums per identity pair, and what the
    membership of `audiences` still reads row by row (`sql.row_conditions`) from a temporary table."""
    staged = replace(relations, staged=STAGED, identities=IDENTITIES if has_identity else None)
    rows = {id(c): c for a in audiences for c in row_conditions(a, known, staged)}
    if not rows:
        return staged
    return replace(staged, events=event_table(conn, RECENT_EVENTS, list(rows.values()), as_of, staged.identities))


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
    relations = Relations(customers=PROFILES if has_profiles else CUSTOMERS_VIEW, events=EVENTS_VIEW)
    if has_events:
        if not has_profiles:  # the customers are those of the events view (the profiles need no view)
            create_views(conn, conn.dialect, has_identity)
        live = [audience, *(o for o in others if o.name not in stored)]  # evaluated now (and their exclusions)
        known = {a.name: a for a in [*others, audience]}
        relations = on_staged(conn, relations, live, known, as_of, has_identity)
    return preview(conn, audience, others, as_of, relations, samples, stored, members)


def store_membership(conn: Sql, audience: Audience, known: dict[str, Audience], as_of: datetime) -> int:
    """Evaluate the audience at `as_of` into its asset's table `audiences.<name>` (customer_key,
    as_of), replacing what it held. Returns its size."""
    has_profiles = conn.table_exists("marts", "customer_profiles")
    relations = Relations(customers=PROFILES if has_profiles else CUSTOMERS_VIEW, events=EVENTS_VIEW)
    if conn.table_exists("staging", "events"):
        has_identity = conn.table_exists("core", "identity_map")
        create_views(conn, conn.dialect, has_identity)
        relations = on_staged(conn, relations, [audience], known, as_of, has_identity)
    sql, params = membership_sql(audience, as_of, known, relations)
    conn.execute(f"create schema if not exists {SCHEMA}")
    table = f"{SCHEMA}.{audience.name}"  # a lower_snake name (model.parse): a safe identifier
    conn.execute(f"create or replace table {table} as select customer_key, cast(? as timestamp with time zone) "
                 f"as as_of from ({sql}) m", [as_of, *params])
    return int(conn.query(f"select count(*) as n from {table}")["n"].iloc[0])
