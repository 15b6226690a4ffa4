"""Seeded FEBRL-like generator of customer records with known duplicates.

Originals draw names, addresses and dates from Zipf-like frequency tables; about 10% of the
output are corrupted duplicates of an original: typos (insert/delete/substitute/transpose),
swapped first and last names, nicknames, missing fields, a changed address, a changed email,
a changed phone, birth-date typos. Truth is the ``entity`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_assets.identity.nicknames import canonical_names

SYL = ("ba be bi bo bu ca ce co da de di do el en er fa fe fi ga ge go ha he hi ho ja jo ka ke ki "
       "ko la le li lo lu ma me mi mo mu na ne ni no ol on or pa pe pi po ra re ri ro ru sa se si "
       "so st ta te ti to tr va ve vi wa we wi ya yo za ze").split()
STREET_TYPES = ("street", "road", "avenue", "place", "close", "crescent", "drive", "lane")
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "web.de", "icloud.com", "mail.com", "gmx.net")


def _words(rng, n, lo, hi) -> np.ndarray:
    k = rng.integers(lo, hi + 1, n)
    parts = rng.choice(SYL, (n, hi))
    return np.array(["".join(p[:m]) for p, m in zip(parts, k)], dtype=object)


def _zipf_pick(rng, pool: np.ndarray, n: int, a: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, pool.size + 1) ** a
    return pool[rng.choice(pool.size, n, p=w / w.sum())]


def _typo(rng, s: str) -> str:
    if not s:
        return s
    i, op = int(rng.integers(0, len(s))), int(rng.integers(0, 4))
    c = chr(int(rng.integers(97, 123)))
    if op == 0:
        return s[:i] + c + s[i:]
    if op == 1 and len(s) > 2:
        return s[:i] + s[i + 1:]
    if op == 2:
        return s[:i] + c + s[i + 1:]
    return s[:i] + s[i + 1:i + 2] + s[i] + s[i + 2:] if i < len(s) - 1 else s[:i] + c


def originals(rng, n: int) -> pd.DataFrame:
    given = np.array(sorted(set(canonical_names().values())), dtype=object)
    rng.shuffle(given)
    surnames = np.unique(_words(rng, 60_000, 2, 4))
    rng.shuffle(surnames)
    cities = np.unique(_words(rng, 3_000, 2, 3))
    postcodes = rng.choice(np.arange(1000, 9999), cities.size, replace=False)
    streets = _words(rng, 40_000, 2, 3)
    fn, ln = _zipf_pick(rng, given, n, 0.7), _zipf_pick(rng, surnames, n, 0.75)
    city_idx = rng.choice(cities.size, n, p=(w := 1 / np.arange(1, cities.size + 1) ** 0.8) / w.sum())
    dob = pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 65 * 365, n), unit="D")
    num = rng.integers(1, 400, n).astype(str)
    suffix = rng.integers(1, 999, n).astype(str)
    return pd.DataFrame({
        "entity": np.arange(n),
        "first_name": fn, "last_name": ln,
        "email_key": [f"{a}.{b}{s}@{d}" for a, b, s, d in
                      zip(fn, ln, suffix, rng.choice(DOMAINS, n))],
        "phone": ["+614" + str(x) for x in rng.integers(10_000_000, 99_999_999, n)],
        "street": [f"{a} {b} {c}" for a, b, c in zip(num, rng.choice(streets, n), rng.choice(STREET_TYPES, n))],
        "city": cities[city_idx], "postcode": postcodes[city_idx].astype(str),
        "birth_date": dob.strftime("%Y-%m-%d"), "country": "AU",
    })


def corrupt(rng, base: pd.DataFrame, nick_of: dict[str, list[str]]) -> pd.DataFrame:
    d = base.copy()
    n = len(d)
    for col, p in (("first_name", 0.25), ("last_name", 0.25), ("street", 0.15), ("city", 0.1),
                   ("email_key", 0.05)):
        hit = rng.random(n) < p
        d.loc[hit, col] = [_typo(rng, s) for s in d.loc[hit, col]]
    swap = rng.random(n) < 0.05
    d.loc[swap, ["first_name", "last_name"]] = d.loc[swap, ["last_name", "first_name"]].to_numpy()
    nick = rng.random(n) < 0.1
    d.loc[nick, "first_name"] = [rng.choice(nick_of[x]) if x in nick_of else x for x in d.loc[nick, "first_name"]]
    moved = rng.random(n) < 0.15
    other = base.sample(n=int(moved.sum()), random_state=int(rng.integers(1 << 31)))
    d.loc[moved, ["street", "city", "postcode"]] = other[["street", "city", "postcode"]].to_numpy()
    new_mail = rng.random(n) < 0.3
    d.loc[new_mail, "email_key"] = [f"{a}{int(rng.integers(1, 99))}@{rng.choice(DOMAINS)}"
                                    for a in d.loc[new_mail, "last_name"]]
    new_phone = rng.random(n) < 0.3
    d.loc[new_phone, "phone"] = ["+614" + str(x) for x in rng.integers(10_000_000, 99_999_999, int(new_phone.sum()))]
    dob = rng.random(n) < 0.08
    d.loc[dob, "birth_date"] = [_typo_digit(rng, s) for s in d.loc[dob, "birth_date"]]
    for col, p in (("email_key", 0.2), ("phone", 0.3), ("birth_date", 0.1), ("street", 0.05),
                   ("first_name", 0.03), ("last_name", 0.02), ("postcode", 0.05)):
        d.loc[rng.random(n) < p, col] = None
    return d


def _typo_digit(rng, s: str) -> str:
    pos = [i for i, ch in enumerate(s) if ch.isdigit()]
    i = int(rng.choice(pos))
    return s[:i] + str(int(rng.integers(0, 10))) + s[i + 1:]


def generate(n_records: int, seed: int = 42, dup_share: float = 0.10) -> pd.DataFrame:
    """``n_records`` rows, ``dup_share`` of them duplicates (1-3 per duplicated original)."""
    rng = np.random.default_rng(seed)
    n_dup = int(n_records * dup_share)
    base = originals(rng, n_records - n_dup)
    nick_of: dict[str, list[str]] = {}
    for nick, canon in canonical_names().items():
        if nick != canon:
            nick_of.setdefault(canon, []).append(nick)
    per = rng.choice([1, 1, 1, 2, 3], n_dup)
    src = rng.choice(len(base), n_dup, replace=True)
    dups = corrupt(rng, base.iloc[src].reset_index(drop=True), nick_of)
    out = pd.concat([base, dups], ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)
    out["record_id"] = [f"gen:{i}" for i in range(len(out))]
    out["source"] = rng.choice(["crm", "shop"], len(out), p=[0.7, 0.3])
    out["source_id"] = out["record_id"]
    out["updated_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300 * 86400, len(out)), unit="s")
    del per
    return out
