"""The testkit against the IRC connector: a real InspIRCd, raw IRC clients as remote users."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import InspircdServer, start_inspircd
from bridge.devstack.stack import start_local_stack
from bridge.identity import escape_localpart
from connectors.api import MessageKind
from connectors.testkit import Capabilities, ConformanceSuite
from tests.connectors.matrix_side import MatrixSide
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.e2e.irc import IrcUser, Words, command
from tests.servers import require

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def irc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, InspircdServer]]:
    workdir = tmp_path_factory.mktemp("irc-conformance")
    try:  # an InspIRCd of its own: the reconnect scenario restarts it
        ircd = start_inspircd(workdir / "inspircd")
    except ServerUnavailable as exc:
        require(exc)
    try:
        local = start_local_stack(workdir, permissions=PERMISSIONS, inspircd=ircd,
                                  network_options={"reconnect_delay": 3})
    except BaseException:
        ircd.stop()
        raise
    yield Stack(local), ircd
    local.stop()
    ircd.stop()


class IrcHarness(MatrixSide):
    caps = Capabilities(formatting=True, max_bad_input=2000)

    network = "local"

    def __init__(self, stack: Stack, ircd: InspircdServer) -> None:
        self.stack, self.ircd = stack, ircd
        self.users: dict[str, IrcUser] = {}
        self.chats: dict[str, list[str]] = {}  # chat -> nicks in it, the first one observes

    async def _user(self, nick: str) -> IrcUser:
        user = self.users[nick] = IrcUser(self.ircd.port, nick)
        await user.registered()
        return user

    async def _seen_or_wait(self, user: IrcUser, match: Callable[[Words], bool]) -> None:
        for line in user.seen():
            words = line.split(" ")
            if match(words[1:] if words[0].startswith("@") else words):
                return
        await user.wait_for(match, timeout=30)

    def ghost(self, user: str) -> str:
        return f"@local_{escape_localpart(user.lower())}:localhost"

    def puppet_name(self, mxid: str) -> str:
        return f"{mxid[1:].split(':', 1)[0]}[m]"

    async def new_chat(self) -> str:
        return f"#k{uuid.uuid4().hex[:8]}"

    async def new_user(self) -> str:
        return (await self._user(f"i{uuid.uuid4().hex[:7]}")).nick

    async def join(self, user: str, chat: str) -> None:
        await self.users[user].join(chat)
        self.chats.setdefault(chat, []).append(user)

    async def leave(self, user: str, chat: str, reason: str) -> None:
        self.users[user].send(f"PART {chat} :{reason}")

    async def say(self, user: str, chat: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        line = {MessageKind.EMOTE: f"PRIVMSG {chat} :\x01ACTION {text}\x01",
                MessageKind.NOTICE: f"NOTICE {chat} :{text}"}.get(kind, f"PRIVMSG {chat} :{text}")
        self.users[user].send(line)

    async def say_bytes(self, user: str, chat: str, data: bytes) -> None:
        self.users[user].client.sock.sendall(f"PRIVMSG {chat} :".encode() + data + b"\r\n")

    async def say_dm(self, user: str, mxid: str, text: str) -> None:
        self.users[user].send(f"PRIVMSG {self.puppet_name(mxid)} :{text}")

    async def wait_said(self, chat: str, puppet: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        cmd, wire = {MessageKind.EMOTE: ("PRIVMSG", f"\x01ACTION {text}\x01"),
                     MessageKind.NOTICE: ("NOTICE", text)}.get(kind, ("PRIVMSG", text))
        await self._seen_or_wait(self.users[self.chats[chat][0]], command(cmd, chat, nick=puppet, text=wire))

    async def wait_dm(self, user: str, puppet: str, text: str) -> None:
        await self._seen_or_wait(self.users[user], command("PRIVMSG", user, nick=puppet, text=text))

    async def wait_joined(self, chat: str, puppet: str) -> None:
        await self._seen_or_wait(self.users[self.chats[chat][0]], command("JOIN", chat, nick=puppet))

    async def rename(self, user: str, chat: str) -> str:
        new = f"n{uuid.uuid4().hex[:7]}"
        irc = self.users.pop(user)
        irc.send(f"NICK {new}")
        await irc.wait_for(command("NICK", nick=user))
        irc.nick = irc.client.nick = new
        self.users[new] = irc
        for nicks in self.chats.values():
            nicks[:] = [new if n == user else n for n in nicks]
        return new

    async def set_topic(self, user: str, chat: str, topic: str) -> None:
        self.users[user].send(f"TOPIC {chat} :{topic}")

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        for user in self.users.values():
            user.close()
        self.ircd.stop()
        try:
            yield
        finally:
            await asyncio.to_thread(self.ircd.restart)
            nicks = list(self.users)
            for nick in nicks:  # back, with the same nicks, before the bridge's puppets (3 s)
                await self._user(nick)
            for chat, members in self.chats.items():
                for nick in members:
                    await self.users[nick].join(chat)
                # IRC keeps no history: what is said before the bridge's own connection is back
                # in the channel is not seen by anyone, on any bridge. Wait for it, as a person
                # would see it come back, before the scenario talks again.
                if members:
                    await self._seen_or_wait(self.users[members[0]], command("JOIN", chat, nick="rapture"))

    def formatted_samples(self) -> tuple[str, str, str, str, str]:
        return ("\x02bold\x02 \x1ditalic\x1d", "bold italic", "<b>bold</b> <i>italic</i>",
                "<b>bold</b> <i>it</i>", "\x02bold\x02 \x1dit\x1d")

    async def close(self) -> None:
        for user in self.users.values():
            user.close()


@pytest.fixture
async def harness(irc_stack: tuple[Stack, InspircdServer]) -> AsyncIterator[IrcHarness]:
    h = IrcHarness(*irc_stack)
    yield h
    await h.close()


class TestIrcConformance(ConformanceSuite):
    pass
