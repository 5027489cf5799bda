"""Echo: a toy network, as a complete Rapture connector in one file.

Every chat is a room where the remote user `echo-bot` repeats what a puppet says. The network
lives in the bridge process; tests (or `nc`) reach it on the loopback TCP `port`, one line each:
in:  `chat|user|text` (user says text in chat; chat `@mxid` is a DM to that Matrix user; text
     may be `/me x`, `/notice x`, `/join`, `/part reason`, `/nick new`, `/topic t`), or
     `!down` / `!up` (the whole network goes away / comes back).
out: `chat|name|what|text` for what puppets do, `what` being m.text, m.emote, m.notice, join,
     part or topic; a DM's chat is `~user`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

from connectors.api import (
    ChatKind, ChatRef, ConfigKey, ConnectorInfo, LoginInfo, LoginState, MessageKind, NetworkClient,
    NetworkConnector, OutgoingMessage, RemoteEvent, RemoteJoin, RemoteLeave, RemoteMembers, RemoteMessage,
    RemoteRename, RemoteTopic, RemoteUser, Role, SendError,
)

log = logging.getLogger("rapture.echo")
NAME = re.compile(r"[a-z0-9][a-z0-9._\-\[\]]{0,31}")
MAX_LINE = 1024 * 1024  # a longer line drops its client, never crashes the network
COMMANDS = {"/me ": MessageKind.EMOTE, "/notice ": MessageKind.NOTICE}


class EchoClient(NetworkClient):
    """One Matrix user's puppet on the echo network. Never raises but from `send`."""

    def __init__(self, network: EchoConnector, login: LoginInfo) -> None:
        self.net, self.mxid, self._name = network, login.mxid, login.nick or login.localpart
        self._chats: set[str] = set()
        self._online = False  # wants to be connected; `connected` also needs the network up

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        return self._online and self.net.up

    async def connect(self) -> None:
        self._online = True
        self.came_back()

    def came_back(self) -> None:
        """Report CONNECTED (the core then flushes this login's outbox) and rejoin every chat."""
        if self.connected:
            self.net.ctx_state(self.mxid, LoginState.CONNECTED)
            for chat in sorted(self._chats):
                self.net.write(chat, self._name, "join", "")

    async def disconnect(self, reason: str = "") -> None:
        for chat in sorted(self._chats):
            self.net.write(chat, self._name, "part", reason)
        self._online = False  # joins are kept: `connect` rejoins
        self.net.ctx_state(self.mxid, LoginState.DISCONNECTED, reason)

    async def join(self, chat_id: str, key: str = "") -> None:
        if chat_id not in self._chats and self.connected:
            self.net.write(chat_id, self._name, "join", "")
        self._chats.add(chat_id)

    async def part(self, chat_id: str, reason: str = "") -> None:
        if chat_id in self._chats and self.connected:
            self.net.write(chat_id, self._name, "part", reason)
        self._chats.discard(chat_id)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> None:
        """Hand the message to the wire, then let echo-bot repeat it (channels only)."""
        if not self.connected:
            raise SendError("the echo network is down", retriable=True)
        target = f"~{chat.id}" if chat.kind is ChatKind.DM else chat.id
        for line in message.text.splitlines() or [""]:
            self.net.write(target, self._name, message.kind.value, line)
        if chat.kind is ChatKind.CHANNEL:
            self.net.queue(RemoteMessage(chat=chat, sender=self.net.bot, kind=message.kind, text=message.text))

    async def set_topic(self, chat_id: str, topic: str) -> None:
        self.net.write(chat_id, self._name, "topic", topic)  # the core sets the Matrix topic itself

    def chats(self) -> Sequence[str]:
        return sorted(self._chats)


