"""The sandbox over HTTPS under its local CA: verified clients get in, others are refused, https-only SDKs work."""

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from simple_salesforce import Salesforce

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.salesforce.auth import TokenManager
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines_tests.conftest import SandboxAdmin


@pytest.fixture
def https_sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.sqlite"), https=True) as server:
        yield server


def test_requests_verified_against_the_local_ca_succeed_and_unverified_ones_fail(https_sandbox, tmp_path):
    server = https_sandbox
    port = server.url.rpartition(":")[2]
    assert server.url == f"https://127.0.0.1:{port}"
    assert server.ca_cert == tmp_path / "sandbox-ca.pem"  # next to the state file, for REQUESTS_CA_BUNDLE

    for host in ("127.0.0.1", "localhost"):  # the server certificate names both
        assert requests.get(f"https://{host}:{port}/_admin/stats", verify=str(server.ca_cert), timeout=10).ok
    trusting = ssl.create_default_context(cafile=server.ca_cert)
    with urllib.request.urlopen(f"{server.url}/_admin/stats", context=trusting, timeout=10) as response:
        assert response.status == 200

    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{server.url}/_admin/stats", context=ssl.create_default_context(), timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(f"{server.url}/_admin/stats", timeout=10)  # certifi's CAs only

    private = [tmp_path / "sandbox-ca-key.pem", tmp_path / "sandbox-server.pem"]
    assert [oct(path.stat().st_mode & 0o777) for path in private] == ["0o600", "0o600"]


def test_a_restarted_sandbox_keeps_its_ca_so_clients_trust_it_once(tmp_path):
    settings = SandboxSettings(state_path=tmp_path / "sandbox.sqlite")
    with SandboxServer(settings, https=True) as first:
        trusted = first.ca_cert.read_bytes()
        first_server_pem = (tmp_path / "sandbox-server.pem").read_bytes()

    with SandboxServer(settings, https=True) as second:
        assert second.ca_cert.read_bytes() == trusted
        assert (tmp_path / "sandbox-server.pem").read_bytes() != first_server_pem  # issued afresh per start
        assert requests.get(f"{second.url}/_admin/stats", verify=str(first.ca_cert), timeout=10).ok


def test_simple_salesforce_runs_soql_against_the_https_sandbox_unmodified(https_sandbox, tmp_path, monkeypatch):
    server = https_sandbox
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_cert))  # how a user trusts the sandbox
    settings = server.settings
    # A session from the sandbox's OAuth, through this project's own Salesforce client auth.
    session = TokenManager(
        f"{server.url}/salesforce",
        settings.salesforce_client_id,
        settings.salesforce_client_secret,
        EncryptedTokenStore(tmp_path / "salesforce_token.enc", Fernet.generate_key().decode()),
        grant="client_credentials",
    ).session()
    assert session.instance_url == f"{server.url}/salesforce"

    # simple-salesforce keeps only the host and port of an `instance_url` and calls https://{instance}/services/...;
    # the sandbox's instance lives under /salesforce, so it goes in as `instance`, the SDK's other documented way.
    sf = Salesforce(
        instance=session.instance_url.removeprefix("https://"), session_id=session.access_token, version="62.0"
    )
    # Batches of 200 (salesforce.md §3.1), so the SDK also follows nextRecordsUrl over HTTPS.
    result = sf.query_all("SELECT Id, Name FROM Account", headers={"Sforce-Query-Options": "batchSize=200"})

    expected = SandboxAdmin(server.url).salesforce_records("Account", deleted=False)
    assert len(expected) > 200
    assert result["totalSize"] == len(expected)
    assert sorted((r["Id"], r["Name"]) for r in result["records"]) == sorted((r["Id"], r["Name"]) for r in expected)


def test_the_sandbox_command_serves_https_and_prints_the_ca_to_trust(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    ca_cert = data_dir / "sandbox-ca.pem"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_pipelines.cli", "sandbox", "--https", "--port", str(port), "--data-dir",
             str(data_dir)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert requests.get(f"https://127.0.0.1:{port}/_admin/stats", verify=str(ca_cert), timeout=2).ok
                break
            except OSError as exc:  # not listening yet, or its CA not written yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{exc}\n{log.read_text()}") from None
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)

    printed = log.read_text()
    assert f"sandbox on https://127.0.0.1:{port}" in printed
    assert f"export REQUESTS_CA_BUNDLE={ca_cert} SSL_CERT_FILE={ca_cert}" in printed
