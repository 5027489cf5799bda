"""The bot occupant's view of MUCs -> remote events (pure logic, stanzas from XML text)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from connectors.api import (
    ChatRef,
    MessageKind,
    RemoteJoin,
    RemoteLeave,
    RemoteMembers,
    RemoteMessage,
    RemoteNotice,
    RemoteRename,
    RemoteRoleChange,
    RemoteTopic,
    RemoteUser,
    Role,
)
from connectors.xmpp.rooms import RoomTracker
from connectors.xmpp.stanzas import parse_message, parse_presence

ROOM = "room@muc.test"
BOT = "matrix.test"
NS = 'xmlns="jabber:component:accept"'
MUC_USER = "http://jabber.org/protocol/muc#user"


def presence(nick: str, *, jid: str | None = None, type: str = "", role: str = "participant",
             affiliation: str = "none", codes: tuple[int, ...] = (), item_nick: str = "", actor: str = "",
             reason: str = "", status: str = "") -> ET.Element:
    attrs = f' jid="{jid}"' if jid else ""
    attrs += f' nick="{item_nick}"' if item_nick else ""
    inner = f'<actor nick="{actor}"/>' if actor else ""
    inner += f"<reason>{reason}</reason>" if reason else ""
    status_el = f"<status>{status}</status>" if status else ""
    type_attr = f' type="{type}"' if type else ""
    xml = (f'<presence {NS} from="{ROOM}/{nick}" to="{BOT}"{type_attr}>{status_el}'
           f'<x xmlns="{MUC_USER}"><item role="{role}" affiliation="{affiliation}"{attrs}>{inner}</item>'
           + "".join(f'<status code="{c}"/>' for c in codes) + "</x></presence>")
    return ET.fromstring(xml)


def message(nick: str, body: str | None = None, *, subject: str | None = None, id: str = "m1",
            extra: str = "") -> ET.Element:
    frm = f"{ROOM}/{nick}" if nick else ROOM
    parts = f"<body>{body}</body>" if body is not None else ""
    parts += f"<subject>{subject}</subject>" if subject is not None else ""
    return ET.fromstring(f'<message {NS} from="{frm}" to="{BOT}" type="groupchat" id="{id}">{parts}{extra}</message>')


@dataclass
class FakeEdit:
    chat: ChatRef
    sender: RemoteUser
    target_id: str
    kind: MessageKind
    text: str
    html: str | None
    timestamp_ms: int | None
    remote_id: str | None


def make(puppets: dict[tuple[str, str], str] | None = None, edit: object = None) -> tuple[RoomTracker, list]:
    events: list = []
    by_jid = {"alice@matrix.test": "@alice:hs"}

    def puppet_of(room: str, nick: str, real: str | None) -> str | None:
        if real is not None:
            return by_jid.get(real)
        return (puppets or {}).get((room, nick))

    removed: list = []
    tracker = RoomTracker(emit=events.append, component_domain=BOT, puppet_of=puppet_of, edit_event=edit,
                          on_bot_removed=lambda room, why: removed.append((room, why)))
    tracker.removed = removed  # type: ignore[attr-defined]
    return tracker, events


def joined(tracker: RoomTracker, *others: ET.Element) -> None:
    tracker.joining(ROOM, "rapture")
    for p in others:
        tracker.presence(parse_presence(p))
    tracker.presence(parse_presence(presence("rapture", jid=BOT, role="moderator", affiliation="owner",
                                             codes=(110, 100))))


def feed(tracker: RoomTracker, elem: ET.Element) -> None:
    if elem.tag.endswith("presence"):
        tracker.presence(parse_presence(elem))
    else:
        tracker.message(parse_message(elem))


def test_join_reports_members_with_roles_but_not_our_own() -> None:
    tracker, events = make()
    joined(tracker,
           presence("Op", jid="op@x.test/a", role="moderator", affiliation="owner"),
           presence("bob", jid="bob@x.test/phone"),
           presence("anon"),  # the room hides this one's JID
           presence("alice[m]", jid="alice@matrix.test"),  # a puppet
           presence("stale[m]", jid="stale@matrix.test"))  # ours, from before a crash
    (members,) = events
    assert isinstance(members, RemoteMembers) and members.chat == ChatRef(ROOM)
    assert [(u.id, u.name, r) for u, r in members.members] == [
        ("op@x.test", "Op", Role.MODERATOR), ("bob@x.test", "bob", Role.MEMBER),
        (f"{ROOM}/anon", "anon", Role.MEMBER)]


def test_joins_leaves_and_kicks() -> None:
    tracker, events = make()
    joined(tracker, presence("Op", jid="op@x.test", role="moderator"))
    events.clear()
    feed(tracker, presence("carol", jid="carol@x.test/laptop"))
    feed(tracker, presence("carol", jid="carol@x.test/laptop", type="unavailable", status="bye"))
    feed(tracker, presence("dave", jid="dave@x.test"))
    feed(tracker, presence("dave", jid="dave@x.test", type="unavailable", role="none", codes=(307,),
                           actor="Op", reason="behave"))
    carol, dave = RemoteUser("carol@x.test", "carol"), RemoteUser("dave@x.test", "dave")
    assert events == [
        RemoteJoin(chat=ChatRef(ROOM), user=carol, role=Role.MEMBER),
        RemoteLeave(chat=ChatRef(ROOM), user=carol, reason="bye"),
        RemoteJoin(chat=ChatRef(ROOM), user=dave, role=Role.MEMBER),
        RemoteLeave(chat=ChatRef(ROOM), user=dave, reason="behave", kicked_by=RemoteUser("op@x.test", "Op")),
    ]


def test_nick_change_with_real_jid_renames_the_ghost_in_place() -> None:
    tracker, events = make()
    joined(tracker, presence("carol", jid="carol@x.test/a"))
    events.clear()
    feed(tracker, presence("carol", jid="carol@x.test/a", type="unavailable", codes=(303,), item_nick="caz"))
    feed(tracker, presence("caz", jid="carol@x.test/a"))
    assert events == [RemoteJoin(chat=ChatRef(ROOM), user=RemoteUser("carol@x.test", "caz"), role=Role.MEMBER)]


def test_nick_change_in_an_anonymous_room_is_a_rename() -> None:
    tracker, events = make()
    joined(tracker, presence("carol"))
    events.clear()
    feed(tracker, presence("carol", type="unavailable", codes=(303,), item_nick="caz"))
    feed(tracker, presence("caz"))
    assert events == [RemoteRename(chat=ChatRef(ROOM), old=RemoteUser(f"{ROOM}/carol", "carol"),
                                   new=RemoteUser(f"{ROOM}/caz", "caz"))]
    assert tracker.nick_of(ROOM, f"{ROOM}/caz") == "caz"


def test_one_person_under_two_nicks_is_one_ghost() -> None:
    tracker, events = make()
    joined(tracker, presence("bob", jid="bob@x.test/phone"))
    events.clear()
    feed(tracker, presence("bob2", jid="bob@x.test/laptop"))
    feed(tracker, presence("bob2", jid="bob@x.test/laptop", type="unavailable"))
    assert events == []
    feed(tracker, presence("bob", jid="bob@x.test/phone", type="unavailable"))
    assert [type(e) for e in events] == [RemoteLeave]


def test_role_changes_reach_ghosts_and_puppets() -> None:
    tracker, events = make()
    joined(tracker, presence("bob", jid="bob@x.test"), presence("alice[m]", jid="alice@matrix.test"))
    events.clear()
    feed(tracker, presence("bob", jid="bob@x.test", role="moderator"))
    feed(tracker, presence("alice[m]", jid="alice@matrix.test", role="moderator"))
    feed(tracker, presence("bob", jid="bob@x.test", role="moderator"))  # a status update: no change
    assert events == [
        RemoteRoleChange(chat=ChatRef(ROOM), user=RemoteUser("bob@x.test", "bob"), role=Role.MODERATOR),
        RemoteRoleChange(chat=ChatRef(ROOM), user=RemoteUser("alice@matrix.test", "alice[m]"),
                         role=Role.MODERATOR, is_puppet_of="@alice:hs"),
    ]


def test_puppets_leaving_are_silent_unless_kicked() -> None:
    tracker, events = make()
    joined(tracker, presence("alice[m]", jid="alice@matrix.test"))
    events.clear()
    feed(tracker, presence("alice[m]", jid="alice@matrix.test", type="unavailable"))
    assert events == []
    feed(tracker, presence("alice[m]", jid="alice@matrix.test"))
    feed(tracker, presence("alice[m]", jid="alice@matrix.test", type="unavailable", codes=(307,), actor="Op"))
    (leave,) = events
    assert isinstance(leave, RemoteLeave) and leave.is_puppet_of == "@alice:hs"
    assert leave.kicked_by == RemoteUser(f"{ROOM}/Op", "Op")


def test_puppet_nicks_count_as_ours_before_the_room_shows_jids() -> None:
    tracker, events = make(puppets={(ROOM, "bob[m]"): "@bob:hs"})
    joined(tracker, presence("bob[m]"))
    events.clear()
    feed(tracker, message("bob[m]", "from matrix"))
    feed(tracker, presence("bob[m]", type="unavailable"))
    assert events == []


def test_messages_emotes_subjects_and_room_notices() -> None:
    tracker, events = make()
    joined(tracker, presence("bob", jid="bob@x.test"), presence("alice[m]", jid="alice@matrix.test"))
    events.clear()
    feed(tracker, message("bob", "hello", id="a1"))
    feed(tracker, message("bob", "/me waves", id="a2",
                          extra='<delay xmlns="urn:xmpp:delay" stamp="2024-01-02T03:04:05Z"/>'))
    feed(tracker, message("alice[m]", "echo of a puppet"))
    feed(tracker, message("rapture", "echo of the bot"))
    feed(tracker, message("bob", subject="new subject"))
    feed(tracker, message("", subject=""))  # the room's current subject on join
    feed(tracker, message("", "This room is now logged"))
    feed(tracker, message("bob", "alice[m]: hi"))  # not a puppet's nick for this tracker: no pill
    bob, chat = RemoteUser("bob@x.test", "bob"), ChatRef(ROOM)
    assert events == [
        RemoteMessage(chat=chat, sender=bob, kind=MessageKind.TEXT, text="hello", remote_id="a1"),
        RemoteMessage(chat=chat, sender=bob, kind=MessageKind.EMOTE, text="waves", remote_id="a2",
                      timestamp_ms=1704164645000),
        RemoteTopic(chat=chat, topic="new subject", changed_by=bob),
        RemoteTopic(chat=chat, topic=""),
        RemoteNotice(chat=chat, text="This room is now logged"),
        RemoteMessage(chat=chat, sender=bob, kind=MessageKind.TEXT, text="alice[m]: hi", remote_id="m1"),
    ]


def test_mentions_of_puppets_become_pills() -> None:
    tracker, events = make(puppets={(ROOM, "carl[m]"): "@carl:hs"})
    joined(tracker, presence("bob", jid="bob@x.test"))
    events.clear()
    feed(tracker, message("bob", "carl[m]: ping"))
    assert events[0].html == '<a href="https://matrix.to/#/@carl:hs">carl[m]</a>: ping'


def test_corrections_are_edits_when_the_contract_has_them() -> None:
    replace = '<replace xmlns="urn:xmpp:message-correct:0" id="a1"/>'
    tracker, events = make()
    joined(tracker, presence("bob", jid="bob@x.test"))
    events.clear()
    feed(tracker, message("bob", "fixed", id="a2", extra=replace))
    assert events[0].text == "* fixed" and isinstance(events[0], RemoteMessage)

    tracker, events = make(edit=FakeEdit)
    joined(tracker, presence("bob", jid="bob@x.test"))
    events.clear()
    feed(tracker, message("bob", "fixed", id="a2", extra=replace))
    assert events == [FakeEdit(chat=ChatRef(ROOM), sender=RemoteUser("bob@x.test", "bob"), target_id="a1",
                               kind=MessageKind.TEXT, text="fixed", html=None, timestamp_ms=None, remote_id="a2")]


def test_nothing_before_the_join_completes_and_after_a_reset() -> None:
    tracker, events = make()
    tracker.joining(ROOM, "rapture")
    feed(tracker, message("bob", "history"))
    feed(tracker, presence("bob", jid="bob@x.test", type="unavailable"))
    assert events == []
    joined(tracker)
    tracker.reset()
    feed(tracker, message("bob", "after reset"))
    assert [type(e) for e in events] == [RemoteMembers]


def test_the_bot_being_kicked_is_reported() -> None:
    tracker, events = make()
    joined(tracker)
    feed(tracker, presence("rapture", jid=BOT, type="unavailable", codes=(110, 307), actor="Op", reason="spam"))
    assert tracker.removed == [(ROOM, "kicked by Op: spam")]  # type: ignore[attr-defined]
    assert not tracker.joined(ROOM)