class EchoConnector(NetworkConnector):
    """The echo network. `start` opens the line server; everything else is in memory."""

    info = ConnectorInfo(name="echo", display_name="Echo")

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        return (
            ConfigKey(path="port", kind=int, required=True, doc="loopback TCP port of the line protocol",
                      check=lambda p: None if 0 < p < 65536 else "must be a TCP port (1-65535)"),
            ConfigKey(path="bot_name", kind=str, default="echo-bot", doc="who repeats what puppets say"),
        )

    def __init__(self, network: str, options: dict[str, Any], ctx: Any = None) -> None:
        super().__init__(network, options, ctx)
        name = str(options.get("bot_name") or "echo-bot")
        self.bot = RemoteUser(name.lower(), name)
        self.up = True
        self.clients: dict[str, EchoClient] = {}
        self.members: dict[str, dict[str, RemoteUser]] = {}  # chat -> remote users who joined it
        self._peers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", int(self.options["port"]),
                                                  limit=MAX_LINE)

    async def stop(self) -> None:
        self._server and self._server.close()
        for peer in list(self._peers):
            peer.close()

    def normalize_chat(self, name: str) -> str | None:
        return name.lower() if NAME.fullmatch(name.lower()) else None

    normalize_user = normalize_chat

    async def open_chat(self, chat_id: str) -> None:
        """The portal is new: tell the core who is already there (echo-bot always is)."""
        users = [self.bot, *self.members.get(chat_id, {}).values()]
        self.queue(RemoteMembers(chat=ChatRef(chat_id), members=tuple((u, Role.MEMBER) for u in users)))

    def make_client(self, login: LoginInfo) -> NetworkClient:
        self.clients[login.mxid] = client = EchoClient(self, login)  # a new one each time it is asked
        return client

    async def relay(self, chat: ChatRef, message: OutgoingMessage) -> None:
        self.write(chat.id, self.bot.name, message.kind.value, f"<{message.sender_name}> {message.text}")

    def queue(self, event: RemoteEvent) -> None:
        self.ctx and self.ctx.queue_remote_event(event)

    def ctx_state(self, mxid: str, state: LoginState, message: str = "") -> None:
        self.ctx and self.ctx.login_state(mxid, state, message)

    def write(self, chat: str, name: str, what: str, text: str) -> None:
        line = f"{chat}|{name}|{what}|{text}".replace("\r", " ").replace("\n", " ").encode() + b"\n"
        for peer in list(self._peers):
            peer.write(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._peers.add(writer)
        try:
            for _ in range(10**9):  # until the peer hangs up; a line over MAX_LINE ends it too
                raw = await reader.readline()
                if not raw:
                    break
                self._handle(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
        except (ConnectionError, ValueError) as exc:
            log.debug("line client dropped: %s", exc)
        finally:
            self._peers.discard(writer)
            writer.close()

    def _handle(self, line: str) -> None:
        if line in ("!down", "!up"):
            self.up = line == "!up"
            for client in self.clients.values():
                if self.up:
                    client.came_back()
                elif client._online:
                    self.ctx_state(client.mxid, LoginState.DISCONNECTED, "the echo network went down")
            return
        chat_name, _, rest = line.partition("|")
        user_name, _, text = rest.partition("|")
        user_id, chat_id = self.normalize_user(user_name), self.normalize_chat(chat_name)
        if user_id is None or not (chat_id or chat_name.startswith("@")):
            return log.debug("ignored line %r", line[:100])
        chat = ChatRef(user_id, ChatKind.DM, chat_name) if chat_name.startswith("@") else ChatRef(chat_id or "")
        user = RemoteUser(user_id, user_name)
        command, _, arg = text.partition(" ")
        members = self.members.setdefault(chat.id, {})
        if text == "/join":
            members[user.id] = user
            self.queue(RemoteJoin(chat=chat, user=user))
        elif command == "/part":
            members.pop(user.id, None)
            self.queue(RemoteLeave(chat=chat, user=user, reason=arg))
        elif command == "/nick" and self.normalize_user(arg):
            members.pop(user.id, None)
            new = members[arg.lower()] = RemoteUser(arg.lower(), arg)
            self.queue(RemoteRename(chat=chat, old=user, new=new))
        elif command == "/topic":
            self.queue(RemoteTopic(chat=chat, topic=arg, changed_by=user))
        else:
            kind = next((k for prefix, k in COMMANDS.items() if text.startswith(prefix)), MessageKind.TEXT)
            body = text.split(" ", 1)[1] if kind is not MessageKind.TEXT else text
            self.queue(RemoteMessage(chat=chat, sender=user, kind=kind, text=body))
