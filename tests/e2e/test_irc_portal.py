"""A Matrix user and an IRC user talk in a channel through the bridge (real Synapse + InspIRCd)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, member_event, message_from, notice_from


@dataclass
class Channel:
    name: str
    room_id: str
    matrix: TestClient
    irc: IrcUser
    puppet: str  # the Matrix user's IRC nick
    ghost: str  # the IRC user's MXID


@pytest.fixture
async def channel(stack: Stack) -> AsyncIterator[Channel]:
    """A fresh channel with one IRC user in it and one Matrix user joined through the alias."""
    name = f"#t{uuid.uuid4().hex[:8]}"
    account = stack.account()
    localpart = account.user_id[1:].split(":")[0]
    irc_nick = f"i{uuid.uuid4().hex[:6]}"
    irc = IrcUser(stack.local.inspircd.port, irc_nick)
    await irc.registered()
    await irc.join(name)
    async with TestClient(stack.homeserver, account.user_id, account.token) as matrix:
        room_id = await matrix.join(f"#local_{name}:localhost")
        puppet = f"{localpart}[m]"
        await irc.wait_for(command("JOIN", name, nick="rapture"))
        await irc.wait_for(command("JOIN", name, nick=puppet))
        yield Channel(name, room_id, matrix, irc, puppet, f"@local_{irc_nick}:localhost")
    irc.close()


async def test_join_by_alias_and_talk_both_ways(stack: Stack, channel: Channel) -> None:
    # The portal is named after the channel.
    name = await channel.matrix.state(channel.room_id, "m.room.name")
    assert name["name"] == channel.name

    await channel.matrix.send_text(channel.room_id, "hello from matrix")
    await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet, text="hello from matrix"))

    channel.irc.send(f"PRIVMSG {channel.name} :hello from irc")
    reply = await channel.matrix.wait_for_event(
        channel.room_id, message_from(channel.ghost, body="hello from irc"), what="IRC reply"
    )
    assert reply["content"]["msgtype"] == "m.text"
    member = await channel.matrix.state(channel.room_id, "m.room.member", channel.ghost)
    assert member["displayname"] == channel.irc.nick
    # The puppet's own line never came back as a ghost message.
    events = await channel.matrix.messages(channel.room_id)
    assert not [e for e in events if e.get("sender", "").startswith("@local_") and
                e.get("content", {}).get("body") == "hello from matrix"]


async def test_ghosts_of_users_already_in_the_channel_join(stack: Stack, channel: Channel) -> None:
    await channel.matrix.wait_for_event(channel.room_id, member_event(channel.ghost, "join"),
                                        what="ghost of the IRC user joining")


async def test_emote_notice_and_formatting_both_ways(stack: Stack, channel: Channel) -> None:
    m, irc, room, chan = channel.matrix, channel.irc, channel.room_id, channel.name
    await m.send_text(room, "waves", msgtype="m.emote")
    await irc.wait_for(command("PRIVMSG", chan, nick=channel.puppet, text="\x01ACTION waves\x01"))
    await m.send_text(room, "a notice", msgtype="m.notice")
    await irc.wait_for(command("NOTICE", chan, nick=channel.puppet, text="a notice"))
    await m.send_content(room, {
        "msgtype": "m.text", "body": "bold it red code link", "format": "org.matrix.custom.html",
        "formatted_body": '<b>bold</b> <i>it</i> <font data-mx-color="#ff0000">red</font> '
                          '<code>code</code> <a href="https://example.org/">link</a>',
    })
    await irc.wait_for(command(
        "PRIVMSG", chan, nick=channel.puppet,
        text="\x02bold\x02 \x1dit\x1d \x0304red\x03 \x11code\x11 link (https://example.org/)",
    ))

    irc.send(f"PRIVMSG {chan} :\x01ACTION dances\x01")
    emote = await m.wait_for_event(room, message_from(channel.ghost, body="dances"))
    assert emote["content"]["msgtype"] == "m.emote"
    irc.send(f"NOTICE {chan} :fyi")
    await m.wait_for_event(room, message_from(channel.ghost, body="fyi", msgtype="m.notice"))
    irc.send(f"PRIVMSG {chan} :\x02bold\x02 \x1ditalic\x1d \x0304red\x03 \x11code\x11 https://example.org/x")
    formatted = await m.wait_for_event(room, message_from(channel.ghost, contains="bold italic"))
    assert formatted["content"]["body"] == "bold italic red code https://example.org/x"
    assert formatted["content"]["formatted_body"] == (
        '<b>bold</b> <i>italic</i> <font data-mx-color="#ff0000">red</font> <code>code</code> '
        '<a href="https://example.org/x">https://example.org/x</a>'
    )


async def test_long_multibyte_message_arrives_whole_and_in_order(stack: Stack, channel: Channel) -> None:
    text = "".join(chr(0x4E00 + i % 500) for i in range(700))  # 2,100 bytes, no spaces
    await channel.matrix.send_text(channel.room_id, text)
    received = ""
    for _ in range(10):
        line = await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet))
        assert len(line.encode()) + 2 <= 512
        received += line.split(" :", 1)[1]
        if len(received) >= len(text):
            break
    assert received == text

    # Multi-line messages become several lines, in order.
    await channel.matrix.send_text(channel.room_id, "one\ntwo\nthree")
    for word in ("one", "two", "three"):
        await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet, text=word))


async def test_matrix_text_cannot_inject_irc_commands(stack: Stack, channel: Channel) -> None:
    evil = f"#evil{uuid.uuid4().hex[:6]}"
    await channel.matrix.send_text(channel.room_id, f"hi\r\nJOIN {evil}")
    await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet, text="hi"))
    await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet, text=f"JOIN {evil}"))
    await channel.matrix.send_text(channel.room_id, "a\x01VERSION\x01b\x00c")
    line = await channel.irc.wait_for(command("PRIVMSG", channel.name, nick=channel.puppet, text="aVERSIONbc"))
    assert "\x01" not in line
    # Checked on the server: the puppet is in no channel but the portal's.
    channel.irc.send(f"WHOIS {channel.puppet}")
    whois = await channel.irc.wait_for(lambda w: len(w) > 3 and w[1] == "319")
    channels = whois.split(" :", 1)[1].split()
    assert [c.lstrip("@+%") for c in channels] == [channel.name]
    channel.irc.send(f"NAMES {evil}")
    names = await channel.irc.wait_for(lambda w: len(w) > 1 and w[1] in ("353", "366"))
    assert channel.puppet.lower() not in names.lower()


async def test_membership_topic_and_modes_from_irc(stack: Stack, channel: Channel) -> None:
    m, room, chan, op = channel.matrix, channel.room_id, channel.name, channel.irc
    carol = IrcUser(stack.local.inspircd.port, f"c{uuid.uuid4().hex[:6]}")
    dave = IrcUser(stack.local.inspircd.port, f"d{uuid.uuid4().hex[:6]}")
    await carol.registered()
    await dave.registered()
    carol_mxid, dave_mxid = f"@local_{carol.nick}:localhost", f"@local_{dave.nick}:localhost"
    try:
        await carol.join(chan)
        await dave.join(chan)
        await m.wait_for_event(room, member_event(carol_mxid, "join"), what="carol's ghost joining")
        await m.wait_for_event(room, member_event(dave_mxid, "join"), what="dave's ghost joining")

        # +o (the first IRC user created the channel, so is an op) becomes power level 50.
        op.send(f"MODE {chan} +o {carol.nick}")
        for _ in range(50):
            levels = await m.state(room, "m.room.power_levels")
            if levels.get("users", {}).get(carol_mxid) == 50:
                break
            await __import__("asyncio").sleep(0.2)
        assert levels["users"].get(carol_mxid) == 50
        op.send(f"MODE {chan} +v {dave.nick}")  # +v: the configured voice level (default 1)
        for _ in range(50):
            levels = await m.state(room, "m.room.power_levels")
            if levels.get("users", {}).get(dave_mxid) == 1:
                break
            await __import__("asyncio").sleep(0.2)
        assert levels["users"].get(dave_mxid) == 1

        op.send(f"TOPIC {chan} :the new topic")
        for _ in range(50):
            topic = (await m.state(room, "m.room.topic")).get("topic") if await _has_state(m, room) else None
            if topic == "the new topic":
                break
            await __import__("asyncio").sleep(0.2)
        assert topic == "the new topic"

        carol.send(f"PART {chan} :see you")
        left = await m.wait_for_event(room, member_event(carol_mxid, "leave"), what="carol parting")
        assert left["content"].get("reason") == "see you"

        new_nick = f"n{uuid.uuid4().hex[:6]}"
        dave.send(f"NICK {new_nick}")
        await m.wait_for_event(room, member_event(f"@local_{new_nick}:localhost", "join"), what="renamed ghost")
        renamed = await m.wait_for_event(room, member_event(dave_mxid, "leave"), what="old ghost leaving")
        assert new_nick in renamed["content"].get("reason", "")

        op.send(f"KICK {chan} {new_nick} :behave")
        kicked = await m.wait_for_event(room, member_event(f"@local_{new_nick}:localhost", "leave"))
        assert kicked["sender"] == channel.ghost  # kicked by the op's ghost
        assert kicked["content"].get("reason") == "behave"

        await carol.join(chan)
        await m.wait_for_event(room, lambda e: member_event(carol_mxid, "join")(e)
                               and e.get("unsigned", {}).get("prev_content", {}).get("membership") == "leave")
        carol.send("QUIT :gone fishing")
        quit_event = await m.wait_for_event(room, lambda e: member_event(carol_mxid, "leave")(e)
                                            and "gone fishing" in e["content"].get("reason", ""))
        assert quit_event["content"]["reason"] == "Quit: gone fishing"
    finally:
        carol.close()
        dave.close()


async def _has_state(m: TestClient, room: str) -> bool:
    try:
        await m.state(room, "m.room.topic")
        return True
    except Exception:
        return False


async def test_membership_topic_and_kicks_from_matrix(stack: Stack, channel: Channel) -> None:
    import asyncio

    m, room, chan, op = channel.matrix, channel.room_id, channel.name, channel.irc
    # IRC makes the puppet an op; the Matrix user becomes a moderator of the portal.
    op.send(f"MODE {chan} +o {channel.puppet}")
    for _ in range(50):
        if (await m.state(room, "m.room.power_levels")).get("users", {}).get(m.user_id) == 50:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the puppet's +o did not reach Matrix")

    await m.set_state(room, "m.room.topic", {"topic": "set from matrix"})
    await op.wait_for(command("TOPIC", chan, nick=channel.puppet, text="set from matrix"))

    carol = IrcUser(stack.local.inspircd.port, f"c{uuid.uuid4().hex[:6]}")
    try:
        await carol.registered()
        await carol.join(chan)
        carol_mxid = f"@local_{carol.nick}:localhost"
        await m.wait_for_event(room, member_event(carol_mxid, "join"))
        await m.kick(room, carol_mxid, "out you go")
        kick = await op.wait_for(command("KICK", chan, nick=channel.puppet))
        assert kick.split()[3].lower() == carol.nick and kick.endswith(":out you go")
    finally:
        carol.close()

    await m.leave(room, reason="bye for now")
    await op.wait_for(command("PART", chan, nick=channel.puppet, text="bye for now"))


async def test_mentions_both_ways(stack: Stack, channel: Channel) -> None:
    m, room, chan = channel.matrix, channel.room_id, channel.name
    await m.send_content(room, {
        "msgtype": "m.text", "body": f"{channel.irc.nick}: ping", "format": "org.matrix.custom.html",
        "formatted_body": f'<a href="https://matrix.to/#/{channel.ghost}">Someone Else</a>: ping',
    })
    await channel.irc.wait_for(command("PRIVMSG", chan, nick=channel.puppet, text=f"{channel.irc.nick}: ping"))

    channel.irc.send(f"PRIVMSG {chan} :{channel.puppet}: pong")
    event = await m.wait_for_event(room, message_from(channel.ghost, body=f"{channel.puppet}: pong"))
    assert event["content"]["formatted_body"] == (
        f'<a href="https://matrix.to/#/{m.user_id}">{channel.puppet}</a>: pong'
    )


async def test_private_messages_both_ways(stack: Stack, channel: Channel) -> None:
    m = channel.matrix
    # IRC -> Matrix: the IRC user writes to the puppet; its ghost opens a DM.
    channel.irc.send(f"PRIVMSG {channel.puppet} :psst, private")
    invited = await m.wait_for_invite()
    await m.join(invited)
    await m.wait_for_event(invited, message_from(channel.ghost, body="psst, private"))
    await m.send_text(invited, "private answer")
    await channel.irc.wait_for(command("PRIVMSG", channel.irc.nick, nick=channel.puppet, text="private answer"))

    # Matrix -> IRC: a DM opened from Matrix with another IRC user's ghost.
    erin = IrcUser(stack.local.inspircd.port, f"e{uuid.uuid4().hex[:6]}")
    try:
        await erin.registered()
        erin_mxid = f"@local_{erin.nick}:localhost"
        dm = await m.create_room(invite=[erin_mxid], is_direct=True)
        await m.wait_for_membership(dm, erin_mxid, "join")
        await m.send_text(dm, "hello erin")
        await erin.wait_for(command("PRIVMSG", erin.nick, nick=channel.puppet, text="hello erin"))
        erin.send(f"PRIVMSG {channel.puppet} :hi back")
        await m.wait_for_event(dm, message_from(erin_mxid, body="hi back"))

        # Erin leaves IRC: a line to her is refused, and the private chat is told so.
        erin.send("QUIT :gone")
        await erin.wait_for(lambda w: w[:1] == ["ERROR"])
        await m.send_text(dm, "still there?")
        await m.wait_for_event(dm, notice_from(erin_mxid, contains=f"Not delivered: {erin.nick} is not on IRC"),
                               what="a notice that the line was not delivered")
    finally:
        erin.close()


async def test_what_the_irc_server_refuses_is_told_in_the_portal(stack: Stack, channel: Channel) -> None:
    m, irc, chan, bot = channel.matrix, channel.irc, channel.name, stack.local.bot_mxid
    # A moderated channel does not take the puppet's line: the portal hears it, and why.
    irc.send(f"MODE {chan} +m")
    await irc.wait_for(lambda w: "MODE" in w and w[-1].lstrip(":") == "+m")
    await m.send_text(channel.room_id, "can anyone hear me")
    notice = await m.wait_for_event(
        channel.room_id, notice_from(bot, contains=f"{chan} did not take a message from {channel.puppet}"),
        what="a notice that the channel refused the line")
    assert "+m" in notice["content"]["body"]  # the server's own words name the mode

    # An invite-only channel keeps a newcomer's puppet out: the portal hears that too.
    irc.send(f"MODE {chan} -m+i")
    await irc.wait_for(lambda w: "MODE" in w and w[-1].lstrip(":") == "-m+i")
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as newcomer:
        await newcomer.join(channel.room_id)
        puppet = f"{account.user_id[1:].split(':')[0]}[m]"
        await m.wait_for_event(
            channel.room_id,
            notice_from(bot, contains=f"{puppet}, the IRC connection of {account.user_id}, could not join {chan}"),
            what="a notice that the puppet could not join")


async def test_relay_users_are_spoken_for_by_the_bot(stack: Stack, channel: Channel) -> None:
    for name in ("relayer", "nobody"):
        try:
            stack.account(name)
        except RuntimeError:
            pass  # made by an earlier test
    relayer_token = _login(stack, "relayer")
    async with TestClient(stack.homeserver, "@relayer:localhost", relayer_token) as relayer:
        await relayer.join(channel.room_id)
        await relayer.send_text(channel.room_id, "relayed hello")
        await channel.irc.wait_for(command("PRIVMSG", channel.name, nick="rapture", text="<relayer> relayed hello"))
        await relayer.send_text(channel.room_id, "waves", msgtype="m.emote")
        await channel.irc.wait_for(
            command("PRIVMSG", channel.name, nick="rapture", text="\x01ACTION relayer waves\x01"))
    # A relay user gets no puppet of their own.
    channel.irc.send(f"NAMES {channel.name}")
    names = await channel.irc.wait_for(lambda w: len(w) > 1 and w[1] == "353")
    assert "relayer" not in names.lower()

    nobody_token = _login(stack, "nobody")
    async with TestClient(stack.homeserver, "@nobody:localhost", nobody_token) as nobody:
        await nobody.join(channel.room_id)
        sent = await nobody.send_text(channel.room_id, "let me in")
        refusal = await nobody.wait_for_event(channel.room_id, notice_from(stack.bot, reply_to=sent))
        assert "not sent" in refusal["content"]["body"]


def _login(stack: Stack, user: str) -> str:
    import json
    import urllib.request

    body = json.dumps({"type": "m.login.password", "password": f"pw-{user}",
                       "identifier": {"type": "m.id.user", "user": user}}).encode()
    request = urllib.request.Request(f"{stack.homeserver}/_matrix/client/v3/login", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())["access_token"]


async def test_irc_server_time_becomes_the_matrix_timestamp(stack: Stack, channel: Channel) -> None:
    observer = IrcUser(stack.local.inspircd.port, f"o{uuid.uuid4().hex[:6]}")
    try:
        observer.send("CAP REQ :server-time")
        observer.send("CAP END")
        await observer.registered()
        await observer.join(channel.name)
        channel.irc.send(f"PRIVMSG {channel.name} :what time is it")
        line = await observer.wait_for(command("PRIVMSG", channel.name, nick=channel.irc.nick))
        assert line.startswith("@time=")
        from datetime import datetime

        irc_time = datetime.fromisoformat(line.split(" ")[0][len("@time="):].replace("Z", "+00:00"))
        event = await channel.matrix.wait_for_event(
            channel.room_id, message_from(channel.ghost, body="what time is it"))
        assert event["origin_server_ts"] == int(irc_time.timestamp() * 1000)
    finally:
        observer.close()


async def test_nick_collision_gets_a_variant(stack: Stack) -> None:
    account = stack.account()
    localpart = account.user_id[1:].split(":")[0]
    squatter = IrcUser(stack.local.inspircd.port, f"{localpart}[m]")  # takes the puppet's nick
    chan = f"#n{uuid.uuid4().hex[:6]}"
    try:
        await squatter.registered()
        await squatter.join(chan)
        async with TestClient(stack.homeserver, account.user_id, account.token) as m:
            room = await m.join(f"#local_{chan}:localhost")
            await squatter.wait_for(command("JOIN", chan, nick=f"{localpart}[m]_"))
            await m.send_text(room, "still me")
            await squatter.wait_for(command("PRIVMSG", chan, nick=f"{localpart}[m]_", text="still me"))
    finally:
        squatter.close()


@pytest.mark.parametrize("alias", ["#local_nochannel:localhost", "#local_#a,b:localhost"])
async def test_only_valid_channels_make_portals(stack: Stack, alias: str) -> None:
    from tests.e2e.matrix import MatrixError

    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as m:
        with pytest.raises(MatrixError) as refused:
            await m.join(alias)
        assert refused.value.status == 404


async def test_a_channel_that_keeps_the_bridge_out_is_told_in_the_portal(stack: Stack) -> None:
    name = f"#t{uuid.uuid4().hex[:8]}"
    irc = IrcUser(stack.local.inspircd.port, f"i{uuid.uuid4().hex[:6]}")
    try:
        await irc.registered()
        await irc.join(name)
        irc.send(f"MODE {name} +i")
        await irc.wait_for(lambda w: "MODE" in w and w[-1].lstrip(":") == "+i")
        account = stack.account()
        async with TestClient(stack.homeserver, account.user_id, account.token) as matrix:
            room_id = await matrix.join(f"#local_{name}:localhost")
            await matrix.wait_for_event(
                room_id, notice_from(stack.local.bot_mxid, contains=f"The bridge could not join {name} on IRC"),
                what="a notice that the bridge's connection was kept out")
    finally:
        irc.close()
