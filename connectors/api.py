"""The contract between Rapture's core and a network connector.

A connector is found through the `rapture.connectors` entry-point group; the entry point names
a `NetworkConnector` subclass. The core never imports a connector's modules directly, and a
connector never touches the database or Matrix directly: it only uses the `ConnectorContext`
the core hands it, and reports what happens on its network as the frozen `Remote*` events
below.

Vocabulary: a *chat* is a remote room (an IRC channel, or a one-to-one conversation with a
remote user); a *login* is one Matrix user's presence on the network (their puppet). Remote
ids are the connector's normalised form (IRC: case-folded by the server's CASEMAPPING); the
`name` next to them is what people see.

Contract rules that hold for every method below unless its docstring says otherwise:
- no method may block the event loop;
- methods of `NetworkClient` must not raise for network trouble: they raise `SendError`
  (with `retriable`) only from `send`, and report connection state through the context;
- the connector never persists anything itself: the core stores ids and messages.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

API_VERSION = (1, 0)


# -- configuration -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigKey:
    """One configuration key.

    `path` is dotted and relative to the section that holds it. `kind` is the expected Python
    type (or a tuple of types); `bool` never passes for `int`. `check` returns an error
    message for a value of the right type that is still wrong, or None when it is fine.
    `secret` marks a value (a password, a shared secret) the core keeps out of every log line.
    """

    path: str
    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    doc: str = ""
    check: Any = None  # Callable[[Any], str | None] | None
    secret: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorInfo:
    """What a connector says about itself."""

    name: str  # the value of `networks.<name>.connector`, e.g. "irc"
    display_name: str  # e.g. "IRC"
    api_version: tuple[int, int] = API_VERSION


def nick_template_error(value: str) -> str | None:
    """For a connector's `nick_template` key: the template of a puppet's remote name, which
    may use {localpart} and {displayname} of the Matrix user. None when fine."""
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(value) if n is not None]
    except ValueError as exc:
        return f"cannot parse template: {exc}"
    unknown = [n for n in names if n not in ("localpart", "displayname")]
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; allowed: {{localpart}}, {{displayname}}"
    if not names:
        return "must contain {localpart} or {displayname}"
    return None


# -- identities and chats --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RemoteUser:
    id: str  # normalised, stable while the user keeps this name
    name: str  # as displayed


class ChatKind(enum.Enum):
    CHANNEL = "channel"
    DM = "dm"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """A remote chat. For a DM, `id` is the other user's id and `receiver` the login's MXID."""

    id: str
    kind: ChatKind = ChatKind.CHANNEL
    receiver: str = ""


class Role(enum.IntEnum):
    """A remote user's standing in a chat; the core maps it to a Matrix power level."""

    MEMBER = 0
    VOICED = 1
    MODERATOR = 2


class MessageKind(enum.Enum):
    TEXT = "m.text"
    EMOTE = "m.emote"
    NOTICE = "m.notice"


