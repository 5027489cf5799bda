"""Matrix identifiers: localpart escaping and the templates that name ghosts and portals.

A remote name (an IRC nick, an XMPP resource) may hold any character; a Matrix localpart may
only hold `a-z 0-9 . _ = - / +`. `escape_localpart` maps every string to a valid localpart and
`unescape_localpart` maps it back, so a ghost's MXID always leads back to the remote user.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# The characters a localpart may hold, less `=`, which is our escape character.
_SAFE_LOCALPART_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-/+")
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
# Conservative: lowercase, starts with a letter, fits in a localpart and in templates.
NETWORK_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# The whole MXID is limited to 255 bytes by the spec.
MAX_MXID_LENGTH = 255


def escape_localpart(value: str) -> str:
    """Escape any string into the localpart grammar; `=xx` stands for a byte outside it."""
    out: list[str] = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte in _SAFE_LOCALPART_BYTES:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02x}")
    return "".join(out)


def unescape_localpart(value: str) -> str:
    """Invert `escape_localpart`; raises ValueError on text it could not have produced."""
    raw = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "=":
            pair = value[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789abcdef" for c in pair):
                raise ValueError(f"bad escape at position {i} in {value!r}")
            raw.append(int(pair, 16))
            i += 3
            continue
        if ord(char) >= 128 or ord(char) not in _SAFE_LOCALPART_BYTES:
            raise ValueError(f"character {char!r} cannot appear in an escaped localpart")
        raw.append(ord(char))
        i += 1
    return raw.decode("utf-8", "surrogateescape")


class TemplateError(ValueError):
    """A template that cannot produce valid identifiers; the message says why."""


@dataclass(frozen=True, slots=True)
class Template:
    """A `str.format` template with a fixed set of allowed fields.

    `variable` is the field that varies per identifier (`nick`, `channel`); the other fields
    are fixed per network, so after filling them the template is `prefix + {variable} + suffix`,
    which is what the registration's namespace regex is built from.
    """

    text: str
    allowed: frozenset[str]
    variable: str

    def fields(self) -> list[str]:
        try:
            return [name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None]
        except ValueError as exc:
            raise TemplateError(f"cannot parse template {self.text!r}: {exc}") from None

    def check_fields(self) -> None:
        names = self.fields()
        for name in names:
            if name not in self.allowed:
                allowed = ", ".join("{" + a + "}" for a in sorted(self.allowed))
                raise TemplateError(f"unknown placeholder {{{name}}}; allowed: {allowed}")
        if names.count(self.variable) != 1:
            raise TemplateError(f"must contain {{{self.variable}}} exactly once")

    def split(self, **fixed: str) -> tuple[str, str]:
        """Fill the fixed fields; return the text before and after the variable field."""
        marker = "\x00"
        filled = self.text.format(**fixed, **{self.variable: marker})
        prefix, suffix = filled.split(marker)
        return prefix, suffix

    def expand(self, value: str, **fixed: str) -> str:
        prefix, suffix = self.split(**fixed)
        return prefix + value + suffix


def ghost_template(text: str) -> Template:
    return Template(text, frozenset({"network", "nick"}), "nick")


def alias_template(text: str) -> Template:
    return Template(text, frozenset({"network", "channel"}), "channel")


def check_ghost_template(text: str, network: str) -> None:
    """Raise TemplateError unless the template yields valid localparts for `network`."""
    template = ghost_template(text)
    template.check_fields()
    prefix, suffix = template.split(network=network)
    if not prefix and not suffix:
        raise TemplateError("needs fixed text around {nick}, or ghosts would claim every user ID")
    for part in (prefix, suffix):
        if part and not LOCALPART_RE.match(part):
            raise TemplateError(
                f"{part!r} cannot be part of a Matrix user ID "
                "(only lowercase a-z, 0-9 and . _ = - / + are allowed)"
            )


def check_alias_template(text: str, network: str) -> None:
    template = alias_template(text)
    template.check_fields()
    prefix, suffix = template.split(network=network)
    if not prefix and not suffix:
        raise TemplateError("needs fixed text around {channel}, or portals would claim every alias")
    for part in (prefix, suffix):
        if ":" in part or any(c.isspace() for c in part):
            raise TemplateError(f"{part!r} cannot be part of a room alias (no ':' or spaces)")


def namespace_regex(sigil: str, prefix: str, suffix: str, domain: str) -> str:
    """An exclusive-namespace regex: `<sigil><prefix>(.+)<suffix>:<domain>`; the group is the
    varying part (escaped nick, channel), so the bridge parses IDs with the same regex it
    registers."""
    return f"{re.escape(sigil + prefix)}(.+){re.escape(suffix + ':' + domain)}"


@dataclass(frozen=True, slots=True)
class GhostNamer:
    """Maps a network's remote ids to ghost MXIDs and back, by its `ghost_template`."""

    network: str
    template: str
    domain: str

    def _parts(self) -> tuple[str, str]:
        return ghost_template(self.template).split(network=self.network)

    def mxid(self, remote_id: str) -> str:
        prefix, suffix = self._parts()
        return f"@{prefix}{escape_localpart(remote_id)}{suffix}:{self.domain}"

    def pattern(self) -> re.Pattern[str]:
        prefix, suffix = self._parts()
        return re.compile(namespace_regex("@", prefix, suffix, self.domain))

    def parse(self, mxid: str) -> str | None:
        """The remote id behind a ghost MXID, or None when `mxid` is not one of ours."""
        match = self.pattern().fullmatch(mxid)
        if not match:
            return None
        try:
            return unescape_localpart(match.group(1))
        except ValueError:
            return None
