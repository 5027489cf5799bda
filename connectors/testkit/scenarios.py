"""The conformance scenarios: each takes a `Harness` and checks one behaviour end to end."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connectors.api import MessageKind
from connectors.testkit.harness import Event, Harness, MatrixClient

WAIT = 30.0


# -- matchers ------------------------------------------------------------------------------------
def message(sender: str, body: str | None = None, msgtype: str | None = None) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        content = event.get("content", {})
        return (event.get("type") == "m.room.message" and event.get("sender") == sender
                and (body is None or content.get("body") == body)
                and (msgtype is None or content.get("msgtype") == msgtype))
    return match


def membership(user_id: str, state: str) -> Callable[[Event], bool]:
    return lambda e: (e.get("type") == "m.room.member" and e.get("state_key") == user_id
                      and e.get("content", {}).get("membership") == state)


def token() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Portal:
    chat: str
    room_id: str
    matrix: MatrixClient
    user: str  # a remote user in the chat
    puppet: str  # the Matrix user's remote name


@asynccontextmanager
async def portal(h: Harness) -> AsyncIterator[Portal]:
    """A fresh chat with one remote user in it, and a Matrix user joined through the alias."""
    chat, user = await h.new_chat(), await h.new_user()
    await h.join(user, chat)
    async with h.matrix_client() as m:
        room_id = await m.join(h.alias(chat))
        puppet = h.puppet_name(m.user_id)
        await h.wait_joined(chat, puppet)
        yield Portal(chat, room_id, m, user, puppet)


async def _until(check: Callable[[], object], what: str) -> None:
    """Poll an async `check` (returning truthy when done) for a bounded time."""
    for _ in range(int(WAIT / 0.2)):
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} within {WAIT} s")


# -- scenarios ---------------------------------------------------------------------------------
async def message_both_ways(h: Harness) -> None:
    async with portal(h) as p:
        text = f"from remote {token()}"
        sent = f"hello {token()}"
        await p.matrix.send_text(p.room_id, sent)
        await h.wait_said(p.chat, p.puppet, sent)
        await h.say(p.user, p.chat, text)
        event = await p.matrix.wait_for_event(p.room_id, message(h.ghost(p.user), text), what="remote message")
        assert event["content"]["msgtype"] == "m.text"
        member = await p.matrix.state(p.room_id, "m.room.member", h.ghost(p.user))
        assert member.get("displayname") == p.user


async def emote_and_notice(h: Harness) -> None:
    async with portal(h) as p:
        for kind, flag in ((MessageKind.EMOTE, h.caps.emotes), (MessageKind.NOTICE, h.caps.notices)):
            if not flag:
                continue
            text = f"r {kind.name} {token()}"
            await h.say(p.user, p.chat, text, kind)
            await p.matrix.wait_for_event(p.room_id, message(h.ghost(p.user), text, kind.value), what=kind.name)
            out = f"out {kind.name} {token()}"
            await p.matrix.send_text(p.room_id, out, msgtype=kind.value)
            await h.wait_said(p.chat, p.puppet, out, kind)


async def formatting_round_trip(h: Harness) -> None:
    raw, body, html, matrix_html, remote = h.formatted_samples()
    async with portal(h) as p:
        await h.say(p.user, p.chat, raw)
        event = await p.matrix.wait_for_event(p.room_id, message(h.ghost(p.user), body), what="formatted")
        assert event["content"].get("formatted_body") == html
        await p.matrix.send_content(p.room_id, {
            "msgtype": "m.text", "body": re.sub(r"<[^>]+>", "", matrix_html),
            "format": "org.matrix.custom.html", "formatted_body": matrix_html,
        })
        await h.wait_said(p.chat, p.puppet, remote)


async def formatting_degrades(h: Harness) -> None:
    """Without formatting on the network, a formatted Matrix message still arrives, readable."""
    async with portal(h) as p:
        await p.matrix.send_content(p.room_id, {
            "msgtype": "m.text", "body": "bold it",
            "format": "org.matrix.custom.html", "formatted_body": "<b>bold</b> <i>it</i>",
        })
        await h.wait_said(p.chat, p.puppet, h.unformatted_rendering())


async def join_and_leave(h: Harness) -> None:
    async with portal(h) as p:
        other = await h.new_user()
        await h.join(other, p.chat)
        await p.matrix.wait_for_event(p.room_id, membership(h.ghost(other), "join"), what="join")
        await h.leave(other, p.chat, "bye now")
        left = await p.matrix.wait_for_event(p.room_id, membership(h.ghost(other), "leave"), what="leave")
        assert "bye now" in left["content"].get("reason", "")


async def rename(h: Harness) -> None:
    """A remote user renames. Networks differ: on IRC the name is the identity, so a new ghost
    joins and the old one leaves; on XMPP the user stays the same, so the same ghost just
    shows the new name. Either way, something new must happen on Matrix for the rename, and
    the user's next message must come from the ghost of the new name."""
    async with portal(h) as p:
        await p.matrix.wait_for_event(p.room_id, membership(h.ghost(p.user), "join"), what="ghost join")
        before = {e.get("event_id") for e in await p.matrix.messages(p.room_id)}
        new = await h.rename(p.user, p.chat)

        def fresh_join(event: dict) -> bool:
            return membership(h.ghost(new), "join")(event) and event.get("event_id") not in before

        await p.matrix.wait_for_event(p.room_id, fresh_join, what="the rename shown on Matrix")
        if h.ghost(new) != h.ghost(p.user):
            await p.matrix.wait_for_event(p.room_id, membership(h.ghost(p.user), "leave"),
                                          what="old ghost leaving")
        await h.say(new, p.chat, "after the rename")
        await p.matrix.wait_for_event(p.room_id, message(h.ghost(new), "after the rename"))


