"""An audience's size now, its overlap with the others, and sample members with the evidence
(which of its conditions each one meets): what `personalization audience preview` prints and what
each audience asset shows in the UI.

It stays fast at a million customers: size and every overlap come from one query (each membership
is computed once, joined on customer_key, and only counts come back); the samples are a LIMIT, and
the evidence is evaluated for those few members only.
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
    ctes, counts, joins = [f"m as ({sql})"], ["count(*) as size"], []
    for i, other in enumerate(rivals):
        if other.name in stored:
            ctes.append(f"o{i} as (select distinct customer_key from {stored[other.name]})")
        else:
            osql, oparams = membership_sql(other, as_of, known, relations)
            ctes.append(f"o{i} as ({osql})")
            params = params + oparams
        counts.append(f"count(o{i}.customer_key) as o{i}")
        joins.append(f"left join o{i} on o{i}.customer_key = m.customer_key")
    # one pass: the members are computed once and only counts and the first few keys come back
    first = (f"(select string_agg(customer_key, chr(31) order by customer_key) from "
             f"(select customer_key from m order by customer_key limit {int(samples)}) s) as sample")
    row = conn.query(f"with {', '.join(ctes)} select {', '.join(counts)}, {first} from m {' '.join(joins)}",
                     params).iloc[0]
    overlap = {other.name: int(row[f"o{i}"]) for i, other in enumerate(rivals)}
    members = str(row["sample"]).split(chr(31)) if isinstance(row["sample"], str) and row["sample"] else []
    return Preview(audience.name, int(row["size"]), overlap, evidence(conn, audience, known, members, as_of, relations))


def evidence(conn: Sql, audience: Audience, known: dict[str, Audience], members: list[str], as_of: datetime,
             relations: Relations) -> dict[str, list[str]]:
    """For each member, the leaf conditions of the rule it meets, as written (one query per condition,
    on these members only)."""
    out: dict[str, list[str]] = {m: [] for m in members}
    if not members:
        return out
    marks = ", ".join("?" for _ in members)
    few = replace(relations, customers=f"(select * from {relations.customers} where customer_key in ({marks}))")
    for cond in conditions(audience.rule):
        single = replace(audience, rule=cond, exclusions=())
        csql, cparams = membership_sql(single, as_of, known, few)
        for m in conn.query(csql, members + cparams)["customer_key"]:
            out[str(m)].append(getattr(cond, "text", "") or repr(cond))
    return out


def stored_tables(conn: Sql, names: list[str]) -> dict[str, str]:
    """{audience: its asset's table} for the audiences whose asset has materialized."""
    return {n: f"{SCHEMA}.{n}" for n in names if conn.table_exists(SCHEMA, n)}


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


def recent_events(conn: Sql, audiences: list[Audience], as_of: datetime, has_identity: bool) -> str:
    """A temporary table shaped like `warehouse.EVENTS_VIEW` holding only the events these rules can
    read at `as_of` (matching one of their filters, within its reach), so every condition reads it
    instead of resolving all of history again. The filters apply to `staging.events` itself (its
    event time prunes whole row groups, as it is stored in arrival order), and only the identities
    of those events are looked up; each condition still applies its own exact window."""
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
    cols = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
    picked = (f"select e.user_id, e.anonymous_id, e.event, epoch(e.timestamp) as ts, epoch(e.received_at) as received, "
              f"{cols} from staging.events e where e.timestamp <= ? and {' and '.join(outer)} "
              f"and ({' or '.join(parts) or 'false'})")
    if has_identity:  # the same resolution as the view, on these events' identities only
        sql = (f"with ev as ({picked}), ids as (select identity_type, identity, customer_key from core.identity_map "
               "where identity in (select user_id from ev union select anonymous_id from ev)) "
               "select coalesce(mu.customer_key, ma.customer_key, ev.user_id, 'anon:' || ev.anonymous_id) "
               "as customer_key, ev.* exclude (user_id, anonymous_id) from ev "
               "left join ids mu on mu.identity_type = 'user_id' and mu.identity = ev.user_id "
               "left join ids ma on ma.identity_type = 'anonymous_id' and ma.identity = ev.anonymous_id")
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
    has_profiles = conn.table_exists("marts", "customer_profiles")
    has_events = conn.table_exists("staging", "events")
    others = [o for o in others if o.name != audience.name]
    if not has_profiles:  # without profiles only event-based audiences can be evaluated
        others = split_streamable(others)[0]
        refused = split_streamable([audience])[1]
        if refused:
            raise PreviewError(f"{next(iter(refused.values()))}; the warehouse has no marts.customer_profiles "
                               "yet: materialize the profiles first")
    stored = stored_tables(conn, [o.name for o in others]) if use_stored else {}
    events = EVENTS_VIEW
    if has_events:
        create_views(conn, conn.dialect, conn.table_exists("core", "identity_map"))
        live = [audience, *(o for o in others if o.name not in stored)]  # its evidence, at least
        known = {a.name: a for a in [*others, audience]}
        closure = {x for a in live for x in _excluded(a, known)}
        events = recent_events(conn, [*live, *(known[x] for x in closure)], as_of,
                               conn.table_exists("core", "identity_map"))
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
