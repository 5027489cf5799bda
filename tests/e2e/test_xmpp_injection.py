"""Control characters from Matrix never reach Prosody (real Synapse + Prosody + the bridge).

Prosody closes a component's stream on one character XML forbids: every puppet and portal of
the network would drop, and the bridge would reconnect. Here a topic, a kick reason and a part
reason carry `\\x0c` and `\\x00`: an XMPP observer sees them arrive cleaned, and the bridge's
component never lost its stream (its log has no disconnect and no second connect, and a
message sent afterwards still flows).

Synapse 1.163 accepts `\\u000c` and `\\u0000` in the JSON of a topic and of a leave or kick
reason (SQLite store) and hands them to the bridge as they are.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from connectors.xmpp import stanzas
from tests.e2e import test_xmpp
from tests.e2e.matrix import member_event
from tests.e2e.test_xmpp import WAIT, Portal, XmppStack, XmppUser, ghost, groupchat

# The same fixtures as test_xmpp.py (this module gets its own stack of Synapse + Prosody + bridge).
xmpp_stack = test_xmpp.xmpp_stack
portal = test_xmpp.portal

pytestmark = pytest.mark.e2e

CONNECTED = "XMPP component matrix.xmpp.localhost connected"
DISCONNECTED = "XMPP component disconnected"


def stream_events(xmpp_stack: XmppStack) -> tuple[int, int]:
    """How often the bridge's component has connected and disconnected so far (from its log)."""
    text = xmpp_stack.local.bridge.log_path.read_text(errors="replace")
    return text.count(CONNECTED), text.count(DISCONNECTED)


async def make_moderator(p: Portal) -> None:
    """The room's owner (the XMPP user) makes the puppet a moderator; its Matrix user gets PL 50."""
    iq = p.xmpp.client.make_iq_set(ito=p.room)
    query = ET.Element(f"{{{stanzas.NS_MUC_ADMIN}}}query")
    ET.SubElement(query, f"{{{stanzas.NS_MUC_ADMIN}}}item", {"nick": p.puppet_nick, "role": "moderator"})
    iq.append(query)
    await asyncio.wait_for(iq.send(), WAIT)
    deadline = time.monotonic() + WAIT
    for _ in range(int(WAIT / 0.2) + 1):
        if (await p.matrix.state(p.room_id, "m.room.power_levels")).get("users", {}).get(p.matrix.user_id) == 50:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    raise AssertionError("the puppet's moderator role did not reach Matrix")


async def still_connected(xmpp_stack: XmppStack, p: Portal, before: tuple[int, int], text: str) -> None:
    """A message sent now still flows, and the component's stream never dropped in between."""
    await p.matrix.send_text(p.room_id, text)
    await p.xmpp.wait_message(groupchat(p.room, p.puppet_nick, text))
    assert before[0] >= 1, "the bridge's log does not say when the component connects"
    assert stream_events(xmpp_stack) == before, "the component's stream dropped and reconnected"


async def test_a_topic_with_control_characters(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    await make_moderator(p)
    before = stream_events(xmpp_stack)
    await p.matrix.set_state(p.room_id, "m.room.topic", {"topic": "to\x0cpic\x00 with controls"})
    # Synapse keeps them: the bridge is handed the control characters themselves.
    assert (await p.matrix.state(p.room_id, "m.room.topic"))["topic"] == "to\x0cpic\x00 with controls"
    subject = await p.xmpp.wait_message(lambda m: m.subject == "topic with controls", what="the cleaned subject")
    assert subject.frm == f"{p.room}/{p.puppet_nick}"
    await still_connected(xmpp_stack, p, before, "after the topic")


async def test_a_kick_reason_with_control_characters(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    await make_moderator(p)
    async with XmppUser(xmpp_stack.prosody, f"v{uuid.uuid4().hex[:6]}") as victim:
        await victim.join(p.room, victim.name)
        await p.matrix.wait_for_event(p.room_id, member_event(ghost(victim.jid), "join"), what="the victim's ghost")
        before = stream_events(xmpp_stack)
        # A kick from Matrix becomes a muc#admin kick; the room reports the cleaned reason.
        await p.matrix.kick(p.room_id, ghost(victim.jid), "out\x0c you\x00 go")
        kick_event = await p.matrix.state(p.room_id, "m.room.member", ghost(victim.jid))
        assert kick_event["membership"] == "leave" and kick_event["reason"] == "out\x0c you\x00 go"
        kicked = await p.xmpp.wait_presence(
            lambda pr: pr.frm == f"{p.room}/{victim.name}" and not pr.available and stanzas.KICKED in pr.codes,
            what="the kick")
        assert kicked.muc is not None and kicked.muc.reason == "out you go"
    await still_connected(xmpp_stack, p, before, "after the kick")


async def test_a_part_reason_with_control_characters(xmpp_stack: XmppStack, portal: Portal) -> None:
    p = portal
    before = stream_events(xmpp_stack)
    await p.matrix.leave(p.room_id, reason="bye\x0c for\x00 now")
    leave_event = await p.matrix.wait_for_event(p.room_id, member_event(p.matrix.user_id, "leave"), what="the leave")
    assert leave_event["content"]["reason"] == "bye\x0c for\x00 now"
    left = await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/{p.puppet_nick}" and not pr.available,
                                      what="the puppet leaving")
    assert left.status == "bye for now"
    # The Matrix user comes back and speaks, with no reconnect in between.
    seen = len(p.xmpp.presences)
    await p.matrix.join(p.room_id)
    await p.xmpp.wait_presence(lambda pr: pr.frm == f"{p.room}/{p.puppet_nick}" and pr.available,
                               what="the puppet rejoining", since=seen)
    await still_connected(xmpp_stack, p, before, "back again")
