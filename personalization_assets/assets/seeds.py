"""Seed tables: the versioned CSV lookups in `normalize/seeds/`, copied into the warehouse (`seeds.*`)
so the UI shows them, and staging depends on them in the lineage. A seed's version is the asset's
code version: changing a mapping marks the staging tables that use it as stale."""

from __future__ import annotations

import hashlib

import dagster as dg

from ..normalize._seeds import read_seed
from ..normalize.lookups import LOOKUPS, load_lookup
from ..resources.warehouse import Warehouse
from .common import ON_SEED_CHANGE, WAREHOUSE_POOL, frame_metadata

DESCRIPTIONS = {
    "order_statuses": "Raw order status spellings -> canonical status codes (the rule orders.status_known).",
    "product_categories": "Raw product category spellings -> canonical category codes.",
    "event_names": "Raw tracking event names -> tracking-plan codes (Segment e-commerce v2).",
    "fx_rates": "Dated FX rates (value of one unit in EUR); an order converts at its day's rate, a "
                "missing rate quarantines the order. Approximate monthly reference rates: see SOURCE.md.",
    "country_synonyms": "Country spellings pycountry does not know -> ISO 3166-1 alpha-2, or an explicit "
                        "unknown with its reason (EIRE, RSA, Channel Islands, European Community, ...).",
}


def _version(name: str) -> str:
    if name in LOOKUPS:
        return load_lookup(name).version
    return "sha1:" + hashlib.sha1(read_seed(f"{name}.csv").to_csv(index=False).encode()).hexdigest()[:12]


def _seed_asset(name: str) -> dg.AssetsDefinition:
    # Priority: a run that builds the seeds builds them first (tiny, and every staging step reads
    # them), so `personalization demo` prints a finished layer early instead of after the raw loads.
    @dg.asset(key=["seeds", name], group_name="seeds", pool=WAREHOUSE_POOL, kinds={"csv", "duckdb"},
              code_version=_version(name), description=DESCRIPTIONS[name], automation_condition=ON_SEED_CHANGE,
              op_tags={"dagster/priority": "1"})
    def _seed(warehouse: Warehouse) -> dg.MaterializeResult:
        frame = read_seed(f"{name}.csv")
        with warehouse.connect() as conn:
            conn.prepare_table("seeds", name, frame)
            with conn.transaction():
                conn.replace_frame("seeds", name, frame)
        return dg.MaterializeResult(metadata=frame_metadata(frame, version=_version(name),
                                                            file=f"personalization_assets/normalize/seeds/{name}.csv"))

    return _seed


SEEDS = {name: _seed_asset(name) for name in DESCRIPTIONS}

defs = dg.Definitions(assets=list(SEEDS.values()))
