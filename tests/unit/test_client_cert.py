"""Client certificates: checking what a user pastes, loading it for TLS, and SASL EXTERNAL."""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from irc.client import Event

from bridge.client_cert import ClientCertError, parse_client_cert
from connectors.irc.connection import ConnectionSettings, IRCConnection
from connectors.irc.tls import tls_context
from connectors.irc.flood import FloodControl


def make_cert(key=None, *, name: str = "alice", days: int = 30) -> tuple[str, str, x509.Certificate]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, algorithm))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, cert


def test_a_certificate_and_its_key_are_accepted_with_their_fingerprints() -> None:
    cert_pem, key_pem, cert = make_cert()
    parsed = parse_client_cert(f"{cert_pem}\n{key_pem}")
    assert parsed.sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert parsed.sha512 == cert.fingerprint(hashes.SHA512()).hex()
    assert parsed.subject == "CN=alice"
    assert "BEGIN CERTIFICATE" in parsed.pem and "BEGIN PRIVATE KEY" in parsed.pem
    # The normalised PEM is what Python's ssl can load.
    tls_context(verify=False, client_cert=parsed.pem)


def test_key_first_mangled_whitespace_and_chat_fences_still_parse() -> None:
    cert_pem, key_pem, cert = make_cert(ed25519.Ed25519PrivateKey.generate())
    # As a chat client may send it: in a code fence, key first, line breaks become spaces.
    text = "```\n" + key_pem.replace("\n", " ") + "\n  " + cert_pem.replace("\n", "\n    ") + "```"
    parsed = parse_client_cert(text)
    assert parsed.sha256 == cert.fingerprint(hashes.SHA256()).hex()


def test_traditional_rsa_key_is_accepted() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_pem, _, _ = make_cert(key)
    legacy = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption()).decode()
    assert "BEGIN RSA PRIVATE KEY" in legacy
    assert "BEGIN PRIVATE KEY" in parse_client_cert(cert_pem + legacy).pem


@pytest.mark.parametrize("text, error", [
    ("", "No PEM certificate"),
    ("hello world", "No PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n{key}", "not valid PEM"),
    ("{cert}", "exactly one private key"),
    ("{cert}{key}{key}", "exactly one private key"),
    ("{key}", "No PEM certificate"),
    ("{cert}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private key is not valid"),
    ("{cert}{other_key}", "does not belong"),
    ("{cert}{encrypted_key}", "encrypted"),
    ("x" * 70_000, "too long"),
])
def test_unusable_text_is_refused_with_a_reason(text: str, error: str) -> None:
    cert_pem, key_pem, _ = make_cert()
    _, other_key, _ = make_cert()
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")).decode()
    text = text.format(cert=cert_pem, key=key_pem, other_key=other_key, encrypted_key=encrypted)
    with pytest.raises(ClientCertError, match=error):
        parse_client_cert(text)


def test_loading_for_tls_leaves_no_file_behind() -> None:
    cert_pem, key_pem, _ = make_cert()
    places = ["/dev/shm", tempfile.gettempdir()]
    before = {p: set(os.listdir(p)) for p in places if os.path.isdir(p)}
    context = tls_context(verify=False, client_cert=cert_pem + key_pem)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert {p: set(os.listdir(p)) for p in before} == before
    assert tls_context().verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLError):
        tls_context(client_cert=cert_pem + make_cert()[1])  # the key does not match
    assert {p: set(os.listdir(p)) for p in before} == before


# -- SASL EXTERNAL during CAP negotiation ----------------------------------------------------------
def make_connection(written: list[str], *, cert: bool, password: str | None) -> IRCConnection:
    cert_pem, key_pem, _ = make_cert()
    conn = IRCConnection(
        settings=ConnectionSettings(host="h", port=1, tls=True, username="u", realname="r", account="alice",
                                    account_password=password, client_cert=cert_pem + key_pem if cert else None,
                                    tls_verify=False),
        nick="alice", reactor=None, limiter=asyncio.Semaphore(1),  # type: ignore[arg-type]
        on_event=lambda c, e: None, on_state=lambda c, s, m: written.append(f"state {s}"),
    )
    conn._tls_context()
    conn._flood = FloodControl(lambda line: written.append(line.text), burst=100, rate=0.01)
    return conn


def negotiate(conn: IRCConnection, offer: str) -> None:
    conn.handle(Event("cap", "irc.test", "*", ["LS", offer]))
    conn.handle(Event("cap", "irc.test", "*", ["ACK", "sasl"]))


async def test_a_certificate_logs_in_with_sasl_external() -> None:
    written: list[str] = []
    conn = make_connection(written, cert=True, password=None)
    negotiate(conn, "sasl=PLAIN,EXTERNAL server-time")
    assert written == ["CAP REQ :sasl server-time", "AUTHENTICATE EXTERNAL"]
    conn.handle(Event("authenticate", "irc.test", "+", []))
    assert written[-1] == "AUTHENTICATE +"
    conn.handle(Event("saslsuccess", "irc.test", "alice", ["SASL authentication successful"]))
    assert written[-1] == "CAP END" and conn.authenticated


async def test_refused_external_falls_back_to_plain_in_the_same_negotiation() -> None:
    written: list[str] = []
    conn = make_connection(written, cert=True, password="hunter2")
    negotiate(conn, "sasl")  # no mechanism list: try both
    assert written[-1] == "AUTHENTICATE EXTERNAL"
    conn.handle(Event("authenticate", "irc.test", "+", []))
    conn.handle(Event("saslfail", "irc.test", "alice", ["SASL authentication failed"]))
    assert written[-2:] == ["state auth_failed", "AUTHENTICATE PLAIN"]
    conn.handle(Event("authenticate", "irc.test", "+", []))
    assert written[-1].startswith("AUTHENTICATE ") and written[-1] != "AUTHENTICATE +"
    conn.handle(Event("saslsuccess", "irc.test", "alice", []))
    assert written[-1] == "CAP END" and conn.authenticated


async def test_plain_when_the_server_does_not_offer_external() -> None:
    written: list[str] = []
    conn = make_connection(written, cert=True, password="hunter2")
    negotiate(conn, "sasl=PLAIN")
    assert written[-1] == "AUTHENTICATE PLAIN"


async def test_no_sasl_request_when_no_offered_mechanism_fits() -> None:
    written: list[str] = []
    conn = make_connection(written, cert=True, password=None)
    conn.handle(Event("cap", "irc.test", "*", ["LS", "sasl=PLAIN server-time"]))
    assert written == ["CAP REQ :server-time"]


async def test_a_failed_external_without_password_ends_negotiation() -> None:
    written: list[str] = []
    conn = make_connection(written, cert=True, password=None)
    negotiate(conn, "sasl=EXTERNAL")
    conn.handle(Event("saslfail", "irc.test", "alice", []))
    assert written[-2:] == ["state auth_failed", "CAP END"] and not conn.authenticated