async def topic(h: Harness) -> None:
    async with portal(h) as p:
        wanted = f"topic {token()}"
        await h.set_topic(p.user, p.chat, wanted)

        async def is_set() -> bool:
            try:
                return (await p.matrix.state(p.room_id, "m.room.topic")).get("topic") == wanted
            except Exception:  # no topic yet
                return False
        await _until(is_set, "no remote topic on the portal")


async def dm_both_ways(h: Harness) -> None:
    async with portal(h) as p:
        await h.say_dm(p.user, p.matrix.user_id, "psst, private")
        room = await p.matrix.wait_for_invite()
        await p.matrix.join(room)
        await p.matrix.wait_for_event(room, message(h.ghost(p.user), "psst, private"), what="remote DM")
        await p.matrix.send_text(room, "private answer")
        await h.wait_dm(p.user, p.puppet, "private answer")

        other = await h.new_user()
        dm = await p.matrix.create_room(invite=[h.ghost(other)], is_direct=True)
        await p.matrix.wait_for_membership(dm, h.ghost(other), "join")
        await p.matrix.send_text(dm, "hello from matrix")
        await h.wait_dm(other, p.puppet, "hello from matrix")
        await h.say_dm(other, p.matrix.user_id, "hi back")
        await p.matrix.wait_for_event(dm, message(h.ghost(other), "hi back"), what="DM answer")


async def reconnect_without_loss(h: Harness) -> None:
    async with portal(h) as p:
        await p.matrix.send_text(p.room_id, "before")
        await h.wait_said(p.chat, p.puppet, "before")
        texts = [f"during {n} {token()}" for n in range(3)]
        async with h.outage():
            for text in texts:
                await p.matrix.send_text(p.room_id, text)
        for text in texts:  # none is lost (the outbox keeps them while the network is down)
            await h.wait_said(p.chat, p.puppet, text)
        await h.say(p.user, p.chat, "after")
        await p.matrix.wait_for_event(p.room_id, message(h.ghost(p.user), "after"), what="message after")


async def bad_remote_input(h: Harness) -> None:
    """Invalid UTF-8, control characters and an oversized message: the bridge stays up."""
    async with portal(h) as p:
        if h.caps.raw_bytes:
            await h.say_bytes(p.user, p.chat, b"bad \xff\xfe utf-8 \xc3")
        await h.say(p.user, p.chat, "ctl \x00\x01\x07\x1b[31m \u202e end")
        await h.say(p.user, p.chat, "x" * h.caps.max_bad_input)
        await h.say(p.user, p.chat, "still alive")
        await p.matrix.wait_for_event(p.room_id, message(h.ghost(p.user), "still alive"), what="message after")
        await p.matrix.send_text(p.room_id, "me too")
        await h.wait_said(p.chat, p.puppet, "me too")
