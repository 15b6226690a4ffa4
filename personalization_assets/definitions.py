"""The one `dg.Definitions` of the platform. Resources are chosen here, per deployment, at load."""

import dagster as dg

from . import schedules, sensors, settings
from .assets import all_definitions
from .resources import resources_for


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        all_definitions(),
        schedules.defs,
        sensors.defs,
        dg.Definitions(resources=resources_for(settings.deployment())),
    )
