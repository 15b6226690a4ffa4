"""Identity resolution: exact + fuzzy matching into stable, explainable golden records.

Plain Python, no Dagster. Entry points: ``resolve`` and ``stitch_identities``.

Two paths, one model: ``resolve`` reads the records into memory (every feature: incremental
runs, decisions, golden records); ``warehouse.resolve_in_warehouse`` runs features, blocking,
comparisons and scoring as SQL where the table lives (DuckDB; translated for Snowflake) and
clusters over the links only, for tables too big for the worker (full runs, crosswalk out).
``warehouse.choose_path(n)`` picks one: the setting ``PERSONALIZATION_IDENTITY_PATH`` =
``memory`` | ``warehouse`` | ``auto`` (default; the warehouse from
``warehouse.WAREHOUSE_FROM_RECORDS`` records on).
"""

from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.resolve import resolve
from personalization_assets.identity.state import Resolution, ResolvedState
from personalization_assets.identity.stitch import stitch_identities

__all__ = ["MatchConfig", "Resolution", "ResolvedState", "resolve", "stitch_identities"]
