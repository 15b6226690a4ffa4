"""Blocking: vectorized pair expansion equals brute force; oversized blocks are skipped."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.identity.blocking import candidate_pairs, pairs_within_groups, window_members
from personalization_assets.identity.prepare import features
from personalization_assets_tests.identity.identity_factory import population


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=6), max_size=40), st.integers(min_value=2, max_value=8))
def test_pairs_within_groups_matches_brute_force(codes, cap):
    codes = np.array(codes, dtype=np.int64)
    a, b, skipped = pairs_within_groups(codes, cap)
    sizes = {c: int((codes == c).sum()) for c in set(codes.tolist()) if c >= 0}
    expected = {(i, j) for i, j in itertools.combinations(range(codes.size), 2)
                if codes[i] == codes[j] and codes[i] >= 0 and sizes[codes[i]] <= cap}
    assert set(zip(a.tolist(), b.tolist())) == expected
    assert len(a) == len(expected)
    assert skipped == sum(s for s in sizes.values() if s > cap)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=-1, max_value=3), st.booleans()), max_size=60),
       st.integers(min_value=1, max_value=5), st.randoms(use_true_random=False))
def test_window_members_give_a_dirty_record_the_partners_of_its_whole_block(rows, window, rnd):
    """An incremental plan builds features only for the members near a dirty record in a big block."""
    codes = np.array([c for c, _ in rows], np.int64)
    dirty = np.array([d for _, d in rows], bool)
    order_key = np.array(rnd.sample(range(codes.size), codes.size), np.int64)

    def dirty_pairs(c):
        a, b, _ = pairs_within_groups(c, 1000, window, order_key)
        return {(x, y) for x, y in zip(a.tolist(), b.tolist()) if dirty[x] or dirty[y]}
    member = np.flatnonzero(codes >= 0)
    keep = window_members(codes[member], np.lexsort((order_key[member], codes[member])), dirty[member], window)
    near = np.full(codes.size, -1, np.int64)
    near[member[keep]] = codes[member[keep]]
    assert dirty_pairs(near) == dirty_pairs(codes)
    assert keep[dirty[member]].all()


def test_candidate_pairs_finds_typo_and_swapped_duplicates():
    df = population(40)
    dup = df.iloc[[5]].copy()
    dup["record_id"], dup["first_name"], dup["last_name"] = "shop:1", df.loc[5, "last_name"], df.loc[5, "first_name"]
    dup2 = df.iloc[[9]].copy()
    dup2["record_id"], dup2["email_key"], dup2["phone"] = "shop:2", None, None
    dup2["last_name"] = dup2["last_name"].str[:-1] + "x"
    import pandas as pd

    f = features(pd.concat([df, dup, dup2], ignore_index=True))
    a, b, stats = candidate_pairs(f, max_block=400)
    pairs = set(zip(a.tolist(), b.tolist()))
    assert (5, 40) in pairs and (9, 41) in pairs
    assert "names_any_order" in stats



def test_candidate_pairs_find_a_transposed_national_id_and_a_surname_typo_that_changes_its_sound():
    """george/geogre sound different (G620/G260) and the birth dates differ by a typo: the first
    name and postcode still meet; a transposed national id with nothing else in common too."""
    import pandas as pd

    from personalization_assets_tests.identity.identity_factory import person

    rows = [person("a:1", "Vanessa", "George", birth="1942-02-10", postcode="4122"),
            person("a:2", "Vanessa", "Geogre", birth="1942-02-20", postcode="4122"),
            person("b:1", "Jacobie", "Tilleq", postcode="4869", national_id="4137877"),
            person("b:2", "Blake", "Moody", postcode="4870", national_id="4137787")]
    f = features(pd.concat([population(40), pd.DataFrame(rows)], ignore_index=True))
    a, b, stats = candidate_pairs(f, max_block=400)
    pairs = set(zip(a.tolist(), b.tolist()))
    assert (40, 41) in pairs and (42, 43) in pairs
    assert stats["first_name_postcode"]["pairs"] >= 1 and stats["national_id_digits"]["pairs"] == 1

def test_incremental_candidates_touch_only_new_rows():
    f = features(population(60))
    a, b, _ = candidate_pairs(f, 400, only_rows=np.array([3]))
    assert np.all((a == 3) | (b == 3))


def test_features_keep_row_order_over_parallel_scans():
    """DuckDB scans big inputs in parallel; cleaned values must stay on their own record."""
    import pandas as pd

    n = 300_000
    names = pd.Series([f"q{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}" for i in range(n)])
    f = features(pd.DataFrame({"record_id": [str(i) for i in range(n)], "last_name": names}))
    assert (f.text("ln") == names.str.replace(r"\d", "", regex=True).to_numpy()).all()


def test_big_blocks_become_sorted_neighbourhoods():
    codes = np.zeros(50, dtype=np.int64)               # one block of 50 records
    order = np.arange(50)[::-1].copy()                 # neighbourhood order: reversed
    a, b, skipped = pairs_within_groups(codes, max_block=1000, window=3, order_key=order)
    pairs = set(zip(a.tolist(), b.tolist()))
    assert skipped == 0 and len(pairs) == 47 * 3 + 2 + 1   # each record meets its next 3
    assert (48, 49) in pairs and (0, 3) in pairs and (0, 4) not in pairs
