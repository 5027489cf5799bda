"""Asking a channel's operators, in private, whether the channel may be bridged.

The bridge's own connection asks: it is not in the channel (nothing is linked yet), so it
learns the operators from `NAMES #channel` (prefixes `~`, `&` and `@`; half-ops do not
count), leaving out the bridge's own connections. Each operator gets the request and how to
answer as private messages; the first `yes` from one of them grants, the first `no` refuses,
and without an answer within the timeout the request is refused. Only answers from the nicks
asked count, and other chatter from them is ignored. A nick waits on one question at a time,
so an answer can never be taken for another channel's request.

A nick is not a person: the operator may change nick or quit, and someone else take the nick,
within the minutes the question is open (the bridge shares no channel with them, so it sees
neither). So an answer counts only from the user@host NAMES showed (with `userhost-in-names`),
and only once a fresh NAMES shows the answering nick still an operator of the channel; an
answer that fails either test is ignored (its nick is asked no more), and the others may answer.

Bounded: at most `MAX_ASKED` operators are asked, at most `MAX_OPERATORS_SEEN` operators of a
NAMES reply are kept, NAMES is awaited at most `NAMES_SECONDS`, and every wait ends with the
timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from irc.client import Event, NickMask

from connectors.api import ConsentResult
from connectors.irc.channels import names_word
from connectors.irc.flood import ConnectionGone
from connectors.irc.lines import clean_line, split_bytes
from connectors.irc.wire import Line, LineRejected, irc_line

log = logging.getLogger("rapture.irc.consent")
OPERATOR_MODES = frozenset("qao")  # ~ & @: owner, admin, operator
MAX_ASKED = 10
MAX_OPERATORS_SEEN = 500  # of one NAMES reply (only operators are kept): a hostile server's is endless
NAMES_SECONDS = 10.0
QUESTION_BYTES = 400  # of request text per line: room for the command, nick and server prefix
YES = frozenset({"yes", "y"})
NO = frozenset({"no", "n"})


@dataclass
class _Names:
    channel: str
    ops: list[tuple[str, str | None]] = field(default_factory=list)  # (nick, user@host if shown)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Question:
    channel: str
    answers: asyncio.Queue[tuple[str, bool]] = field(default_factory=asyncio.Queue)  # (nick, yes)
    masks: dict[str, str | None] = field(default_factory=dict)  # folded nick asked -> user@host


def names_in(names: str) -> list[tuple[str, bool, str | None]]:
    """The nicks of a NAMES reply, whether each is an operator (multi-prefix aware) and its
    user@host when the server shows it (`userhost-in-names`)."""
    result = []
    for word in names.split():
        nick, modes, mask = names_word(word)
        if nick:
            result.append((nick, bool(OPERATOR_MODES & modes), mask or None))
    return result


def operators_in(names: str) -> list[tuple[str, bool]]:
    """The nicks of a NAMES reply and whether each is an operator (multi-prefix aware)."""
    return [(nick, op) for nick, op, _mask in names_in(names)]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"


class OperatorConsent:
    """Lives beside the bot's connection; `handle` sees every event of that connection."""

    def __init__(self, *, send: Callable[[Line], None], fold: Callable[[str], str],
                 is_ours: Callable[[str], bool],
                 names_seconds: float = NAMES_SECONDS, max_asked: int = MAX_ASKED) -> None:
        self._send = send  # IRCConnection.send: raises ConnectionGone when offline
        self._fold = fold
        self._is_ours = is_ours  # folded nick -> the bridge's own connection (bot or puppet)
        self._names_seconds = names_seconds
        self._max_asked = max_asked
        self._names: dict[str, _Names] = {}  # folded channel -> NAMES being collected
        self._asked: dict[str, _Question] = {}  # folded nick -> the question it may answer

    async def ask(self, channel: str, request: str, timeout: float) -> ConsentResult:
        try:
            ops = await self._operators(channel)
        except (ConnectionGone, LineRejected, asyncio.TimeoutError) as exc:
            # An exception is always truthy: a TimeoutError has an empty text, not a false value.
            detail = str(exc) or "the server did not list them in time"
            return ConsentResult(granted=False, reason=f"the bridge could not see who runs {channel} ({detail})")
        if not ops:
            return ConsentResult(granted=False, reason=f"{channel} has no operator who could agree")
        masks = dict(ops)
        free = [nick for nick, _mask in ops if self._fold(nick) not in self._asked][:self._max_asked]
        if not free:
            return ConsentResult(granted=False, reason=f"the operators of {channel} are answering another "
                                                       "request; try again later")
        question = _Question(channel)
        text = split_bytes(clean_line(request).strip(), QUESTION_BYTES)[:1] or ["A Matrix user asks to bridge."]
        how = (f"As an operator of {channel}: reply \"yes\" to allow it or \"no\" to refuse, "
               f"within {_duration(timeout)}.")
        try:
            for nick in free:
                try:  # a nick from the server's NAMES reply is checked like any other parameter
                    lines = (irc_line("PRIVMSG", nick, trailing=text[0]),
                             irc_line("PRIVMSG", nick, trailing=clean_line(how)))
                except LineRejected:
                    continue
                self._asked[self._fold(nick)] = question
                question.masks[self._fold(nick)] = masks.get(nick)
                for line in lines:
                    self._send(line)
            if not any(self._asked.get(self._fold(nick)) is question for nick in free):
                return ConsentResult(granted=False, reason=f"no operator of {channel} could be asked")
            log.info("asked %d operator(s) of %s: %s", len(free), channel, text[0])
            try:
                async with asyncio.timeout(timeout):
                    return await self._first_valid_answer(question)
            except TimeoutError:
                return ConsentResult(granted=False, reason=f"no operator of {channel} answered within "
                                                           f"{_duration(timeout)}")
        except ConnectionGone as exc:
            return ConsentResult(granted=False, reason=f"the bridge lost its connection ({exc})")
        finally:
            for nick in free:
                if self._asked.get(self._fold(nick)) is question:
                    del self._asked[self._fold(nick)]

    async def _first_valid_answer(self, question: _Question) -> ConsentResult:
        """The first answer whose nick a fresh NAMES still shows as an operator of the channel."""
        channel = question.channel
        while True:
            nick, yes = await question.answers.get()
            try:
                still = {self._fold(op) for op, _mask in await self._operators(channel)}
            except (LineRejected, asyncio.TimeoutError):
                still = set()
            if self._fold(nick) not in still:
                log.warning("ignored %s's answer about %s: no longer an operator there", nick, channel)
                if self._asked.get(self._fold(nick)) is question:
                    del self._asked[self._fold(nick)]
                continue
            if yes:
                return ConsentResult(granted=True, by=nick)
            return ConsentResult(granted=False, by=nick, reason=f"{nick}, an operator of {channel}, said no")

    async def _operators(self, channel: str) -> list[tuple[str, str | None]]:
        folded = self._fold(channel)
        query = self._names.get(folded)
        if query is None:
            query = self._names[folded] = _Names(channel)
            try:
                self._send(irc_line("NAMES", channel))
            except (ConnectionGone, LineRejected):
                del self._names[folded]
                raise
        try:
            await asyncio.wait_for(asyncio.shield(query.done), self._names_seconds)
        finally:
            if self._names.get(folded) is query:
                del self._names[folded]
        return [(nick, mask) for nick, mask in query.ops if not self._is_ours(self._fold(nick))]

    def handle(self, event: Event) -> bool:
        """True when the event was an answer to a question (it goes nowhere else)."""
        if event.type == "namreply" and len(event.arguments) >= 3:
            query = self._names.get(self._fold(event.arguments[1]))
            if query is not None:
                room = MAX_OPERATORS_SEEN - len(query.ops)
                ops = [(nick, mask) for nick, op, mask in names_in(event.arguments[2]) if op]
                query.ops.extend(ops[:max(0, room)])
            return False  # the channel tracker may want it too (a channel it is in)
        if event.type == "endofnames" and event.arguments:
            query = self._names.get(self._fold(event.arguments[0]))
            if query is not None and not query.done.done():
                query.done.set_result(None)
            return False
        if event.type != "privmsg" or not event.source or not event.arguments:
            return False
        source = NickMask(event.source)
        nick = source.nick
        question = self._asked.get(self._fold(nick))
        if question is None:
            return False
        word = event.arguments[0].strip().rstrip(".!").lower()
        if word not in YES and word not in NO:
            return False
        mask = question.masks.get(self._fold(nick))
        if mask is not None and source.userhost.lower() != mask.lower():
            # The nick, but not the user NAMES showed: someone took it meanwhile.
            log.warning("ignored an answer about %s from %s: not %s, who was asked", question.channel,
                        event.source, mask)
            del self._asked[self._fold(nick)]
            return True
        del self._asked[self._fold(nick)]  # one answer per nick; a "yes" after a "no" is not a second vote
        question.answers.put_nowait((nick, word in YES))
        try:
            self._send(irc_line("PRIVMSG", nick, trailing="Thank you, your answer was passed on."))
        except (ConnectionGone, LineRejected):
            pass
        return True
