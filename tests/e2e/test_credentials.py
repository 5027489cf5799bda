"""Stored credentials log the puppet in: SASL PLAIN where offered, NickServ IDENTIFY where not.

Real Atheme services linked to real InspIRCd servers, one with SASL and one without.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.atheme import account_of, nickserv_register, start_irc_with_services
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
        with_sasl = start_irc_with_services(base / "sasl")
        started.append(with_sasl)
        without_sasl = start_irc_with_services(base / "nosasl", sasl=False)
        started.append(without_sasl)
        local = start_local_stack(
            base / "stack", permissions=PERMISSIONS, inspircd=with_sasl[0],
            extra_networks={"plain": {"connector": "irc", "host": "127.0.0.1", "port": without_sasl[0].port}},
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
