"""Credentials at rest: AES-GCM (an AEAD from `cryptography`) under a key file the admin owns.

The login's MXID and network are bound in as associated data, so a stored password cannot be
copied to another user's row and still decrypt. The key file is created, mode 0600, by
`rapture generate-registration`; without it no credential can be read, and losing it only
means users must `storepass` again.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12
_VERSION = b"\x01"


class SecretsError(Exception):
    """The key is missing or wrong, or a stored value was tampered with."""


def create_key_file(path: Path) -> bool:
    """Create a new random key at `path` (mode 0600) unless one exists; True if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return True


# Bits that must be clear on the key file: any access by other users, and writing by the group.
# Group read (0640) is allowed, as for the registration: an admin may share it with a backup group.
KEY_FILE_FORBIDDEN_BITS = 0o027


def key_file_problem(path: Path | str) -> str | None:
    """Why the bridge must not start with the key file at `path`, or None when it may.

    A missing file is not a problem here: it only matters to the first `storepass`, which says so.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    if mode & KEY_FILE_FORBIDDEN_BITS:
        return (f"error: the key file {path} is open to other users (mode {mode:04o}); whoever reads "
                f"it can decrypt every stored password. Make it private, then start the bridge:\n"
                f"    chmod 600 {path}")
    return None


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretsError("the key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path | str) -> SecretBox:
        try:
            text = Path(path).read_text().strip()
        except FileNotFoundError:
            raise SecretsError(
                f"key file {path} is missing; `rapture generate-registration` creates it"
            ) from None
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise SecretsError(f"key file {path} is not base64") from None
        return cls(key)

    def seal(self, value: dict[str, Any], *, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps(value, ensure_ascii=False).encode("utf-8")
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, context.encode("utf-8"))

    def open(self, blob: bytes, *, context: str) -> dict[str, Any]:
        if not blob or blob[:1] != _VERSION or len(blob) < 1 + _NONCE_BYTES + 16:
            raise SecretsError("not a sealed value")
        nonce, sealed = blob[1:1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, sealed, context.encode("utf-8"))
        except InvalidTag:
            raise SecretsError("the stored value does not match the key or its owner") from None
        return json.loads(plain.decode("utf-8"))
