"""Reading the CSV seed tables shipped inside this package (normalize/seeds/*.csv)."""

from __future__ import annotations

from functools import cache
from importlib import resources

import pandas as pd


@cache
def read_seed(name: str) -> pd.DataFrame:
    """A seed table as strings; empty cells are "" (never NaN: "NA" is Namibia)."""
    with resources.files(__package__).joinpath("seeds").joinpath(name).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)
