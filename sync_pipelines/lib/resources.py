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
    body: Callable[..., Any], resources: Mapping[str, type[dg.ConfigurableResource]]
) -> Callable[..., Any]:
    """`body(context, **resources)` with a signature Dagster reads: one keyword parameter per resource, typed."""
    parameters = [
        inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetExecutionContext)
    ]
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t) for n, t in resources.items()]
    body.__signature__ = inspect.Signature(parameters)
    return body
