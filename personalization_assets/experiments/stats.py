"""Lift statistics of a randomized experiment, from per-arm sufficient statistics (n, mean, variance).

Everything here works on `ArmStats`, so the CLI on a CSV and `marts.experiment_results` on the
warehouse compute the same numbers, and a million customers cost one group-by.

Always-valid monitor: the mixture sequential probability ratio test (mSPRT) with a normal mixing
distribution, as in Johari, Pekelis & Walsh, "Always valid inference" (2017) and Optimizely's Stats
Engine. Chosen over confidence sequences (Howard et al. 2021) because it needs only the same
(n, mean, variance) per arm as the Welch interval, has a closed form for the p-value and interval,
and does not need a known bound on the outcome (spend is unbounded; the sharp non-asymptotic
sequences assume bounded or sub-Gaussian data). Its validity is asymptotic (CLT, variance plugged
in), which `bench/experiments.py` checks by peeking daily for 30 days on A/A data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
METHOD = "welch_t"
SRM_ALPHA = 0.01  # 50.5/49.5 at n=100,000 gives p=0.0016: a 0.001 threshold would miss it


@dataclass(frozen=True)
class ArmStats:
    n: int
    mean: float
    var: float  # sample variance (ddof=1); nan when n < 2


@dataclass(frozen=True)
class Lift:
    """Treatment minus control, with a Welch 95 % CI; relative lift with a delta-method CI."""

    lift: float | None
    ci_low: float | None
    ci_high: float | None
    relative_lift: float | None
    relative_ci_low: float | None
    relative_ci_high: float | None
    p_value: float | None
    df: float | None


_NO_LIFT = Lift(None, None, None, None, None, None, None, None)


def arm_stats(values) -> ArmStats:
    y = np.asarray(values, dtype=float)
    n = int(y.size)
    return ArmStats(n, float(y.mean()) if n else math.nan, float(y.var(ddof=1)) if n > 1 else math.nan)


def grouped_arm_stats(df: pd.DataFrame, by: list[str] | str, outcome: str) -> pd.DataFrame:
    """n, mean and variance of `outcome` per group (one vectorized pass)."""
    g = df.groupby(by, sort=True, observed=True)[outcome]
    return pd.DataFrame({"n": g.size(), "mean": g.mean(), "var": g.var(ddof=1)})


def welch_lift(treatment: ArmStats, control: ArmStats, confidence: float = CONFIDENCE) -> Lift:
    """Absolute lift (Welch t, Welch–Satterthwaite df) and relative lift (delta method, normal).

    None where undefined: an arm with fewer than 2 members; a relative lift when the control mean is 0.
    Two arms without any variance (all 0, say) have a lift with a zero-width CI and a p-value of
    1 when the means are equal, 0 when they differ.
    """
    if treatment.n < 2 or control.n < 2:
        return _NO_LIFT
    from scipy import stats as sps  # here, not at import: scipy.stats costs ~0.8 s of every code load

    diff = treatment.mean - control.mean
    a, b = treatment.var / treatment.n, control.var / control.n
    se = math.sqrt(a + b)
    if se == 0:
        p, low, high, dof = (1.0 if diff == 0 else 0.0), diff, diff, None
    else:
        dof = (a + b) ** 2 / (a**2 / (treatment.n - 1) + b**2 / (control.n - 1))
        q = float(sps.t.ppf(0.5 + confidence / 2, dof))
        low, high = diff - q * se, diff + q * se
        p = float(2 * sps.t.sf(abs(diff) / se, dof))
    rel = rel_low = rel_high = None
    if control.mean != 0:
        rel = treatment.mean / control.mean - 1
        # Var(mt/mc) ~ Var(mt)/mc^2 + mt^2 Var(mc)/mc^4 (first-order Taylor, arms independent)
        rel_se = math.sqrt(a / control.mean**2 + treatment.mean**2 * b / control.mean**4)
        z = float(sps.norm.ppf(0.5 + confidence / 2))
        rel_low, rel_high = rel - z * rel_se, rel + z * rel_se
    return Lift(diff, low, high, rel, rel_low, rel_high, p, dof)


@dataclass(frozen=True)
class SampleRatio:
    chi2: float
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]


def sample_ratio_mismatch(counts: dict[str, int], split: dict[str, float], alpha: float = SRM_ALPHA) -> SampleRatio:
    """Chi-square goodness of fit of the arm counts against the declared split (weights, any scale)."""
    arms = list(split)
    unknown = set(counts) - set(arms)
    if unknown:
        raise ValueError(f"arms {sorted(unknown)} are not in the declared split {arms}")
    observed = np.array([counts.get(arm, 0) for arm in arms], dtype=float)
    weights = np.array([split[arm] for arm in arms], dtype=float)
    if observed.sum() == 0 or (weights <= 0).any():
        raise ValueError(f"no members, or a non-positive weight in the split {split}")
    expected = observed.sum() * weights / weights.sum()
    from scipy import stats as sps

    chi2, p = sps.chisquare(observed, expected)
    return SampleRatio(float(chi2), float(p), bool(p < alpha), dict(zip(arms, observed.astype(int).tolist())),
                       dict(zip(arms, expected.tolist())))


@dataclass(frozen=True)
class Cuped:
    adjusted: np.ndarray  # Y - X·theta, centered on the pooled covariate means
    theta: np.ndarray
    variance_reduction: float  # 1 - var(adjusted) / var(Y)


def cuped(y, covariates) -> Cuped:
    """CUPED (Deng et al. 2013): theta = Cov(X)^-1 Cov(X, Y), pooled over the arms.

    Pooling keeps the adjustment blind to the arm, so the lift stays unbiased: X is pre-period
    (spend, visits), hence independent of the assignment. One covariate gives cov(Y,X)/var(X).
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(covariates, dtype=float).reshape(len(y), -1)
    xc = x - x.mean(axis=0)
    theta, *_ = np.linalg.lstsq(xc, y - y.mean(), rcond=None)
    adjusted = y - xc @ theta
    var_y = y.var(ddof=1)
    reduction = float(1 - adjusted.var(ddof=1) / var_y) if var_y > 0 else 0.0
    return Cuped(adjusted, theta, reduction)


