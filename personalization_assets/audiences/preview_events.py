"""The staged events a preview reads row by row, resolved to customers into a temporary table.

Counts and sums read `staging.events` themselves, per identity pair (`sql.Relations.staged`), so
only what must be read event by event is copied here: the events of the other conditions
(`sql.row_conditions`: a `not_followed_by`, a last or most frequent value), or the events of a few
sampled members, for their evidence. Each table holds only the events those conditions can match at
the instant (one of their filters, within its reach), with only the columns they read, shaped like
`warehouse.EVENTS_VIEW` (customer_key, event, ts and event columns); each condition still applies
its own exact window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..marts.inputs import Sql
from .model import EVENT_COLUMNS, Audience, ComputedCond, EventCond, EventFilter, conditions
from .sql import resolved_key, to_dialect

STAGED = "staging.events"
IDENTITIES = "core.identity_map"
SLACK = timedelta(seconds=1)  # a table may hold a little more than its conditions read; never less

Cond = EventCond | ComputedCond


def event_conditions(audiences: list[Audience]) -> list[Cond]:
    """Every event and computed condition of these rules (not of their exclusions)."""
    return [c for a in audiences for c in conditions(a.rule) if isinstance(c, (EventCond, ComputedCond))]


def _reads(conds: list[Cond]) -> list[tuple[EventFilter, float | None]]:
    """Each event filter these conditions read, with how far back from the instant (None: all
    history). A follow-up (`not_followed_by`) comes after its event, so it is within the same reach."""
    out: list[tuple[EventFilter, float | None]] = []
    for cond in conds:
        if isinstance(cond, EventCond):
            out.append((cond.match, cond.window.start))
            if cond.not_followed_by is not None:
                out.append((cond.not_followed_by, cond.window.start))
        else:
            out.append((cond.trait.match, cond.trait.window.start))
    return out


def _columns(conds: list[Cond]) -> list[str]:
    """The event columns these conditions read (filters, sums, computed traits), in EVENT_COLUMNS order."""
    used: set[str] = set()
    for cond in conds:
        if isinstance(cond, EventCond):
            filters = [cond.match, cond.not_followed_by]
            used.add(cond.of or "")
        else:
            filters = [cond.trait.match]
            used.add(cond.trait.of or "")
        used |= {col for f in filters if f is not None for col, _ in f.where}
    return [c for c in EVENT_COLUMNS if c in used]


def event_table(conn: Sql, table: str, conds: list[Cond], as_of: datetime, identities: str | None,
                members: list[str] | None = None) -> str:
    """Create the temporary `table` of the staged events `conds` can read at `as_of`, resolved to
    customers through `identities` (None: the ids themselves); with `members`, only theirs (their
    identities are looked up first, so only their events are resolved). Returns `table`."""
    parts, params = [], []
    for match, reach in _reads(conds):
        part = f"e.event in ({', '.join('?' for _ in match.events)})"
        params += list(match.events)
        for col, vals in match.where:  # a whitelisted column (model.EVENT_COLUMNS)
            part += f" and e.{col} in ({', '.join('?' for _ in vals)})"
            params += list(vals)
        if reach is not None:
            part += " and e.timestamp >= ?"
            params.append(as_of - timedelta(seconds=reach) - SLACK)
        parts.append(f"({part})")
    # Plain conjuncts first: the scan applies them itself (the OR of the filters it cannot); the
    # event time prunes whole row groups, as the staged events are stored in arrival order.
    reads = _reads(conds)
    names = sorted({n for match, _ in reads for n in match.events}) or [""]
    reaches = [r for _, r in reads]
    outer, outer_params = [f"e.event in ({', '.join('?' for _ in names)})"], [*names]
    if reaches and None not in reaches:
        outer.append("e.timestamp >= ?")
        outer_params.append(as_of - timedelta(seconds=max(reaches)) - SLACK)
    key, joins = resolved_key("ev", identities)
    mine, mine_params, last = "", [], ""
    if members is not None:
        users, devices = _identities_of(conn, members, identities)
        ids = [f"e.user_id in ({', '.join('?' for _ in users)})"]
        if devices:
            ids.append(f"e.anonymous_id in ({', '.join('?' for _ in devices)})")
        mine, mine_params = f" and ({' or '.join(ids)})", [*users, *devices]
        last = f" where {key} in ({', '.join('?' for _ in members)})"
    cols = "".join(f", e.{c}" for c in _columns(conds))  # only these: each column read costs
    picked = (f"select e.user_id, e.anonymous_id, e.event, epoch(e.timestamp) as ts{cols} "
              f"from {STAGED} e where e.timestamp <= ? and {' and '.join(outer)}{mine} "
              f"and ({' or '.join(parts) or 'false'})")
    sql = f"select {key} as customer_key, ev.* exclude (user_id, anonymous_id) from ({picked}) ev{joins}{last}"
    conn.execute(to_dialect(f"create or replace temporary table {table} as {sql}", conn.dialect),
                 [as_of + SLACK, *outer_params, *mine_params, *params, *(members or [])])
    return table


def _identities_of(conn: Sql, members: list[str], identities: str | None) -> tuple[list[str], list[str]]:
    """(user ids, anonymous ids) an event may carry to resolve to one of `members` (`resolved_key`):
    those mapped to them, and the member keys themselves as unmapped ids (a user id, or 'anon:' and
    an anonymous id). A superset: the resolution itself picks the member's events among them."""
    users = list(members)
    devices = [m[len("anon:"):] for m in members if m.startswith("anon:")]
    if identities is not None:
        marks = ", ".join("?" for _ in members)
        mapped = conn.rows(f"select identity_type, identity from {identities} where customer_key in ({marks})",
                           members)
        users += [i for t, i in mapped if t == "user_id"]
        devices += [i for t, i in mapped if t == "anonymous_id"]
    return list(dict.fromkeys(users)), list(dict.fromkeys(devices))
