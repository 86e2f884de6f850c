"""Typed resource parameters for assets made by factories.

Dagster binds a resource to an asset parameter annotated with its type. A factory knows the resources an asset
needs (a vendor's, a target's) only when it builds the asset, so it gives the asset function a signature naming
them rather than falling back on `required_resource_keys` and lookups by string.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg


def with_resource_parameters(
    body: Callable[..., Any],
    resources: Mapping[str, type[dg.ConfigurableResource]],
    config: type[dg.Config] | None = None,
) -> Callable[..., Any]:
    """`body(context[, config], **resources)` with a signature Dagster reads: one keyword parameter per resource,
    typed, and the run config's class if it takes one."""
    parameters = [
        inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetExecutionContext)
    ]
    if config is not None:
        parameters.append(inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=config))
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t) for n, t in resources.items()]
    body.__signature__ = inspect.Signature(parameters)
    return body
