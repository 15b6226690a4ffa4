"""Experiments: holdout assignment, exposures, attribution and lift statistics. No Dagster import here.

`stats.py` (Welch lift, delta-method relative lift, SRM, CUPED, mSPRT), `results.py` (per-arm results,
shared by `personalization lift` and `marts.experiment_results`), `assign.py` (sticky hashed arms,
global control, holdouts, strata, merges), `attribution.py` (the one attribution rule).
Importing this package imports nothing heavy: the CLI registers through it.
"""
