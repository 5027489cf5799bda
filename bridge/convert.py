"""Matrix message content -> `OutgoingMessage`, the network-neutral form connectors send.

Replies lose their fallback quote (the network gets `nick: text` instead), edits carry the
replaced event's id (`edit_of`) and their whole new text, and media become a link the remote
side can open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from connectors.api import MessageKind, OutgoingMessage

_KINDS = {"m.text": MessageKind.TEXT, "m.emote": MessageKind.EMOTE, "m.notice": MessageKind.NOTICE}
_MEDIA = {"m.image", "m.file", "m.audio", "m.video"}
_PILL_RE = re.compile(r'href="https://matrix\.to/#/(@[^"?/]+)')
_FALLBACK_SENDER_RE = re.compile(r"^> <(@[^>]+)>")

MentionLookup = Callable[[str], str | None]  # MXID -> remote name


def strip_reply_fallback(body: str) -> tuple[str, str | None]:
    """Remove the `> <@user> quoted` lines a reply starts with; return (text, quoted sender)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body, None
    match = _FALLBACK_SENDER_RE.match(lines[0])
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:]), match.group(1) if match else None


def media_url(homeserver: str, mxc: str) -> str:
    if not mxc.startswith("mxc://"):
        return mxc
    server_media = mxc[len("mxc://"):]
    return f"{homeserver}/_matrix/media/v3/download/{quote(server_media, safe='/')}"


def to_outgoing(content: dict[str, Any], *, event_id: str, sender_name: str, homeserver: str,
                mention_name: MentionLookup) -> OutgoingMessage | None:
    """None for content a network cannot carry (no body at all)."""
    relates = content.get("m.relates_to") or {}
    is_edit = relates.get("rel_type") == "m.replace" and isinstance(content.get("m.new_content"), dict)
    if is_edit:
        content = content["m.new_content"]
    msgtype = content.get("msgtype")
    body = content.get("body")
    if not isinstance(body, str):
        return None
    html = content.get("formatted_body") if content.get("format") == "org.matrix.custom.html" else None
    if not isinstance(html, str):
        html = None
    mentions: dict[str, str] = {}
    for mxid in _PILL_RE.findall(html or ""):
        mxid = unquote(mxid)
        name = mention_name(mxid)
        if name:
            mentions[mxid] = name
    text = body
    replied_to = None
    if not is_edit and (relates.get("m.in_reply_to") or {}).get("event_id"):
        text, replied_to = strip_reply_fallback(body)
        if html:
            html = re.sub(r"<mx-reply>.*?</mx-reply>", "", html, flags=re.S)
    if msgtype in _MEDIA:
        url = media_url(homeserver, str(content.get("url", "")))
        text, html = f"{body} {url}" if body != url else url, None
        kind = MessageKind.TEXT
    else:
        kind = _KINDS.get(str(msgtype), MessageKind.TEXT)
    if replied_to is not None:
        name = mention_name(replied_to)
        if name and not text.startswith(name):
            text = f"{name}: {text}"
            if html:
                html = f"{name}: {html}"
    return OutgoingMessage(kind=kind, text=text, html=html, mentions=mentions, event_id=event_id,
                           sender_name=sender_name, edit_of=str(relates.get("event_id", "")) if is_edit else "")
