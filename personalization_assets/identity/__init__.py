"""Identity resolution: exact + fuzzy matching into stable, explainable golden records.

Plain Python, no Dagster. Entry points: ``resolve`` and ``stitch_identities``.
"""

from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.resolve import resolve
from personalization_assets.identity.state import Resolution, ResolvedState
from personalization_assets.identity.stitch import stitch_identities

__all__ = ["MatchConfig", "Resolution", "ResolvedState", "resolve", "stitch_identities"]
