"""Today's segments, rewritten in the audience language, select the same people as before."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd

from personalization_assets.audiences.model import load_builtin
from personalization_assets.audiences.sql import Relations, membership_sql
from personalization_assets.segments.compiler import FIELDS, compile_rule
from personalization_assets.segments.model import load_builtin as load_segments

AS_OF = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
# Ages that sit on and around every window of the definitions, so boundaries are exercised.
AGES = [timedelta(minutes=m) for m in (0, 30, 59, 60, 61, 119, 120, 121)] + \
       [timedelta(days=d) + timedelta(seconds=s) for d in (1, 3, 7, 14, 90, 180, 365, 730, 900) for s in (-1, 0, 1)]


def profiles(n: int = 4000, seed: int = 7) -> pd.DataFrame:
    """Demo-like profiles (the columns of marts.customer_profiles), with boundary ages."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"customer_key": f"c{i}"}
        for name, kind in FIELDS.items():
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
    con = duckdb.connect()
    frame = profiles()
    con.register("frame", frame)
    con.execute("create schema marts")
    con.execute("create table marts.customer_profiles as select * from frame")
    query = lambda sql, params: {r[0] for r in con.execute(sql, params).fetchall()}

    before: dict[str, set[str]] = {}
    for seg in load_segments():  # the old path: rule minus members of the excluded segments
        predicate, params = compile_rule(seg, AS_OF)
        found = query(f"select p.customer_key from marts.customer_profiles p where {predicate}", params)
        before[seg.name] = found - set().union(*(before[x] for x in seg.exclusions))

    audiences = load_builtin()
    others = {a.name: a for a in audiences}
    rel = Relations(customers="marts.customer_profiles")
    assert {a.name for a in audiences} >= set(before)
    for name, members in before.items():
        sql, params = membership_sql(others[name], AS_OF, others, rel)
        assert query(sql, params) == members, name
    assert all(before.values()) and len(set().union(*before.values())) > 100  # not vacuous
