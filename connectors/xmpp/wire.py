"""The XMPP wire guard: whatever a user typed, the component writes well-formed XML 1.0.

Prosody closes a component's stream on one character XML forbids (`\\x00`, `\\x0c`, a lone
surrogate...) anywhere in a stanza: every puppet and portal of the network drops, and a
stanza the core retries poisons every reconnect. So there is one filter, `xml_safe`, and it
is applied at two layers:

1. **Fields.** `Component` is the only code that makes stanzas, always as slixmpp stanza
   objects with ElementTree children (never formatted XML). Every value in them that came
   from a user goes through `text` (cleaned, then cut to a cap on a character boundary),
   `jid` or `stanza_id` first. A value that cannot be made valid (a JID that is still no JID
   after cleaning, an id that is not one) raises `SendError(retriable=False)`: refused for
   good, never retried, never on the wire. Cleaning here (not only below) also keeps what we
   compare echoes against equal to what the room reflects.
2. **Bytes.** `GuardedComponentXMPP.send_raw` is the one method slixmpp's stream writes
   through: stanzas after its filters and serialisation, raw strings, the stream header and
   keep-alives (`transport.write` is called nowhere else in `XMLStream`). It runs `xml_safe`
   over the serialised text, which is the same as cleaning every text node and attribute
   value: slixmpp escapes character by character (`&` -> `&amp;` ...), so deleting a
   character commutes with escaping, and markup (tag and attribute names: constants in code
   or names expat already accepted) never holds a forbidden character. Nothing can bypass
   it, not even `send(..., use_filters=False)`; when it has to change anything, a field
   missed layer 1, and it says so in the log.
"""

from __future__ import annotations

import logging
import re

from slixmpp import ComponentXMPP
from slixmpp.jid import JID, InvalidJID

from connectors.api import SendError

log = logging.getLogger("rapture.xmpp")

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Caps, in characters (code points), for free text that is not a message body. Generous for
# people, small enough that a 64 KB Matrix topic cannot become a 64 KB presence per room.
MAX_SUBJECT = 1024
MAX_REASON = 512  # presence status of a part, kick reason
MAX_PASSWORD = 256  # a MUC password; cut, it fails to join (visibly), it never poisons
MAX_NICK = 256  # XEP-0172 nick element (the MUC nick has resourceprep's own limit)
MAX_ID = 256  # stanza ids; Matrix event ids are at most 255 bytes


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 forbids (NUL, C0 controls but tab/LF/CR,
    U+FFFE, U+FFFF, lone surrogates)."""
    return _NOT_XML.sub("", text)


def text(value: str, limit: int) -> str:
    """Free text for a stanza: cleaned, then cut to `limit` characters."""
    return xml_safe(value)[:limit]  # code points: a str has no surrogate pairs to split


def jid(value: str) -> str:
    """A JID for a `to`/`from` attribute, normalised; SendError (permanent) when there is none.

    A JID is never "cleaned" into another one: removing characters could address someone else.
    """
    try:
        parsed = JID(value)
    except (InvalidJID, ValueError, UnicodeError):
        raise SendError(f"{value!r} is not a valid XMPP address", retriable=False) from None
    full = str(parsed)
    if not parsed.domain or xml_safe(full) != full or any(c in full for c in "\t\n\r"):
        raise SendError(f"{value!r} is not a valid XMPP address", retriable=False)
    return full


def stanza_id(value: str) -> str:
    """An id for an `id` attribute (own or referred to); SendError (permanent) when unusable.

    An id is a name, not text: a cleaned id would name another message, so it is refused.
    Tab, LF and CR are refused too: a parser turns them into spaces in an attribute value.
    """
    if (not value or len(value) > MAX_ID or xml_safe(value) != value
            or any(c in value for c in "\t\n\r")):
        raise SendError(f"{value[:80]!r} cannot be an XMPP message id", retriable=False)
    return value


class GuardedComponentXMPP(ComponentXMPP):
    """slixmpp's component stream whose every write goes through `xml_safe` (layer 2 above)."""

    def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        safe = xml_safe(data)
        if safe != data:
            log.warning("XMPP wire guard removed %d characters XML forbids from an outgoing stanza",
                        len(data) - len(safe))
        super().send_raw(safe)
