"""Seeded hostile generator: people in families, not independent strangers.

What real customer tables hold and the FEBRL-like generator does not:
- households: spouses, children and parents share a surname, an address, often a landline and a
  family mailbox; some spouses keep their own surname;
- twins (same birth date, surname, address, mailbox; different first names) and Jr/Sr (same
  first name and surname, a generation apart);
- big apartment blocks (hundreds of people on one street and postcode), office switchboards
  (one phone for a whole company), very common names (Zipf, "Smith");
- duplicates of a person: nicknames, transliterations (Aleksandr/Alexander), typos, nulls,
  day/month swaps, new e-mail addresses, an old address after a move.
Truth is the ``entity`` column (one per person).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from bench.identity.generator import DOMAINS, STREET_TYPES, _typo, _typo_digit, _words
from personalization_assets.identity.nicknames import canonical_names

COMMON_SURNAMES = ("smith johnson williams brown jones miller davis garcia wilson taylor anderson thomas "
                   "moore martin jackson white harris clark lewis young walker hall allen king wright scott "
                   "green baker adams nelson hill campbell mitchell roberts carter phillips evans turner "
                   "muller schmidt schneider fischer weber meyer wagner becker nguyen tran kim lee wang li "
                   "zhang chen singh kumar patel khan ali ivanov petrov smirnov kowalski nowak").split()
# one spelling per row; a duplicate may use any other spelling of the same row
TRANSLIT = [s.split() for s in (
    "aleksandr alexander oleksandr alexandr", "yuri yury iouri jurij", "mohammed muhammad mohamed mohammad",
    "sergei sergey serhiy sergej", "dmitri dmitry dmytro dmitrij", "natalia natalya nataliya natalja",
    "olga olha olgha", "yevgeny evgeny evgeniy jewgeni", "mikhail michail mykhailo", "andrei andrey andriy",
    "tatiana tatyana tetiana", "ekaterina yekaterina katerina", "zhang chang", "xiaoming hsiaoming",
    "ahmed ahmad achmed", "hussein husain hussain", "yusuf yousef youssef josef", "fatima fatimah fatma")]
TRANSLIT_OF = {v: row for row in TRANSLIT for v in row}


@functools.lru_cache(maxsize=16)
def _zipf_cdf(size: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, size + 1) ** a
    cdf = (w / w.sum()).cumsum()
    return cdf / cdf[-1]


def _zipf_index(rng, size: int, n, a: float):
    """rng.choice(size, n, p=zipf weights), draw for draw (the same uniform numbers, the same
    search), without building the weights and their sum again for every draw."""
    return _zipf_cdf(size, a).searchsorted(rng.random(n), side="right")


def _zipf(rng, pool, n, a):
    return np.asarray(pool, dtype=object)[_zipf_index(rng, len(pool), n, a)]


class _World:
    def __init__(self, rng, n_people):
        self.rng = rng
        canon = sorted(set(canonical_names().values()))
        rng.shuffle(canon)
        self.given = np.array(canon[:3000] + [row[0] for row in TRANSLIT] * 3, dtype=object)
        rng.shuffle(self.given)
        rare = np.unique(_words(rng, 30_000, 2, 4))
        rng.shuffle(rare)
        self.surnames = np.array(list(COMMON_SURNAMES) + list(rare), dtype=object)
        self.cities = np.unique(_words(rng, 1500, 2, 3))
        self.postcodes = rng.choice(np.arange(1000, 9999), self.cities.size, replace=False).astype(str)
        self.streets = _words(rng, 20_000, 2, 3)
        # apartment blocks: few addresses, many households
        self.blocks = [self.address() for _ in range(max(5, n_people // 2000))]
        self.offices = ["+6129" + str(x) for x in rng.integers(1_000_000, 9_999_999, max(20, n_people // 300))]
        self.nick_of: dict[str, list[str]] = {}
        for nick, canon_name in canonical_names().items():
            if nick != canon_name:
                self.nick_of.setdefault(canon_name, []).append(nick)

    def address(self):
        rng = self.rng
        c = int(_zipf_index(rng, self.cities.size, None, 0.8))
        street = f"{int(rng.integers(1, 300))} {rng.choice(self.streets)} {rng.choice(STREET_TYPES)}"
        return street, self.cities[c], self.postcodes[c]

    def first_name(self):
        return str(_zipf(self.rng, self.given, 1, 1.0)[0])

    def surname(self):
        return str(_zipf(self.rng, self.surnames, 1, 0.9)[0])

    def mobile(self):
        return "+614" + str(int(self.rng.integers(10_000_000, 99_999_999)))

    def email(self, first, last):
        rng = self.rng
        style = int(rng.integers(0, 3))
        local = (f"{first}.{last}", f"{first[0]}{last}{int(rng.integers(1, 99))}",
                 f"{first}{int(rng.integers(1, 999))}")[style]
        return f"{local}@{rng.choice(DOMAINS)}"


def _household(w: _World, hid: int) -> list[dict]:
    """The people of one household, with the identifiers they share."""
    rng = w.rng
    size = int(rng.choice([1, 1, 2, 2, 2, 3, 4, 4, 5, 6]))
    last = w.surname()
    addr = w.blocks[int(rng.integers(len(w.blocks)))] if rng.random() < 0.12 else w.address()
    landline = "+6128" + str(int(rng.integers(1_000_000, 9_999_999))) if rng.random() < 0.4 else None
    mailbox = (f"{last}{rng.choice(['family', 'home', 'house'])}{int(rng.integers(1, 99))}@{rng.choice(DOMAINS)}"
               if size > 1 and rng.random() < 0.35 else None)
    base_year = int(rng.integers(1940, 1990))
    people = []

    def add(first, surname, birth, role, **kw):
        people.append({"first": first, "last": surname, "birth": birth, "household": hid, "role": role, **kw})

    def new_name():  # parents give their children different names (a Jr aside)
        taken = {p["first"] for p in people}
        while (name := w.first_name()) in taken:
            pass
        return name

    def date(year):
        return pd.Timestamp(year=year, month=int(rng.integers(1, 13)), day=int(rng.integers(1, 29)))

    father = w.first_name()
    add(father, last, date(base_year), "parent")
    if size >= 2:
        spouse_last = last if rng.random() < 0.7 else w.surname()
        add(new_name(), spouse_last, date(base_year + int(rng.integers(-5, 6))), "spouse")
    kids = size - 2
    twins = kids >= 2 and rng.random() < 0.25
    kid_year = base_year + int(rng.integers(22, 36))
    for k in range(max(kids, 0)):
        if k == 0 and rng.random() < 0.3:
            add(father, last, date(kid_year), "jr", suffix="jr")  # Jr: father's first name, a generation later
        elif k == 1 and twins:
            add(new_name(), last, people[-1]["birth"], "twin")  # twin of the previous child
        else:
            add(new_name(), last, date(kid_year + int(rng.integers(0, 12))), "child")
    for p in people:
        p.update(street=addr[0], city=addr[1], postcode=addr[2], landline=landline, mailbox=mailbox,
                 mobile=w.mobile() if rng.random() < 0.7 else None,
                 email=w.email(p["first"], p["last"]) if rng.random() < 0.75 else None,
                 office=str(rng.choice(w.offices)) if rng.random() < 0.12 else None)
    return people


def _record(w: _World, p: dict, first_record: bool) -> dict:
    """One record of a person as some system holds it."""
    rng = w.rng
    first, last, birth = p["first"], p["last"], p["birth"].strftime("%Y-%m-%d")
    street, city, postcode = p["street"], p["city"], p["postcode"]
    email = p["mailbox"] if p["mailbox"] and rng.random() < 0.6 else p["email"]
    phones = [x for x in (p["mobile"], p["landline"], p["office"]) if x]
    phone = str(rng.choice(phones)) if phones else None
    if p.get("suffix") and rng.random() < 0.4:
        last = f"{last} {p['suffix']}"
    if not first_record:
        r = rng.random
        if first in TRANSLIT_OF and r() < 0.6:
            first = str(rng.choice(TRANSLIT_OF[first]))
        elif first in w.nick_of and r() < 0.2:
            first = str(rng.choice(w.nick_of[first]))
        if r() < 0.15:
            first = _typo(rng, first)
        if r() < 0.12:
            last = _typo(rng, last)
        if r() < 0.05:
            first, last = last, first
        if r() < 0.15:  # an old address, from before a move
            street, city, postcode = w.address()
        if r() < 0.2:
            email = w.email(first, last)
        if r() < 0.05:
            birth = _typo_digit(rng, birth)
        elif r() < 0.03 and int(birth[8:]) <= 12:
            birth = f"{birth[:5]}{birth[8:]}-{birth[5:7]}"
    rec = {"first_name": first, "last_name": last, "birth_date": birth, "email_key": email, "phone": phone,
           "street": street, "city": city, "postcode": postcode}
    for col, p_null in (("email_key", 0.2), ("phone", 0.3), ("birth_date", 0.2), ("street", 0.08),
                        ("first_name", 0.02), ("postcode", 0.05)):
        if rng.random() < p_null:
            rec[col] = None
    return rec


def generate_households(n_records: int, seed: int = 42) -> pd.DataFrame:
    """About ``n_records`` rows of people in households; ``entity`` is the person, ``household``
    and ``role`` (parent, spouse, child, twin, jr) are truth labels for analysis only."""
    rng = np.random.default_rng(seed)
    w = _World(rng, n_records)
    rows, pid, hid = [], 0, 0
    while len(rows) < n_records:
        for p in _household(w, hid):
            copies = int(rng.choice([1, 1, 1, 1, 1, 2, 2, 3, 4]))
            for c in range(copies):
                rows.append({**_record(w, p, c == 0), "entity": pid, "household": hid, "role": p["role"]})
            pid += 1
        hid += 1
    out = pd.DataFrame(rows[:n_records]).sample(frac=1, random_state=seed).reset_index(drop=True)
    out["record_id"] = [f"hh:{i}" for i in range(len(out))]
    out["source"] = rng.choice(["crm", "shop", "events"], len(out), p=[0.5, 0.35, 0.15])
    out["source_id"] = out["record_id"]
    out["country"] = "AU"
    out["updated_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300 * 86400, len(out)), unit="s")
    return out
