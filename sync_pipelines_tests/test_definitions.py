"""The code location loads as Dagster's own tools load it."""

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


def test_every_flow_asset_check_schedule_and_sensor_is_defined():
    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert {"xero/raw/invoices", "xero/staged/invoices", "segment/xero_invoices"} <= keys
    checks = {key.name for key in definitions.resolve_asset_graph().asset_check_keys}
    assert {"quarantine_rate", "unique_keys", "reconciliation"} <= checks
    assert definitions.resolve_schedule_def("xero_to_segment_sync_schedule")
    assert definitions.resolve_sensor_def("dead_letter_replay")
    delivered = definitions.resolve_assets_def(dg.AssetKey(["segment", "xero_invoices"]))
    assert delivered.specs_by_key[dg.AssetKey(["segment", "xero_invoices"])].freshness_policy is not None


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
        assert {"xero/raw/invoices", "xero/staged/invoices", "segment/xero_invoices"} <= paths
    finally:
        server.terminate()
        server.wait(timeout=30)
