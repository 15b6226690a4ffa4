"""The holdout as SQL, for the batch send paths (segment syncs): control members get no email."""

from __future__ import annotations

from .assign import CONTROL, GLOBAL_CONTROL


def holdout_exclusion(conn, key: str = "m.customer_key", experiment: str = "'segment:' || m.segment") -> str:
    """An `and not exists (...)` clause leaving out the control arm of the send's experiment (a SQL
    expression: a segment's or a trigger's) and of the global control, or "" before
    `marts.experiment_assignments` exists. Segment members held out are still counted, as ghost
    exposures (`marts.experiment_exposures`)."""
    if not conn.table_exists("marts", "experiment_assignments"):
        return ""
    return (f"\n  and not exists (select 1 from marts.experiment_assignments x where x.customer_key = {key}"
            f" and x.arm = '{CONTROL}' and x.experiment in ('{GLOBAL_CONTROL}', {experiment}))")
