"""Mappings as data: a YAML file per flow that a user edits, checked against each entity's contract on load.

A bad file fails definition loading with `MappingError` naming the file, entity and field, e.g.
"xero_to_segment.yaml: bills.track.properties.total: 'totl' is not a column of XeroInvoice".
"""

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import pandera.pandas as pa
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PACKAGED_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def mapping_path(flow: str) -> Path:
    """`sync_pipelines/mappings/<flow>.yaml`, or the file named by $SYNC_PIPELINES_<FLOW>_MAPPING."""
    return Path(os.environ.get(f"SYNC_PIPELINES_{flow.upper()}_MAPPING") or PACKAGED_MAPPINGS / f"{flow}.yaml")


class MappingError(ValueError):
    """A mapping file that cannot be used as written."""


class StrictModel(BaseModel):
    # An unknown key is a typo until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


# An entity mapping model: a StrictModel with check(columns, contract_name) -> ["<field>: why", ...].
M = TypeVar("M", bound=BaseModel)


def load_mapping(path: Path, model: type[M], contracts: Mapping[str, type[pa.DataFrameModel]]) -> dict[str, M]:
    """Every entity's mapping from the file, checked against its contract; raises MappingError naming the field.

    Parsed and checked once per text of the file: every run process and sensor tick builds the definitions that
    read it."""
    try:
        text = path.read_text()
    except OSError as error:
        raise MappingError(f"{path.name}: cannot be read: {error}") from error
    return dict(_checked_mapping(path.name, text, model, tuple(contracts.items())))


@functools.lru_cache(maxsize=64)
def _checked_mapping(
    name: str, text: str, model: type[M], contracts: tuple[tuple[str, type[pa.DataFrameModel]], ...]
) -> dict[str, M]:
    contracts = dict(contracts)
    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's, where it is built
    except yaml.YAMLError as error:
        raise MappingError(f"{name}: cannot be read: {error}") from error
    if not isinstance(raw, dict):
        raise MappingError(f"{name}: expected a mapping of entity name to its mapping")
    problems = [
        f"{entity}: not an entity of this flow ({', '.join(contracts)})" for entity in set(raw) - set(contracts)
    ]
    problems += [f"{entity}: missing" for entity in contracts if entity not in raw]
    mappings = {}
    for entity, contract in contracts.items():
        if entity not in raw:
            continue
        try:
            mappings[entity] = mapping = model.model_validate(raw[entity])
        except ValidationError as error:
            problems += [
                f"{'.'.join(map(str, (entity, *e['loc'])))}: {e['msg']}" for e in error.errors(include_url=False)
            ]
            continue
        columns = set(contract.to_schema().columns)
        problems += [f"{entity}.{problem}" for problem in mapping.check(columns, contract.__name__)]
    if problems:
        raise MappingError(f"{name}: " + "; ".join(sorted(problems)))
    return mappings
