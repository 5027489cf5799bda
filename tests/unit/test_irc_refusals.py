"""Which IRC replies are refusals the Matrix side must hear of."""

from __future__ import annotations

from irc.client import Event

from connectors.irc.refusals import Refusal, refusal


def test_refusals_of_joins_and_lines_keep_the_servers_words() -> None:
    banned = Event("bannedfromchan", "irc.test", "alice", ["#room", "Cannot join channel (+b)"])
    assert refusal(banned) == Refusal("join", "#room", "Cannot join channel (+b)")
    secure_only = Event("489", "irc.test", "alice", ["#room", "Cannot join channel; SSL users only (+z)"])
    assert refusal(secure_only) == Refusal("join", "#room", "Cannot join channel; SSL users only (+z)")
    moderated = Event("cannotsendtochan", "irc.test", "alice", ["#room", "Cannot send to channel (+m)"])
    assert refusal(moderated) == Refusal("send", "#room", "Cannot send to channel (+m)")
    gone = Event("nosuchnick", "irc.test", "alice", ["bob", "No such nick"])
    assert refusal(gone) == Refusal("send", "bob", "No such nick")


def test_other_replies_are_not_refusals() -> None:
    assert refusal(Event("pubmsg", "bob!b@h", "#room", ["hi"])) is None
    assert refusal(Event("endofnames", "irc.test", "alice", ["#room", "End of /NAMES list."])) is None
    assert refusal(Event("bannedfromchan", "irc.test", "alice", [])) is None  # nothing to name
