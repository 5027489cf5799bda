"""The IRC server's refusals, told to the Matrix side instead of lost.

A server answers a message it will not take (a moderated channel, a ban, a nick that left)
or a JOIN it will not allow (invite-only, a key, a ban, a full channel, too many channels)
with a numeric reply and nothing else; without this, the Matrix user would believe the line
was delivered or the channel joined. The server's own words are kept: they name the mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from irc.client import Event

# The irc library's names for the numerics (489, unnamed there, is "secure connections only").
_JOIN = frozenset(("toomanychannels", "channelisfull", "inviteonlychan", "bannedfromchan",
                   "badchannelkey", "nochanmodes", "489"))
_SEND = frozenset(("cannotsendtochan", "nosuchnick"))


_CHANNEL_PREFIXES = frozenset("#&+!")


def is_channel_name(name: str) -> bool:
    return name[:1] in _CHANNEL_PREFIXES


@dataclass(frozen=True, slots=True)
class Refusal:
    what: Literal["join", "send"]
    subject: str  # the channel, or the nick a private message was for
    reason: str  # the server's words


def refusal(event: Event) -> Refusal | None:
    """The refusal an event reports, or None (for `nosuchnick`, only of a private message:
    the caller tells it apart from a WHOIS of a nick that is gone)."""
    kind = "join" if event.type in _JOIN else "send" if event.type in _SEND else None
    if kind is None or not event.arguments:
        return None
    subject = str(event.arguments[0])
    reason = str(event.arguments[-1]) if len(event.arguments) > 1 else event.type
    return Refusal(kind, subject, reason)
