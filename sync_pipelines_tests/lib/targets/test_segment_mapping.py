"""The YAML mapping: checked against the contracts on load, with errors that name the field at fault."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sync_pipelines.lib.mapping import MappingError, load_mapping, mapping_path
from sync_pipelines.lib.targets.segment_mapping import EntityMapping
from sync_pipelines.vendors.xero.entities import ENTITIES

PROJECT_ROOT = Path(__file__).resolve().parents[3]
MAPPING_PATH = mapping_path("xero_to_segment")
CONTRACTS = {entity.name: entity.contract for entity in ENTITIES}


def _edited(tmp_path: Path, edit) -> Path:
    mapping = yaml.safe_load(MAPPING_PATH.read_text())
    edit(mapping)
    path = tmp_path / "xero_to_segment.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_the_shipped_mapping_loads_for_every_entity():
    assert set(load_mapping(MAPPING_PATH, EntityMapping, CONTRACTS)) == set(CONTRACTS)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["bills"]["track"]["properties"].update(total="totl"),
            "bills.track.properties.total: 'totl' is not a column of XeroInvoice",
        ),
        (
            lambda m: m["contacts"]["identify"].update(trait={}),
            "contacts.identify.trait: Extra inputs are not permitted",
        ),
        (lambda m: m["payments"]["track"].pop("object"), "payments.track.object: Field required"),
        (lambda m: m["invoices"]["track"].update(reconcile_amount="amount"), "invoices.track.reconcile_amount"),
        (lambda m: m["contacts"]["group"].update(when="is_company"), "contacts.group.when: 'is_company'"),
        (lambda m: m["bills"]["notify"].update(text="Bill {numbr}"), "bills.notify.text: 'numbr' is not a column"),
        (lambda m: m["bills"]["notify"].update(actions=["Paid", "Approve"]), "bills.notify.actions: \\['Approve'\\]"),
        (lambda m: m.pop("expenses"), "expenses: missing"),
        (lambda m: m.update(refunds={"track": {}}), "refunds: not an entity of this flow"),
    ],
)
def test_a_bad_mapping_names_the_entity_and_field(tmp_path, edit, message):
    with pytest.raises(
        MappingError, match="xero_to_segment.yaml: .*" + message.replace("{", r"\{").replace("(", r"\(")
    ):
        load_mapping(_edited(tmp_path, edit), EntityMapping, CONTRACTS)


def test_a_bad_mapping_file_fails_definition_loading_with_the_field_in_the_error(tmp_path):
    bad = _edited(tmp_path, lambda m: m["invoices"]["identify"]["traits"].update(email="contact_mail"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": "", "SYNC_PIPELINES_XERO_TO_SEGMENT_MAPPING": str(bad)},
        timeout=180,
    )
    assert result.returncode != 0
    assert (
        "invoices.identify.traits.email: 'contact_mail' is not a column of XeroInvoice" in result.stdout + result.stderr
    )