# -- remote events (connector -> core) ---------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteMessage:
    chat: ChatRef
    sender: RemoteUser
    kind: MessageKind
    text: str  # plain text
    html: str | None = None  # Matrix HTML when the text had formatting or mentions
    timestamp_ms: int | None = None  # the network's own time (IRCv3 server-time), if known
    remote_id: str | None = None  # the network's message id, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteEdit:
    """A correction of an earlier `RemoteMessage` (e.g. XMPP XEP-0308).

    `target_id` is the `remote_id` of the message being corrected; `text`/`html` are the whole
    new content. The core turns it into a Matrix edit (`m.replace`) when it knows the target,
    else into a new message `* text`.
    """

    chat: ChatRef
    sender: RemoteUser
    target_id: str
    kind: MessageKind
    text: str
    html: str | None = None
    timestamp_ms: int | None = None
    remote_id: str | None = None  # the correction's own id


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteJoin:
    chat: ChatRef
    user: RemoteUser
    role: Role = Role.MEMBER


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteLeave:
    """A user left a chat: parted (reason), quit (reason), or was kicked (`kicked_by`)."""

    chat: ChatRef
    user: RemoteUser
    reason: str = ""
    kicked_by: RemoteUser | None = None
    is_puppet_of: str | None = None  # MXID when the one who left is a login's puppet


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRename:
    chat: ChatRef
    old: RemoteUser
    new: RemoteUser


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTopic:
    chat: ChatRef
    topic: str
    changed_by: RemoteUser | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRoleChange:
    chat: ChatRef
    user: RemoteUser
    role: Role
    is_puppet_of: str | None = None  # MXID when the user is a login's puppet


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteMembers:
    """The full member list of a chat, as first seen after joining (IRC: NAMES)."""

    chat: ChatRef
    members: tuple[tuple[RemoteUser, Role], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteNotice:
    """Something the users of a chat should know that is not a message (e.g. a netsplit)."""

    chat: ChatRef
    text: str


RemoteEvent = (
    RemoteMessage | RemoteEdit | RemoteJoin | RemoteLeave | RemoteRename | RemoteTopic | RemoteRoleChange
    | RemoteMembers | RemoteNotice
)


# -- Matrix side (core -> connector) ------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """A Matrix message for the network, already reduced to what a connector needs."""

    kind: MessageKind
    text: str  # plain body (reply fallback removed)
    html: str | None = None  # formatted body, if any (reply fallback removed)
    mentions: dict[str, str] = field(default_factory=dict)  # MXID -> remote name of a pill
    event_id: str = ""
    sender_name: str = ""  # display name, used by relays
    # For an edit: the Matrix event id of the message it replaces; `text`/`html` are then the
    # whole new content. Networks with corrections send one; others send "* text".
    edit_of: str = ""
    # At most this many lines on a line-based network (counted after long lines are split),
    # then one line saying how many were left out, and a `RemoteNotice` to the chat telling the
    # sender (a cut message must not look delivered); None: no limit. Set by the core from
    # `bridge.max_message_lines`.
    max_lines: int | None = None


class SendError(Exception):
    """Sending failed. `retriable` says whether the core should try again later."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class LoginState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"  # needs the user (bad credentials, banned)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginInfo:
    """What the core knows of a login when it asks the connector to build its client."""

    mxid: str
    localpart: str  # unique per user: `localpart:server` for a user of another homeserver
    displayname: str
    nick: str | None = None  # the remote name chosen earlier, if any
    username: str | None = None  # account/user name the user set, if any
    password: str | None = None  # decrypted by the core just for this; never log or store it
    client_cert: str | None = None  # PEM certificate + unencrypted key, decrypted likewise


class ConnectorContext(Protocol):
    """What the core gives a connector. All methods are safe to call from any coroutine."""

    network: str

    def queue_remote_event(self, event: RemoteEvent) -> None:
        """Queue an event for its portal; events of one chat are handled in call order."""

    def login_state(self, mxid: str, state: LoginState, message: str = "") -> None:
        """Report a login's connection state (the core flushes its outbox on CONNECTED)."""

    def login_renamed(self, mxid: str, name: str) -> None:
        """The login's remote name changed (collision handling, or the network changed it)."""

    def is_puppet(self, mxid: str) -> bool:
        """True when the MXID belongs to a Matrix user (not a ghost or the bot)."""

    def notify_user(self, mxid: str, text: str) -> None:
        """Tell a Matrix user something about their login (e.g. a refused password)."""


class NetworkClient:
    """One login's connection (a puppet). Built by `NetworkConnector.make_client`."""

    __slots__ = ()  # lets connectors keep many thousands of small, slotted clients

    mxid: str

    @property
    def name(self) -> str:
        """The login's current remote name (IRC nick)."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    async def connect(self) -> None:
        """Start connecting and return; state changes go to `ctx.login_state`."""
        raise NotImplementedError

    async def disconnect(self, reason: str = "") -> None:
        raise NotImplementedError

    async def join(self, chat_id: str, key: str = "") -> None:
        """Join a channel (again after every reconnect, until `part`); `key` if it has one."""
        raise NotImplementedError

    async def part(self, chat_id: str, reason: str = "") -> None:
        raise NotImplementedError

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> None:
        """Send or raise SendError. Must not return before the message is handed to the wire."""
        raise NotImplementedError

    async def set_topic(self, chat_id: str, topic: str) -> None:
        raise NotImplementedError

    async def kick(self, chat_id: str, user_id: str, reason: str = "") -> None:
        raise NotImplementedError

    def chats(self) -> Sequence[str]:
        """The channels this login is in (or is rejoining)."""
        raise NotImplementedError

    # Optional features: the core catches NotImplementedError and says "not supported".
    async def set_name(self, name: str) -> None:
        """Change the login's remote name; the result arrives via `ctx.login_renamed`."""
        raise NotImplementedError

    async def whois(self, name: str) -> list[str]:
        """Human-readable lines about a remote user; raises SendError when offline."""
        raise NotImplementedError

    async def reconnect(self, reason: str) -> None:
        """Disconnect with `reason` and connect again (rejoining everything)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentResult:
    """The answer of a chat's operators to a request to bridge their chat."""

    granted: bool
    by: str = ""  # the remote name of the operator who answered, if one did
    reason: str = ""  # why not, in words for the requester (no answer, "no", no operators...)


@runtime_checkable
class ConsentAsker(Protocol):
    """Optional: a connector that can ask a chat's operators whether it may be bridged.

    The core asks before a Matrix user who is not a bridge admin links a room to a chat; a
    network whose connector lacks this feature refuses such links.
    """

    async def ask_operators(self, chat_id: str, request: str, timeout: float) -> ConsentResult:
        """Ask the operators of `chat_id` privately whether `request` may happen.

        `request` is one line from the core saying who wants what (e.g. "@alice:example.org
        wants to bridge #chan to the Matrix room #room:example.org"); the connector adds how
        to answer. The first operator's yes within `timeout` seconds grants; a no, or no answer,
        refuses. Returns within `timeout` plus a few seconds.

        Must not: join the chat or otherwise make the bridge present in it (nothing is linked
        yet); ask anyone who is not an operator, or the bridge's own users (puppets); take an
        answer from anyone who was not asked; write the request unclean to the wire (it is
        Matrix text); raise (trouble on the network is a refusal with its reason).
        """
        ...


class NetworkConnector:
    """One instance serves one configured network.

    Subclasses set `info` and implement the methods below. Must not block the event loop in
    any method; must not raise from `stop()`.
    """

    info: ClassVar[ConnectorInfo]
    # Capabilities the core adapts to. `supports_edits`: remote messages carry ids and the
    # network sends `RemoteEdit`s, so the core keeps an id -> event mapping for them.
    supports_edits: ClassVar[bool] = False
    # A connector with tables of its own ships them as an Alembic branch: a directory of
    # revision files whose first revision has `down_revision = None`, a `branch_labels` of its
    # own, and `depends_on` the core revision it needs. `rapture db upgrade` applies it.
    migrations: ClassVar[str | None] = None

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        """Keys this connector accepts in its `networks.<name>` section, beyond the core's."""
        return ()

    def __init__(self, network: str, options: dict[str, Any], ctx: ConnectorContext | None = None) -> None:
        self.network = network
        self.options = options
        self.ctx = ctx

    async def start(self) -> None:
        """Start serving the network (the bridge's own presence; logins connect separately)."""

    def status(self) -> str:
        """A few words on the bridge's own presence on the network, for the `status` command."""
        return "unknown"

    async def stop(self) -> None:
        """Stop and release everything; must not raise."""

    def normalize_chat(self, name: str) -> str | None:
        """The normalised id of a chat name (`#Python` -> `#python`), or None if invalid."""
        return None

    def normalize_user(self, name: str) -> str | None:
        """The normalised id of a remote user name, or None if it cannot be one."""
        return None

    async def open_chat(self, chat_id: str) -> None:
        """Make the bridge present in a chat so its events flow (e.g. the bot joins)."""

    async def close_chat(self, chat_id: str) -> None:
        """Stop bridging a chat (unlink); the bridge's presence leaves it."""

    def make_client(self, login: LoginInfo) -> NetworkClient:
        """Build (do not connect) a login's client."""
        raise NotImplementedError

    async def relay(self, chat: ChatRef, message: OutgoingMessage) -> None:
        """Send a message on behalf of a Matrix user without a puppet; raises SendError."""
        raise SendError("this network has no relay", retriable=False)
