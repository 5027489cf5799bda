"""IRC formatting codes <-> Matrix HTML.

IRC: \\x02 bold, \\x1d italic, \\x1f underline, \\x1e strikethrough, \\x11 monospace,
\\x03FG[,BG] colour (0-98), \\x04RRGGBB hex colour, \\x16 reverse, \\x0f reset.
Matrix: the HTML subset of the spec (b, i, u, del, code, a, font data-mx-color, ...).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

BOLD, ITALIC, UNDERLINE, STRIKE, MONO, COLOR, HEXCOLOR, REVERSE, RESET = (
    "\x02", "\x1d", "\x1f", "\x1e", "\x11", "\x03", "\x04", "\x16", "\x0f",
)
# The 16 standard mIRC colours (99 = default).
COLORS = [
    "#ffffff", "#000000", "#00007f", "#009300", "#ff0000", "#7f0000", "#9c009c", "#fc7f00",
    "#ffff00", "#00fc00", "#009393", "#00ffff", "#0000fc", "#ff00ff", "#7f7f7f", "#d2d2d2",
]
_COLOR_RE = re.compile(r"\x03(\d{1,2})?(?:,(\d{1,2}))?")
_HEX_RE = re.compile(r"\x04([0-9a-fA-F]{6})?(?:,([0-9a-fA-F]{6}))?")
_URL_RE = re.compile(r"https?://[^\s<>\"\x00-\x1f]+")
STRIP_RE = re.compile(r"\x03\d{0,2}(?:,\d{1,2})?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x1d\x1f\x1e\x11\x16\x0f]")
_TOGGLES = {BOLD: "b", ITALIC: "i", UNDERLINE: "u", STRIKE: "del", MONO: "code"}


def strip_formatting(text: str) -> str:
    return STRIP_RE.sub("", text)


# -- IRC -> Matrix --------------------------------------------------------------------------
@dataclass
class _Style:
    flags: set[str] = field(default_factory=set)
    fg: str | None = None
    bg: str | None = None

    def open_tags(self) -> str:
        out = "".join(f"<{tag}>" for tag in ("b", "i", "u", "del", "code") if tag in self.flags)
        if self.fg or self.bg:
            attrs = []
            if self.fg:
                attrs.append(f'data-mx-color="{self.fg}"')
            if self.bg:
                attrs.append(f'data-mx-bg-color="{self.bg}"')
            out += f"<font {' '.join(attrs)}>"
        return out

    def close_tags(self) -> str:
        out = "</font>" if (self.fg or self.bg) else ""
        return out + "".join(f"</{tag}>" for tag in ("code", "del", "u", "i", "b") if tag in self.flags)


def _irc_color(code: str | None) -> str | None:
    if code is None:
        return None
    number = int(code)
    return COLORS[number] if number < len(COLORS) else None


def _linkify(text: str) -> str:
    out, pos = [], 0
    for match in _URL_RE.finditer(text):
        out.append(html.escape(text[pos:match.start()], quote=False))
        url = match.group(0)
        out.append(f'<a href="{html.escape(url)}">{html.escape(url, quote=False)}</a>')
        pos = match.end()
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def irc_to_matrix(text: str) -> tuple[str, str | None]:
    """(plain text, HTML or None when there is no formatting to show)."""
    plain = strip_formatting(text)
    if plain == text and not _URL_RE.search(text):
        return plain, None
    if plain == text:
        return plain, None  # a bare URL: clients link it themselves
    style = _Style()
    out: list[str] = []
    i = 0
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            out.append(_linkify("".join(chunk)))
            chunk.clear()

    while i < len(text):
        ch = text[i]
        if ch in _TOGGLES or ch in (COLOR, HEXCOLOR, RESET, REVERSE):
            flush()
            out.append(style.close_tags())
            if ch in _TOGGLES:
                style.flags ^= {_TOGGLES[ch]}
                i += 1
            elif ch == RESET:
                style = _Style()
                i += 1
            elif ch == REVERSE:
                i += 1
            elif ch == COLOR:
                match = _COLOR_RE.match(text, i)
                assert match is not None
                fg, bg = match.group(1), match.group(2)
                if fg is None:
                    style.fg = style.bg = None
                else:
                    style.fg = _irc_color(fg)
                    if bg is not None:
                        style.bg = _irc_color(bg)
                i = match.end()
            else:
                match = _HEX_RE.match(text, i)
                assert match is not None
                if match.group(1) is None:
                    style.fg = style.bg = None
                else:
                    style.fg = "#" + match.group(1).lower()
                    if match.group(2):
                        style.bg = "#" + match.group(2).lower()
                i = match.end()
            out.append(style.open_tags())
            continue
        chunk.append(ch)
        i += 1
    flush()
    out.append(style.close_tags())
    rendered = "".join(out)
    # Remove empty tag pairs left by toggles that surround nothing.
    for _ in range(4):
        rendered = re.sub(r"<(b|i|u|del|code)></\1>|<font[^>]*></font>", "", rendered)
    return plain, rendered


# -- Matrix -> IRC --------------------------------------------------------------------------
MentionResolver = Callable[[str], str | None]  # MXID -> remote name, or None


def _nearest_color(value: str) -> int | None:
    value = value.strip().lower()
    if not re.fullmatch(r"#[0-9a-f]{6}", value):
        return None
    r, g, b = (int(value[i:i + 2], 16) for i in (1, 3, 5))

    def distance(hexcode: str) -> int:
        cr, cg, cb = (int(hexcode[i:i + 2], 16) for i in (1, 3, 5))
        return (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2

    return min(range(len(COLORS)), key=lambda n: distance(COLORS[n]))


class _HTMLToIRC(HTMLParser):
    _FORMAT = {"b": BOLD, "strong": BOLD, "i": ITALIC, "em": ITALIC, "u": UNDERLINE,
               "del": STRIKE, "s": STRIKE, "strike": STRIKE, "code": MONO}
    _BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol", "li", "tr"}

    def __init__(self, mentions: MentionResolver) -> None:
        super().__init__(convert_charrefs=True)
        self.mentions = mentions
        self.out: list[str] = []
        self.stack: list[tuple[str, str]] = []  # (tag, closing codes)
        self.skip = 0  # inside <mx-reply>
        self.link: tuple[str, list[str]] | None = None  # (href, text so far)
        self.list_depth = 0

    def _emit(self, text: str) -> None:
        if self.skip:
            return
        if self.link is not None:
            self.link[1].append(text)
        else:
            self.out.append(text)

    def _newline(self) -> None:
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "mx-reply":
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self._emit("\n")
            return
        if tag in self._BLOCK:
            self._newline()
            if tag == "blockquote":
                self._emit("> ")
            elif tag == "li":
                self._emit("  " * max(self.list_depth - 1, 0) + "* ")
            elif tag in ("ul", "ol"):
                self.list_depth += 1
            codes = BOLD if tag.startswith("h") else ""
            self._emit(codes)
            self.stack.append((tag, codes))
            return
        if tag == "a":
            self.link = (values.get("href", ""), [])
            return
        codes = ""
        if tag in self._FORMAT and not (tag == "code" and self._in("pre")):
            codes = self._FORMAT[tag]
        elif tag in ("font", "span"):
            color = values.get("data-mx-color") or values.get("color")
            number = _nearest_color(color) if color else None
            if number is not None:
                codes = f"{COLOR}{number:02d}"
        if codes:
            self._emit(codes)
        self.stack.append((tag, codes))

    def _in(self, tag: str) -> bool:
        return any(t == tag for t, _ in self.stack)

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "a" and self.link is not None:
            href, parts = self.link
            self.link = None
            self._emit(self._render_link(href, "".join(parts)))
            return
        if tag in ("ul", "ol"):
            self.list_depth = max(0, self.list_depth - 1)
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                _, codes = self.stack.pop(index)
                if codes.startswith(COLOR):
                    self._emit(COLOR)
                elif codes:
                    self._emit(codes)
                break
        if tag in self._BLOCK:
            self._newline()

    def _render_link(self, href: str, text: str) -> str:
        match = re.match(r"https://matrix\.to/#/(@[^/?]+)", href)
        if match:
            from urllib.parse import unquote

            name = self.mentions(unquote(match.group(1)))
            if name:
                return name
            return text
        if not href or text == href or text.strip() == "" or href == f"mailto:{text}":
            return href or text
        return f"{text} ({href})"

    def handle_data(self, data: str) -> None:
        if self._in("pre"):
            self._emit(data)
        else:
            self._emit(re.sub(r"\s*\n\s*", " ", data) if "\n" in data else data)

    def result(self) -> str:
        text = "".join(self.out)
        text = re.sub(r"\n{2,}", "\n", text)
        return text.strip("\n")


def matrix_to_irc(plain: str, html_body: str | None, mentions: MentionResolver) -> str:
    """The IRC text of a Matrix message: formatting codes from its HTML, pills as nicks."""
    if not html_body:
        return plain
    parser = _HTMLToIRC(mentions)
    parser.feed(html_body)
    parser.close()
    return parser.result()
