"""XEP-0393 message styling from XMPP clients, read as Matrix HTML."""

from __future__ import annotations

from connectors.xmpp.styling import styling_to_html
from connectors.xmpp.text import message_html


def test_spans_become_html() -> None:
    assert styling_to_html("*bold* and _it_ and ~gone~") == (
        "<strong>bold</strong> and <em>it</em> and <del>gone</del>")
    assert styling_to_html("*_both_*") == "<strong><em>both</em></strong>"
    assert styling_to_html("`code *not bold*`") == "<code>code *not bold*</code>"
    assert styling_to_html("<b> *x*") == "&lt;b&gt; <strong>x</strong>"  # the rest is escaped


def test_what_is_not_a_span_stays_plain() -> None:
    for text in ("snake_case_name", "2*3*4", "a * b * c", "* a list item", "*unclosed", "**", "plain"):
        assert styling_to_html(text) is None, text
    assert styling_to_html("*spans*\ndo not\n*cross lines") == "<strong>spans</strong><br>do not<br>*cross lines"


def test_blocks_become_html() -> None:
    assert styling_to_html("> quoted *b*\nafter") == "<blockquote>quoted <strong>b</strong></blockquote>after"
    assert styling_to_html(">> deeper") == "<blockquote><blockquote>deeper</blockquote></blockquote>"
    assert styling_to_html("```\nx = *1* <y>\n```\nafter") == "<pre><code>x = *1* &lt;y&gt;</code></pre>after"
    assert styling_to_html("```\nunclosed") == "<pre><code>unclosed</code></pre>"


def test_a_mention_and_styling_together() -> None:
    def lookup(nick: str) -> str | None:
        return "@alice:hs" if nick == "alice[m]" else None

    assert message_html("alice[m]: *look*", lookup) == (
        '<a href="https://matrix.to/#/@alice:hs">alice[m]</a>: <strong>look</strong>')
    assert message_html("alice[m]: plain <b>", lookup) == (
        '<a href="https://matrix.to/#/@alice:hs">alice[m]</a>: plain &lt;b&gt;')
    assert message_html("carol: *look*", lookup) == "carol: <strong>look</strong>"
    assert message_html("nothing here", lookup) is None
