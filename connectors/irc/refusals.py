"""The IRC server's refusals, told to the Matrix side instead of lost.

A server answers a message it will not take (a moderated channel, a ban, a nick that left)
or a JOIN it will not allow (invite-only, a key, a ban, a full channel, too many channels)
with a numeric reply and nothing else; without this, the Matrix user would believe the line
was delivered or the channel joined. The server's own words are kept: they name the mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

from irc.client import Event

# The irc library's names for the numerics (489, unnamed there, is "secure connections only").
# 477 means "join refused" on most servers but "message refused" on some, so the caller
# decides by whether it is in the channel already (see `as_send_if_joined`).
_JOIN = frozenset(("toomanychannels", "channelisfull", "inviteonlychan", "bannedfromchan",
                   "badchannelkey", "nochanmodes", "489"))
_SEND = frozenset(("cannotsendtochan", "nosuchnick"))
REPEAT_SECONDS = 5.0  # the same refused line again within this is not told twice
NOT_ON_IRC = "nosuchnick"


@dataclass(frozen=True, slots=True)
class Refusal:
    what: Literal["join", "send"]
    subject: str  # the channel, or the nick a private message was for
    reason: str  # the server's words
    code: str = ""  # the irc library's event type


def refusal(event: Event) -> Refusal | None:
    """The refusal an event reports, or None."""
    kind = "join" if event.type in _JOIN else "send" if event.type in _SEND else None
    if kind is None or not event.arguments:
        return None
    subject = str(event.arguments[0])
    reason = str(event.arguments[-1]) if len(event.arguments) > 1 else event.type
    return Refusal(kind, subject, reason, event.type)


def as_send_if_joined(refused: Refusal, joined: bool) -> Refusal:
    """A 'join' refusal for a channel we are in already refused a message, not a JOIN."""
    return replace(refused, what="send") if refused.what == "join" and joined else refused


class RefusalFilter:
    """Which refusals are worth a notice: a refused JOIN once, until the channel is joined or
    asked for again (every reconnect repeats the JOIN); a refused line once per few seconds
    for the same reason (a long message goes out as many lines, each refused alike)."""

    __slots__ = ("_joins", "_sends")

    def __init__(self) -> None:
        self._joins: set[str] = set()
        self._sends: dict[tuple[str, str], float] = {}

    def joined_or_asked(self, folded_channel: str) -> None:
        self._joins.discard(folded_channel)

    def worth_telling(self, folded_subject: str, refused: Refusal) -> bool:
        if refused.what == "join":
            if folded_subject in self._joins:
                return False
            if len(self._joins) >= 1024:  # a server inventing refusals cannot grow it
                self._joins.clear()
            self._joins.add(folded_subject)
            return True
        now = time.monotonic()
        key = (folded_subject, refused.reason)
        if now - self._sends.get(key, float("-inf")) < REPEAT_SECONDS:
            return False
        if len(self._sends) >= 64:  # keep it small: only recent ones matter
            self._sends = {k: t for k, t in self._sends.items() if now - t < REPEAT_SECONDS}
        self._sends[key] = now
        return True
