"""Audiences: the equivalence of the SQL and stream compilations, on the warehouse's history.

A thin shell over `audiences/`: the replay and the comparison are plain Python there.
"""

import dagster as dg
import pandas as pd

from ..audiences import warehouse as aud
from ..audiences.model import load_builtin
from ..resources.warehouse import Warehouse
from .common import ON_DEMAND, WAREHOUSE_POOL, frame_metadata

KEY = dg.AssetKey(["marts", "audience_equivalence"])
# Declared tolerance: unexplained disagreements allowed. A late event is explained; anything else
# means the two compilations of one definition differ, and no audience built on them may ship.
TOLERANCE_UNEXPLAINED = 0
DTYPES = {"instant": "datetime64[ns, UTC]", "audience": "object", "customer_key": "object",
          "in_sql": "bool", "in_stream": "bool", "reason": "object"}


class AudienceEquivalenceConfig(dg.Config):
    days: float = 30.0  # the window of history replayed, ending at the last staged event
    max_instants: int = 200  # instants compared, spread over the window's change points


@dg.asset(key=KEY, group_name="audiences", pool=WAREHOUSE_POOL, kinds={"duckdb", "python"},
          deps=[["staging", "events"], ["core", "identity_map"]], tags={**ON_DEMAND, "pii": "true"})
def audience_equivalence(config: AudienceEquivalenceConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Every person that the SQL and the stream compilations of one audience definition disagree
    about, at the instants where membership can change over the last `days` of history, with the
    reason (late_event, or unexplained). Audiences that cannot run in the stream are listed.

    on demand: it replays a window of history, so it runs when someone asks (or before a release
    of definitions), not on every micro-batch."""
    with warehouse.connect() as conn:
        has_identity = conn.table_exists("core", "identity_map")
        report, refused, (start, end) = aud.run(conn, conn.dialect, has_identity, load_builtin(),
                                                config.days, config.max_instants)
        frame = report.disagreements.copy()
        frame["instant"] = pd.to_datetime(frame["instant"].astype("float64"), unit="s", utc=True)
        frame = frame.astype(DTYPES)
        conn.prepare_table("marts", "audience_equivalence", frame)
        with conn.transaction():
            conn.replace_frame("marts", "audience_equivalence", frame)
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, instants=report.instants, compared=report.compared, unexplained=report.unexplained,
        by_reason={str(k): int(v) for k, v in frame["reason"].value_counts().items()},
        not_streamable=refused,
        window=f"{aud.utc(start).isoformat()} .. {aud.utc(end).isoformat()}" if report.instants else "no events"))


@dg.asset_check(asset=KEY, blocking=True, pool=WAREHOUSE_POOL,
                description="The SQL and stream compilations of every audience agree, but for "
                            f"explained disagreements (at most {TOLERANCE_UNEXPLAINED} unexplained).")
def audiences_agree_within_tolerance(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        frame = conn.query("select audience, reason, count(*) as n from marts.audience_equivalence "
                           "group by audience, reason order by audience, reason")
    unexplained = int(frame.loc[frame["reason"] == "unexplained", "n"].sum())
    return dg.AssetCheckResult(
        passed=unexplained <= TOLERANCE_UNEXPLAINED, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"unexplained": unexplained, "tolerance": TOLERANCE_UNEXPLAINED,
                  "by_audience": dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_none_")})


defs = dg.Definitions(assets=[audience_equivalence], asset_checks=[audiences_agree_within_tolerance])
