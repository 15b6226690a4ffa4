"""Given name -> canonical name, so that Bob and Robert compare as the same name.

The table ships with the package (Apache-2.0, see data/NOTICE.md), so matching does not
depend on the shared data folder.
"""

from __future__ import annotations

import csv
from collections import Counter
from functools import lru_cache
from importlib import resources


def _rows() -> list[tuple[str, str]]:
    path = resources.files("personalization_assets.identity") / "data" / "nicknames.csv"
    with path.open(encoding="utf-8") as fh:
        return [(r["name1"].strip().lower(), r["name2"].strip().lower()) for r in csv.DictReader(fh)]


@lru_cache(maxsize=1)
def canonical_names() -> dict[str, str]:
    """Map every nickname to one canonical given name (used as a blocking key): the canonical
    with the most nicknames wins (bob -> robert, not bert); canonical names map to themselves."""
    rows = _rows()
    size = Counter(canon for canon, _ in rows)
    mapping: dict[str, str] = {}
    for canon, nick in sorted(rows, key=lambda r: (-size[r[0]], r[0])):
        mapping.setdefault(canon, canon)
        mapping.setdefault(nick, mapping[canon])
    return mapping


@lru_cache(maxsize=1)
def nickname_pairs() -> frozenset[tuple[str, str]]:
    """Unordered name pairs that are nickname-equivalent: canonical-nickname and two nicknames
    of the same canonical name (bob ~ robert, bob ~ rob)."""
    groups: dict[str, set[str]] = {}
    for canon, nick in _rows():
        groups.setdefault(canon, {canon}).add(nick)
    return frozenset((min(a, b), max(a, b)) for g in groups.values() for a in g for b in g if a != b)


def canonical(name: str | None) -> str | None:
    if not name:
        return name
    return canonical_names().get(name, name)
