"""Encrypted token storage that every OAuth vendor client shares (xero.md §1.4, salesforce.md §1.2)."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from filelock import FileLock


class CredentialsError(Exception):
    """The stored credentials cannot produce an access token; a person has to (re)connect the app."""


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
