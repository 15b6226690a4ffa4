"""Given name -> canonical name, so that Bob and Robert compare as the same name.

The table ships with the package (Apache-2.0, see data/NOTICE.md), so matching does not
depend on the shared data folder.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def canonical_names() -> dict[str, str]:
    """Map every nickname to one canonical given name (the alphabetically first one)."""
    path = resources.files("personalization_assets.identity") / "data" / "nicknames.csv"
    mapping: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            canon, nick = row["name1"].strip().lower(), row["name2"].strip().lower()
            mapping.setdefault(canon, canon)
            if nick not in mapping or (mapping[nick] != nick and canon < mapping[nick]):
                mapping[nick] = canon
    # A canonical name that is also someone's nickname stays itself.
    return mapping


def canonical(name: str | None) -> str | None:
    if not name:
        return name
    return canonical_names().get(name, name)
