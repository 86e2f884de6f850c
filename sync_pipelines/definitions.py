"""The code location: everything under defs/, one partition per connection where the install has a registry."""

from pathlib import Path

import dagster as dg

from sync_pipelines.lib.tenants import for_tenants, load_registry


@dg.definitions
def defs() -> dg.Definitions:
    found = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return found if load_registry() is None else for_tenants(found)
