"""Message text between Matrix and XMPP: HTML to styled plain text, emotes, mention pills."""

from __future__ import annotations

from connectors.api import MessageKind, OutgoingMessage
from connectors.xmpp.text import html_to_text, message_html, parse_body, render_body, xml_safe


def out(text: str, html: str | None = None, kind: MessageKind = MessageKind.TEXT,
        mentions: dict[str, str] | None = None) -> OutgoingMessage:
    return OutgoingMessage(kind=kind, text=text, html=html, mentions=mentions or {})


def test_plain_and_emote() -> None:
    assert render_body(out("hello")) == "hello"
    assert render_body(out("waves", kind=MessageKind.EMOTE)) == "/me waves"
    assert render_body(out("hi", kind=MessageKind.NOTICE)) == "hi"
    assert render_body(out("hi"), prefix="<alice> ") == "<alice> hi"


def test_html_becomes_message_styling() -> None:
    html = ('<b>bold</b> <i>it</i> <del>gone</del> <code>x()</code> '
            '<a href="https://example.org/">link</a> <a href="https://example.org/">https://example.org/</a>')
    assert html_to_text(html) == "*bold* _it_ ~gone~ `x()` link (https://example.org/) https://example.org/"


def test_blocks_lists_quotes_and_code() -> None:
    html = ("<p>one</p><p>two<br>three</p><ul><li>a</li><li>b</li></ul><ol start=\"3\"><li>c</li></ol>"
            "<blockquote>quoted\nmore</blockquote><pre><code>code *here*</code></pre>after")
    assert html_to_text(html) == (
        "one\ntwo\nthree\n- a\n- b\n3. c\n> quoted\n> more\n```\ncode *here*\n```\nafter")


def test_pills_become_nicks_and_reply_fallbacks_go() -> None:
    html = ('<mx-reply><blockquote>old</blockquote></mx-reply>'
            '<a href="https://matrix.to/#/@xmpp_bob=40x.test:hs">Bob on Matrix</a>: hi')
    message = out("Bob on Matrix: hi", html, mentions={"@xmpp_bob=40x.test:hs": "bob"})
    assert render_body(message) == "bob: hi"


def test_text_is_kept_when_html_has_none() -> None:
    assert render_body(out("fallback", "<img src='mxc://x/y'>")) == "fallback"


def test_xml_forbidden_characters_are_dropped() -> None:
    assert xml_safe("a\x00b\x01c\x1bd\tok\n\ud800") == "abcd\tok\n"
    assert render_body(out("bell\x07")) == "bell"
    assert "\x0c" not in render_body(out("x", "<b>\x0c</b>"))


def test_incoming_bodies() -> None:
    assert parse_body("/me dances") == (MessageKind.EMOTE, "dances")
    assert parse_body("/me") == (MessageKind.TEXT, "/me")
    assert parse_body("/mention") == (MessageKind.TEXT, "/mention")
    assert parse_body("hi") == (MessageKind.TEXT, "hi")


def test_mentions_of_puppets_become_pills() -> None:
    lookup = {"alice[m]": "@alice:hs"}.get
    assert message_html("alice[m]: hi <b>", lookup) == (
        '<a href="https://matrix.to/#/@alice:hs">alice[m]</a>: hi &lt;b&gt;')
    assert message_html("carol: hi", lookup) is None
    assert message_html("no mention", lookup) is None
