"""The code location (`dagster dev`, the webserver, `dg`): the composition root, nothing else.

The spec file and the resources are chosen here, from the environment, when
Dagster loads the location — not when the package is imported.
"""

import dagster as dg

from sync_pipeline import settings
from sync_pipeline.defs import build_definitions, load_specs
from sync_pipeline.defs.resources import resources_for


@dg.definitions
def defs() -> dg.Definitions:
    config = settings.load()
    return build_definitions(load_specs(config.config_path), resources_for(config))
