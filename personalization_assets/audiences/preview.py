"""An audience's size now, its overlap with the others, and sample members with the evidence
(which of its conditions each one meets): what `personalization audience preview` prints."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ..marts.inputs import Sql
from .model import Audience, conditions
from .sql import Relations, membership_sql


@dataclass
class Preview:
    name: str
    size: int
    overlap: dict[str, int]  # other audience -> members in both
    samples: dict[str, list[str]]  # member -> conditions met, as written


def preview(conn: Sql, audience: Audience, others: list[Audience], as_of: datetime,
            relations: Relations, samples: int = 5) -> Preview:
    known = {a.name: a for a in others}
    known[audience.name] = audience
    sql, params = membership_sql(audience, as_of, known, relations)
    size = int(conn.query(f"select count(*) as n from ({sql}) m", params)["n"].iloc[0])
    overlap = {}
    for other in others:
        if other.name == audience.name:
            continue
        osql, oparams = membership_sql(other, as_of, known, relations)
        overlap[other.name] = int(conn.query(
            f"select count(*) as n from ({sql}) a where a.customer_key in ({osql})", params + oparams)["n"].iloc[0])
    members = [str(k) for k in conn.query(f"select customer_key from ({sql}) m order by customer_key limit ?",
                                          params + [samples])["customer_key"]]
    evidence: dict[str, list[str]] = {m: [] for m in members}
    if members:
        marks = ", ".join("?" for _ in members)
        for cond in conditions(audience.rule):
            single = replace(audience, rule=cond, exclusions=())
            csql, cparams = membership_sql(single, as_of, known, relations)
            met = conn.query(f"select customer_key from ({csql}) m where customer_key in ({marks})",
                             cparams + members)["customer_key"]
            for m in met:
                evidence[str(m)].append(getattr(cond, "text", "") or repr(cond))
    return Preview(audience.name, size, overlap, evidence)
