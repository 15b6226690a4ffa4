"""Uplift targeting: rank customers by the expected INCREMENTAL response to an email, learned from
past randomized sends (an experiment's treatment and control arms).

Two-model approach: one L2-regularized logistic regression per arm, uplift = P(y | treated, x) -
P(y | control, x). Plain numpy (Newton steps) rather than scikit-learn, which the project does not
otherwise need: for a handful of profile features this is the same model. Judged on a held-out
split by the Qini curve; a segment can then target the top-k "persuadables" instead of the most
likely buyers (who often buy anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 50) -> np.ndarray:
    """Weights (intercept first) of a logistic regression by Newton's method with an L2 penalty
    (the intercept is not penalized); the features are used as given (standardize them first)."""
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        grad = a.T @ (p - y) + penalty * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty) + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(w[0] + x @ w[1:], -30, 30)))


@dataclass
class TwoModelUplift:
    mean: np.ndarray
    scale: np.ndarray
    treated_w: np.ndarray
    control_w: np.ndarray

    @classmethod
    def fit(cls, x, treated, y, l2: float = 1e-2) -> "TwoModelUplift":
        x, treated, y = np.asarray(x, float), np.asarray(treated, bool), np.asarray(y, float)
        if treated.all() or not treated.any():
            raise ValueError("uplift needs both arms of a randomized send: treated and control members")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        return cls(mean, scale, fit_logistic(z[treated], y[treated], l2), fit_logistic(z[~treated], y[~treated], l2))

    def predict(self, x) -> np.ndarray:
        z = (np.asarray(x, float) - self.mean) / self.scale
        return _predict(self.treated_w, z) - _predict(self.control_w, z)


@dataclass(frozen=True)
class Qini:
    fraction: np.ndarray  # share of the population targeted, 0..1
    incremental: np.ndarray  # incremental responders per member of the population, at that share
    coefficient: float  # area between the curve and the random-targeting line


def qini(scores, treated, y) -> Qini:
    """Qini curve (Radcliffe 2007): targeting the top share by score, incremental responders =
    Y_t - Y_c * N_t / N_c among those targeted, divided by the population size so curves of
    different samples compare. The coefficient is the area between the curve and the straight
    line of random targeting (0 = no better than random; higher is better)."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    t, y = np.asarray(treated, bool)[order], np.asarray(y, float)[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(y * t), np.cumsum(y * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = np.where(n_c > 0, y_t - y_c * n_t / np.maximum(n_c, 1), 0.0) / len(y)
    fraction = np.arange(1, len(y) + 1) / len(y)
    fraction, inc = np.concatenate([[0.0], fraction]), np.concatenate([[0.0], inc])
    random_line = fraction * inc[-1]
    area = float(np.sum((inc[1:] + inc[:-1] - random_line[1:] - random_line[:-1]) / 2 * np.diff(fraction)))
    return Qini(fraction, inc, area)


def top_k_persuadables(keys, scores, k: int) -> list:
    """The k customers with the highest predicted uplift (ties: first in `keys` order)."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    return [keys[i] for i in order]
