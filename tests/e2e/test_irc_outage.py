"""Faults on the IRC side: the server restarts, or never comes back. Nothing is lost silently.

These tests restart their IRC server, so they get a stack of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.ports import free_port
from bridge.devstack.stack import start_local_stack
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, notice_from
from tests.servers import require

RECONNECT_DELAY = 8  # seconds: long enough for a watcher to be back in the channel first
IDLE_TIMEOUT = 2  # seconds a puppet without bridged rooms stays connected


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    dead_port = free_port()  # nothing listens here: a network that is always down
    try:
        local = start_local_stack(
            tmp_path_factory.mktemp("outage"), permissions=PERMISSIONS,
            network_options={"reconnect_delay": RECONNECT_DELAY, "idle_timeout": IDLE_TIMEOUT},
            extra_networks={
                "dead": {"connector": "irc", "host": "127.0.0.1", "port": dead_port, "delivery_timeout": 3},
                "closed": {"connector": "irc", "host": "127.0.0.1", "port": dead_port,
                           "dynamic_portals": False},
            },
        )
    except ServerUnavailable as exc:
        require(exc)
    yield Stack(local)
    local.stop()


async def _watch(stack: Stack, channel: str) -> IrcUser:
    watcher = IrcUser(stack.local.inspircd.port, f"w{uuid.uuid4().hex[:6]}")
    await watcher.registered()
    await watcher.join(channel)
    return watcher


async def test_ircd_restart_loses_and_doubles_nothing(outage_stack: Stack) -> None:
    stack = outage_stack
    chan = f"#r{uuid.uuid4().hex[:6]}"
    alice, bob = stack.account(), stack.account()
    watcher = await _watch(stack, chan)
    async with TestClient(stack.homeserver, alice.user_id, alice.token) as a, \
            TestClient(stack.homeserver, bob.user_id, bob.token) as b:
        room = await a.join(f"#local_{chan}:localhost")
        await b.join(room)
        puppets = [f"{acc.user_id[1:].split(':')[0]}[m]" for acc in (alice, bob)]
        for puppet in puppets:
            await watcher.wait_for(command("JOIN", chan, nick=puppet))
        await a.send_text(room, "before the outage")
        await watcher.wait_for(command("PRIVMSG", chan, nick=puppets[0], text="before the outage"))
        watcher.close()

        stack.local.inspircd.stop()
        sent = []
        for n in range(5):
            sender, client = (a, puppets[0]) if n % 2 == 0 else (b, puppets[1])
            text = f"during outage {n}"
            await sender.send_text(room, text)
            sent.append((client, text))
        await asyncio.to_thread(stack.local.inspircd.restart)

        watcher = await _watch(stack, chan)
        try:
            def received() -> list[tuple[str, str]]:
                lines = [ln for ln in watcher.seen() if command("PRIVMSG", chan)(ln.split(" "))]
                return [(ln.split(" ")[0][1:].split("!")[0], ln.split(" :", 1)[1]) for ln in lines]

            for _ in range(len(sent) + 4):  # bounded: every puppet's JOIN, then each message
                if len(received()) >= len(sent):
                    break
                await watcher.wait_for(lambda w: len(w) > 1 and w[1] in ("PRIVMSG", "JOIN"), timeout=60)
            got = received()
            joined = {ln.split("!")[0][1:] for ln in watcher.seen() if command("JOIN", chan)(ln.split(" "))}
            assert set(puppets) <= joined  # every puppet is back in the channel
            # Each sender's messages arrive complete and in order, none doubled.
            for puppet in puppets:
                assert [t for p, t in got if p == puppet] == [t for p, t in sent if p == puppet]
            with pytest.raises(TimeoutError):
                await watcher.wait_for(command("PRIVMSG", chan), timeout=2)
        finally:
            watcher.close()


async def test_undeliverable_message_is_reported_to_its_sender(outage_stack: Stack) -> None:
    stack = outage_stack
    alice = stack.account()
    async with TestClient(stack.homeserver, alice.user_id, alice.token) as a:
        room = await a.join("#dead_#nowhere:localhost")
        sent = await a.send_text(room, "will never arrive")
        notice = await a.wait_for_event(room, notice_from(stack.bot, reply_to=sent), timeout=30)
        body = notice["content"]["body"]
        assert "will never arrive" in body and "could not be delivered" in body
        assert "not connected to dead" in body


async def test_puppet_without_rooms_disconnects_after_the_idle_time(outage_stack: Stack) -> None:
    stack = outage_stack
    chan = f"#i{uuid.uuid4().hex[:6]}"
    account = stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[m]"
    watcher = await _watch(stack, chan)
    try:
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            room = await m.join(f"#local_{chan}:localhost")
            await watcher.wait_for(command("JOIN", chan, nick=puppet))
            await m.leave(room)
            await watcher.wait_for(command("PART", chan, nick=puppet))
            # Parted, then gone from the server once the idle time has passed (ISON asks
            # the server who is online; a QUIT would not reach us, sharing no channel).
            online = True
            for _ in range((IDLE_TIMEOUT + 10) * 2):
                watcher.send(f"ISON {puppet}")
                reply = await watcher.wait_for(lambda w: len(w) > 1 and w[1] == "303")
                online = puppet.lower() in reply.split(" :", 1)[1].lower()
                if not online:
                    break
                await asyncio.sleep(0.5)
            assert not online, "the idle puppet is still connected"
    finally:
        watcher.close()


async def test_dynamic_portals_can_be_turned_off(outage_stack: Stack) -> None:
    from tests.e2e.matrix import MatrixError

    stack = outage_stack
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as m:
        with pytest.raises(MatrixError) as refused:
            await m.join("#closed_#anything:localhost")
        assert refused.value.status == 404
