"""Client certificates pasted by users (for SASL EXTERNAL): checked, normalised, fingerprinted.

Kept apart from the login manager so that the X.509 half of `cryptography` is only imported
when somebody stores a certificate, not in every bridge process (it costs about 2 MB).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

MAX_CERT_TEXT = 64 * 1024
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_KEY_KINDS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


class ClientCertError(ValueError):
    """The text is not a usable client certificate; the message says why, for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCert:
    """A checked client certificate: what is stored, and what users register with services."""

    pem: str  # the certificate(s), then the key (PKCS#8, unencrypted), normalised
    sha256: str  # lowercase hex of the DER certificate, as ircds and NickServ CERT ADD use it
    sha512: str
    subject: str
    not_after: datetime.datetime


def parse_client_cert(text: str) -> ClientCert:
    """Find a PEM certificate and its unencrypted private key anywhere in `text` (as pasted
    into a chat: line breaks and indentation may be lost) and check that they belong together."""
    if len(text) > MAX_CERT_TEXT:
        raise ClientCertError("That is too long for a certificate and its key.")
    blocks = [(kind, body) for kind, body in _PEM_BLOCK.findall(text)]
    if not blocks:
        raise ClientCertError("No PEM certificate found (-----BEGIN CERTIFICATE----- ...).")
    if any("ENCRYPTED" in kind or "Proc-Type" in body for kind, body in blocks):
        raise ClientCertError("The private key is encrypted; paste it without a passphrase "
                              "(e.g. `openssl pkey -in key.pem`).")
    certs = [_pem(kind, body) for kind, body in blocks if kind == "CERTIFICATE"]
    keys = [_pem(kind, body) for kind, body in blocks if kind in _KEY_KINDS]
    if not certs:
        raise ClientCertError("No PEM certificate found (-----BEGIN CERTIFICATE----- ...).")
    if len(keys) != 1:
        raise ClientCertError("Paste the certificate together with exactly one private key "
                              "(-----BEGIN PRIVATE KEY----- ...).")
    try:
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in certs]
    except ValueError:
        raise ClientCertError("The certificate is not valid PEM.") from None
    try:
        key = serialization.load_pem_private_key(keys[0].encode(), password=None)
    except TypeError:
        raise ClientCertError("The private key is encrypted; paste it without a passphrase.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ClientCertError("The private key is not valid PEM.") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise ClientCertError("Only RSA, EC and Ed25519/Ed448 keys can be used for TLS.")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    leaf = chain[0]
    try:
        leaf_public = leaf.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        raise ClientCertError("The certificate's key type is not supported.") from None
    if key.public_key().public_bytes(*spki) != leaf_public:
        raise ClientCertError("The private key does not belong to the (first) certificate.")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    return ClientCert(
        pem=cert_pem + key_pem,
        sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        sha512=leaf.fingerprint(hashes.SHA512()).hex(),
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
    )


def _pem(kind: str, body: str) -> str:
    """A PEM block rebuilt from its base64 with any whitespace (or none) inside."""
    data = "".join(body.split())
    lines = [data[i:i + 64] for i in range(0, len(data), 64)]
    return f"-----BEGIN {kind}-----\n" + "".join(f"{line}\n" for line in lines) + f"-----END {kind}-----\n"
