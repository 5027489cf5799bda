"""The testkit against the XMPP connector: a real Prosody, slixmpp clients as remote users.

Remote users are named by their MUC nick, which starts out as their account name; chats are
MUC room JIDs on `MUC`. Rooms show real JIDs (see `bridge.devstack.prosody`), so a remote
user's ghost is keyed by their bare JID and keeps it across nick changes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from xml.etree import ElementTree as ET

import pytest

from connectors.api import MessageKind
from connectors.testkit import Capabilities, ConformanceSuite
from connectors.xmpp import stanzas
from connectors.xmpp.stanzas import Message, Presence
from tests.connectors.matrix_side import MatrixSide
from tests.e2e.test_xmpp import (  # noqa: F401 - xmpp_stack is the module-scoped stack fixture
    COMPONENT,
    MUC,
    XmppStack,
    XmppUser,
    ghost,
    groupchat,
    xmpp_stack,
)

pytestmark = pytest.mark.e2e

# What a slixmpp client cannot put in an XML 1.0 stream (it would end the client's stream, not
# reach the bridge): NUL and the other C0 controls but tab/LF/CR, lone surrogates, U+FFFE/FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class XmppHarness(MatrixSide):
    network = "xmpp"
    # notices=False: XMPP has no notice message kind (a groupchat body is a message or a
    #   `/me` emote); the scenario skips the notice half, the emote half runs.
    # formatting: XEP-0393 message styling both ways (Matrix HTML becomes `*bold*`, and
    #   `*bold*` from an XMPP client becomes Matrix HTML); no XHTML-IM.
    # raw_bytes=False: an XMPP body is XML text; a client cannot send invalid UTF-8 (Prosody
    #   would close the stream as not-well-formed before anything reached the bridge).
    caps = Capabilities(notices=False, formatting=True, raw_bytes=False)

    def __init__(self, xs: XmppStack) -> None:
        self.xs = xs
        self.stack = xs.stack
        self.users: dict[str, XmppUser] = {}  # current nick -> client
        self.nicks: dict[str, str] = {}  # account name -> current nick
        self.jids: dict[str, str] = {}  # any nick a user has had -> bare JID
        self.chats: dict[str, list[str]] = {}  # chat -> nicks in it, the first one observes
        self.puppet_jids: dict[str, str] = {}  # puppet nick -> puppet JID

    # -- identities ---------------------------------------------------------------------------
    def ghost(self, user: str) -> str:
        return ghost(self.jids[user])

    def puppet_name(self, mxid: str) -> str:
        localpart = mxid[1:].split(":", 1)[0]
        nick = f"{localpart}[m]"  # the connector's default nick_template
        self.puppet_jids[nick] = f"{localpart}@{COMPONENT}"
        return nick

    # -- remote side --------------------------------------------------------------------------
    async def _connect(self, name: str, nick: str) -> XmppUser:
        user = XmppUser(self.xs.prosody, name)
        await user.__aenter__()
        self.users[nick] = user
        self.jids[nick] = user.jid
        return user

    async def new_chat(self) -> str:
        return f"k{uuid.uuid4().hex[:8]}@{MUC}"

    async def new_user(self) -> str:
        name = f"x{uuid.uuid4().hex[:7]}"
        await self._connect(name, name)
        self.nicks[name] = name
        return name

    async def join(self, user: str, chat: str) -> None:
        await self.users[user].join(chat, user)
        self.chats.setdefault(chat, []).append(user)

    async def leave(self, user: str, chat: str, reason: str) -> None:
        self.users[user].client.make_presence(pto=f"{chat}/{user}", ptype="unavailable", pstatus=reason).send()
        self.chats[chat].remove(user)

    async def say(self, user: str, chat: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        assert kind is not MessageKind.NOTICE, "caps.notices is False"
        body = _NOT_XML.sub("", text)
        self.users[user].say(chat, f"/me {body}" if kind is MessageKind.EMOTE else body)

    async def say_bytes(self, user: str, chat: str, data: bytes) -> None:
        raise NotImplementedError("caps.raw_bytes is False: an XMPP client sends XML text, not bytes")

    async def say_dm(self, user: str, mxid: str, text: str) -> None:
        self.users[user].chat(self.puppet_jids[self.puppet_name(mxid)], text)

    async def wait_said(self, chat: str, puppet: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        wire = f"/me {text}" if kind is MessageKind.EMOTE else text
        observer = self.users[self.chats[chat][0]]
        await observer.wait_message(groupchat(chat, puppet, wire), what=f"{puppet} saying {wire!r}")

    async def wait_dm(self, user: str, puppet: str, text: str) -> None:
        jid = self.puppet_jids[puppet]

        def match(m: Message) -> bool:
            return m.type == "chat" and m.frm.split("/")[0] == jid and m.body == text
        await self.users[user].wait_message(match, what=f"a DM from {jid}")

    async def wait_joined(self, chat: str, puppet: str) -> None:
        observer = self.users[self.chats[chat][0]]

        def match(p: Presence) -> bool:
            return p.frm == f"{chat}/{puppet}" and p.available
        await observer.wait_presence(match, what=f"{puppet} joining {chat}")

    async def rename(self, user: str, chat: str) -> str:
        new = f"n{uuid.uuid4().hex[:7]}"
        xmpp = self.users.pop(user)
        seen = len(xmpp.presences)
        xmpp.client.make_presence(pto=f"{chat}/{new}").send()  # a MUC nick change (XEP-0045 7.6)
        await xmpp.wait_presence(lambda p: p.frm == f"{chat}/{new}" and stanzas.SELF in p.codes,
                                 what="the nick change", since=seen)
        self.users[new] = xmpp
        self.jids[new] = xmpp.jid
        self.nicks[xmpp.name] = new
        for nicks in self.chats.values():
            nicks[:] = [new if n == user else n for n in nicks]
        return new

    async def set_topic(self, user: str, chat: str, topic: str) -> None:
        self.users[user].set_subject(chat, topic)

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        for user in self.users.values():
            user.client.abort()
        prosody = self.xs.prosody
        await asyncio.to_thread(prosody.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(prosody.restart)
            old = dict(self.users)
            self.users.clear()
            for nick, user in old.items():
                await self._connect(user.name, nick)
            for chat, members in self.chats.items():
                for nick in members:
                    await self._rejoin(self.users[nick], chat, nick)

    async def _rejoin(self, user: XmppUser, chat: str, nick: str) -> None:
        """Join asking for the room's recent history: the bridge may deliver what it kept during
        the outage before this client is back in the room."""
        presence = user.client.make_presence(pto=f"{chat}/{nick}")
        presence.append(ET.Element(f"{{{stanzas.NS_MUC}}}x"))
        presence.send()
        await user.wait_presence(lambda p: p.frm == f"{chat}/{nick}" and stanzas.SELF in p.codes,
                                 what=f"self-presence in {chat}")

    def formatted_samples(self) -> tuple[str, str, str, str, str]:
        # The plain body keeps the styling marks (XEP-0393 asks that of clients that cannot style).
        return ("*bold* _italic_ `code`", "*bold* _italic_ `code`",
                "<strong>bold</strong> <em>italic</em> <code>code</code>",
                "<b>bold</b> <i>it</i>", "*bold* _it_")

    def unformatted_rendering(self) -> str:
        raise NotImplementedError("caps.formatting is True")

    async def close(self) -> None:
        for user in self.users.values():
            await user.__aexit__(None, None, None)


@pytest.fixture
async def harness(xmpp_stack: XmppStack) -> AsyncIterator[XmppHarness]:  # noqa: F811
    h = XmppHarness(xmpp_stack)
    yield h
    await h.close()


class TestXmppConformance(ConformanceSuite):
    """The kit against the XMPP connector and a real Prosody."""
