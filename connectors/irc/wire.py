"""The one place an outgoing IRC line is assembled: the wire guard.

Every line the bridge writes (registration, PONG, SASL, JOIN, chat, QUIT) is built by
`irc_line` from a command and its parameters, and only a `Line` can reach a transport
(`_Connection.put` is the one `transport.write`). A parameter with CR, LF or NUL, a middle
parameter that is empty, holds a space or starts with ':', or a line over 512 bytes
(CRLF included; we send no message tags) is refused with `LineRejected`, a `SendError`:
the caller's message fails visibly and nothing is written.

Callers clean or cut user text *before* this (see `lines.clean_line`, `lines.clean_name`,
`fit_trailing`): the guard refuses, it never repairs, so a bug in a caller shows as an error
instead of as a silently altered command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.api import SendError

MAX_LINE_BYTES = 512  # RFC 1459/2812, CRLF included (IRCv3 message tags aside)
_CRLF = b"\r\n"
_FORBIDDEN = re.compile("[\r\n\x00]")
_COMMAND = re.compile(r"^(?:[A-Za-z]+|[0-9]{3})$")
_SEAL = object()


class LineRejected(SendError):
    """A line that cannot go on the wire as asked. Permanent: sending it again won't help.

    The message never quotes the offending text: it may be a password."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


@dataclass(frozen=True, slots=True)
class Line:
    """One checked IRC line, CRLF included. Only `irc_line` makes these."""

    data: bytes
    command: str
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("an IRC Line is made by irc_line(), which checks it")

    @property
    def text(self) -> str:
        """The line without CRLF (for logs and tests)."""
        return self.data[:-2].decode("utf-8")


def _encode(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800")
        raise LineRejected("the text is not valid Unicode") from None


def irc_line(command: str, *params: str, trailing: str | None = None) -> Line:
    """`COMMAND p1 p2 :trailing` as checked bytes, or `LineRejected`."""
    if not _COMMAND.match(command):
        raise LineRejected(f"{command[:20]!r} is not an IRC command")
    for param in params:
        if not param or " " in param or param[0] == ":" or _FORBIDDEN.search(param):
            raise LineRejected(f"a parameter of {command} is empty or holds a space, ':' or a control character")
    if trailing is not None and _FORBIDDEN.search(trailing):
        raise LineRejected(f"the text of {command} holds a line break or NUL")
    words = [command, *params]
    if trailing is not None:
        words.append(":" + trailing)
    data = _encode(" ".join(words)) + _CRLF
    if len(data) > MAX_LINE_BYTES:
        raise LineRejected(f"the {command} line would be {len(data)} bytes; IRC allows {MAX_LINE_BYTES}")
    return Line(data, command, _SEAL)


def line_from_text(text: str) -> Line:
    """A line written as text (`QUIT :bye`), taken apart and checked like any other."""
    head, sep, trailing = text.partition(" :")
    if not sep and head.startswith(":"):
        raise LineRejected("a line may not start with a prefix")
    words = head.split(" ")
    return irc_line(words[0], *words[1:], trailing=trailing if sep else None)


def trailing_room(command: str, *params: str) -> int:
    """Bytes left for the trailing text of `COMMAND params :text` within one line."""
    head = " ".join([command, *params]) + " :"
    return MAX_LINE_BYTES - len(head.encode("utf-8", "replace")) - len(_CRLF)


def cut_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    return encoded[:max(0, limit)].decode("utf-8", "ignore")


def fit_trailing(command: str, *params: str, text: str) -> Line:
    """A line whose trailing `text` (already cleaned) is cut on a character boundary to fit."""
    return irc_line(command, *params, trailing=cut_utf8(text, trailing_room(command, *params)))
