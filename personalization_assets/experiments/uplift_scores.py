"""`marts.uplift_scores`: every customer ranked by the expected incremental conversion of an email.

Trained on past randomized sends (the trigger and segment holdouts of
`marts.experiment_exposures`: treatment = sent, control = held out, with the attributed
`converted` outcome), with the two-model uplift of `uplift.py` on profile features. Members are
split 70/30 by a hash of their customer_key; the held-out Qini coefficient says whether the
ranking beats random targeting. An audience targets the top-k "persuadables" with
`{trait: uplift_rank, op: "<=", value: k}` (or `uplift_score > 0`), see `audiences/sql.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from .assign import CONTROL, GLOBAL_CONTROL, TREATMENT, unit_hash
from .holdouts import SEND_TIME_KIND
from .uplift import TwoModelUplift, qini

UPLIFT_SCORES = "marts.uplift_scores"
PROFILES = "marts.customer_profiles"
FEATURES = ["recency_days", "orders_count", "historical_value_minor", "email_opens", "email_clicks", "p_alive"]
COLUMNS = ["customer_key", "uplift_score", "uplift_rank", "computed_at"]
TRAINING_SENDS = 500_000  # randomized sends a model trains on at most: a fixed sample (by hash) beyond
MIN_PER_ARM = 30  # fewer randomized members in an arm: no model, no scores (a rank from noise would mislead)


@dataclass(frozen=True)
class UpliftFit:
    trained_on: dict[str, int]  # members per arm (train and held-out together)
    qini_heldout: float | None
    qini_random: float | None
    reason: str | None = None  # why no scores were computed


def empty_scores() -> pd.DataFrame:
    return pd.DataFrame({"customer_key": pd.Series(dtype=object), "uplift_score": pd.Series(dtype="float64"),
                         "uplift_rank": pd.Series(dtype="int64"),
                         "computed_at": pd.Series(dtype="datetime64[ns, UTC]")})


def randomized_sends(attributed: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, member) of the holdouts where the control got no email: trigger
    and segment experiments (the global control's arms mix every campaign; the send-time
    experiment sends both arms)."""
    kind = attributed["experiment"].str.partition(":")[0]
    keep = (attributed["experiment"] != GLOBAL_CONTROL) & (kind != SEND_TIME_KIND) & attributed["arm"].isin([CONTROL, TREATMENT])
    return attributed.loc[keep, ["experiment", "customer_key", "arm", "converted"]]


def randomized_sends_sql(attributed: str, limit: int = TRAINING_SENDS) -> str:
    """`randomized_sends` in SQL over `attributed` (a table or a parenthesized query with an
    alias): at most `limit` rows, those of the smallest hash of (experiment, member), in the
    attribution's order, so that training memory stays bounded whatever the sends."""
    return f"""select * from (
    select experiment, customer_key, arm, converted from {attributed}
    where experiment <> '{GLOBAL_CONTROL}' and split_part(experiment, ':', 1) <> '{SEND_TIME_KIND}'
      and arm in ('{CONTROL}', '{TREATMENT}')
    order by hash(experiment, customer_key), experiment, customer_key limit {int(limit)}
) order by experiment, customer_key"""


