"""What the bridge's own IRC connection sees of each channel, as remote events for the core.

The bot's connection is the one listener of every bridged channel: each line arrives once,
whatever number of puppets sit in the channel, so nothing is bridged twice. Lines from
puppets are not bridged at all (they came from Matrix).
"""

from __future__ import annotations

import asyncio
import html as html_lib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from irc.client import Event, NickMask
from irc.modes import parse_channel_modes

from connectors.api import (
    ChatKind,
    ChatRef,
    MessageKind,
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
from connectors.irc.formatting import irc_to_matrix
from connectors.irc.nicks import is_channel_name
from connectors.irc.refusals import Refusal, RefusalFilter, as_send_if_joined, refusal

log = logging.getLogger("rapture.irc")

# What a hostile or broken server can make us remember, at most. The largest channels on
# big networks have a few thousand members; a bridge bot may sit in thousands of channels.
MAX_MEMBERS = 20_000  # per channel (NAMES in progress counts too)
MAX_CHANNELS = 10_000

# Two server names: the QUIT reason of a netsplit ("*.net *.split" with hidden splits).
NETSPLIT_RE = re.compile(r"^[\w*.-]+\.[\w*.-]+ [\w*.-]+\.[\w*.-]+$")
_MODE_ROLES = {"o": Role.MODERATOR, "v": Role.VOICED, "h": Role.MODERATOR, "a": Role.MODERATOR,
               "q": Role.MODERATOR}
_PREFIX_MODES = {"~": "q", "&": "a", "@": "o", "%": "h", "+": "v"}


def names_word(word: str) -> tuple[str, set[str], str]:
    """One entry of a NAMES reply (`@+nick!user@host` with multi-prefix and
    userhost-in-names): the nick, its channel modes and its user@host ("" when not shown)."""
    modes = set()
    while word and word[0] in _PREFIX_MODES:
        modes.add(_PREFIX_MODES[word[0]])
        word = word[1:]
    nick, _, mask = word.partition("!")
    return nick, modes, mask


def role_of(modes: set[str]) -> Role:
    return max((_MODE_ROLES.get(m, Role.MEMBER) for m in modes), default=Role.MEMBER)


def server_time_ms(event: Event) -> int | None:
    for tag in event.tags or []:
        if tag.get("key") == "time" and tag.get("value"):
            try:
                stamp = datetime.fromisoformat(tag["value"].replace("Z", "+00:00"))
            except ValueError:
                return None
            return int(stamp.timestamp() * 1000)
    return None


def message_id(event: Event) -> str | None:
    for tag in event.tags or []:
        if tag.get("key") == "msgid":
            return tag.get("value")
    return None


@dataclass
class Channel:
    name: str
    members: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # folded -> (nick, modes)
    names: list[tuple[str, set[str]]] | None = None  # NAMES in progress
    full: bool = False  # MAX_MEMBERS reached (logged once)

    def room_for(self, count: int) -> bool:
        if count < MAX_MEMBERS:
            return True
        if not self.full:
            self.full = True
            log.warning("%s: more than %d members; the rest are not tracked", self.name, MAX_MEMBERS)
        return False


@dataclass
class _Split:
    nick: str
    channels: list[str]
    since: float


class ChannelTracker:
    """Turns the bot connection's events into `Remote*` events."""

    def __init__(self, *, emit: Callable[[RemoteEvent], None], fold: Callable[[str], str],
                 own_nick: Callable[[], str], puppet_of: Callable[[str], str | None],
                 netsplit_grace: float) -> None:
        self.emit = emit
        self.fold = fold
        self.own_nick = own_nick
        self.puppet_of = puppet_of  # folded nick -> MXID of the Matrix user it stands for
        self.grace = netsplit_grace
        self.channels: dict[str, Channel] = {}
        self._splits: dict[str, _Split] = {}
        self._split_timer: asyncio.TimerHandle | None = None
        self._refusals = RefusalFilter()

    def _chat(self, channel: str) -> ChatRef:
        return ChatRef(self.fold(channel), ChatKind.CHANNEL)

    def _user(self, nick: str) -> RemoteUser:
        return RemoteUser(self.fold(nick), nick)

    def _is_ours(self, nick: str) -> bool:
        folded = self.fold(nick)
        return folded == self.fold(self.own_nick()) or self.puppet_of(folded) is not None

    def handle(self, event: Event) -> None:
        refused = refusal(event)
        if refused is not None:
            self._report(refused)
            return
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _report(self, refused: Refusal) -> None:
        """The server would not let the bridge's connection in, or refused a relayed line."""
        if not is_channel_name(refused.subject):
            return
        folded = self.fold(refused.subject)
        refused = as_send_if_joined(refused, folded in self.channels)
        if not self._refusals.worth_telling(folded, refused):
            return
        if refused.what == "join":
            text = (f"The bridge could not join {refused.subject} on IRC: {refused.reason}. "
                    "Nothing said there reaches Matrix until it can.")
        else:
            text = f"{refused.subject} did not take a message the bridge relayed: {refused.reason}"
        self.emit(RemoteNotice(chat=self._chat(refused.subject), text=text))

    def reset(self) -> None:
        """Our connection dropped: what we knew of the channels is stale until we rejoin."""
        self.channels.clear()

    # -- membership ------------------------------------------------------------------------
    def _on_join(self, event: Event) -> None:
        nick = NickMask(event.source).nick
        folded_chan = self.fold(event.target)
        if self.fold(nick) == self.fold(self.own_nick()):
            if folded_chan not in self.channels and len(self.channels) >= MAX_CHANNELS:
                log.warning("in more than %d channels; %s is not tracked", MAX_CHANNELS, event.target)
                return
            self.channels[folded_chan] = Channel(event.target)
            self._refusals.joined_or_asked(folded_chan)
            return
        channel = self.channels.get(folded_chan)
        if channel is None:
            return
        if self.fold(nick) not in channel.members and not channel.room_for(len(channel.members)):
            return
        channel.members[self.fold(nick)] = (nick, set())
        split = self._splits.get(self.fold(nick))
        if split is not None and folded_chan in split.channels:
            split.channels.remove(folded_chan)  # back after a netsplit: never left on Matrix
            if not split.channels:
                del self._splits[self.fold(nick)]
            return
        if not self._is_ours(nick):
            self.emit(RemoteJoin(chat=self._chat(event.target), user=self._user(nick)))

    def _on_namreply(self, event: Event) -> None:
        # arguments: [channel type, channel, "nick @op +voice ..."]
        if len(event.arguments) < 3:
            return
        channel = self.channels.get(self.fold(event.arguments[1]))
        if channel is None:
            return
        if channel.names is None:
            channel.names = []
        for word in event.arguments[2].split():
            if not channel.room_for(len(channel.names)):
                break
            nick, modes, _mask = names_word(word)
            if nick:
                channel.names.append((nick, modes))

    def _on_endofnames(self, event: Event) -> None:
        if not event.arguments:
            return
        channel = self.channels.get(self.fold(event.arguments[0]))
        if channel is None or channel.names is None:
            return
        channel.members = {self.fold(n): (n, m) for n, m in channel.names}
        channel.names = None
        members = tuple(
            (self._user(nick), role_of(modes))
            for nick, modes in channel.members.values() if not self._is_ours(nick)
        )
        self.emit(RemoteMembers(chat=self._chat(channel.name), members=members))

    def _leave(self, channel_name: str, nick: str, reason: str, kicked_by: str | None = None) -> None:
        channel = self.channels.get(self.fold(channel_name))
        if channel is not None:
            channel.members.pop(self.fold(nick), None)
        if self.fold(nick) == self.fold(self.own_nick()):
            self.channels.pop(self.fold(channel_name), None)
            return
        puppet = self.puppet_of(self.fold(nick))
        if puppet is not None and kicked_by is None:
            return  # a puppet parting was asked for by its Matrix user
        self.emit(RemoteLeave(
            chat=self._chat(channel_name), user=self._user(nick), reason=reason,
            kicked_by=self._user(kicked_by) if kicked_by else None, is_puppet_of=puppet,
        ))

    def _on_part(self, event: Event) -> None:
        reason = event.arguments[0] if event.arguments else ""
        self._leave(event.target, NickMask(event.source).nick, reason)

    def _on_kick(self, event: Event) -> None:
        victim = event.arguments[0]
        reason = event.arguments[1] if len(event.arguments) > 1 else ""
        self._leave(event.target, victim, reason, kicked_by=NickMask(event.source).nick)

    def _on_quit(self, event: Event) -> None:
        nick = NickMask(event.source).nick
        reason = event.arguments[0] if event.arguments else ""
        folded = self.fold(nick)
        present = [c for c, ch in self.channels.items() if folded in ch.members]
        if NETSPLIT_RE.match(reason) and present and not self._is_ours(nick):
            for name in present:
                self.channels[name].members.pop(folded, None)
            self._splits[folded] = _Split(nick, present, time.monotonic())
            self._schedule_split_check()
            return
        for name in present:
            # Servers already prefix client quits ("Quit: ..."); the reason is shown as sent.
            self._leave(self.channels[name].name, nick, reason)

    def _schedule_split_check(self) -> None:
        if self._split_timer is None:
            self._split_timer = asyncio.get_running_loop().call_later(self.grace, self._settle_splits)

    def _settle_splits(self) -> None:
        """Users still gone after the grace period leave, with one notice per channel."""
        self._split_timer = None
        now = time.monotonic()
        due = {k: s for k, s in self._splits.items() if now - s.since >= self.grace}
        gone: dict[str, int] = {}
        for key, split in due.items():
            del self._splits[key]
            for name in split.channels:
                gone[name] = gone.get(name, 0) + 1
                self.emit(RemoteLeave(chat=ChatRef(name), user=self._user(split.nick), reason="Netsplit"))
        for name, count in gone.items():
            self.emit(RemoteNotice(chat=ChatRef(name), text=f"Netsplit: {count} users left and did not come back."))
        if self._splits:
            self._schedule_split_check()

    def _on_nick(self, event: Event) -> None:
        old, new = NickMask(event.source).nick, event.target
        for name, channel in self.channels.items():
            entry = channel.members.pop(self.fold(old), None)
            if entry is None:
                continue
            channel.members[self.fold(new)] = (new, entry[1])
            if not self._is_ours(new) and not self._is_ours(old):
                self.emit(RemoteRename(chat=ChatRef(name), old=self._user(old), new=self._user(new)))

    def _on_mode(self, event: Event) -> None:
        channel = self.channels.get(self.fold(event.target or ""))
        if channel is None:
            return
        for sign, mode, param in parse_channel_modes(" ".join(event.arguments)):
            if mode not in _MODE_ROLES or not param:
                continue
            entry = channel.members.get(self.fold(param))
            if entry is None:
                continue
            modes = entry[1]
            before = role_of(modes)
            (modes.add if sign == "+" else modes.discard)(mode)
            after = role_of(modes)
            if after == before or self.fold(param) == self.fold(self.own_nick()):
                continue
            self.emit(RemoteRoleChange(chat=self._chat(channel.name), user=self._user(entry[0]), role=after,
                                       is_puppet_of=self.puppet_of(self.fold(param))))

    # -- topic and messages ----------------------------------------------------------------
    def _on_currenttopic(self, event: Event) -> None:
        if len(event.arguments) >= 2:
            self.emit(RemoteTopic(chat=self._chat(event.arguments[0]), topic=irc_to_matrix(event.arguments[1])[0]))

    def _on_topic(self, event: Event) -> None:
        nick = NickMask(event.source).nick
        if self._is_ours(nick):
            return
        topic = event.arguments[0] if event.arguments else ""
        self.emit(RemoteTopic(chat=self._chat(event.target), topic=irc_to_matrix(topic)[0],
                              changed_by=self._user(nick)))

    def _message(self, event: Event, kind: MessageKind) -> None:
        if "!" not in str(event.source or ""):
            return  # from a server, not a user
        nick = NickMask(event.source).nick
        if self.fold(event.target or "") not in self.channels or self._is_ours(nick):
            return
        raw = event.arguments[0] if event.arguments else ""
        text, html = irc_to_matrix(raw)
        text, html = self._pill(text, html)
        self.emit(RemoteMessage(
            chat=self._chat(event.target), sender=self._user(nick), kind=kind, text=text, html=html,
            timestamp_ms=server_time_ms(event), remote_id=message_id(event),
        ))

    def _pill(self, text: str, html: str | None) -> tuple[str, str | None]:
        """`alice[m]: hi` addressed to a puppet becomes a mention pill of its Matrix user."""
        match = re.match(r"^([^\s:,]+)([:,]) ", text)
        if not match:
            return text, html
        mxid = self.puppet_of(self.fold(match.group(1)))
        if mxid is None:
            return text, html
        rest_html = html[len(html_lib.escape(match.group(0), quote=False)):] if html and html.startswith(
            html_lib.escape(match.group(0), quote=False)) else html_lib.escape(text[match.end():], quote=False)
        pill = f'<a href="https://matrix.to/#/{mxid}">{html_lib.escape(match.group(1))}</a>{match.group(2)} '
        return text, pill + rest_html

    def _on_pubmsg(self, event: Event) -> None:
        self._message(event, MessageKind.TEXT)

    def _on_pubnotice(self, event: Event) -> None:
        self._message(event, MessageKind.NOTICE)

    def _on_action(self, event: Event) -> None:
        if event.target and self.fold(event.target) in self.channels:
            self._message(event, MessageKind.EMOTE)
