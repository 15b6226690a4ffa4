"""The one `dg.Definitions` of the platform. Resources are chosen here, per deployment, at load."""

import warnings

import dagster as dg

from . import schedules, sensors, settings
from .assets import all_definitions
from .resources import resources_for
from .resources.pool import watched_in_process_executor


AUTOMATION_NOTE = "automation: "


def with_automation_story(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The description ends with the asset's automation story, read off its condition (so the two
    never disagree): eager, cron, or on a CSV change, requested by the automation sensor. An asset
    without a condition says `manual: <reason>` itself (tested)."""
    condition = spec.automation_condition
    if condition is None:
        return spec
    line = f"{AUTOMATION_NOTE}{condition.get_label() or 'a custom condition'} (requested by the automation sensor)"
    text = (spec.description or "").rstrip()
    return spec if text.endswith(line) else spec.replace_attributes(description=f"{text}\n\n{line}")


@dg.definitions
def defs() -> dg.Definitions:
    merged = dg.Definitions.merge(
        all_definitions(),
        schedules.definitions(settings.automation_running()),
        sensors.definitions(settings.automation_running()),
        # Every warehouse step queues on one pool slot, so a run's steps go one at a time anyway:
        # running them in the run's process saves a process start and code load per step (2-4 s).
        # The executor also frees the slots of dead runs while it runs or waits (resources/pool.py).
        dg.Definitions(resources=resources_for(settings.deployment()), executor=watched_in_process_executor),
    )
    with warnings.catch_warnings():  # "preview" in Dagster 1.13 (pinned): a map over the specs, tested here
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return merged.map_asset_specs(func=with_automation_story)
