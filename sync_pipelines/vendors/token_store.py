"""What every OAuth vendor client shares: encrypted token storage (xero.md §1.4, salesforce.md §1.2) and the
browserless consent the sandboxes allow."""

import contextlib
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import urljoin

import requests
from cryptography.fernet import Fernet, InvalidToken
from filelock import FileLock


class CredentialsError(Exception):
    """The stored credentials cannot produce an access token; a person has to (re)connect the app."""


def consent_by_redirect(authorization_url: str, timeout: float = 30) -> str:
    """The URL an authorize endpoint that consents on its own (the sandbox's) redirects to, with the code."""
    response = requests.get(authorization_url, allow_redirects=False, timeout=timeout)
    location = response.headers.get("Location")
    if not response.is_redirect or not location:
        raise CredentialsError(f"authorize endpoint answered {response.status_code} without a redirect")
    return urljoin(authorization_url, location)


class EncryptedTokenStore:
    """Token set at rest, Fernet-encrypted, replaced atomically.

    A refresh token that rotates (xero.md §1.4, salesforce.md §1.2 with rotation on) is lost by a torn
    write, which locks the user out; `lock` is also what makes a process the only refresher of this token set.
    """

    def __init__(self, path: Path | str, key: str) -> None:
        self.path = Path(path)
        self._fernet = Fernet(key)
        self.lock = FileLock(f"{self.path}.lock")

    def load(self) -> dict | None:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return json.loads(self._fernet.decrypt(blob))
        except InvalidToken:
            raise CredentialsError(f"{self.path} cannot be decrypted with the configured key") from None

    def save(self, token: dict) -> None:
        blob = self._fernet.encrypt(json.dumps(token).encode())
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(blob)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
