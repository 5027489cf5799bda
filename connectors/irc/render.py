"""From an `OutgoingMessage` to the exact IRC command lines that carry it."""

from __future__ import annotations

from connectors.api import MessageKind, OutgoingMessage
from connectors.irc.formatting import matrix_to_irc
from connectors.irc.lines import payload_budget, split_bytes, text_lines
from connectors.irc.wire import Line, irc_line

_ACTION_OVERHEAD = len("\x01ACTION \x01")


def left_out_note(count: int) -> str:
    return f"(… {count} more line{'s' if count != 1 else ''} not sent)"


def cut_notice(sender: str, sent: int, left: int) -> str:
    """What the portal hears when a message was cut: its sender must know (IRC only sees the
    "not sent" line), so that nothing is dropped without a word."""
    return (f"{sender}: your message was too long for IRC: {left} of its {sent + left} lines were not sent "
            f"(the bridge sends at most {sent} lines of one message).")


def render_lines(message: OutgoingMessage, *, target: str, nick: str, mask_bytes: int | None,
                 prefix: str = "") -> list[Line]:
    """The lines of `render`, without the count of lines left out."""
    return render(message, target=target, nick=nick, mask_bytes=mask_bytes, prefix=prefix)[0]


def render(message: OutgoingMessage, *, target: str, nick: str, mask_bytes: int | None,
           prefix: str = "") -> tuple[list[Line], int]:
    """The lines to send, and how many lines `message.max_lines` left out (0: none).

    Every line is a complete, checked IRC command that fits in 512 bytes when relayed.

    `prefix` (e.g. `<alice> ` for a relayed message, already cleaned) starts every line.
    With `message.max_lines`, at most that many lines (counted after splitting) are sent,
    then one line saying how many were left out. Raises `LineRejected` (a `SendError`)
    for a target that cannot be written.
    """
    text = matrix_to_irc(message.text, message.html, message.mentions.get)
    if message.edit_of:
        text = f"* {text}"  # IRC has no corrections: its users' own convention
    command = "NOTICE" if message.kind is MessageKind.NOTICE else "PRIVMSG"
    budget = payload_budget(command, target, nick, mask_bytes) - len(prefix.encode())
    if message.kind is MessageKind.EMOTE:
        budget -= _ACTION_OVERHEAD
    payloads: list[str] = []
    for line in text_lines(text):
        for piece in split_bytes(line, budget):
            payload = prefix + piece
            if message.kind is MessageKind.EMOTE:
                payload = f"\x01ACTION {payload}\x01"
            payloads.append(payload)
    limit = message.max_lines
    left = 0
    if limit is not None and len(payloads) > limit:
        left = len(payloads) - limit
        payloads = [*payloads[:limit], prefix + left_out_note(left)]
    return [irc_line(command, target, trailing=payload) for payload in payloads], left
