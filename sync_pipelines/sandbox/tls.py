"""A local certificate authority, so the sandbox can serve HTTPS that clients verify (`sandbox --https`).

Vendor SDKs that only speak https (simple-salesforce builds every URL as https://) then work against the
sandbox unmodified once the process trusts the CA (REQUESTS_CA_BUNDLE, SSL_CERT_FILE). The CA lives next to
the sandbox's state file and survives restarts, so it is trusted once; the server certificate is issued
afresh on every start for the loopback names.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from filelock import FileLock

CA_CERT = "sandbox-ca.pem"
CA_KEY = "sandbox-ca-key.pem"
SERVER_PEM = "sandbox-server.pem"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class LocalTls:
    ca_cert: Path  # what clients trust
    server_pem: Path  # the server's private key and certificate chain, for uvicorn


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, and readable by the owner only (mkstemp creates 0600): the file holds a private key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def local_tls(directory: Path, host: str) -> LocalTls:
    """Load the CA kept in `directory` (making it on first use) and issue a server certificate for `host`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, server_pem = directory / CA_CERT, directory / CA_KEY, directory / SERVER_PEM
    # Two sandboxes starting on one data directory must not each make a CA and overwrite the other's.
    with FileLock(directory / f"{CA_KEY}.lock"):
        if ca_cert.exists() and ca_key.exists():
            ca = trustme.CA.from_pem(ca_cert.read_bytes(), ca_key.read_bytes())
        else:
            ca = trustme.CA(organization_name="sync_pipelines sandbox")
            _write_private(ca_key, ca.private_key_pem.bytes())
            ca_cert.write_bytes(ca.cert_pem.bytes())
        leaf = ca.issue_cert(*dict.fromkeys((*LOOPBACK_NAMES, host)))
        _write_private(server_pem, leaf.private_key_and_cert_chain_pem.bytes())
    return LocalTls(ca_cert, server_pem)
