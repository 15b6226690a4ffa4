"""Today's segments, rewritten in the audience language, select the same people as before.

`segments/` (the old rule language and its compiler) was removed once its definitions were
rewritten (issue 22); its six rules are kept here, written out in Python, as the oracle. Every
old condition was an and/or of comparisons without negation, so "null is not met" is exactly
what SQL's `where` kept. Both SQL paths of an audience are checked against it: the segment
membership's (`predicate_sql` plus exclusions in evaluation order) and `membership_sql`
(the preview's and the equivalence check's, exclusions inlined).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd

from personalization_assets.audiences.membership import load_segments
from personalization_assets.audiences.model import load_builtin
from personalization_assets.audiences.sql import TRAITS, Relations, membership_sql, predicate_sql

AS_OF = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
# Ages that sit on and around every window of the definitions, so boundaries are exercised.
AGES = [timedelta(minutes=m) for m in (0, 30, 59, 60, 61, 119, 120, 121)] + \
       [timedelta(days=d) + timedelta(seconds=s) for d in (1, 3, 7, 14, 90, 180, 365, 730, 900) for s in (-1, 0, 1)]
H, D = timedelta(hours=1), timedelta(days=1)


def _old_rules(r: dict, t: datetime) -> dict[str, bool]:
    """segments/definitions/*.yaml as they were: `within W` is field >= t - W, `older_than W`
    field <= t - W (both inclusive); a comparison with a null is not met."""
    def within(f, w): return r[f] is not None and r[f] >= t - w
    def older(f, w): return r[f] is not None and r[f] <= t - w
    def before(f, ref): return r[f] is not None and r[ref] is not None and r[f] < r[ref]
    def cmp(f, op, v): return r[f] is not None and {"=": r[f] == v, ">=": r[f] >= v}[op]
    return {
        "cart_abandoners": within("last_carted_at", 7 * D) and older("last_carted_at", H)
        and (r["last_order_at"] is None or before("last_order_at", "last_carted_at")),
        "browse_abandoners": within("last_viewed_at", 3 * D) and older("last_viewed_at", 2 * H)
        and (r["last_carted_at"] is None or before("last_carted_at", "last_viewed_at"))
        and (r["last_order_at"] is None or before("last_order_at", "last_viewed_at")),
        "new_subscribers": within("customer_created_at", 14 * D) and cmp("orders_count", "=", 0),
        "at_risk": cmp("orders_count", ">=", 2) and older("last_order_at", 90 * D)
        and within("last_order_at", 180 * D),
        "high_value": (cmp("m_score", "=", 5) and within("last_order_at", 365 * D))
        or cmp("predicted_value_minor", ">=", 50000),
        "win_back": cmp("orders_count", ">=", 1) and older("last_order_at", 180 * D)
        and within("last_order_at", 730 * D),
    }


OLD_EXCLUSIONS = {"cart_abandoners": [], "browse_abandoners": ["cart_abandoners"], "high_value": [],
                  "new_subscribers": ["cart_abandoners", "browse_abandoners"], "at_risk": ["cart_abandoners"],
                  "win_back": ["at_risk", "cart_abandoners", "browse_abandoners"]}


def profiles(n: int = 4000, seed: int = 7) -> pd.DataFrame:
    """Demo-like profiles (the columns of marts.customer_profiles), with boundary ages."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"customer_key": f"c{i}"}
        for name, kind in TRAITS.items():
            if kind == "timestamp":
                row[name] = None if rnd.random() < 0.25 else AS_OF - rnd.choice(AGES)
            elif kind == "number":
                row[name] = rnd.choice([0, 1, 2, 3, 5, 49999, 50000, 50001, None])
            elif kind == "boolean":
                row[name] = rnd.random() < 0.8
            else:
                row[name] = rnd.choice(["champions", "at_risk", "DE", None])
        rows.append(row)
    return pd.DataFrame(rows)


def test_every_segment_rewritten_gives_the_same_members():
    frame = profiles()
    before: dict[str, set[str]] = {}
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for name in ["cart_abandoners", "browse_abandoners", "high_value", "new_subscribers", "at_risk", "win_back"]:
        found = {r["customer_key"] for r in records if _old_rules(r, AS_OF)[name]}
        before[name] = found - set().union(*(before[x] for x in OLD_EXCLUSIONS[name]))

    con = duckdb.connect()
    con.register("frame", frame)
    con.execute("create schema marts")
    con.execute("create table marts.customer_profiles as select * from frame")
    query = lambda sql, params: {r[0] for r in con.execute(sql, params).fetchall()}

    segments = load_segments()
    assert {s.name: list(s.exclusions) for s in segments if s.name in OLD_EXCLUSIONS} == OLD_EXCLUSIONS
    as_segments: dict[str, set[str]] = {}  # the segment membership's way: rule, minus excluded members
    for s in segments:
        predicate, params = predicate_sql(s, AS_OF, key="p")
        found = query(f"select p.customer_key from marts.customer_profiles p where {predicate}", params)
        as_segments[s.name] = found - set().union(*(as_segments[x] for x in s.exclusions))
    assert {k: v for k, v in as_segments.items() if k in before} == before

    audiences = {a.name: a for a in load_builtin()}
    rel = Relations(customers="marts.customer_profiles")
    for name, members in before.items():
        sql, params = membership_sql(audiences[name], AS_OF, audiences, rel)
        assert query(sql, params) == members, name
    assert all(before.values()) and len(set().union(*before.values())) > 100  # not vacuous