def _features(profiles: pd.DataFrame) -> np.ndarray:
    cols = [c for c in FEATURES if c in profiles.columns]
    return profiles[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(float)


def _computed_at(as_of: datetime) -> pd.Timestamp:
    return pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")


def fit_uplift(profiles: pd.DataFrame, attributed: pd.DataFrame) -> tuple[TwoModelUplift | None, list[str], UpliftFit]:
    """The model (None: not enough randomized sends), the profile columns it reads, and the fit.
    ``profiles`` needs only the randomized members' rows."""
    sends = randomized_sends(attributed).merge(profiles, on="customer_key", how="inner")
    counts = {arm: int((sends["arm"] == arm).sum()) for arm in (TREATMENT, CONTROL)}
    if min(counts.values()) < MIN_PER_ARM or sends["converted"].nunique() < 2:
        return None, [], UpliftFit(counts, None, None, (
            f"too few randomized sends to learn uplift: {counts} members per arm, "
            f"{int(sends['converted'].sum())} converted (need {MIN_PER_ARM} per arm and both outcomes)"))
    heldout = sends["customer_key"].map(lambda k: unit_hash("uplift-split", str(k)) < 0.3).to_numpy()
    x, treated, y = _features(sends), (sends["arm"] == TREATMENT).to_numpy(), sends["converted"].to_numpy(float)
    train = ~heldout
    if treated[train].all() or not treated[train].any():
        return None, [], UpliftFit(counts, None, None, "the training split holds one arm only")
    model = TwoModelUplift.fit(x[train], treated[train], y[train])
    q_model = q_random = None
    if heldout.sum() and treated[heldout].any() and not treated[heldout].all():
        q_model = qini(model.predict(x[heldout]), treated[heldout], y[heldout]).coefficient
        rng = np.random.default_rng(0)
        q_random = qini(rng.random(int(heldout.sum())), treated[heldout], y[heldout]).coefficient
    return model, [c for c in FEATURES if c in profiles.columns], UpliftFit(counts, q_model, q_random)


def build_uplift_scores(profiles: pd.DataFrame, attributed: pd.DataFrame, as_of: datetime
                        ) -> tuple[pd.DataFrame, UpliftFit]:
    """Scores (rank 1 = the highest expected uplift; ties by customer_key) for every profile."""
    model, _, fit = fit_uplift(profiles, attributed)
    if model is None:
        return empty_scores(), fit
    scores = pd.DataFrame({"customer_key": profiles["customer_key"].astype(str).to_numpy(),
                           "uplift_score": model.predict(_features(profiles))})
    scores = scores.sort_values(["uplift_score", "customer_key"], ascending=[False, True], kind="stable")
    scores["uplift_rank"] = np.arange(1, len(scores) + 1, dtype="int64")
    scores["computed_at"] = _computed_at(as_of)
    return scores.reset_index(drop=True)[COLUMNS], fit


def _logistic_sql(w: np.ndarray, z: list[str]) -> str:
    linear = " + ".join([_f(w[0])] + [f"{zi} * {_f(wi)}" for zi, wi in zip(z, w[1:])])
    return f"1 / (1 + exp(-least(greatest({linear}, -30), 30)))"


def scores_sql(model: TwoModelUplift, columns: list[str], as_of: datetime, profiles: str = PROFILES) -> str:
    """The scores of every profile as one query (DuckDB dialect): the model's standardized
    features and two logistic regressions in SQL, ranked by a window (``build_uplift_scores``'
    order). Missing and unreadable feature values count as 0, as in ``_features``."""
    z = [f"z{i}" for i in range(len(columns))]
    std = ", ".join(f"(coalesce(cast({c} as double), 0) - {_f(m)}) / {_f(s)} as {zi}"
                    for c, m, s, zi in zip(columns, model.mean, model.scale, z))
    score = f"{_logistic_sql(model.treated_w, z)} - {_logistic_sql(model.control_w, z)}"
    at = _computed_at(as_of).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    return f"""
    select customer_key, uplift_score,
           row_number() over (order by uplift_score desc, customer_key) as uplift_rank,
           cast('{at}' as timestamptz) as computed_at
    from (select customer_key, {score} as uplift_score
          from (select cast(customer_key as varchar) as customer_key{', ' if std else ''}{std} from {profiles}) x) s"""


def _f(x: float) -> str:
    return f"cast({float(x)!r} as double)"


def write_uplift_scores(conn, attributed: pd.DataFrame, as_of: datetime, chunk_rows: int = 100_000
                        ) -> tuple[int, UpliftFit]:
    """Replace ``marts.uplift_scores`` inside the warehouse (DuckDB or Snowflake): trained on the
    randomized members' profile features (read ``chunk_rows`` at a time, only those members kept),
    scored and ranked in SQL. Returns the rows written (0 and the reason when no model)."""
    from ..audiences.sql import to_dialect
    from ..quality.table_checks import read_chunks
    from ..warehouse import identifier

    columns = [c for c in conn.query(f"select * from {PROFILES} limit 0").columns.str.lower() if c in FEATURES]
    members = set(randomized_sends(attributed)["customer_key"].astype(str))
    select = ", ".join(identifier(c) for c in ["customer_key", *columns])
    train = pd.concat([chunk[chunk["customer_key"].astype(str).isin(members)]
                       for chunk in read_chunks(conn, f"select {select} from {PROFILES}", rows=chunk_rows)],
                      ignore_index=True)
    model, used, fit = fit_uplift(train, attributed)
    del train
    if model is None:
        return 0, fit
    conn.execute(to_dialect(f"create or replace table {UPLIFT_SCORES} as {scores_sql(model, used, as_of)}",
                            conn.dialect))
    return int(conn.scalar(f"select count(*) from {UPLIFT_SCORES}")), fit
