"""Localpart escaping and templates (pure logic)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.identity import (
    LOCALPART_RE,
    TemplateError,
    check_alias_template,
    check_ghost_template,
    escape_localpart,
    namespace_regex,
    unescape_localpart,
)


@given(st.text(min_size=1, max_size=64))
def test_every_string_escapes_to_a_valid_localpart_and_back(value: str) -> None:
    escaped = escape_localpart(value)
    assert LOCALPART_RE.match(escaped)
    assert unescape_localpart(escaped) == value


def test_escaping_examples() -> None:
    assert escape_localpart("alice") == "alice"
    assert escape_localpart("Alice") == "=41lice"
    assert escape_localpart("a=b") == "a=3db"
    assert escape_localpart("[m]") == "=5bm=5d"
    assert escape_localpart("é") == "=c3=a9"


@pytest.mark.parametrize("bad", ["=", "=4", "=zz", "A", "é", " "])
def test_unescape_rejects_what_escape_cannot_produce(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape_localpart(bad)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nick}", "fixed text"),
        ("IRC_{nick}", "cannot be part of a Matrix user ID"),
        ("{network}_{nickname}", "unknown placeholder {nickname}"),
        ("{network}_{nick}_{nick}", "exactly once"),
        ("{network}_", "exactly once"),
        ("{network}_{nick", "cannot parse"),
    ],
)
def test_bad_ghost_templates(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        check_ghost_template(template, "libera")


def test_good_templates() -> None:
    check_ghost_template("{network}_{nick}", "libera")
    check_ghost_template("irc/{network}/{nick}", "libera")
    check_alias_template("{network}_{channel}", "libera")
    with pytest.raises(TemplateError):
        check_alias_template("{network}:{channel}", "libera")


def test_namespace_regex_matches_only_its_domain() -> None:
    regex = namespace_regex("@", "libera_", "", "example.org")
    assert re.fullmatch(regex, "@libera_alice:example.org")
    assert not re.fullmatch(regex, "@libera_alice:exampleXorg")
    assert not re.fullmatch(regex, "@oftc_alice:example.org")
