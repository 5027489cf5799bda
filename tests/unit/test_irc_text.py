"""IRC text handling: line cleaning and splitting, nicks, formatting both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.irc.formatting import irc_to_matrix, matrix_to_irc, strip_formatting
from connectors.irc.lines import clean_line, payload_budget, split_bytes, text_lines
from connectors.irc.nicks import (
    casefold,
    is_valid_channel,
    is_valid_nick,
    nick_variants,
    sanitize_nick,
)


# -- lines ----------------------------------------------------------------------------------
def test_no_control_character_survives() -> None:
    assert text_lines("hi\r\nJOIN #evil") == ["hi", "JOIN #evil"]
    assert clean_line("a\x00b\x01ACTION x\x01\rc\nd") == "abACTION xc d"
    assert text_lines("\n\n  \n") == []


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=4, max_value=450))
def test_split_is_complete_and_fits(text: str, limit: int) -> None:
    pieces = split_bytes(text, limit)
    assert all(len(p.encode()) <= limit for p in pieces)
    # Nothing is lost but the spaces we cut at.
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_split_prefers_spaces_and_never_breaks_a_character() -> None:
    text = "ü" * 300  # 600 bytes, no spaces
    pieces = split_bytes(text, 401)
    assert [len(p.encode()) for p in pieces] == [400, 200]
    words = " ".join(["word"] * 200)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in split_bytes(words, 50))


def test_budget_leaves_room_for_the_prefix() -> None:
    budget = payload_budget("PRIVMSG", "#chan", "alice", None)
    assert budget + len(":alice!") + 10 + 1 + 63 + 1 + len("PRIVMSG #chan :") + 2 == 512


# -- nicks ----------------------------------------------------------------------------------
def test_casefold_follows_casemapping() -> None:
    assert casefold("Foo[]\\~") == "foo{}|^"
    assert casefold("Foo[]", "ascii") == "foo[]"


@given(st.text(max_size=60))
def test_sanitize_always_gives_a_valid_nick(wanted: str) -> None:
    assert is_valid_nick(sanitize_nick(wanted, 30), 30)


def test_nick_helpers() -> None:
    assert sanitize_nick("José Müller[m]") == "Jose_Muller[m]"
    assert sanitize_nick("1abc") == "_1abc"
    assert nick_variants("alice", 6)[:3] == ["alice_", "alic__", "alice1"]
    assert is_valid_channel("#python") and not is_valid_channel("python")
    assert not is_valid_channel("#a b") and not is_valid_channel("#a,b")


# -- formatting -----------------------------------------------------------------------------
def test_irc_to_matrix() -> None:
    plain, html = irc_to_matrix("\x02bold\x02 \x1ditalic\x1d \x0304red\x03 \x11code\x11")
    assert plain == "bold italic red code"
    assert html == '<b>bold</b> <i>italic</i> <font data-mx-color="#ff0000">red</font> <code>code</code>'
    assert irc_to_matrix("plain https://example.org") == ("plain https://example.org", None)
    assert irc_to_matrix("<b>not html</b>")[1] is None  # no formatting: plain body only
    _, html = irc_to_matrix("\x02x <y> https://e.org/?a=1&b=2")
    assert html == '<b>x &lt;y&gt; <a href="https://e.org/?a=1&amp;b=2">https://e.org/?a=1&amp;b=2</a></b>'


def test_matrix_to_irc() -> None:
    html = ('<b>bold</b> <em>it</em> <u>u</u> <del>s</del> <code>c</code> '
            '<font data-mx-color="#ff0000">red</font> <a href="https://e.org">site</a>')
    text = matrix_to_irc("fallback", html, lambda _: None)
    assert text == "\x02bold\x02 \x1dit\x1d \x1fu\x1f \x1es\x1e \x11c\x11 \x0304red\x03 site (https://e.org)"
    assert strip_formatting(text) == "bold it u s c red site (https://e.org)"


def test_pills_become_nicks_and_replies_are_dropped() -> None:
    html = ('<mx-reply><blockquote>quoted</blockquote></mx-reply>'
            '<a href="https://matrix.to/#/@bob:hs">Bob</a>: hi <a href="https://matrix.to/#/@x:hs">X</a>')
    nicks = {"@bob:hs": "bob"}
    assert matrix_to_irc("", html, nicks.get) == "bob: hi X"


def test_multiline_html_keeps_lines() -> None:
    assert matrix_to_irc("", "<p>one</p><p>two<br>three</p>", lambda _: None) == "one\ntwo\nthree"
    assert matrix_to_irc("", "<pre><code>a\nb</code></pre>", lambda _: None) == "a\nb"


@pytest.mark.parametrize("text", ["\x02\x02", "\x03", "\x0399,99x", "\x04ff0000red"])
def test_odd_codes_do_not_crash(text: str) -> None:
    irc_to_matrix(text)


def test_an_edit_goes_to_irc_as_a_star_correction() -> None:
    from connectors.api import MessageKind, OutgoingMessage
    from connectors.irc.render import render_lines

    edit = OutgoingMessage(kind=MessageKind.TEXT, text="hello", edit_of="$original")
    assert [line.text for line in render_lines(edit, target="#c", nick="a", mask_bytes=None)] == ["PRIVMSG #c :* hello"]
