"""IRC nicks: case-folding by CASEMAPPING, validity, and making a valid nick from anything."""

from __future__ import annotations

import re
import unicodedata

# RFC 2812 nick characters; `-` and digits may not start a nick.
_NICK_RE = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")
_NICK_CHAR = re.compile(r"[A-Za-z0-9\[\]\\`_^{|}-]")
CHANNEL_PREFIXES = "#&+!"
_CHANNEL_FORBIDDEN = re.compile(r"[\x00\x07\r\n ,:]")
DEFAULT_NICK_LENGTH = 30
MAX_CHANNEL_LENGTH = 64

_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")
_STRICT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\", "abcdefghijklmnopqrstuvwxyz{}|")
_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def casefold(name: str, casemapping: str = "rfc1459") -> str:
    """Lower-case as the server compares names (ISUPPORT CASEMAPPING)."""
    table = {"ascii": _ASCII, "strict-rfc1459": _STRICT}.get(casemapping.lower(), _RFC1459)
    return name.translate(table)


def is_valid_nick(nick: str, max_length: int = DEFAULT_NICK_LENGTH) -> bool:
    return 0 < len(nick) <= max_length and bool(_NICK_RE.match(nick))


def is_valid_channel(name: str) -> bool:
    return (
        1 < len(name) <= MAX_CHANNEL_LENGTH
        and name[0] in CHANNEL_PREFIXES
        and not _CHANNEL_FORBIDDEN.search(name)
    )


def sanitize_nick(wanted: str, max_length: int = DEFAULT_NICK_LENGTH) -> str:
    """A valid nick as close to `wanted` as possible (accents dropped, others replaced by `_`)."""
    ascii_text = unicodedata.normalize("NFKD", wanted).encode("ascii", "ignore").decode()
    chars = [c if _NICK_CHAR.match(c) else "_" for c in ascii_text]
    nick = "".join(chars).strip("-") or "matrix"
    if not re.match(r"[A-Za-z\[\]\\`_^{|}]", nick[0]):
        nick = "_" + nick
    return nick[:max_length]


def nick_variants(nick: str, max_length: int = DEFAULT_NICK_LENGTH, count: int = 20) -> list[str]:
    """Alternatives to try after 433 (nick in use): nick_, nick__, then nick1, nick2, ..."""
    out: list[str] = []
    for suffix in ["_", "__", *[str(n) for n in range(1, count)]]:
        candidate = nick[: max_length - len(suffix)] + suffix
        if candidate not in out and candidate != nick:
            out.append(candidate)
    return out[:count]


def is_channel_name(name: str) -> bool:
    """A channel's name (by its prefix), not a nick's."""
    return name[:1] in CHANNEL_PREFIXES
