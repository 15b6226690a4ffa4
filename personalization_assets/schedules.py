"""The batch half of the hybrid approach: segments refresh hourly, everything else daily.

Both re-stage the last two arrival days of the partitioned streams (events, orders); older days are
backfilled from the UI (one run per range).

Urgent work (cart abandonment) does not wait for these: the trigger engine acts on the stream.
"""

import dagster as dg

from .assets.common import ON_DEMAND_TAG
from .partitions import recent_days_tags

hourly_segments_job = dg.define_asset_job(
    "hourly_segments",
    selection=dg.AssetSelection.assets(
        ["raw", "events"], ["staging", "events"], ["raw", "email_events"], ["staging", "email_events"],
        ["staging", "email_suppressions"], ["core", "identity_map"], ["marts", "customer_profiles"],
        ["marts", "segment_membership"], ["marts", "segment_changes"],
    ),
    description="New events and email engagement into the warehouse, then profiles and segments.",
)

everything_job = dg.define_asset_job(
    "everything",
    selection=dg.AssetSelection.all() - dg.AssetSelection.tag(ON_DEMAND_TAG, "true"),
    description="The main job: every source, identity resolution, profiles and segments (not the"
                " on-demand backtest and quarantine replay: select those by name).",
)

def _recent_days(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Re-stage yesterday's and today's arrival partitions, then everything downstream."""
    return dg.RunRequest(tags=recent_days_tags(context.scheduled_execution_time))


def schedules(running: bool) -> list[dg.ScheduleDefinition]:
    """Both schedules, starting running or stopped (the deployment says which: `settings`)."""
    status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
    return [
        dg.ScheduleDefinition(name="hourly_segments", job=hourly_segments_job, cron_schedule="5 * * * *",
                              execution_fn=_recent_days, default_status=status),
        dg.ScheduleDefinition(name="daily_profiles", job=everything_job, cron_schedule="0 3 * * *",
                              execution_fn=_recent_days, default_status=status),
    ]


def definitions(running: bool) -> dg.Definitions:
    return dg.Definitions(jobs=[hourly_segments_job, everything_job], schedules=schedules(running))


hourly_segments, daily_profiles = schedules(running=True)  # the local deployment's
defs = definitions(running=True)
