"""The code location loads as Dagster's own tools load it."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import requests

from sync_pipelines.definitions import defs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GRAPH_SNAPSHOT = Path(__file__).with_name("asset_graph.json")

# Imports every module of the package with an audit hook on: which files other than code were opened, which
# connections made. Third-party libraries are imported first, so what is recorded is ours alone.
IMPORT_WITHOUT_IO = """
import importlib, json, pkgutil, sys
import dagster, dagster_duckdb, duckdb, pandas, pandera.pandas, requests, requests_oauthlib, yaml, psutil, tenacity
import cryptography.fernet, filelock, starlette.applications, uvicorn, click, tabulate, pydantic
import sync_pipelines
touched = []
CODE = (".py", ".pyc", ".so", ".pth", "/")
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and not args[0].endswith(CODE) and "dist-info" not in args[0]:
        touched.append(f"open {args[0]}")
    elif event in ("socket.connect", "sqlite3.connect", "subprocess.Popen", "os.system"):
        touched.append(f"{event} {args[:2]!r}")
sys.addaudithook(hook)
names = [m.name for m in pkgutil.walk_packages(sync_pipelines.__path__, "sync_pipelines.")
         if not m.name.startswith("sync_pipelines.sandbox")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": len(names), "touched": touched}))
"""


def graph_snapshot(definitions: dg.Definitions) -> dict:
    """Every asset (group, kinds, dependencies, checks), job, schedule and sensor, as a reviewer reads a diff."""
    graph = definitions.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for spec in (s for a in definitions.assets for s in getattr(a, "check_specs", ())):
        checks.setdefault(spec.asset_key.to_user_string(), []).append(f"{spec.name}{' (blocking)' * spec.blocking}")
    assets = {
        key.to_user_string(): {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(checks.get(key.to_user_string(), [])),
        }
        for key in sorted(graph.get_all_asset_keys())
        for node in [graph.get(key)]
    }
    jobs = {
        job.name: sorted(
            key.to_user_string() for key in definitions.resolve_job_def(job.name).asset_layer.executable_asset_keys
        )
        for job in definitions.jobs
    }
    schedules = {s.name: f"{s.cron_schedule} -> {s.job_name}" for s in definitions.schedules}
    sensors = {s.name: sorted(t.job_name for t in s.targets) if s.targets else "assets" for s in definitions.sensors}
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_the_asset_graph_is_the_committed_snapshot():
    """A change to the graph is a visible diff: rerun with UPDATE_GRAPH_SNAPSHOT=1 and commit the file."""
    snapshot = graph_snapshot(defs())
    if os.environ.get("UPDATE_GRAPH_SNAPSHOT"):
        GRAPH_SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert snapshot == json.loads(GRAPH_SNAPSHOT.read_text())


def test_importing_the_package_reads_no_file_opens_no_connection_and_needs_no_environment():
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_PIPELINES_", "XERO_", "SALESFORCE_",
                   "INTERCOM_", "SEGMENT_", "DAGSTER_"))}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_IO], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout.splitlines()[-1])
    assert imported["modules"] > 30 and imported["touched"] == []


def test_every_flow_asset_check_schedule_and_sensor_is_defined():
    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert {"xero/landed_xero_invoices", "xero/staged_xero_invoices", "segment/xero_invoices_to_segment"} <= keys
    checks = {key.name for key in definitions.resolve_asset_graph().asset_check_keys}
    assert {"quarantine_rate", "unique_keys", "reconciliation"} <= checks
    assert definitions.resolve_schedule_def("xero_to_segment_sync_schedule")
    assert definitions.resolve_sensor_def("dead_letter_replay")
    delivered = definitions.resolve_assets_def(dg.AssetKey(["segment", "xero_invoices_to_segment"]))
    assert delivered.specs_by_key[dg.AssetKey(["segment", "xero_invoices_to_segment"])].freshness_policy is not None


def test_dagster_validates_the_workspace():
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": ""},
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_dg_check_defs_loads_the_project():
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "dg"), "check", "defs"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dagster_webserver_serves_the_assets_from_workspace_yaml(tmp_path):
    """What `dagster dev` shows: the webserver on loopback, asked over its GraphQL API."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = {"query": "{ assetNodes { assetKey { path } } }"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/graphql", json=query, timeout=10)
                if response.ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "webserver did not answer"
            assert server.poll() is None, "webserver exited"
            time.sleep(0.5)
        paths = {"/".join(node["assetKey"]["path"]) for node in response.json()["data"]["assetNodes"]}
        assert {"xero/landed_xero_invoices", "xero/staged_xero_invoices", "segment/xero_invoices_to_segment"} <= paths
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_catalog_shows_owners_tables_contract_columns_and_versions_that_follow_contracts_and_mappings():
    graph = defs().resolve_asset_graph()
    staged = [graph.get(key) for key in graph.get_all_asset_keys() if key.path[-1].startswith("staged_")]
    invoices = graph.get(dg.AssetKey(["xero", "staged_xero_invoices"]))
    columns = {column.name: column for column in invoices.metadata["dagster/column_schema"].columns}

    assert staged and all(node.owners and node.code_version for node in staged)
    assert invoices.metadata["dagster/table_name"] == "stg_xero_invoices"
    assert columns["invoice_id"].constraints.nullable is False and columns["total"].type == "float64"
    # A delivery's code version is its mapping's: two deliveries with different mappings differ.
    deliveries = [
        graph.get(key) for key in graph.get_all_asset_keys() if graph.get(key).tags.get("layer") == "delivery"
    ]
    versions = {node.code_version for node in deliveries}
    assert None not in versions and len(versions) > 1
