"""TLS for IRC connections, including a client certificate for SASL EXTERNAL."""

from __future__ import annotations

import os
import ssl
import tempfile


def tls_context(*, verify: bool = True, client_cert: str | None = None) -> ssl.SSLContext:
    """A client TLS context; with `client_cert` (PEM certificate and unencrypted key) it
    presents that certificate. Raises `ssl.SSLError` or `ValueError` if it is unusable."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        _load_client_cert(context, client_cert)
    return context


def _load_client_cert(context: ssl.SSLContext, pem: str) -> None:
    # Python's ssl reads certificates only from files: one in a private (0700) directory,
    # mode 0600, in memory-backed /dev/shm where there is one, gone again at once.
    shm = "/dev/shm"
    folder = tempfile.mkdtemp(prefix="rapture-", dir=shm if os.access(shm, os.W_OK) else None)
    path = os.path.join(folder, "client.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        # An encrypted key must fail here, not prompt for a passphrase on the terminal.
        context.load_cert_chain(path, password=lambda: b"")
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.rmdir(folder)
