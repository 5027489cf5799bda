"""XEP-0393 message styling, read: `*strong*`, `_emphasis_`, `~strike~`, `` `code` ``,
```` ``` ```` blocks and `> ` quotes in an XMPP body become Matrix HTML.

XMPP clients (Conversations, Dino, Gajim) show these marks as styling, so a Matrix user
should see the same, not asterisks. The rules are the XEP's: a span opens at the start of
a line, after whitespace or after another opening mark, and not before whitespace; it closes
at the first same mark that does not follow whitespace; spans stay on one line; nothing is
styled inside code. The plain body keeps the marks, as the XEP asks of clients that cannot
style.
"""

from __future__ import annotations

import html

_SPANS = {"*": "strong", "_": "em", "~": "del", "`": "code"}


def styling_to_html(text: str) -> str | None:
    """Matrix HTML for `text`, or None when it has no styling at all (then plain is better)."""
    parts, styled = _blocks(text.split("\n"))
    return _join(parts) if styled else None


def _blocks(lines: list[str]) -> tuple[list[tuple[bool, str]], bool]:
    """(is a block element, HTML) per line or block, and whether anything was styled."""
    parts: list[tuple[bool, str]] = []
    styled = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = i + 1
            while end < len(lines) and lines[end] != "```":
                end += 1
            code = html.escape("\n".join(lines[i + 1:end]), quote=False)
            parts.append((True, f"<pre><code>{code}</code></pre>"))
            styled, i = True, end + 1  # an unclosed block runs to the end of the message
            continue
        if line.startswith(">"):
            quoted: list[str] = []
            while i < len(lines) and lines[i].startswith(">"):
                rest = lines[i][1:]
                quoted.append(rest[1:] if rest.startswith(" ") else rest)
                i += 1
            inner, _ = _blocks(quoted)
            parts.append((True, f"<blockquote>{_join(inner)}</blockquote>"))
            styled = True
            continue
        line_html, line_styled = _spans(line)
        parts.append((False, line_html))
        styled = styled or line_styled
        i += 1
    return parts, styled


def _join(parts: list[tuple[bool, str]]) -> str:
    out: list[str] = []
    for n, (block, part) in enumerate(parts):
        if n and not block and not parts[n - 1][0]:
            out.append("<br>")  # between two plain lines; blocks break lines themselves
        out.append(part)
    return "".join(out)


def _spans(line: str) -> tuple[str, bool]:
    out: list[str] = []
    styled = False
    i = 0
    while i < len(line):
        mark = line[i]
        close = _closing(line, i) if mark in _SPANS else -1
        if close < 0:
            out.append(html.escape(mark, quote=False))
            i += 1
            continue
        inner = line[i + 1:close]
        tag = _SPANS[mark]
        content = html.escape(inner, quote=False) if mark == "`" else _spans(inner)[0]
        out.append(f"<{tag}>{content}</{tag}>")
        styled, i = True, close + 1
    return "".join(out), styled


def _closing(line: str, start: int) -> int:
    """Where the span opened by the mark at `start` closes, or -1 if it does not open one."""
    mark = line[start]
    before = line[start - 1] if start else " "
    if not (before.isspace() or before in _SPANS) or start + 1 >= len(line) or line[start + 1].isspace():
        return -1
    at = start + 2  # a span holds at least one character
    while (at := line.find(mark, at)) >= 0:
        if not line[at - 1].isspace():
            return at
        at += 1
    return -1
