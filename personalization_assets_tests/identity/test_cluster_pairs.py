"""cluster._Pairs: a pair is assessed once, whether it was first seen in bulk or one union at a time."""

import numpy as np

from personalization_assets.identity.cluster import Rules, _Pairs, pair_key


def test_pairs_are_assessed_once_and_remembered():
    seen = []

    def assess(a, b):
        seen.extend(zip(a.tolist(), b.tolist()))
        return (a + b) % 7 == 0, (a + b) % 2 == 0  # a real rule of the two ids, nothing mocked away

    pairs = _Pairs(Rules(assess=assess))
    a, b = np.repeat(np.arange(200), 100), np.tile(np.arange(200, 300), 200)  # 20,000 pairs: bulk
    pairs.add(a, b)
    assert len(seen) == 20_000
    keys = pairs.cross([3, 5, 400], [250, 401])  # only the pairs with 400 or 401 are new
    assert sorted(seen[20_000:]) == [(3, 401), (5, 401), (250, 400), (400, 401)]
    pairs.cross([401], [3, 5])
    assert len(seen) == 20_004
    assert keys[0] == pair_key(250, 3) and pair_key(3, 4) == (3 << 32) | 4
    assert pair_key(2, 250) in pairs.conflict and pair_key(2, 251) not in pairs.conflict
    assert pair_key(3, 250) not in pairs.linked and pair_key(3, 401) in pairs.linked