@dataclass(frozen=True)
class AlwaysValid:
    p_value: float  # valid at any stopping time when taken as the running minimum over peeks
    ci_low: float
    ci_high: float
    likelihood_ratio: float


def msprt(treatment: ArmStats, control: ArmStats, tau: float | None = None, alpha: float = 1 - CONFIDENCE,
          effect_size: float = 0.1) -> AlwaysValid:
    """mSPRT of 'lift = 0' with a N(0, tau^2) mixture over the lift (Johari et al. 2017, eq. 11).

    tau: the scale of lifts one expects; by default `effect_size` pooled standard deviations, which
    makes the test scale-free (it affects power, not validity). For a sequence of peeks the
    always-valid p-value is the running minimum of the `p_value`s returned here.
    """
    v = treatment.var / treatment.n + control.var / control.n
    diff = treatment.mean - control.mean
    if tau is None:
        pooled = math.sqrt(((treatment.n - 1) * treatment.var + (control.n - 1) * control.var)
                           / (treatment.n + control.n - 2))
        tau = effect_size * pooled
    t2 = tau * tau
    if v <= 0 or t2 <= 0:
        return AlwaysValid(1.0 if diff == 0 else 0.0, diff, diff, 1.0 if diff == 0 else math.inf)
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * diff * diff / (2 * v * (v + t2))
    half = math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) - 2 * math.log(alpha)))
    lr = math.exp(min(log_lr, 700.0))
    return AlwaysValid(min(1.0, 1 / lr), diff - half, diff + half, lr)
