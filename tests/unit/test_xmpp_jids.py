"""JIDs: room and user ids, puppet JIDs (XEP-0106 escaping), nicks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.xmpp.jids import (
    clean_nick,
    domain_error,
    escape_node,
    nick_template_error,
    normalize_room,
    normalize_user,
    puppet_jid,
    unescape_node,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("Room@MUC.Example.org", "room@muc.example.org"),
    ("lobby", "lobby@muc.test"),  # the configured MUC service
    ("lobby@other.test", "lobby@other.test"),
    ("room@muc.test/nick", None),  # an occupant, not a room
    ("muc.test", "muc.test@muc.test"),  # without "@" a name is a room's node
    ("", None),
    ("a b@muc.test", None),
    ("#chan", "#chan@muc.test"),
    ("x@y\n", None),
])
def test_rooms(name: str, expected: str | None) -> None:
    assert normalize_room(name, "muc.test") == expected


def test_rooms_without_a_default_domain_need_one() -> None:
    assert normalize_room("lobby") is None
    assert normalize_room("muc.test") is None  # a service, not a room


@pytest.mark.parametrize(("name", "expected"), [
    ("Alice@Example.ORG", "alice@example.org"),
    ("alice@example.org/Phone", "alice@example.org/Phone"),
    ("room@muc.test/Nick Name", "room@muc.test/Nick Name"),  # occupant JIDs keep the nick's case
    ("bob", "bob@xmpp.test"),
    ("xmpp.test", "xmpp.test@xmpp.test"),  # without "@" a name is a user on the default domain
    ("@xmpp.test", None),
])
def test_users(name: str, expected: str | None) -> None:
    assert normalize_user(name, "xmpp.test") == expected


def test_users_without_a_default_domain_need_one() -> None:
    assert normalize_user("bob") is None
    assert normalize_user("xmpp.test") is None  # a server or component, not a user


def test_normalised_ids_are_fixed_points() -> None:
    # The core asks normalize_user(id) == id before it makes a ghost for an unknown id.
    for value in ("alice@example.org", "room@muc.test/Nick Name", "a\\2fb@x.test"):
        assert normalize_user(normalize_user(value) or "") == normalize_user(value)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._=-/+\\@ :'\"&<>", min_size=1, max_size=40))
def test_escaping_round_trips(localpart: str) -> None:
    node = escape_node(localpart)
    assert unescape_node(node) == localpart
    assert not any(c in node for c in " \"&'/:<>@")


def test_puppet_jids() -> None:
    assert puppet_jid("alice", "matrix.xmpp.test") == "alice@matrix.xmpp.test"
    assert puppet_jid("a/b", "matrix.xmpp.test") == "a\\2fb@matrix.xmpp.test"
    assert puppet_jid("x" * 2000, "matrix.xmpp.test") is None


def test_nicks() -> None:
    assert clean_nick("alice[m]") == "alice[m]"
    assert clean_nick("  spaced  ") == "spaced"
    assert clean_nick("bell\x07\nnick") == "bellnick"
    assert clean_nick("\x00\x01", "fallback") == "fallback"
    assert len(clean_nick("é" * 1000).encode()) <= 1023


def test_config_checks() -> None:
    assert nick_template_error("{localpart}[m]") is None
    assert nick_template_error("{displayname}") is None
    assert "unknown placeholder" in (nick_template_error("{nick}") or "")
    assert nick_template_error("fixed") is not None
    assert domain_error("matrix.xmpp.test") is None
    assert domain_error("user@xmpp.test") is not None
    assert domain_error("nodots") is not None
