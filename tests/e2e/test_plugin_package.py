"""A third-party connector, pip-installed on its own, is discovered and bridged.

Nothing in `bridge/` or `connectors/` knows the echo network: the only link is the entry
point in docs/examples/echo_connector/pyproject.toml.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest

from tests.connectors.echo import echo_stack_fixture, install_echo_connector
from tests.e2e.conftest import Stack
from tests.e2e.matrix import TestClient, member_event, message_from

pytestmark = pytest.mark.e2e


echo_stack = echo_stack_fixture("plugin")


def test_the_installed_package_registers_its_entry_point() -> None:
    install_echo_connector()
    code = ("from importlib.metadata import entry_points;"
            "print(sorted(e.name for e in entry_points(group='rapture.connectors')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'echo'" in out


async def test_matrix_user_gets_the_echo_from_the_ghost(echo_stack: tuple[Stack, int]) -> None:
    stack, port = echo_stack
    chat = f"c{uuid.uuid4().hex[:8]}"
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as m:
        room = await m.join(f"#echo_{chat}:localhost")
        await m.wait_for_event(room, member_event("@echo_echo-bot:localhost", "join"), what="echo-bot's ghost")
        await m.send_text(room, "hello, echo")
        await m.wait_for_event(room, message_from("@echo_echo-bot:localhost", body="hello, echo"),
                               what="the echo")
        # And a remote user's line, injected over the network's TCP protocol, arrives too.
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"{chat}|zoe|hi from the echo network\n".encode())
            await writer.drain()
            await m.wait_for_event(room, message_from("@echo_zoe:localhost", body="hi from the echo network"))
        finally:
            writer.close()
