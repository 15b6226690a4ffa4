"""The one `dg.Definitions` of the platform. Resources are chosen here, per deployment, at load."""

import dagster as dg

from . import settings
from .assets import all_definitions
from .resources import resources_for

everything_job = dg.define_asset_job(
    "everything", selection=dg.AssetSelection.all(),
    description="Materialize the whole graph: sources to segments.",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        all_definitions(),
        dg.Definitions(jobs=[everything_job], resources=resources_for(settings.deployment())),
    )
