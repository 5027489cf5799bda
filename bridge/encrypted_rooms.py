"""Encrypted rooms, until the bridge holds keys of its own: nothing of it posts plaintext there.

A room whose state has `m.room.encryption` expects every message to be encrypted; a plaintext
message from a ghost would sit on the homeserver readable by its admins, which the room's
members chose to avoid. So a ghost invited to such a room says why it cannot stay and leaves,
a portal whose room turns encryption on stops being bridged, and an encrypted message in a
portal gets a notice to its sender instead of silence. Those notices are the one deviation
from "no plaintext": they carry nothing the users wrote, only why the bridge is leaving.
"""

from __future__ import annotations

from typing import Any

from mautrix.appservice import IntentAPI
from mautrix.client.state_store import MemoryStateStore, StateStore
from mautrix.errors import MatrixError
from mautrix.types import EventType, RoomEncryptionStateEventContent, RoomID, StateEvent

CANNOT_READ = "the bridge cannot read encrypted rooms yet"
# Element's wording for the switch, so users find it.
START_UNENCRYPTED = "start a new chat with 'Enable end-to-end encryption' turned off"


def ghost_notice(remote_name: str, network: str) -> str:
    """What a ghost says in an encrypted chat it was invited to, before it leaves."""
    return (f"This chat is encrypted, and {CANNOT_READ}, so {remote_name} on {network} would never "
            f"see your messages. To talk to them, {START_UNENCRYPTED}.")


def portal_notice(name: str, network: str) -> str:
    """What the portal hears when encryption was turned on in it: it is bridged no more."""
    return (f"Encryption was turned on in this room, and {CANNOT_READ}: it is no longer bridged to "
            f"{name} on {network}.")


def new_dm_notice(remote_name: str, network: str) -> str:
    """What a ghost says in the private chat it just made, when the homeserver encrypted it
    anyway (Synapse's `encryption_enabled_by_default_for_room_type`): the message is not shown."""
    return (f"{remote_name} on {network} wrote to you, but your homeserver makes every new chat "
            f"encrypted, and {CANNOT_READ}, so their message cannot be shown here. To talk to them, "
            f"{START_UNENCRYPTED}.")


def message_notice(sender: str, network: str) -> str:
    """The answer to an encrypted message in a portal (which has no encryption in its state)."""
    return (f"{sender}: your message was encrypted, and {CANNOT_READ}, so it was not sent to "
            f"{network}. Please send it again without encryption.")


def invite_is_encrypted(evt: StateEvent) -> bool:
    """Whether an invite's stripped room state (what the homeserver shows invitees) says the
    room is encrypted; Synapse includes `m.room.encryption` there by default."""
    unsigned: Any = evt.unsigned
    stripped = getattr(unsigned, "invite_room_state", None) or []
    for item in stripped:
        item_type = getattr(item, "type", None) or (item.get("type") if isinstance(item, dict) else None)
        if str(item_type) == "m.room.encryption":
            return True
    return False


async def room_is_encrypted(intent: IntentAPI, state_store: StateStore, room_id: RoomID) -> bool:
    """From the state cache, or asked of the homeserver once (the cache only knows events the
    bridge has seen since it started: a room's encryption may predate any of its users'
    presence, or the bridge's last restart). "Not encrypted" is cached too, until an
    `m.room.encryption` event for the room replaces it."""
    known = await state_store.is_encrypted(room_id)
    if known is not None:
        return known
    try:
        content = await intent.get_state_event(room_id, EventType.ROOM_ENCRYPTION)
    except MatrixError:
        _known_unencrypted(state_store, room_id)
        return False  # not found, or not visible to us: nothing says it is encrypted
    if not isinstance(content, RoomEncryptionStateEventContent) or not content.algorithm:
        _known_unencrypted(state_store, room_id)
        return False
    await state_store.set_encryption_info(room_id, content)
    return True


def _known_unencrypted(state_store: StateStore, room_id: RoomID) -> None:
    # mautrix's memory store keeps None for "known: not encrypted" (is_encrypted -> False);
    # its update_state overwrites it when an m.room.encryption event arrives.
    if isinstance(state_store, MemoryStateStore):
        state_store.encryption.setdefault(room_id, None)
