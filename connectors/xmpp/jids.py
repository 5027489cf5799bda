"""JIDs: normalising room and user JIDs, naming puppets, and the ids ghosts are made from.

Ids the core sees:
- a MUC is its bare room JID, normalised (node and domain lower-cased by nodeprep/IDNA);
- a remote user is their real bare JID when the room shows it, else their occupant JID
  (`room@muc/nick`: the nick part keeps its case, as resourceprep does);
- a Matrix user's puppet is `<localpart>@<component domain>`, the localpart escaped per
  XEP-0106 (a Matrix localpart may hold `/`, which a JID node may not).
"""

from __future__ import annotations

import unicodedata

from slixmpp.jid import JID, InvalidJID

from connectors.api import nick_template_error  # re-exported: the schema's check

# XEP-0106: the characters nodeprep refuses, and their escapes (backslash only when it
# would read as an escape sequence).
_ESCAPES = {" ": "\\20", '"': "\\22", "&": "\\26", "'": "\\27", "/": "\\2f", ":": "\\3a",
            "<": "\\3c", ">": "\\3e", "@": "\\40"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()} | {"\\5c": "\\"}
MAX_NICK_BYTES = 1023


def parse(value: str) -> JID | None:
    """A JID, or None when `value` is not one (no exception escapes)."""
    if not value or len(value) > 3071 or any(c.isspace() and c != " " for c in value):
        return None
    try:
        jid = JID(value)
    except (InvalidJID, ValueError, UnicodeError):
        return None
    return jid if jid.domain else None


def normalize_room(value: str, default_domain: str = "") -> str | None:
    """The bare room JID of `value` (`Room@MUC.example` -> `room@muc.example`).

    A name without a domain gets `default_domain` (the configured MUC service), so
    `#xmpp_lobby:hs` can stand for `lobby@muc.example`. Full JIDs and domain-only JIDs are
    not rooms.
    """
    if "@" not in value and default_domain and "/" not in value:
        value = f"{value}@{default_domain}"
    jid = parse(value)
    if jid is None or not jid.user or jid.resource:
        return None
    return jid.bare


def normalize_user(value: str, default_domain: str = "") -> str | None:
    """A user's id: a bare JID, or an occupant JID (`room@muc/Nick`) when that is all we know."""
    if "@" not in value and "/" not in value and default_domain:
        value = f"{value}@{default_domain}"
    jid = parse(value)
    if jid is None or not jid.user:
        return None
    return f"{jid.bare}/{jid.resource}" if jid.resource else jid.bare


def occupant_id(room: str, nick: str) -> str:
    return f"{room}/{nick}"


def escape_node(localpart: str) -> str:
    """XEP-0106 escaping of a Matrix localpart into a JID node."""
    out: list[str] = []
    for i, char in enumerate(localpart):
        if char == "\\" and localpart[i:i + 3].lower() in _UNESCAPES:
            out.append("\\5c")
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)


def unescape_node(node: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(node):
        seq = node[i:i + 3].lower()
        if node[i] == "\\" and seq in _UNESCAPES:
            out.append(_UNESCAPES[seq])
            i += 3
        else:
            out.append(node[i])
            i += 1
    return "".join(out)


def puppet_jid(localpart: str, component_domain: str) -> str | None:
    """The JID of a Matrix user's puppet, or None when no JID can be made from the localpart."""
    jid = parse(f"{escape_node(localpart)}@{component_domain}")
    return jid.bare if jid is not None else None


def clean_nick(nick: str, fallback: str = "matrix") -> str:
    """A usable MUC nick: no control characters, not empty, within resourceprep's length."""
    cleaned = "".join(c for c in nick if unicodedata.category(c)[0] != "C").strip()
    while len(cleaned.encode()) > MAX_NICK_BYTES:
        cleaned = cleaned[:-1]
    if not cleaned:
        return fallback
    try:
        JID(f"x@y/{cleaned}")
    except (InvalidJID, ValueError, UnicodeError):
        return fallback
    return cleaned


def domain_error(value: str) -> str | None:
    jid = parse(value)
    if jid is None or jid.user or jid.resource or "." not in value:
        return f"{value!r} is not an XMPP domain"
    return None
