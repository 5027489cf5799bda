"""Matrix -> remote: messages, membership and topics in portal rooms; DMs opened with ghosts."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from mautrix.types import Membership, MessageEvent, StateEvent

from connectors.api import ChatKind, ChatRef, OutgoingMessage, SendError

from bridge.convert import to_outgoing
from bridge.doors import Door
from bridge.encrypted_rooms import ghost_notice, invite_is_encrypted, room_is_encrypted
from bridge.permissions import Level
from bridge.portals import PortalInfo

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.matrix")


class MatrixToRemote:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    # -- messages ----------------------------------------------------------------------------
    async def message(self, event: MessageEvent, portal: PortalInfo) -> None:
        bridge = self.bridge
        runtime = bridge.networks[portal.network]
        sender = event.sender
        level = bridge.config.permissions.level_for(sender)
        content: dict[str, Any] = event.content.serialize()
        body = content.get("body")
        if isinstance(body, str) and bridge.bot.strip_prefix(body) is not None:
            await bridge.bot.handle_command(event.room_id, sender, event.event_id, bridge.bot.strip_prefix(body) or "",
                                            content=content)
            return
        if isinstance(body, str) and await bridge.bot.guard_secret(event.room_id, sender, event.event_id, body,
                                                                   content):
            return  # `storepass ...` without the prefix, typed in the wrong room: not sent on
        name = await self._sender_name(event.room_id, sender)
        message = to_outgoing(content, event_id=event.event_id, sender_name=name,
                              homeserver=bridge.config.homeserver_address,
                              mention_name=lambda mxid: self.remote_name(portal.network, mxid))
        if message is None:
            return
        # A long message is not flooded onto a line-based network (the connector applies it).
        message = dataclasses.replace(message, max_lines=bridge.config.max_message_lines)
        try:
            if level >= Level.USER:
                await runtime.logins.send(sender, event.room_id, portal.chat, message)
            elif level == Level.RELAY and runtime.config.relay and portal.chat.kind is ChatKind.CHANNEL:
                await runtime.connector.relay(portal.chat, message)
            else:
                await bridge.notify(portal, f"{sender}: your message was not sent to {portal.network}: "
                                    "you do not have permission to talk through this bridge.",
                                    reply_to=event.event_id)
        except SendError as exc:
            await self.report_failure(portal.room_id, sender, message, str(exc))

    async def report_failure(self, room_id: str, sender: str, message: OutgoingMessage, why: str) -> None:
        portal = self.bridge.portals.by_room(room_id)
        if portal is None:
            return
        excerpt = message.text if len(message.text) <= 80 else message.text[:77] + "..."
        await self.bridge.notify(
            portal, f"{sender}: your message “{excerpt}” could not be delivered to {portal.network}: {why}.",
            reply_to=message.event_id or None,
        )

    async def _sender_name(self, room_id: str, mxid: str) -> str:
        try:
            member = await self.bridge.az.intent.get_room_member_info(room_id, mxid)
            if member is not None and member.displayname:
                return member.displayname
        except Exception:
            pass
        return mxid[1:].split(":", 1)[0]

    def remote_name(self, network: str, mxid: str) -> str | None:
        """What a mention of `mxid` is called on `network`: a ghost's nick or a puppet's nick."""
        parsed = self.bridge.ghosts.parse(mxid)
        if parsed is not None and parsed[0] == network:
            return parsed[1]
        client = self.bridge.networks[network].logins.clients.get(mxid)
        return client.name if client is not None else None

    # -- membership and topic --------------------------------------------------------------------
    async def member(self, event: StateEvent, portal: PortalInfo) -> None:
        bridge = self.bridge
        target = event.state_key
        membership = event.content.membership
        runtime = bridge.networks[portal.network]
        if portal.chat.kind is not ChatKind.CHANNEL:
            if membership in (Membership.LEAVE, Membership.BAN) and target == portal.chat.receiver:
                await bridge.close_dm(portal)
            return
        if bridge.ghosts.is_ghost(target):
            if membership in (Membership.LEAVE, Membership.BAN) and event.sender != target:
                await self._kick_remote(event, portal)
            return
        if bridge.is_bridge_user(target) or bridge.config.permissions.level_for(target) < Level.USER:
            return
        if membership == Membership.JOIN and event.sender == target:
            prev = getattr(event.unsigned, "prev_content", None)
            if prev is not None and getattr(prev, "membership", None) == Membership.JOIN:
                return  # a profile change, not a join
            try:
                await runtime.logins.join(target, portal.chat.id)
            except SendError as exc:  # e.g. the network's limit of connections is reached
                await bridge.notify(portal, f"{target}: you were not joined to {portal.name or portal.chat.id} "
                                            f"on {portal.network}: {exc}.")
        elif membership in (Membership.LEAVE, Membership.BAN):
            reason = getattr(event.content, "reason", None) or ""
            await runtime.logins.part(target, portal.chat.id, reason)

    async def _kick_remote(self, event: StateEvent, portal: PortalInfo) -> None:
        parsed = self.bridge.ghosts.parse(event.state_key)
        runtime = self.bridge.networks[portal.network]
        client = runtime.logins.clients.get(event.sender)
        if parsed is None or client is None:
            return
        reason = getattr(event.content, "reason", None) or ""
        try:
            await client.kick(portal.chat.id, parsed[1], reason)
        except SendError as exc:
            await self.bridge.notify(portal, f"Could not kick {parsed[1]} on {portal.network}: {exc}")

    async def topic(self, event: StateEvent, portal: PortalInfo) -> None:
        if self.bridge.is_bridge_user(event.sender):
            return
        topic = getattr(event.content, "topic", "") or ""
        if topic == (portal.topic or ""):
            return
        client = self.bridge.networks[portal.network].logins.clients.get(event.sender)
        if client is None:
            return
        try:
            await client.set_topic(portal.chat.id, topic)
            await self.bridge.portals.set_topic(portal, topic)
        except SendError as exc:
            await self.bridge.notify(portal, f"The topic could not be set on {portal.network}: {exc}")

    # -- DMs opened from Matrix ------------------------------------------------------------------
    async def ghost_invite(self, event: StateEvent) -> None:
        """A Matrix user invited a ghost: open a private chat with that remote user."""
        bridge = self.bridge
        parsed = bridge.ghosts.parse(event.state_key)
        if parsed is None:
            return
        network, remote_id = parsed
        verdict = bridge.doors.check(event.sender, Door.DM, network)
        if not verdict.allowed:
            # Checked before anything happens: no ghost is registered and no room joined for
            # someone who may not use the bridge (the invite is left unanswered).
            log.info("ignored %s's invite of %s: %s", event.sender, event.state_key, verdict.reason)
            return
        runtime = bridge.networks[network]
        intent = bridge.ghosts.intent(event.state_key)
        if runtime.connector.normalize_user(remote_id) is None:
            await intent.leave_room(event.room_id, reason="No such user on the network")
            return
        await bridge.ghosts.ensure(network, bridge.remote_user(network, remote_id))
        await intent.join_room(event.room_id)
        if invite_is_encrypted(event) or await room_is_encrypted(intent, bridge.az.state_store, event.room_id):
            # Every reply would be posted in the clear into a room its users chose to encrypt.
            await bridge.bot.send_notice_as(intent, event.room_id, ghost_notice(remote_id, network))
            await intent.leave_room(event.room_id, reason="Encrypted rooms are not supported yet")
            return
        chat = ChatRef(remote_id, ChatKind.DM, event.sender)
        existing = bridge.portals.by_chat(network, chat)
        if existing is not None and existing.room_id != event.room_id:
            await bridge.portals.remove(existing)  # the newest room wins
        if bridge.portals.by_room(event.room_id) is None:
            await bridge.portals.add(network, chat, event.room_id, remote_id)
        try:
            await runtime.logins.client_for(event.sender)
        except SendError as exc:  # no connection of their own (a limit): their messages will say so too
            await bridge.bot.send_notice_as(intent, event.room_id, f"{event.sender}: {exc}.")

