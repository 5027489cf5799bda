"""Message text between Matrix and XMPP.

XMPP bodies are plain text. Matrix HTML becomes text with XEP-0393 message styling
(`*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks, `> ` quotes), links as
`text (url)`, and mention pills as the mentioned user's nick. An emote is `/me ...` (XEP-0245).
Characters XML 1.0 cannot carry are dropped (`wire.xml_safe`): one of them would end the whole stream.
"""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

from connectors.api import MessageKind, OutgoingMessage
from connectors.xmpp.styling import styling_to_html
from connectors.xmpp.wire import xml_safe

_PILL_RE = re.compile(r"^https://matrix\.to/#/(@[^/?]+)")
_MARKS = {"b": "*", "strong": "*", "i": "_", "em": "_", "del": "~", "s": "~", "strike": "~", "code": "`"}
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr"}


class _HtmlToText(HTMLParser):
    def __init__(self, mentions: dict[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.mentions = mentions
        self.out: list[str] = []
        self._links: list[tuple[str, int, str | None]] = []  # (href, start index, mention name)
        self._pre = 0
        self._quote = 0
        self._lists: list[list[int]] = []  # per list: [counter] (-1 for bullets)
        self._skip = 0  # inside <mx-reply>

    def _newline(self) -> None:
        text = "".join(self.out)
        if text and not text.endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "mx-reply":
            self._skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCKS or tag == "blockquote" or tag == "pre":
            self._newline()
            if tag == "blockquote":
                self._quote += 1
            elif tag == "pre":
                self._pre += 1
                self.out.append("```\n")
            elif tag == "ul":
                self._lists.append([-1])
            elif tag == "ol":
                self._lists.append([int(attr.get("start") or 1)])
        elif tag == "li":
            self._newline()
            if self._lists and self._lists[-1][0] >= 0:
                self.out.append(f"{self._lists[-1][0]}. ")
                self._lists[-1][0] += 1
            else:
                self.out.append("- ")
        elif tag == "a":
            href = attr.get("href") or ""
            match = _PILL_RE.match(href)
            name = self.mentions.get(html_lib.unescape(match.group(1))) if match else None
            self._links.append((href, len(self.out), name))
        elif tag in _MARKS and not self._pre:
            self.out.append(_MARKS[tag])

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply":
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._links:
            href, start, name = self._links.pop()
            label = "".join(self.out[start:])
            if name is not None:
                del self.out[start:]
                self.out.append(name)
            elif href and label != href and not href.startswith("https://matrix.to/"):
                self.out.append(f" ({href})")
        elif tag in _MARKS and not self._pre:
            self.out.append(_MARKS[tag])
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._newline()
            self.out.append("```\n")
        elif tag == "blockquote":
            self._quote = max(0, self._quote - 1)
            self._newline()
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            self._newline()
        elif tag in _BLOCKS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._quote and not self._pre:
            text = "".join(self.out)
            if not text or text.endswith("\n"):
                data = "> " * self._quote + data.replace("\n", "\n" + "> " * self._quote)
        self.out.append(data)

    def text(self) -> str:
        return "".join(self.out).strip("\n")


def html_to_text(html: str, mentions: dict[str, str] | None = None) -> str:
    parser = _HtmlToText(mentions or {})
    parser.feed(html)
    parser.close()
    return parser.text()


def render_body(message: OutgoingMessage, *, prefix: str = "") -> str:
    """The XMPP body for a Matrix message (`prefix` is the relay's `<name> `)."""
    text = html_to_text(message.html, message.mentions) if message.html else message.text
    if message.html and not text.strip():
        text = message.text
    if message.kind is MessageKind.EMOTE:
        text = f"/me {text}"
    return xml_safe(prefix + text)


def parse_body(body: str) -> tuple[MessageKind, str]:
    """An XMPP body as a message kind and its text (`/me waves` is an emote)."""
    if body.startswith("/me ") and len(body) > 4:
        return MessageKind.EMOTE, body[4:]
    return MessageKind.TEXT, body


def message_html(text: str, mxid_of_nick) -> str | None:  # noqa: ANN001 - Callable[[str], str | None]
    """Matrix HTML for an XMPP body: a pill for `nick: ` addressed to a puppet, and the
    XEP-0393 styling of the rest; None when neither is there (the plain body says it all)."""
    pill, rest = _mention(text, mxid_of_nick)
    styled = styling_to_html(rest)
    if pill is None and styled is None:
        return None
    return (pill or "") + (styled if styled is not None else html_lib.escape(rest, quote=False).replace("\n", "<br>"))


def _mention(text: str, mxid_of_nick) -> tuple[str | None, str]:  # noqa: ANN001
    match = re.match(r"^([^\s:,]+(?: [^\s:,]+)?)([:,]) ", text)
    mxid = mxid_of_nick(match.group(1)) if match else None
    if match is None or mxid is None:
        return None, text
    pill = f'<a href="https://matrix.to/#/{html_lib.escape(mxid)}">{html_lib.escape(match.group(1))}</a>'
    return f"{pill}{match.group(2)} ", text[match.end():]
