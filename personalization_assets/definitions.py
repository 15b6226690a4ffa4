"""The one `dg.Definitions` of the platform. Resources are chosen here, per deployment, at load."""

import dagster as dg

from . import schedules, sensors, settings
from .assets import all_definitions
from .resources import resources_for


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        all_definitions(),
        schedules.definitions(settings.automation_running()),
        sensors.definitions(settings.automation_running()),
        # Every warehouse step queues on one pool slot, so a run's steps go one at a time anyway:
        # running them in the run's process saves a process start and code load per step (2-4 s).
        dg.Definitions(resources=resources_for(settings.deployment()), executor=dg.in_process_executor),
    )
