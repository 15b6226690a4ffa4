"""An audience's declared refresh: `refresh: "<cron>"` (five fields, UTC) or `refresh: eager` (the
default: follow new data). The Dagster layer turns it into the audience asset's automation
condition and freshness policy; here it is only parsed, validated and measured.

A cron's freshness follows from its longest gap between two ticks: a refresh that ran after the
previous tick is on time until the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from .model import Audience, DefinitionError

EAGER = "eager"
SCAN_DAYS = 8 * 366 + 7
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


@dataclass(frozen=True)
class Refresh:
    kind: str  # cron | eager
    cron: str | None = None
    max_gap: timedelta | None = None  # longest time between two cron ticks


def _field(text: str, name: str, lo: int, hi: int, where: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = lo, hi
            elif "-" in body:
                first, last = (int(x) for x in body.split("-", 1))
            else:
                first = int(body)
                last = hi if step_text else first
        except ValueError:
            raise DefinitionError(f"{where}: {name} {part!r} is not a number, range, list or step "
                                  "(names like MON are not supported)") from None
        if step < 1 or not lo <= first <= last <= hi:
            raise DefinitionError(f"{where}: {name} {part!r} is outside {lo}-{hi}")
        out.update(range(first, last + 1, step))
    return out


def parse_cron(cron: str, where: str = "refresh") -> tuple[list[int], set[int], set[int], set[int], bool, bool]:
    fields = str(cron).split()
    if len(fields) != 5:
        raise DefinitionError(f"{where}: {cron!r} is not a cron of five fields (minute hour day month weekday); "
                              "or write refresh: eager")
    sets = [_field(f, name, lo, hi, where) for f, (name, lo, hi) in zip(fields, _FIELDS)]
    minutes_of_day = sorted(h * 60 + m for h in sets[1] for m in sets[0])
    weekdays = {d % 7 for d in sets[4]}  # 0 and 7 are both Sunday
    return minutes_of_day, sets[2], sets[3], weekdays, fields[2] == "*", fields[4] == "*"


def max_gap(cron: str, where: str = "refresh") -> timedelta:
    """The longest interval between consecutive ticks, over eight years (two leap days apart)."""
    minutes, doms, months, weekdays, any_dom, any_dow = parse_cron(cron, where)
    day, days = date(2024, 1, 1), []
    for offset in range(SCAN_DAYS):
        d = day + timedelta(days=offset)
        dom_ok, dow_ok = d.day in doms, (d.isoweekday() % 7) in weekdays
        # cron's rule: with both day fields restricted, either one matching is enough
        matched = (dom_ok or dow_ok) if not (any_dom or any_dow) else (dom_ok and dow_ok)
        if d.month in months and matched:
            days.append(offset)
    if not days:
        raise DefinitionError(f"{where}: {cron!r} never fires")
    gaps = [b - a for a, b in zip(minutes, minutes[1:])]
    gaps += [(b - a) * 1440 - minutes[-1] + minutes[0] for a, b in zip(days, days[1:])]
    return timedelta(minutes=max(gaps) if gaps else 1440 * SCAN_DAYS)


def refresh_of(audience: Audience) -> Refresh:
    """The audience's refresh, validated (DefinitionError names the audience and the field)."""
    declared = audience.refresh
    if declared is None or str(declared).strip().lower() == EAGER:
        return Refresh(EAGER)
    where = f"audience {audience.name!r}: refresh"
    return Refresh("cron", str(declared).strip(), max_gap(str(declared), where))
