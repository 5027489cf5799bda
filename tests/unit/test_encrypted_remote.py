"""Remote -> Matrix never posts plaintext into an encrypted room, also when the state cache
knows nothing (after a restart) and when the homeserver encrypts a new DM by its own rule.
The homeserver is faked: only what RemoteToMatrix asks of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mautrix.errors import MNotFound
from mautrix.types import EventType, RoomEncryptionStateEventContent

from bridge.appservice.server import MemoryASStateStore
from bridge.doors import Verdict
from bridge.permissions import Level
from bridge.portals import PortalInfo
from bridge.remote_to_matrix import RemoteToMatrix
from connectors.api import ChatKind, ChatRef, MessageKind, RemoteMessage, RemoteUser


class FakeIntent:
    def __init__(self, hs: FakeHomeserver, mxid: str) -> None:
        self.hs, self.mxid = hs, mxid

    async def get_state_event(self, room_id: str, event_type: EventType, state_key: str = "") -> Any:
        self.hs.state_queries += 1
        if event_type == EventType.ROOM_ENCRYPTION and room_id in self.hs.encrypted:
            return RoomEncryptionStateEventContent.deserialize({"algorithm": "m.megolm.v1.aes-sha2"})
        raise MNotFound(404, "no such state")

    async def send_message_event(self, room_id: str, event_type: EventType, content: Any, **_: Any) -> str:
        self.hs.posted.append((room_id, self.mxid, content.serialize() if hasattr(content, "serialize") else content))
        return f"$e{len(self.hs.posted)}"

    async def ensure_joined(self, room_id: str, **_: Any) -> None:
        pass

    async def create_room(self, **_: Any) -> str:
        room_id = "!new:hs"
        if self.hs.encrypt_new_rooms:  # Synapse's encryption_enabled_by_default_for_room_type
            self.hs.encrypted.add(room_id)
        return room_id

    async def leave_room(self, room_id: str, reason: str | None = None) -> None:
        self.hs.left.append((room_id, self.mxid))


class FakeHomeserver:
    def __init__(self) -> None:
        self.encrypted: set[str] = set()
        self.encrypt_new_rooms = False
        self.state_queries = 0
        self.posted: list[tuple[str, str, dict]] = []
        self.left: list[tuple[str, str]] = []


def _bridge(hs: FakeHomeserver, portals: dict[ChatRef, PortalInfo]) -> Any:
    stopped: list[str] = []
    notices: list[tuple[str, str]] = []

    async def stop_bridging_encrypted(portal: PortalInfo) -> None:
        stopped.append(portal.room_id)
        portals.pop(portal.chat, None)

    async def ensure(network: str, user: RemoteUser) -> FakeIntent:
        return FakeIntent(hs, f"@{network}_{user.id}:hs")

    async def send_notice_as(intent: FakeIntent, room_id: str, text: str, reply_to: str | None = None) -> None:
        notices.append((room_id, text))

    async def add(network: str, chat: ChatRef, room_id: str, name: str) -> PortalInfo:
        portal = _portal(room_id, chat)
        portals[chat] = portal
        return portal

    net = SimpleNamespace(max_new_dms_per_hour=10, max_new_dms_per_sender_per_hour=10)
    return SimpleNamespace(
        az=SimpleNamespace(state_store=MemoryASStateStore(), intent=FakeIntent(hs, "@bot:hs")),
        portals=SimpleNamespace(by_chat=lambda network, chat: portals.get(chat), add=add),
        ghosts=SimpleNamespace(intent=lambda mxid: FakeIntent(hs, mxid), ensure=ensure,
                               mxid=lambda network, rid: f"@{network}_{rid}:hs"),
        doors=SimpleNamespace(check=lambda *a: Verdict(allowed=True, level=Level.USER)),
        config=SimpleNamespace(networks={"libera": net}),
        networks={"libera": SimpleNamespace(connector=SimpleNamespace(supports_edits=False))},
        bot=SimpleNamespace(send_notice_as=send_notice_as),
        stop_bridging_encrypted=stop_bridging_encrypted, stopped=stopped, notices=notices,
    )


def _portal(room_id: str, chat: ChatRef) -> PortalInfo:
    return PortalInfo(id=1, network="libera", chat=chat, room_id=room_id, name=chat.id, topic=None)


def _message(chat: ChatRef, text: str = "the reply") -> RemoteMessage:
    return RemoteMessage(chat=chat, sender=RemoteUser("bob", "bob"), kind=MessageKind.TEXT, text=text)


async def test_after_a_restart_an_encrypted_portal_is_asked_about_not_posted_to() -> None:
    # The portal's room turned encryption on; the bridge restarted since, so its state cache
    # is empty: the homeserver must be asked before the first remote line goes out.
    hs = FakeHomeserver()
    for chat, room in ((ChatRef("#chan"), "!chan:hs"), (ChatRef("bob", ChatKind.DM, "@alice:hs"), "!dm:hs")):
        hs.encrypted.add(room)
        bridge = _bridge(hs, {chat: _portal(room, chat)})
        await RemoteToMatrix(bridge).handle("libera", _message(chat))
        assert bridge.stopped == [room]
        # (a private message then opens a new, unencrypted chat: see _leave_if_encrypted)
        assert [posted for posted in hs.posted if posted[0] == room] == []


async def test_an_unencrypted_portal_is_asked_about_once() -> None:
    hs = FakeHomeserver()
    chat = ChatRef("#chan")
    bridge = _bridge(hs, {chat: _portal("!chan:hs", chat)})
    handler = RemoteToMatrix(bridge)
    for n in range(3):
        await handler.handle("libera", _message(chat, f"line {n}"))
    assert [p[2]["body"] for p in hs.posted] == ["line 0", "line 1", "line 2"]
    assert hs.state_queries == 1  # "not encrypted" is remembered
    # ... until the room says otherwise.
    await bridge.az.state_store.set_encryption_info("!chan:hs", {"algorithm": "m.megolm.v1.aes-sha2"})
    await handler.handle("libera", _message(chat, "line 3"))
    assert bridge.stopped == ["!chan:hs"] and len(hs.posted) == 3


async def test_a_new_dm_the_homeserver_encrypted_gets_a_notice_not_the_message() -> None:
    hs = FakeHomeserver()
    hs.encrypt_new_rooms = True
    bridge = _bridge(hs, {})
    chat = ChatRef("bob", ChatKind.DM, "@alice:hs")
    await RemoteToMatrix(bridge).handle("libera", _message(chat, "my secret reply"))
    assert hs.posted == []
    assert bridge.notices and "encrypted" in bridge.notices[0][1] and "my secret reply" not in bridge.notices[0][1]
    assert hs.left == [("!new:hs", "@libera_bob:hs")]
    assert bridge.portals.by_chat("libera", chat) is None  # no portal was stored
