"""Turning Matrix text into IRC lines that are safe and fit.

Safety: CR, LF and NUL end or corrupt an IRC line, and `\\x01` starts CTCP; none of them may
pass from Matrix text to the wire. A newline in a message is a line break the user meant, so
it becomes a separate line; the others are removed.

Fit: a line is at most 512 bytes including CRLF and the `:nick!user@host ` prefix the server
adds when relaying it, so text is split on word boundaries, never inside a UTF-8 sequence.
"""

from __future__ import annotations

import re
import unicodedata

from connectors.irc.wire import cut_utf8

IRC_LINE_BYTES = 512
# When our own hostmask is not known yet: the longest ident and host servers allow.
UNKNOWN_MASK_BYTES = 1 + 10 + 1 + 63


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_NAME_BYTES = 64  # a display name shown on IRC (relay prefix, real name)


def clean_line(text: str) -> str:
    """Remove what can never appear inside one IRC message: CR, LF, NUL and CTCP markers.

    A lone surrogate (JSON can carry "\\ud800") cannot be encoded: it becomes U+FFFD."""
    text = text.replace("\r", "").replace("\n", " ").replace("\x00", "").replace("\x01", "")
    return _SURROGATE.sub("\ufffd", text)


def clean_name(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A display name as IRC shows it: without control or formatting characters, line or
    paragraph separators (any of which could fake a line or a nick; the zero-width joiner of
    emoji sequences stays), whitespace runs made
    one space, cut on a character boundary to `max_bytes`."""
    kept = "".join(
        " " if c.isspace() else c for c in _SURROGATE.sub("\ufffd", name)
        if c.isspace() or c == "\u200d" or unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")
    )
    return cut_utf8(" ".join(kept.split()), max_bytes).rstrip()


def text_lines(text: str) -> list[str]:
    """The lines a Matrix message consists of; empty lines are dropped (IRC can't send them)."""
    lines = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = clean_line(raw)
        if line.strip():
            lines.append(line)
    return lines


def payload_budget(command: str, target: str, nick: str, mask_bytes: int | None) -> int:
    """Bytes left for the text of `COMMAND target :text` as relayed by the server."""
    prefix = 1 + len(nick.encode()) + (mask_bytes if mask_bytes is not None else UNKNOWN_MASK_BYTES) + 1
    overhead = prefix + len(f"{command} {target} :".encode()) + 2  # CRLF
    return IRC_LINE_BYTES - overhead


def split_bytes(text: str, limit: int) -> list[str]:
    """Split `text` into pieces of at most `limit` UTF-8 bytes, preferring spaces.

    A piece never ends inside a multi-byte character; a space where a piece is cut is dropped
    (IRC clients show consecutive lines as one flow anyway).
    """
    if limit < 4:
        raise ValueError("line budget too small to carry any character")
    pieces: list[str] = []
    rest = text
    while rest:
        encoded = rest.encode("utf-8")
        if len(encoded) <= limit:
            pieces.append(rest)
            break
        # The longest prefix of whole characters within the limit.
        cut = limit
        while cut > 0 and (encoded[cut] & 0xC0) == 0x80:
            cut -= 1
        head = encoded[:cut].decode("utf-8")
        space = head.rfind(" ")
        if space > len(head) // 3:  # a word boundary not too far back
            pieces.append(head[:space])
            rest = rest[space + 1:]
        else:
            pieces.append(head)
            rest = rest[len(head):]
    return [p for p in pieces if p]
