"""What the bridge's own occupant (the bot) sees of each MUC, as remote events for the core.

The bot is the one listener of every bridged room: the component receives each groupchat
stanza once per occupant it hosts, and only the copy addressed to the bot is bridged, so
nothing is bridged twice. Occupants that are ours (the bot, puppets: any real JID on the
component's domain, or a nick a puppet is joining with) never become ghosts, and their
messages are not bridged back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.api import (
    ChatKind,
    ChatRef,
    RemoteEvent,
    RemoteJoin,
    RemoteLeave,
    RemoteMembers,
    RemoteMessage,
    RemoteNotice,
    RemoteRename,
    RemoteRoleChange,
    RemoteTopic,
    RemoteUser,
    Role,
)
from connectors.xmpp import stanzas
from connectors.xmpp.jids import occupant_id, parse
from connectors.xmpp.stanzas import Message, Presence
from connectors.xmpp.text import message_html, parse_body


def role_of(role: str, affiliation: str) -> Role:
    if role == "moderator" or affiliation in ("owner", "admin"):
        return Role.MODERATOR
    return Role.MEMBER


@dataclass
class Occupant:
    nick: str
    real_jid: str | None
    role: Role


@dataclass
class Room:
    jid: str
    nick: str  # the bot's nick here
    joined: bool = False
    occupants: dict[str, Occupant] = field(default_factory=dict)  # nick -> occupant
    renamed: dict[str, Occupant] = field(default_factory=dict)  # new nick -> old occupant (303)


# (room, nick, real JID or None) -> MXID of the puppet behind that occupant, if any
PuppetOf = Callable[[str, str, str | None], str | None]


class RoomTracker:
    def __init__(self, *, emit: Callable[[RemoteEvent], None], component_domain: str,
                 puppet_of: PuppetOf, edit_event: Any = None,
                 on_bot_removed: Callable[[str, str], None] | None = None) -> None:
        self.emit = emit
        self.component_domain = component_domain
        self.puppet_of = puppet_of
        self.edit_event = edit_event  # connectors.api.RemoteEdit, once the contract has it
        self.on_bot_removed = on_bot_removed
        self.rooms: dict[str, Room] = {}

    # -- queries -------------------------------------------------------------------------------
    def user(self, room: str, nick: str, real_jid: str | None) -> RemoteUser:
        return RemoteUser(real_jid or occupant_id(room, nick), nick)

    def occupant(self, room: str, nick: str) -> Occupant | None:
        state = self.rooms.get(room)
        return state.occupants.get(nick) if state is not None else None

    def nick_of(self, room: str, user_id: str) -> str | None:
        """The nick in `room` of the user a ghost stands for (a real JID or an occupant JID)."""
        state = self.rooms.get(room)
        if state is None:
            return None
        for nick, occ in state.occupants.items():
            if self.user(room, nick, occ.real_jid).id == user_id:
                return nick
        return None

    def last_nick(self, real_jid: str) -> str | None:
        """A nick the user with this real JID has in some room (a DM ghost's display name)."""
        for state in self.rooms.values():
            for nick, occ in state.occupants.items():
                if occ.real_jid == real_jid:
                    return nick
        return None

    def is_ours(self, room: str, nick: str, real_jid: str | None) -> bool:
        if real_jid is not None:
            jid = parse(real_jid)
            if jid is not None and jid.domain == self.component_domain:
                return True
        state = self.rooms.get(room)
        if state is not None and nick == state.nick:
            return True
        return self.puppet_of(room, nick, real_jid) is not None

    # -- the bot's joins -------------------------------------------------------------------------
    def joining(self, room: str, nick: str) -> None:
        self.rooms[room] = Room(room, nick)

    def forget(self, room: str) -> None:
        self.rooms.pop(room, None)

    def reset(self) -> None:
        """The component's stream dropped: what we knew of the rooms is stale until we rejoin."""
        self.rooms.clear()

    def joined(self, room: str) -> bool:
        state = self.rooms.get(room)
        return state is not None and state.joined

    # -- presence addressed to the bot -----------------------------------------------------------
    def presence(self, p: Presence) -> None:
        state = self.rooms.get(p.room)
        if state is None or p.muc is None or not p.nick:
            return
        if stanzas.SELF in p.codes:
            self._self_presence(state, p)
            return
        if not state.joined:
            if p.available:
                state.occupants[p.nick] = Occupant(p.nick, p.muc.real_jid, role_of(p.muc.role, p.muc.affiliation))
            else:
                state.occupants.pop(p.nick, None)
            return
        if p.available:
            self._available(state, p)
        else:
            self._unavailable(state, p)

    def _chat(self, room: str) -> ChatRef:
        return ChatRef(room, ChatKind.CHANNEL)

    def _self_presence(self, state: Room, p: Presence) -> None:
        assert p.muc is not None
        if p.available:
            state.nick = p.nick
            if not state.joined:
                state.joined = True
                members = tuple(
                    (self.user(state.jid, o.nick, o.real_jid), o.role)
                    for o in self._unique(state) if not self.is_ours(state.jid, o.nick, o.real_jid)
                )
                self.emit(RemoteMembers(chat=self._chat(state.jid), members=members))
            return
        if stanzas.NICK_CHANGED in p.codes and p.muc.nick:
            state.nick = p.muc.nick
            return
        self.rooms.pop(state.jid, None)
        why = _removal(p)
        if why and self.on_bot_removed is not None:
            self.on_bot_removed(state.jid, why)

    def _unique(self, state: Room) -> list[Occupant]:
        seen: set[str] = set()
        out = []
        for occ in state.occupants.values():
            uid = self.user(state.jid, occ.nick, occ.real_jid).id
            if uid not in seen:
                seen.add(uid)
                out.append(occ)
        return out

    def _others_with_id(self, state: Room, user_id: str, nick: str) -> bool:
        return any(n != nick and self.user(state.jid, n, o.real_jid).id == user_id
                   for n, o in state.occupants.items())

    def _available(self, state: Room, p: Presence) -> None:
        assert p.muc is not None
        role = role_of(p.muc.role, p.muc.affiliation)
        real = p.muc.real_jid
        chat = self._chat(state.jid)
        ours = self.is_ours(state.jid, p.nick, real)
        before = state.occupants.get(p.nick)
        if before is None:
            old = state.renamed.pop(p.nick, None)
            state.occupants[p.nick] = Occupant(p.nick, real, role)
            if old is not None:
                before = Occupant(p.nick, real, old.role)  # renamed: the rename was reported
            else:
                user = self.user(state.jid, p.nick, real)
                if not ours and not self._others_with_id(state, user.id, p.nick):
                    self.emit(RemoteJoin(chat=chat, user=user, role=role))
                elif ours and role is not Role.MEMBER:
                    puppet = self.puppet_of(state.jid, p.nick, real)
                    if puppet is not None:
                        self.emit(RemoteRoleChange(chat=chat, user=user, role=role, is_puppet_of=puppet))
                return
        state.occupants[p.nick] = Occupant(p.nick, real or before.real_jid, role)
        if role is not before.role:
            puppet = self.puppet_of(state.jid, p.nick, real) if ours else None
            if not ours or puppet is not None:
                self.emit(RemoteRoleChange(chat=chat, user=self.user(state.jid, p.nick, real or before.real_jid),
                                           role=role, is_puppet_of=puppet))

    def _unavailable(self, state: Room, p: Presence) -> None:
        assert p.muc is not None
        occ = state.occupants.pop(p.nick, None)
        if occ is None:
            return
        real = p.muc.real_jid or occ.real_jid
        chat = self._chat(state.jid)
        ours = self.is_ours(state.jid, p.nick, real)
        old_user = self.user(state.jid, p.nick, real)
        if stanzas.NICK_CHANGED in p.codes and p.muc.nick:
            new_nick = p.muc.nick
            state.renamed[new_nick] = occ
            if ours:
                return
            new_user = self.user(state.jid, new_nick, real)
            if new_user.id == old_user.id:
                # Same ghost (the real JID is known): only its display name changes.
                self.emit(RemoteJoin(chat=chat, user=new_user, role=occ.role))
            else:
                self.emit(RemoteRename(chat=chat, old=old_user, new=new_user))
            return
        if not ours and self._others_with_id(state, old_user.id, p.nick):
            return  # the same person is still here under another nick
        kicked = stanzas.KICKED in p.codes or stanzas.BANNED in p.codes
        kicker = self.user(state.jid, p.muc.actor, self._real_of(state, p.muc.actor)) if p.muc.actor else None
        reason = p.muc.reason or p.status
        if ours:
            puppet = self.puppet_of(state.jid, p.nick, real)
            removed = kicked or bool(p.codes & {stanzas.REMOVED_AFFILIATION, stanzas.REMOVED_MEMBERS_ONLY})
            if puppet is not None and removed:
                self.emit(RemoteLeave(chat=chat, user=old_user, reason=reason or _removal(p),
                                      kicked_by=kicker, is_puppet_of=puppet))
            return
        if kicked and kicker is None:
            kicker = RemoteUser(state.jid, state.jid)  # kicked by the room (a service)
        if stanzas.BANNED in p.codes and not reason:
            reason = "Banned"
        self.emit(RemoteLeave(chat=chat, user=old_user, reason=reason,
                              kicked_by=kicker if kicked else None))

    def _real_of(self, state: Room, nick: str) -> str | None:
        occ = state.occupants.get(nick)
        return occ.real_jid if occ is not None else None

    # -- groupchat messages addressed to the bot ------------------------------------------------
    def message(self, m: Message) -> None:
        state = self.rooms.get(m.from_bare)
        if state is None or not state.joined or m.type != "groupchat" or m.error is not None:
            return
        chat = self._chat(state.jid)
        nick = m.resource
        if not nick:  # from the room itself: the current subject on join, or a status notice
            if m.subject is not None and not m.body:
                self.emit(RemoteTopic(chat=chat, topic=m.subject))
            elif m.body:
                self.emit(RemoteNotice(chat=chat, text=m.body))
            return
        occ = state.occupants.get(nick)
        real = occ.real_jid if occ is not None else None
        if self.is_ours(state.jid, nick, real):
            return
        user = self.user(state.jid, nick, real)
        if m.subject is not None and not m.body:
            self.emit(RemoteTopic(chat=chat, topic=m.subject, changed_by=user if occ is not None else None))
            return
        if not m.body:
            return
        kind, text = parse_body(m.body)
        html = message_html(text, lambda n: self.puppet_of(state.jid, n, None))
        remote_id = m.id or m.origin_id or None
        if m.replace_id:
            if self.edit_event is not None:
                self.emit(self.edit_event(chat=chat, sender=user, target_id=m.replace_id, kind=kind, text=text,
                                          html=html, timestamp_ms=m.timestamp_ms, remote_id=remote_id))
                return
            text = f"* {text}"
            html = f"* {html}" if html else None
        self.emit(RemoteMessage(chat=chat, sender=user, kind=kind, text=text, html=html,
                                timestamp_ms=m.timestamp_ms, remote_id=remote_id))


def _removal(p: Presence) -> str:
    assert p.muc is not None
    reason = p.muc.reason or p.status
    by = f" by {p.muc.actor}" if p.muc.actor else ""
    for code, what in ((stanzas.BANNED, "banned"), (stanzas.KICKED, "kicked"),
                       (stanzas.REMOVED_AFFILIATION, "removed (affiliation change)"),
                       (stanzas.REMOVED_MEMBERS_ONLY, "removed (room is members-only)"),
                       (stanzas.REMOVED_SHUTDOWN, "removed (service shutting down)")):
        if code in p.codes:
            return f"{what}{by}" + (f": {reason}" if reason else "")
    return ""
