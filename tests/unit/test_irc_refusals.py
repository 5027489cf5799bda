"""Which IRC replies are refusals the Matrix side must hear of, and how often."""

from __future__ import annotations

from irc.client import Event

from connectors.irc.refusals import Refusal, RefusalFilter, as_send_if_joined, refusal


def test_refusals_of_joins_and_lines_keep_the_servers_words() -> None:
    banned = Event("bannedfromchan", "irc.test", "alice", ["#room", "Cannot join channel (+b)"])
    assert refusal(banned) == Refusal("join", "#room", "Cannot join channel (+b)", "bannedfromchan")
    secure_only = Event("489", "irc.test", "alice", ["#room", "Cannot join channel; SSL users only (+z)"])
    assert refusal(secure_only) == Refusal("join", "#room", "Cannot join channel; SSL users only (+z)", "489")
    moderated = Event("cannotsendtochan", "irc.test", "alice", ["#room", "Cannot send to channel (+m)"])
    assert refusal(moderated) == Refusal("send", "#room", "Cannot send to channel (+m)", "cannotsendtochan")
    gone = Event("nosuchnick", "irc.test", "alice", ["bob", "No such nick"])
    assert refusal(gone) == Refusal("send", "bob", "No such nick", "nosuchnick")


def test_other_replies_are_not_refusals() -> None:
    assert refusal(Event("pubmsg", "bob!b@h", "#room", ["hi"])) is None
    assert refusal(Event("endofnames", "irc.test", "alice", ["#room", "End of /NAMES list."])) is None
    assert refusal(Event("bannedfromchan", "irc.test", "alice", [])) is None  # nothing to name


def test_a_477_in_a_channel_we_are_in_refused_a_line_not_a_join() -> None:
    needs_account = Refusal("join", "#room", "You need a registered nick", "nochanmodes")
    assert as_send_if_joined(needs_account, joined=True).what == "send"
    assert as_send_if_joined(needs_account, joined=False).what == "join"


def test_a_refused_join_is_told_once_until_joined_and_a_refused_line_once_per_burst() -> None:
    told = RefusalFilter()
    invite_only = Refusal("join", "#room", "Cannot join channel (+i)", "inviteonlychan")
    assert told.worth_telling("#room", invite_only)
    assert not told.worth_telling("#room", invite_only)  # the JOIN again at every reconnect
    told.joined_or_asked("#room")  # the user asked again (or it worked once)
    assert told.worth_telling("#room", invite_only)

    moderated = Refusal("send", "#room", "Cannot send to channel (+m)", "cannotsendtochan")
    assert told.worth_telling("#room", moderated)
    # A long message is many lines, each refused alike: one notice for them all.
    assert not any(told.worth_telling("#room", moderated) for _ in range(20))
    other = Refusal("send", "#room", "You are banned (+b)", "cannotsendtochan")
    assert told.worth_telling("#room", other)  # a different reason is news
