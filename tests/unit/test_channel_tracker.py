"""The bot connection's view of channels -> remote events (pure logic, synthetic IRC events)."""

from __future__ import annotations

import asyncio

from irc.client import Event

from connectors.api import RemoteJoin, RemoteLeave, RemoteMembers, RemoteMessage, RemoteNotice, Role
from connectors.irc.channels import ChannelTracker
from connectors.irc.nicks import casefold


def make_tracker(grace: float = 0.2, puppets: dict[str, str] | None = None) -> tuple[ChannelTracker, list]:
    events: list = []
    tracker = ChannelTracker(
        emit=events.append, fold=casefold, own_nick=lambda: "rapture",
        puppet_of=(puppets or {}).get, netsplit_grace=grace,
    )
    return tracker, events


def ev(kind: str, source: str, target: str | None, *args: str) -> Event:
    return Event(kind, source, target, list(args))


def joined_channel(tracker: ChannelTracker, names: str) -> None:
    tracker.handle(ev("join", "rapture!r@h", "#c"))
    tracker.handle(ev("namreply", "srv.test", "rapture", "=", "#c", names))
    tracker.handle(ev("endofnames", "srv.test", "rapture", "#c", "End"))


def test_names_give_members_with_roles_without_our_own() -> None:
    tracker, events = make_tracker(puppets={casefold("alice[m]"): "@alice:hs"})
    joined_channel(tracker, "rapture @Op +Voice plain alice[m]")
    (members,) = events
    assert isinstance(members, RemoteMembers)
    assert [(u.name, r) for u, r in members.members] == [
        ("Op", Role.MODERATOR), ("Voice", Role.VOICED), ("plain", Role.MEMBER)]


async def test_netsplit_is_debounced() -> None:
    tracker, events = make_tracker(grace=0.2)
    joined_channel(tracker, "rapture " + " ".join(f"u{n}" for n in range(50)))
    events.clear()
    for n in range(50):
        tracker.handle(ev("quit", f"u{n}!u@h", None, "hub.test leaf.test"))
    for n in range(10):  # the split heals for some before the grace period ends
        tracker.handle(ev("join", f"u{n}!u@h", "#c"))
    assert events == []  # nothing mirrored while the split may still heal
    await asyncio.sleep(0.4)
    leaves = [e for e in events if isinstance(e, RemoteLeave)]
    notices = [e for e in events if isinstance(e, RemoteNotice)]
    assert len(leaves) == 40 and {e.user.name for e in leaves} == {f"u{n}" for n in range(10, 50)}
    assert not [e for e in events if isinstance(e, RemoteJoin)]  # the returners never left
    assert len(notices) == 1 and "40 users" in notices[0].text


def test_ordinary_quit_is_a_leave_with_reason() -> None:
    tracker, events = make_tracker()
    joined_channel(tracker, "rapture bob")
    events.clear()
    tracker.handle(ev("quit", "bob!b@h", None, "Quit: Client exited"))
    (leave,) = events
    assert isinstance(leave, RemoteLeave) and leave.reason == "Quit: Client exited"


def test_puppet_lines_are_not_bridged_back() -> None:
    tracker, events = make_tracker(puppets={casefold("alice[m]"): "@alice:hs"})
    joined_channel(tracker, "rapture alice[m] bob")
    events.clear()
    tracker.handle(ev("pubmsg", "alice[m]!a@h", "#c", "from matrix"))
    tracker.handle(ev("pubmsg", "bob!b@h", "#c", "from irc"))
    assert [e.text for e in events if isinstance(e, RemoteMessage)] == ["from irc"]
