"""Benchmark datasets in two shapes: staging-like rows for our engine, native for Splink.

Truth is the ``entity`` column; neither engine sees it.
"""

from __future__ import annotations

import pandas as pd

from bench.data import dataset
from bench.identity.generator import generate
from bench.identity.households import generate_households

FEBRL = {"febrl1": ["dataset1"], "febrl2": ["dataset2"], "febrl3": ["dataset3"],
         "febrl4": ["dataset4a", "dataset4b"]}


def febrl_native(name: str) -> pd.DataFrame:
    parts = []
    for f in FEBRL[name]:
        df = pd.read_csv(dataset("febrl") / f"{f}.csv", skipinitialspace=True, dtype=str)
        df.columns = [c.strip() for c in df.columns]
        df["source_dataset"] = f
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    df["entity"] = df["rec_id"].str.extract(r"rec-(\d+)", expand=False)
    return df


def febrl_as_staging(df: pd.DataFrame) -> pd.DataFrame:
    """FEBRL columns mapped onto staging.customers; soc_sec_id becomes the optional national_id."""
    street = (df["street_number"].fillna("") + " " + df["address_1"].fillna("")).str.strip()
    return pd.DataFrame({
        "record_id": df["rec_id"], "source": df["source_dataset"], "source_id": df["rec_id"],
        "first_name": df["given_name"], "last_name": df["surname"], "street": street.where(street != ""),
        "city": df["suburb"], "postcode": df["postcode"], "birth_date": df["date_of_birth"],
        "national_id": df["soc_sec_id"], "country": "AU",
    })


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(rows for our engine with entity, rows for Splink with entity, Splink recipe kind)."""
    if name in FEBRL:
        native = febrl_native(name)
        ours = febrl_as_staging(native)
        ours["entity"] = native["entity"].to_numpy()
        return ours, native, "febrl4" if name == "febrl4" else "febrl"
    if name.startswith("hh"):
        ours = generate_households(_size(name.removeprefix("hh")), seed=42).drop(columns=["household", "role"])
        return ours, _native(ours), "households"
    if name.startswith("mb"):  # the case: generated people plus 200 sharing one mailbox
        ours = with_shared_mailbox(generate(_size(name.removeprefix("mb")), seed=42), 200)
        return ours, _native(ours), "generated"
    n = _size(name.removeprefix("gen"))
    ours = generate(n, seed=42)
    return ours, _native(ours), "generated"


def with_shared_mailbox(df: pd.DataFrame, people: int) -> pd.DataFrame:
    """``df`` plus ``people`` different people (one record each) who all give one office mailbox."""
    extra = generate(people * 2, seed=7).drop_duplicates("entity").head(people).copy()
    extra["entity"] = extra["entity"] + int(df["entity"].max()) + 1
    extra["record_id"] = [f"mb:{i}" for i in range(len(extra))]
    extra["source_id"] = extra["record_id"]
    extra["email_key"] = "office.shared@gmail.com"
    return pd.concat([df, extra], ignore_index=True)


def _size(text: str) -> int:
    return int(text.replace("k", "000").replace("m", "000000"))


def _native(ours: pd.DataFrame) -> pd.DataFrame:
    return ours.rename(columns={"record_id": "rec_id"})[
        ["rec_id", "first_name", "last_name", "birth_date", "email_key", "phone", "street", "city",
         "postcode", "entity"]]
