"""Splink (DuckDB backend) configured the way its own FEBRL examples do.

febrl3.ipynb (dedupe) and febrl4.ipynb (link_only, "detailed model") settings are used for
the FEBRL files; the generated data gets the same recipe mapped onto its columns, with the
broad single-column blocking rules tightened to pairs of columns so that 1M rows stay
feasible. Training: probability two records match from deterministic rules, u by random
sampling (max_pairs=1e6), m by EM on two blocking rules; predict and cluster at 0.5.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

THRESHOLD = 0.5
PAIRS_FLOOR = 0.01


def _febrl_settings(link: bool) -> tuple[SettingsCreator, list, list]:
    if link:
        blocking = [block_on("given_name", "surname"), "l.given_name = r.surname and l.surname = r.given_name",
                    block_on("date_of_birth"), block_on("soc_sec_id"), block_on("state", "address_1"),
                    block_on("street_number", "address_1"), block_on("postcode")]
        comps = [cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
                 cl.NameComparison("surname").configure(term_frequency_adjustments=True),
                 cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                          invalid_dates_as_null=True),
                 cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
                 cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                 cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True)]
        det = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
    else:
        blocking = [block_on("soc_sec_id"), block_on("given_name"), block_on("surname"),
                    block_on("date_of_birth"), block_on("postcode")]
        comps = [cl.NameComparison("given_name"), cl.NameComparison("surname"),
                 cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                          invalid_dates_as_null=True),
                 cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
                 cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                 cl.ExactMatch("postcode").configure(term_frequency_adjustments=True)]
        det = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth"),
               "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth"]
    settings = SettingsCreator(unique_id_column_name="rec_id", link_type="link_only" if link else "dedupe_only",
                               blocking_rules_to_generate_predictions=blocking, comparisons=comps)
    return settings, det, [block_on("date_of_birth"), block_on("postcode")]


def _generated_settings(tf: bool = False) -> tuple[SettingsCreator, list, list]:
    blocking = [block_on("first_name", "last_name"), block_on("last_name", "birth_date"),
                block_on("first_name", "birth_date"), block_on("postcode", "last_name"),
                block_on("email_key"), block_on("phone"),
                "l.first_name = r.last_name and l.last_name = r.first_name"]
    comps = [cl.NameComparison("first_name").configure(term_frequency_adjustments=tf),
             cl.NameComparison("last_name").configure(term_frequency_adjustments=tf),
             cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_format="%Y-%m-%d",
                                      invalid_dates_as_null=True),
             cl.EmailComparison("email_key"), cl.ExactMatch("phone").configure(term_frequency_adjustments=tf),
             cl.JaroWinklerAtThresholds("street", [0.9, 0.7]).configure(term_frequency_adjustments=tf),
             cl.ExactMatch("postcode").configure(term_frequency_adjustments=True)]
    det = [block_on("email_key"), block_on("first_name", "last_name", "birth_date")]
    settings = SettingsCreator(unique_id_column_name="rec_id", link_type="dedupe_only",
                               blocking_rules_to_generate_predictions=blocking, comparisons=comps)
    # EM on postcode alone would compare ~5e9 pairs at 1M rows, so it is paired with surname
    return settings, det, [block_on("birth_date"), block_on("postcode", "last_name")]


def run_splink(df: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """df: rec_id + dataset columns (+ source_dataset for febrl4). Returns (rec_id, cluster) at
    THRESHOLD and the scored pairs above PAIRS_FLOOR (rec_id_l, rec_id_r, match_probability), from
    which the benchmark finds Splink's best threshold with the labels."""
    link = kind == "febrl4"
    if kind in ("generated", "households"):  # households: term-frequency adjusted names, phone, street
        settings, det, em_rules = _generated_settings(tf=kind == "households")
    else:
        settings, det, em_rules = _febrl_settings(link)
    con = duckdb.connect()
    db = DuckDBAPI(connection=con)
    if link:
        inputs = [db.register(part.drop(columns="source_dataset"), dataset_display_name=name)
                  for name, part in df.groupby("source_dataset")]
    else:
        inputs = db.register(df)
    linker = Linker(inputs, settings)
    linker.training.estimate_probability_two_random_records_match(det, recall=0.9 if not link else 0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=link)
    pred = linker.inference.predict(threshold_match_probability=PAIRS_FLOOR)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=THRESHOLD)
    out = clusters.as_pandas_dataframe()[["rec_id", "cluster_id"]]
    pairs = pred.as_pandas_dataframe()[["rec_id_l", "rec_id_r", "match_probability"]]
    return out.rename(columns={"cluster_id": "cluster"}), pairs
