"""Every IRC nick maps to a valid ghost MXID, and the MXID maps back to the same nick."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.identity import LOCALPART_RE, GhostNamer
from connectors.irc.nicks import casefold

NICK_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\`_^{|}"
NICK_REST = NICK_FIRST + "0123456789-"
nicks = st.builds(lambda a, b: a + b, st.sampled_from(NICK_FIRST), st.text(NICK_REST, max_size=29))


@given(nicks)
def test_nick_to_mxid_and_back(nick: str) -> None:
    namer = GhostNamer("libera", "{network}_{nick}", "example.org")
    remote_id = casefold(nick)
    mxid = namer.mxid(remote_id)
    localpart, _, domain = mxid[1:].partition(":")
    assert domain == "example.org"
    assert LOCALPART_RE.match(localpart), mxid
    assert namer.parse(mxid) == remote_id


@given(st.text(min_size=1, max_size=40))
def test_any_remote_id_round_trips_with_any_template(remote_id: str) -> None:
    namer = GhostNamer("oftc", "irc/{network}/{nick}.x", "hs.example")
    assert namer.parse(namer.mxid(remote_id)) == remote_id


def test_foreign_ids_are_not_ghosts() -> None:
    namer = GhostNamer("libera", "{network}_{nick}", "example.org")
    assert namer.parse("@alice:example.org") is None
    assert namer.parse("@libera_alice:other.org") is None
    assert namer.parse("@libera_=zz:example.org") is None
