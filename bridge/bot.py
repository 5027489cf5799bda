"""The bridge bot: the Matrix user admins and users talk to in a DM (the control room).

It joins DMs from permitted users, answers commands there (every answer an m.notice in reply
to the command), refuses everyone else with a notice that says which level is needed, and
says plainly that encrypted rooms are not supported instead of failing silently.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from mautrix.appservice import IntentAPI
from mautrix.errors import MatrixError
from mautrix.types import (
    EventID,
    EventType,
    Format,
    Membership,
    MessageType,
    RoomID,
    StateEvent,
    TextMessageEventContent,
)
from sqlalchemy import delete

from connectors.api import ChatKind

from bridge.commands import CommandContext, CommandRegistry
from bridge.commands.admin import register_admin_commands
from bridge.commands.builtin import register_builtin
from bridge.commands.network import register_network_commands
from bridge.commands.registry import COMMAND_PREFIX
from bridge.commands.sensitive import content_secret, find_secret_command, secret_was_removed
from bridge.db.models import ControlRoom, MatrixUser
from bridge.encrypted_rooms import invite_is_encrypted
from bridge.permissions import Level

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.bot")

ENCRYPTION_NOTICE = (
    "This room is encrypted, and Rapture does not support encryption yet, so I cannot read "
    "anything here. Please start a new, unencrypted chat with me (in Element: turn "
    "'Enable end-to-end encryption' off when you create it)."
)


class BridgeBot:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.registry = CommandRegistry()
        register_builtin(self.registry)
        register_network_commands(self.registry)
        register_admin_commands(self.registry)
        self._control_rooms: dict[str, bool] = {}  # room id -> is a control room (cache)

    @property
    def intent(self) -> IntentAPI:
        return self.bridge.az.intent

    @property
    def mxid(self) -> str:
        return self.bridge.config.bot_mxid

    # -- invites ---------------------------------------------------------------------------
    async def handle_invite(self, evt: StateEvent) -> None:
        room_id, inviter = evt.room_id, evt.sender
        level = self.bridge.config.permissions.level_for(inviter)
        encrypted = invite_is_encrypted(evt)
        await self.intent.join_room(room_id)
        if level < Level.USER:
            await self._refuse_and_leave(room_id, inviter, level)
            return
        if encrypted:
            await self._send_notice(room_id, ENCRYPTION_NOTICE)
            await self.intent.leave_room(room_id, reason="Encryption is not supported yet")
            return
        await self._remember_control_room(inviter, room_id)
        await self._send_notice(
            room_id,
            "Hello! I am the Rapture bridge bot. Send 'help' for the list of commands.",
        )

    async def _refuse_and_leave(self, room_id: RoomID, user: str, level: Level) -> None:
        have = "no permission" if level == Level.NONE else f"level '{level.label}'"
        await self._send_notice(
            room_id,
            f"Sorry, {user} is not allowed to use this bridge: talking to the bot needs "
            f"permission level 'user', and you have {have}. Ask the bridge's admin to add you "
            "to bridge.permissions.",
        )
        await self.intent.leave_room(room_id, reason="Not permitted to use this bridge")

    async def handle_encryption_enabled(self, evt: StateEvent) -> None:
        """Someone turned encryption on in a room the bot is in: say so, then leave."""
        await self._send_notice(evt.room_id, ENCRYPTION_NOTICE)
        await self.intent.leave_room(evt.room_id, reason="Encryption is not supported yet")
        await self.forget_control_room(evt.room_id)

    async def _remember_control_room(self, mxid: str, room_id: str) -> None:
        async with self.bridge.sessions() as session, session.begin():
            user = await session.get(MatrixUser, mxid)
            if user is None:
                session.add(MatrixUser(mxid=mxid, control_room=room_id, meta={}))
            else:
                user.control_room = room_id
            if await session.get(ControlRoom, room_id) is None:
                session.add(ControlRoom(room_id=room_id, mxid=mxid))
        self._control_rooms[room_id] = True

    async def is_control_room(self, room_id: str) -> bool:
        """Every DM a permitted user opened with the bot takes commands, not only the latest."""
        known = self._control_rooms.get(room_id)
        if known is None:
            async with self.bridge.sessions() as session:
                known = await session.get(ControlRoom, room_id) is not None
            self._control_rooms[room_id] = known
        return known

    async def forget_control_room(self, room_id: str) -> None:
        self._control_rooms[room_id] = False
        async with self.bridge.sessions() as session, session.begin():
            await session.execute(delete(ControlRoom).where(ControlRoom.room_id == room_id))

    # -- commands --------------------------------------------------------------------------
    async def handle_command(self, room_id: RoomID, sender: str, event_id: str, text: str,
                             *, content: Any = None) -> None:
        """Run a command; `content` is the event's content, when the caller has it (it tells
        whether the intake removed a secret from a replayed event)."""
        level = self.bridge.config.permissions.level_for(sender)

        async def reply(message: str) -> None:
            await self._send_notice(room_id, message, reply_to=event_id)

        if await self.guard_secret(room_id, sender, event_id, text, content):
            return
        if level < Level.USER:
            have = "no permission" if level == Level.NONE else f"level '{level.label}'"
            await reply(f"Commands need permission level 'user'; you have {have}.")
            return
        ctx = CommandContext(
            sender=sender, room_id=room_id, event_id=event_id, level=level, args=[],
            reply=reply, bridge=self.bridge,
        )
        await self.registry.dispatch(text, ctx)

    # -- commands that carry a secret (see bridge/commands/sensitive.py) ------------------------
    async def guard_secret(self, room_id: str, sender: str, event_id: str, text: str,
                           content: Any = None) -> bool:
        """Refuse a credential command anywhere but the sender's private DM with the bot, and
        a secret command whose secret the intake removed (a replay after a crash). True when
        the command was answered here and must not run."""
        # The event's copies of the text (an edit's new content: relayed as "* ..." if this
        # refused nothing, where the intake already treated it as a secret); `text` alone
        # when there is no event content.
        found = content_secret(content) if isinstance(content, dict) else find_secret_command(text)
        removed = secret_was_removed(content)
        if found is None and not removed:
            return False
        if found is not None and found.credential:
            why = await self.not_private_because(room_id, sender)
            if why is not None:
                redacted = await self._redact_anyhow(room_id, event_id)
                await self._answer(room_id, _refusal(sender, found.name, why, self.mxid, redacted), event_id)
                log.info("refused %s from %s in %s: %s", found.name, sender, room_id, why)
                return True
        if removed:
            name = found.name if found is not None else text.split(None, 1)[0] if text.strip() else "command"
            if found is not None and found.credential:
                await self.try_redact(room_id, event_id)  # the handler never ran to do it
            await self._answer(
                room_id,
                f"Your '{name}' command arrived just before the bridge restarted, and the bridge "
                "never writes its secret to disk, so it was lost. Please send it again.",
                event_id,
            )
            return True
        return False

    def _dm_ghost(self, room_id: str) -> IntentAPI | None:
        """In a private chat with a remote user the bot is not a member; that user's ghost is."""
        portal = self.bridge.portals.by_room(room_id)
        if portal is None or portal.chat.kind is not ChatKind.DM:
            return None
        return self.bridge.ghosts.intent(self.bridge.ghosts.mxid(portal.network, portal.chat.id))

    async def _redact_anyhow(self, room_id: str, event_id: str) -> bool:
        if await self.try_redact(room_id, event_id):
            return True
        ghost = self._dm_ghost(room_id)
        if ghost is None:
            return False
        try:
            await ghost.redact(RoomID(room_id), EventID(event_id), reason="It contained a secret")
            return True
        except Exception:
            return False

    async def _answer(self, room_id: str, text: str, reply_to: str) -> None:
        await self.send_notice_as(self._dm_ghost(room_id) or self.intent, room_id, text, reply_to)

    async def not_private_because(self, room_id: str, sender: str) -> str | None:
        """Why `room_id` is not `sender`'s private DM with the bot (None when it is): a portal,
        a room that is not a control room, or a room anyone else is in or invited to."""
        if self.bridge.portals.by_room(room_id) is not None:
            # Commands are not relayed, but everyone in the room (and its servers) saw the message.
            return "this room is bridged, and everyone in it can read what you write here"
        if not await self.is_control_room(room_id):
            return "this is not your private chat with the bridge bot"
        try:
            members = await self.intent.get_room_members(
                RoomID(room_id), (Membership.JOIN, Membership.INVITE))
        except MatrixError as exc:
            log.warning("cannot list the members of %s: %s", room_id, exc)
            return "I could not check who else is in this room"
        others = sorted(set(members) - {sender, self.mxid})
        if others:
            return (f"other people are in this room ({len(others)} besides you and the bridge bot), "
                    "so it is not your private chat with it")
        return None

    async def try_redact(self, room_id: str, event_id: str) -> bool:
        """Remove a message that holds a secret, if the bot may; True when it did."""
        try:
            await self.intent.redact(room_id, event_id, reason="It contained a secret")
            return True
        except Exception:
            return False

    @staticmethod
    def strip_prefix(text: str) -> str | None:
        """The command in a portal message (`!rapture help` -> `help`), or None."""
        head, _, rest = text.strip().partition(" ")
        return rest.strip() if head.lower() == COMMAND_PREFIX else None

    async def _send_notice(self, room_id: RoomID, text: str, reply_to: str | None = None) -> None:
        await self.send_notice_as(self.intent, room_id, text, reply_to)

    async def send_notice_as(self, intent: IntentAPI, room_id: str, text: str,
                             reply_to: str | None = None) -> None:
        content = TextMessageEventContent(
            msgtype=MessageType.NOTICE,
            body=text,
            format=Format.HTML,
            formatted_body=_notice_html(text),
        )
        if reply_to:
            content.set_reply(reply_to)
        try:
            await intent.send_message_event(room_id, EventType.ROOM_MESSAGE, content)
        except MatrixError as exc:
            log.warning("could not send a notice to %s: %s", room_id, exc)


def _refusal(sender: str, command: str, why: str, bot: str, redacted: bool) -> str:
    # Neutral voice: in a private chat with a remote user, the ghost says it, not the bot.
    removal = ("Your message was removed, but others may have seen it first: if that secret is in "
               "use, change it." if redacted else
               "Your message could not be removed (the bridge lacks the power to delete messages "
               "here): delete it yourself, and change that secret if anyone else may have seen it.")
    return (f"{sender}: '{command}' was refused here: {why}. Nothing was stored. Send it only in "
            f"your private chat with the bridge bot ({bot}), with nobody else in it. {removal}")


def _notice_html(text: str) -> str:
    """Line breaks and indentation survive in clients that render the HTML body."""
    lines = [html.escape(line).replace("  ", "&nbsp;&nbsp;") for line in text.split("\n")]
    return "<br>".join(lines)


def is_bot_invite(evt: StateEvent, bot_mxid: str) -> bool:
    return (
        evt.type == EventType.ROOM_MEMBER
        and evt.state_key == bot_mxid
        and evt.content.membership == Membership.INVITE
    )
