"""Stored credentials log the puppet in: SASL PLAIN where offered, NickServ IDENTIFY where not,
SASL EXTERNAL with a stored client certificate over TLS.

Real Atheme services linked to real InspIRCd servers, one with SASL (and a TLS port that passes
client certificate fingerprints to services) and one without.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bridge.devstack import ServerUnavailable
from bridge.devstack.atheme import account_of, nickserv_cert_add, nickserv_register, start_irc_with_services
from bridge.devstack.inspircd import self_signed_certificate
from bridge.devstack.ports import free_port
from bridge.devstack.stack import start_local_stack
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, notice_from
from tests.servers import require


@pytest.fixture(scope="module")
def services_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int, object]]:
    base = tmp_path_factory.mktemp("services")
    started = []
    try:
        tls_port = free_port()
        with_sasl = start_irc_with_services(base / "sasl", tls_port=tls_port)
        started.append(with_sasl)
        without_sasl = start_irc_with_services(base / "nosasl", sasl=False)
        started.append(without_sasl)
        local = start_local_stack(
            base / "stack", permissions=PERMISSIONS, inspircd=with_sasl[0],
            extra_networks={
                # Atheme's NickServ is at services.rapture.test (bridge/devstack/atheme.py): the
                # bridge sends it a password only after seeing it there.
                "plain": {"connector": "irc", "host": "127.0.0.1", "port": without_sasl[0].port,
                          "services_host": "services.rapture.test"},
                # The same server, configured with another services host: its NickServ is
                # treated as an impostor and gets no password.
                "impostor": {"connector": "irc", "host": "127.0.0.1", "port": without_sasl[0].port,
                             "services_host": "services.elsewhere.test"},
                # The same server as "local", through its TLS port (a self-signed certificate).
                "tls": {"connector": "irc", "host": "127.0.0.1", "port": tls_port, "tls": True,
                        "tls_verify": False},
            },
        )
    except ServerUnavailable as exc:
        for ircd, atheme in started:
            atheme.stop()
            ircd.stop()
        require(exc)
    yield Stack(local), without_sasl[0].port, (with_sasl[1], without_sasl[1])
    local.stop()
    for ircd, atheme in started:
        atheme.stop()
        ircd.stop()


async def _login_flow(stack: Stack, network: str, port: int) -> tuple[str, str]:
    account = stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    name = f"a{uuid.uuid4().hex[:8]}"
    password = "pässwörd-" + uuid.uuid4().hex  # Unicode; NickServ REGISTER cannot take spaces
    await asyncio.to_thread(nickserv_register, port, name, password)
    channel = f"#s{uuid.uuid4().hex[:6]}"
    watcher = IrcUser(port, f"w{uuid.uuid4().hex[:6]}")
    await watcher.registered()
    await watcher.join(channel)
    try:
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            room = await m.create_room(invite=[stack.bot], is_direct=True)
            await m.wait_for_membership(room, stack.bot, "join")

            async def ask(text: str) -> str:
                asked = await m.send_text(room, text)
                reply = await m.wait_for_event(room, notice_from(stack.bot, reply_to=asked))
                return reply["content"]["body"]

            await ask(f"join {network} {channel}")
            await watcher.wait_for(command("JOIN", channel, nick=puppet))
            assert await asyncio.to_thread(account_of, port, puppet) is None  # no credentials yet

            await ask(f"username {network} {name}")
            assert "stored, encrypted" in await ask(f"storepass {network} {password}")
            await ask(f"reconnect {network}")
            await watcher.wait_for(command("QUIT", nick=puppet))
            await watcher.wait_for(command("JOIN", channel, nick=puppet), timeout=30)
            logged_in = None
            for _ in range(20):  # NickServ may answer a moment after the join
                logged_in = await asyncio.to_thread(account_of, port, puppet)
                if logged_in:
                    break
                await asyncio.sleep(0.5)
            return name, logged_in or ""
    finally:
        watcher.close()


def _service_log(atheme) -> list[str]:
    """What the services did, one line each (Atheme's commands.log)."""
    return (atheme.workdir / "commands.log").read_text(errors="replace").splitlines()


async def test_storepass_then_reconnect_logs_in_with_sasl(services_stack) -> None:
    stack, _plain_port, (atheme, _) = services_stack
    name, logged_in = await _login_flow(stack, "local", stack.local.inspircd.port)
    assert logged_in == name
    mine = [line for line in _service_log(atheme) if f"{name}/" in line]
    assert any("SaslServ" in line and "LOGIN (PLAIN)" in line for line in mine), mine
    assert not any("IDENTIFY" in line for line in mine)


async def test_network_without_sasl_falls_back_to_nickserv(services_stack) -> None:
    stack, plain_port, (_, atheme) = services_stack
    name, logged_in = await _login_flow(stack, "plain", plain_port)
    assert logged_in == name
    mine = [line for line in _service_log(atheme) if f"{name}/" in line]
    assert any("NickServ" in line and "IDENTIFY" in line for line in mine), mine


async def test_nickserv_not_at_the_services_host_gets_no_password(services_stack) -> None:
    stack, plain_port, (_, atheme) = services_stack
    account = stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    name = f"m{uuid.uuid4().hex[:8]}"
    password = "pw-" + uuid.uuid4().hex
    await asyncio.to_thread(nickserv_register, plain_port, name, password)
    channel = f"#i{uuid.uuid4().hex[:6]}"
    watcher = IrcUser(plain_port, f"w{uuid.uuid4().hex[:6]}")
    await watcher.registered()
    await watcher.join(channel)
    try:
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            room = await m.create_room(invite=[stack.bot], is_direct=True)
            await m.wait_for_membership(room, stack.bot, "join")
            for text in (f"join impostor {channel}", f"username impostor {name}",
                         f"storepass impostor {password}", "reconnect impostor"):
                asked = await m.send_text(room, text)
                await m.wait_for_event(room, notice_from(stack.bot, reply_to=asked))
                if text.startswith("join"):
                    await watcher.wait_for(command("JOIN", channel, nick=puppet))
            await watcher.wait_for(command("QUIT", nick=puppet))
            await watcher.wait_for(command("JOIN", channel, nick=puppet), timeout=30)
            told = await m.wait_for_event(room, notice_from(stack.bot, contains="not sent to NickServ"))
            assert "services.rapture.test" in told["content"]["body"]  # where the nick really is
            assert await asyncio.to_thread(account_of, plain_port, puppet) is None
            assert not [line for line in _service_log(atheme) if f"{name}/" in line and "IDENTIFY" in line]
    finally:
        watcher.close()


async def _wait_for_account(port: int, nick: str, account: str | None) -> str | None:
    logged_in = None
    for _ in range(20):  # services may answer a moment after the join
        logged_in = await asyncio.to_thread(account_of, port, nick)
        if logged_in == account:
            break
        await asyncio.sleep(0.5)
    return logged_in


async def _wait_for_service_log(atheme, match) -> list[str]:
    lines: list[str] = []
    for _ in range(20):
        lines = _service_log(atheme)
        if any(match(line) for line in lines):
            break
        await asyncio.sleep(0.25)
    return lines


async def test_storecert_then_reconnect_logs_in_with_sasl_external(services_stack) -> None:
    stack, _plain_port, (atheme, _) = services_stack
    port = stack.local.inspircd.port  # plain port of the server the "tls" network reaches by TLS
    account = stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    name = f"c{uuid.uuid4().hex[:8]}"
    password = "pw-" + uuid.uuid4().hex
    cert_pem, key_pem = (part.decode() for part in self_signed_certificate(name))
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    sha256 = cert.fingerprint(hashes.SHA256()).hex()
    _, other_key = (part.decode() for part in self_signed_certificate("mallory"))
    await asyncio.to_thread(nickserv_register, port, name, password)
    await asyncio.to_thread(nickserv_cert_add, port, name, password, sha256)  # as a user identified to it
    channel = f"#t{uuid.uuid4().hex[:6]}"
    watcher = IrcUser(port, f"w{uuid.uuid4().hex[:6]}")
    await watcher.registered()
    await watcher.join(channel)

    def mine(what: str):
        return lambda line: f"{name}/" in line and "SaslServ" in line and f"LOGIN ({what})" in line

    try:
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            room = await m.create_room(invite=[stack.bot], is_direct=True)
            await m.wait_for_membership(room, stack.bot, "join")

            async def ask(text: str) -> tuple[str, str]:
                asked = await m.send_text(room, text)
                reply = await m.wait_for_event(room, notice_from(stack.bot, reply_to=asked))
                return reply["content"]["body"], asked

            async def reconnect() -> None:
                await ask("reconnect tls")
                await watcher.wait_for(command("QUIT", nick=puppet))
                await watcher.wait_for(command("JOIN", channel, nick=puppet), timeout=30)

            await ask(f"join tls {channel}")
            await watcher.wait_for(command("JOIN", channel, nick=puppet))
            assert await asyncio.to_thread(account_of, port, puppet) is None  # no credentials yet
            # A password too: a certificate must not erase it, nor the other way round.
            await ask(f"username tls {name}")
            assert "stored, encrypted" in (await ask(f"storepass tls {password}"))[0]

            # Refusals: no PEM, a key that is not the certificate's, an unknown network.
            assert "No PEM certificate" in (await ask("storecert tls hello"))[0]
            answer, _ = await ask(f"storecert tls\n{cert_pem}{other_key}")
            assert "does not belong" in answer and "Usage: storecert" in answer
            assert "Unknown network 'nowhere'" in (await ask(f"storecert nowhere\n{cert_pem}{key_pem}"))[0]
            assert "no client certificate stored" in (await ask("removecert tls"))[0]

            answer, asked = await ask(f"storecert tls\n{cert_pem}\n{key_pem}")
            assert "stored, encrypted" in answer and f"SHA-256: {sha256}" in answer, answer
            assert f"SHA-512: {cert.fingerprint(hashes.SHA512()).hex()}" in answer
            redacted = [e for e in await m.messages(room) if e.get("event_id") == asked]
            assert (redacted and "body" not in redacted[0]["content"]) or "delete your message" in answer

            await reconnect()
            assert await _wait_for_account(port, puppet, name) == name
            lines = await _wait_for_service_log(atheme, mine("EXTERNAL"))
            assert any(mine("EXTERNAL")(line) for line in lines), [x for x in lines if name in x]

            # Sealed at rest: neither the certificate nor the key is readable in the database.
            db = sqlite3.connect(stack.local.workdir / "rapture.db")
            try:
                (blob,), = db.execute("SELECT credentials FROM login WHERE mxid = ? AND network = 'tls'",
                                      (account.user_id,)).fetchall()
            finally:
                db.close()
            key_body = "".join(key_pem.splitlines()[1:-1])
            assert blob and b"BEGIN" not in blob and key_body[:40].encode() not in blob
            assert password.encode() not in blob

            # Forgotten: the stored password is still there and logs in (PLAIN) instead.
            assert "is forgotten" in (await ask("removecert tls"))[0]
            await reconnect()
            assert await _wait_for_account(port, puppet, name) == name
            lines = await _wait_for_service_log(atheme, mine("PLAIN"))
            assert any(mine("PLAIN")(line) for line in lines), [x for x in lines if name in x]
            assert sum(mine("EXTERNAL")(line) for line in lines) == 1
    finally:
        watcher.close()
