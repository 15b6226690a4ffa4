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
        dg.Definitions(resources=resources_for(settings.deployment())),
    )
