"""Customer lifetime value: BG/NBD (how often, and for how long) plus Gamma-Gamma (how much).

Own implementation on numpy/scipy because `lifetimes` is unmaintained. Formulas follow Fader,
Hardie & Lee (2005) "Counting your customers the easy way" and Fader & Hardie (2013) "The
Gamma-Gamma model of monetary value". Inputs are per-customer summaries in one time unit:
x = repeat purchases (distinct purchase periods - 1), t_x = age at last purchase, T = age now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


class FitError(ValueError):
    """The model cannot be fitted to this data (too few customers or no repeat buyers)."""


@dataclass(frozen=True)
class BetaGeoParams:
    r: float
    alpha: float
    a: float
    b: float
    at_bound: bool = False  # the optimum hit a parameter bound: the model fits these data badly


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    v: float
    at_bound: bool = False


def _arrays(*columns) -> list[np.ndarray]:
    return [np.asarray(c, dtype="float64") for c in columns]


def bgnbd_log_likelihood(params: BetaGeoParams, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood, computed in log space so large x does not overflow."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = _arrays(x, t_x, T)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x)
    top = np.maximum(a3, a4)
    mix = np.exp(a3 - top) + np.where(x > 0, np.exp(a4 - top), 0.0)
    return a1 + a2 + np.log(mix) + top


# Log-parameters stay within e^±15: data without dropout (a -> 0, b -> inf) would otherwise send
# the optimizer wandering towards infinity for minutes. A fit at a bound is reported, not hidden.
LOG_BOUND = 15.0


def _fit(neg_ll, start: np.ndarray) -> tuple[np.ndarray, bool]:
    """Minimize over bounded log-parameters. (params, at_bound)

    Nelder-Mead runs only when L-BFGS-B reports failure: on a flat likelihood it would spend
    thousands of evaluations polishing digits nobody uses.
    """
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    best = minimize(neg_ll, start, method="L-BFGS-B", bounds=bounds)
    if not best.success:
        polished = minimize(neg_ll, best.x, method="Nelder-Mead", bounds=bounds,
                            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000})
        best = polished if polished.fun <= best.fun else best
    if not np.isfinite(best.fun):
        raise FitError(f"likelihood did not converge: {best.message}")
    at_bound = bool(np.any(np.abs(best.x) >= LOG_BOUND - 1e-3))
    return np.exp(best.x), at_bound


def fit_bgnbd(x, t_x, T) -> BetaGeoParams:
    """Maximum-likelihood BG/NBD parameters. Time is rescaled internally for a stable optimizer."""
    x, t_x, T = _arrays(x, t_x, T)
    if len(x) < 10 or not (x > 0).any():
        raise FitError(f"BG/NBD needs >= 10 customers and some repeat buyers (got {len(x)})")
    scale = 10.0 / T.max()

    def neg_ll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        ll = bgnbd_log_likelihood(BetaGeoParams(r, alpha, a, b), x, t_x * scale, T * scale)
        return -float(ll.sum()) / len(x)

    (r, alpha, a, b), at_bound = _fit(neg_ll, np.zeros(4))
    return BetaGeoParams(r=r, alpha=alpha / scale, a=a, b=b, at_bound=at_bound)


def _alive_odds(params: BetaGeoParams, x, t_x, T) -> np.ndarray:
    """δ(x>0)·a/(b+x-1)·((α+T)/(α+t_x))^(r+x): odds that the customer has already dropped out."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds = np.log(a) - np.log(b + np.maximum(x, 1) - 1) + (r + x) * (
        np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, np.exp(log_odds), 0.0)


def probability_alive(params: BetaGeoParams, x, t_x, T) -> np.ndarray:
    x, t_x, T = _arrays(x, t_x, T)
    return 1.0 / (1.0 + _alive_odds(params, x, t_x, T))


def purchases_if_alive(params: BetaGeoParams, t: float, x, T) -> np.ndarray:
    """The numerator of eq. 10: expected purchases in the next `t` periods of a customer known to
    be alive. It needs Gauss's hypergeometric 2F1 but depends only on (x, T), which take few
    distinct values; SQL scoring looks it up and divides by 1 + the drop-out odds."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, T = _arrays(x, T)
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body


def expected_purchases(params: BetaGeoParams, t: float, x, t_x, T) -> np.ndarray:
    """Expected purchases in the next `t` periods given each customer's history (eq. 10)."""
    x, t_x, T = _arrays(x, t_x, T)
    return purchases_if_alive(params, t, x, T) / (1 + _alive_odds(params, x, t_x, T))


def gamma_gamma_log_likelihood(params: GammaGammaParams, x, m) -> np.ndarray:
    p, q, v = params.p, params.q, params.v
    x, m = _arrays(x, m)
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v))


def fit_gamma_gamma(x, m) -> GammaGammaParams:
    """Fit on repeat buyers only (x > 0, mean repeat value m > 0)."""
    x, m = _arrays(x, m)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) < 10:
        raise FitError(f"Gamma-Gamma needs >= 10 repeat buyers with positive value (got {len(x)})")
    scale = 10.0 / m.max()

    def neg_ll(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        return -float(gamma_gamma_log_likelihood(GammaGammaParams(p, q, v), x, m * scale).sum()) / len(x)

    (p, q, v), at_bound = _fit(neg_ll, np.zeros(3))
    return GammaGammaParams(p=p, q=q, v=v / scale, at_bound=at_bound)


def expected_average_value(params: GammaGammaParams, x, m) -> np.ndarray:
    """Posterior mean transaction value; customers without repeats get the population mean."""
    p, q, v = params.p, params.q, params.v
    x, m = _arrays(x, m)
    m = np.where(x > 0, m, 0.0)
    return (p * (v + x * m)) / (p * x + q - 1)


def summarize_transactions(frame: pd.DataFrame, customer: str, when: str, value: str,
                           as_of: pd.Timestamp, unit_days: float = 1.0) -> pd.DataFrame:
    """x, t_x, T and the mean repeat value per customer from raw transactions.

    Same-day purchases count once with their values summed, as in the published CDNOW summaries.
    """
    days = pd.to_datetime(frame[when]).dt.floor("D")
    daily = (frame.assign(_day=days).groupby([customer, "_day"], sort=True)[value].sum()
             .reset_index())
    grouped = daily.groupby(customer)
    first, last, count = grouped["_day"].min(), grouped["_day"].max(), grouped["_day"].size()
    total, first_value = grouped[value].sum(), grouped[value].first()
    x = count - 1
    out = pd.DataFrame({
        "x": x,
        "t_x": (last - first).dt.days / unit_days,
        "T": (pd.Timestamp(as_of).floor("D") - first).dt.days / unit_days,
        "mean_repeat_value": ((total - first_value) / x.where(x > 0)).fillna(0.0),
    })
    return out
