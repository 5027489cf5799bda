"""From an `OutgoingMessage` to the exact IRC command lines that carry it."""

from __future__ import annotations

from connectors.api import MessageKind, OutgoingMessage
from connectors.irc.formatting import matrix_to_irc
from connectors.irc.lines import payload_budget, split_bytes, text_lines

_ACTION_OVERHEAD = len("\x01ACTION \x01")


def render_lines(message: OutgoingMessage, *, target: str, nick: str, mask_bytes: int | None,
                 prefix: str = "") -> list[str]:
    """Every line is a complete, safe IRC command that fits in 512 bytes when relayed.

    `prefix` (e.g. `<alice> ` for a relayed message) starts every line.
    """
    text = matrix_to_irc(message.text, message.html, message.mentions.get)
    if message.edit_of:
        text = f"* {text}"  # IRC has no corrections: its users' own convention
    command = "NOTICE" if message.kind is MessageKind.NOTICE else "PRIVMSG"
    budget = payload_budget(command, target, nick, mask_bytes) - len(prefix.encode())
    if message.kind is MessageKind.EMOTE:
        budget -= _ACTION_OVERHEAD
    out: list[str] = []
    for line in text_lines(text):
        for piece in split_bytes(line, budget):
            payload = prefix + piece
            if message.kind is MessageKind.EMOTE:
                payload = f"\x01ACTION {payload}\x01"
            out.append(f"{command} {target} :{payload}")
    return out
