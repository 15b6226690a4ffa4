"""output.hex16: the crosswalk's record_hash text, as "{:016x}" writes it."""

import numpy as np

from personalization_assets.identity.output import hex16


def test_hex16_is_the_format_of_every_value():
    values = np.random.default_rng(3).integers(0, 2**64, 10_000, dtype=np.uint64)
    values[:3] = [0, 1, 2**64 - 1]
    text = hex16(values)
    assert text.dtype == object and all(type(t) is str for t in text)
    assert text.tolist() == [f"{int(v):016x}" for v in values]
    assert hex16(np.empty(0, np.uint64)).size == 0
