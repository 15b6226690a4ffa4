"""Core layer: one golden record per person, a stable customer_key, and a crosswalk to it."""

import hashlib

import dagster as dg
import pandas as pd

from .common import WAREHOUSE_POOL, frame_metadata

GOLDEN_COLUMNS = ["customer_key", "email", "first_name", "last_name", "phone", "country",
                  "timezone", "locale", "email_opt_in", "consent_processing", "created_at",
                  "updated_at", "source_records"]


def _key(value: str) -> str:
    return "cust_" + hashlib.sha1(value.encode()).hexdigest()[:16]


@dg.multi_asset(
    outs={
        "golden": dg.AssetOut(key=["core", "customers"], tags={"pii": "true"},
                              description="One golden record per real person, keyed by a stable customer_key."),
        "crosswalk": dg.AssetOut(key=["core", "customer_crosswalk"],
                                 description="Every source customer record and the customer_key it belongs to."),
    },
    ins={"staged": dg.AssetIn(key=["staging", "customers"])},
    group_name="identity",
    pool=WAREHOUSE_POOL,
)
def customers(staged: pd.DataFrame):
    """Deduplicate staged customers on the normalized email matching key."""
    frame = staged.sort_values(["email_key", "created_at", "record_id"])
    first = frame.groupby("email_key", sort=False)["record_id"].transform("first")
    crosswalk = pd.DataFrame({"record_id": frame["record_id"], "customer_key": first.map(_key),
                              "rule": "exact:email_key"})
    latest = frame.sort_values("updated_at").groupby("email_key").tail(1).set_index("email_key")
    golden = latest.reset_index()
    golden["customer_key"] = golden["email_key"].map(
        dict(zip(frame["email_key"], first.map(_key))))
    golden["source_records"] = golden["email_key"].map(frame.groupby("email_key").size()).astype("int64")
    golden = golden.reindex(columns=GOLDEN_COLUMNS).reset_index(drop=True)
    merged = len(staged) - len(golden)
    yield dg.Output(golden, output_name="golden",
                    metadata=frame_metadata(golden, duplicates_merged=merged, rows_in=len(staged)))
    yield dg.Output(crosswalk, output_name="crosswalk", metadata=frame_metadata(crosswalk))


@dg.asset(key=["core", "identity_map"], ins={"events": dg.AssetIn(key=["staging", "events"]),
          "crosswalk": dg.AssetIn(key=["core", "customer_crosswalk"])},
          group_name="identity", pool=WAREHOUSE_POOL, tags={"pii": "true"})
def identity_map(events: pd.DataFrame, crosswalk: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Which customer each tracking identity (userId, anonymousId) belongs to."""
    by_record = dict(zip(crosswalk["record_id"], crosswalk["customer_key"]))
    known = events[events["user_id"].notna()]
    users = pd.DataFrame({"identity_type": "user_id", "identity": known["user_id"].astype(str)})
    anon = known[known["anonymous_id"].notna()][["anonymous_id", "user_id"]].drop_duplicates("anonymous_id")
    anons = pd.DataFrame({"identity_type": "anonymous_id", "identity": anon["anonymous_id"],
                          "via_user": anon["user_id"].astype(str)})
    users["via_user"] = users["identity"]
    out = pd.concat([users, anons], ignore_index=True).drop_duplicates(["identity_type", "identity"])
    out["customer_key"] = ("crm:" + out["via_user"]).map(by_record)
    out = out.dropna(subset=["customer_key"]).drop(columns="via_user").reset_index(drop=True)
    return dg.Output(out, metadata=frame_metadata(out))


defs = dg.Definitions(assets=[customers, identity_map])
