"""The one registry of flows: every `FLOW` declared by a module of this folder, with its assets, job and schedule."""

import importlib
import pkgutil

import dagster as dg

import sync_pipelines.defs
from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.flows import Flow, in_running_order


def registered_flows() -> list[Flow]:
    """Every flow of the code location, in running order."""
    package = sync_pipelines.defs
    modules = (importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__))
    return in_running_order([flow for module in modules if isinstance(flow := getattr(module, "FLOW", None), Flow)])


def registered_deliveries() -> list[Delivery]:
    return [delivery for flow in registered_flows() for delivery in flow.deliveries()]


@dg.definitions
def defs() -> dg.Definitions:
    """Every flow's definitions, their sweeps spread over the period in running order: flows that share a vendor
    never start in the same minute, so each starts with the vendor's limit to itself."""
    flows = registered_flows()
    return dg.Definitions.merge(
        *(flow.definitions(minute=n * flow.every_minutes // len(flows)) for n, flow in enumerate(flows)),
        # What the UI materialises and backfills runs its steps in the run's process too (lib/flows.Flow).
        dg.Definitions(executor=dg.in_process_executor),
    )
