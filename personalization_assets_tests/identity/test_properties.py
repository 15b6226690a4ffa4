"""Properties that must hold whatever the data: conflicting people stay apart, a shared mailbox
never makes fewer people than share it."""

import itertools

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import JaroWinkler, OSA

from personalization_assets.identity import resolve
from personalization_assets.identity.nicknames import nickname_pairs
from personalization_assets_tests.identity.identity_factory import person, population

# first names that are pairwise different names: not nicknames, not one typo, not jw >= 0.8
NAMES = ["alice", "bruno", "carmen", "dmitri", "edwin", "farah", "gustav", "helga", "ivan", "juno",
         "kasper", "lorenzo", "marisol", "nnamdi", "octavia", "pieter"]
BACKGROUND = population(40, seed=11)
SHARED = ("last_name", "email", "phone", "street", "city", "postcode", "national_id")


def test_names_are_really_different():
    for a, b in itertools.combinations(NAMES, 2):
        assert JaroWinkler.similarity(a, b) < 0.8 and OSA.distance(a, b) > 1 and (a, b) not in nickname_pairs()


def _people(rows):
    return pd.concat([BACKGROUND, pd.DataFrame(rows)], ignore_index=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=2, unique=True),
       years=st.lists(st.integers(1940, 2005), min_size=2, max_size=2, unique=True),
       shared=st.sets(st.sampled_from(SHARED)), bridges=st.integers(0, 3), copies=st.integers(1, 3))
def test_records_disagreeing_on_birth_date_and_first_name_never_share_a_cluster(names, years, shared, bridges,
                                                                                copies):
    """Whatever else they share (surname, mailbox, phone, address, even a national id), and
    however many nameless, dateless records sit between them."""
    common = {"last_name": "Okafor", "email": "okafor.home@mail.com", "phone": "+447700900555",
              "street": "12 Elm Road", "city": "Leeds", "postcode": "LS1 4AB", "national_id": "AB123456C"}
    own = {k: v for k, v in common.items() if k in shared}
    rows = []
    for i, (name, year) in enumerate(zip(names, years)):
        for c in range(copies):
            rows.append(person(f"p{i}:{c}", name.title(), own.get("last_name", f"Fam{i}"), birth=f"{year}-03-0{1 + i}",
                               **{k: own.get(k, f"{k}-{i}") for k in ("email", "phone", "street", "city", "postcode")
                                  if k in own}, national_id=own.get("national_id")))
    for j in range(bridges):  # records that match both sides on everything they hold
        rows.append(person(f"bridge:{j}", None, own.get("last_name", "Fam0"),
                           **{k: own[k] for k in ("email", "phone", "street", "city", "postcode") if k in own}))
    res = resolve(_people(rows))
    key = res.crosswalk.set_index("record_id")["customer_key"]
    side0 = {key[f"p0:{c}"] for c in range(copies)}
    side1 = {key[f"p1:{c}"] for c in range(copies)}
    assert not side0 & side1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 8), same_surname=st.booleans(), same_address=st.booleans(), same_phone=st.booleans(),
       seed=st.integers(0, 10_000))
def test_a_mailbox_shared_by_n_people_never_makes_fewer_than_n(n, same_surname, same_address, same_phone, seed):
    rows = []
    for i in range(n):
        extra = {"street": "3 Mill Lane", "city": "York", "postcode": "YO1 7HH"} if same_address else {}
        rows.append(person(f"m:{i}", NAMES[(seed + i) % len(NAMES)].title(), "Berg" if same_surname else f"Berg{i}x",
                           email="berg.family@mail.com", phone="+447700900777" if same_phone else None,
                           birth=f"{1950 + (seed + 7 * i) % 50}-0{1 + i % 9}-1{i % 9}", **extra))
    res = resolve(_people(rows))
    keys = res.crosswalk.set_index("record_id")["customer_key"]
    assert keys[[f"m:{i}" for i in range(n)]].nunique() == n
