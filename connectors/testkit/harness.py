"""What a connector author implements so the conformance scenarios can drive their network."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.api import MessageKind

Event = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What the network can do; scenarios a network cannot support are skipped, not failed.

    `formatting` needs `Harness.formatted_samples`. `max_bad_input` is the size of the
    oversized message the bad-input scenario sends (networks with line limits cut it earlier).
    """

    emotes: bool = True
    notices: bool = True
    formatting: bool = False
    topic: bool = True
    rename: bool = True
    dm: bool = True
    reconnect: bool = True
    raw_bytes: bool = True  # `Harness.say_bytes` can put invalid UTF-8 on the wire
    max_bad_input: int = 100_000


class MatrixClient(Protocol):
    """A Matrix user's client, as `tests/e2e/matrix.py`'s TestClient offers it. Every wait is bounded."""

    user_id: str

    async def join(self, room: str) -> str: ...
    async def send_text(self, room_id: str, body: str, msgtype: str = "m.text") -> str: ...
    async def send_content(self, room_id: str, content: dict[str, Any]) -> str: ...
    async def create_room(self, *, invite: list[str] = ..., is_direct: bool = ...) -> str: ...
    async def wait_for_invite(self, timeout: float = ...) -> str: ...
    async def wait_for_membership(self, room_id: str, user_id: str, membership: str,
                                  timeout: float = ...) -> None: ...
    async def wait_for_event(self, room_id: str, match: Callable[[Event], bool], *,
                             timeout: float = ..., what: str = ...) -> Event: ...
    async def state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]: ...


class Harness(Protocol):
    """Drives the remote side of one configured network of a running bridge.

    Remote users are named by the strings `new_user` returns (their display names); chats
    by what `new_chat` returns. Methods that observe (`wait_*`) raise `TimeoutError` after a
    bounded wait. The harness owns every remote connection it opens and closes them in `close`.
    """

    caps: Capabilities

    def matrix_client(self) -> AbstractAsyncContextManager[MatrixClient]:
        """A fresh Matrix user allowed to use the bridge, as a started client."""
        ...

    def alias(self, chat: str) -> str:
        """The portal alias of a chat (`#net_chat:domain`)."""
        ...

    def ghost(self, user: str) -> str:
        """The MXID of a remote user's ghost."""
        ...

    def puppet_name(self, mxid: str) -> str:
        """The remote name the bridge gives a Matrix user's puppet."""
        ...

    async def new_chat(self) -> str: ...

    async def new_user(self) -> str:
        """A new remote user, connected and ready, in no chat yet."""
        ...

    async def join(self, user: str, chat: str) -> None: ...

    async def leave(self, user: str, chat: str, reason: str) -> None: ...

    async def say(self, user: str, chat: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        """The remote user says plain `text` in the chat (as an emote or notice when asked)."""
        ...

    async def say_bytes(self, user: str, chat: str, data: bytes) -> None:
        """Put `data` on the wire as the body of a message, unchecked (invalid UTF-8 too)."""
        ...

    async def say_dm(self, user: str, mxid: str, text: str) -> None:
        """The remote user writes privately to the puppet of Matrix user `mxid`."""
        ...

    async def wait_said(self, chat: str, puppet: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        """Until a user in the chat sees `puppet` say `text` (as it appears on the network)."""
        ...

    async def wait_dm(self, user: str, puppet: str, text: str) -> None:
        """Until remote `user` gets `text` privately from `puppet`."""
        ...

    async def wait_joined(self, chat: str, puppet: str) -> None:
        """Until the puppet is seen joining the chat."""
        ...

    async def rename(self, user: str, chat: str) -> str:
        """Give the remote user a new name; returns it. `chat` is one the user is in."""
        ...

    async def set_topic(self, user: str, chat: str, topic: str) -> None: ...

    def outage(self) -> AbstractAsyncContextManager[None]:
        """The remote server is unreachable inside the block; on exit it is back and the
        harness's own users are connected again and back in their chats."""
        ...

    def formatted_samples(self) -> tuple[str, str, str, str, str]:
        """For the formatting round trip: (remote raw text, its Matrix body, its Matrix HTML,
        a Matrix HTML message, how that message appears on the network)."""
        ...

    def unformatted_rendering(self) -> str:
        """For a network without formatting (`caps.formatting` false): how the Matrix message
        `<b>bold</b> <i>it</i>` (plain body `bold it`) appears on the network."""
        ...

    async def close(self) -> None: ...
