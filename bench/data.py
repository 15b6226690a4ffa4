"""Where the benchmarks find the full-size datasets (tests use the slices in personalization_assets_tests/fixtures/).

The folder holding one sub-folder per dataset comes from `--data-dir`, else the environment variable
PERSONALIZATION_BENCH_DATA, else `../shared/data` beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PERSONALIZATION_BENCH_DATA"
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the repository


def data_dir() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT)


def dataset(name: str) -> Path:
    """The folder of dataset `name`; exits with one line naming it when it is absent."""
    path = data_dir() / name
    if not path.is_dir():
        raise SystemExit(f"bench: dataset {name!r} not found at {path} (pass --data-dir or set {ENV} "
                         f"to the folder that holds {name}/)")
    return path
