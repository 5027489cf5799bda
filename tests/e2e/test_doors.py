"""Permission at every door, through real Synapse + InspIRCd.

A stack of its own: the `local` network asks a channel's operators for consent with a short
timeout, and a second network on the same server, `closed`, has `dynamic_portals: false`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import InspircdServer
from bridge.devstack.stack import start_local_stack
from tests.e2e.conftest import DOMAIN, PERMISSIONS, PROVISIONING_SECRET, Account, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import MatrixError, TestClient, member_event, notice_from
from tests.e2e.test_provisioning import call
from tests.servers import require

CONSENT_SECONDS = 6


@pytest.fixture(scope="module")
def doors_stack(tmp_path_factory: pytest.TempPathFactory, inspircd: InspircdServer) -> Iterator[Stack]:
    closed = {"connector": "irc", "host": "127.0.0.1", "port": inspircd.port, "dynamic_portals": False,
              "bot_nick": "closedbot", "nick_template": "{localpart}[c]"}
    try:
        local = start_local_stack(
            tmp_path_factory.mktemp("doors"), domain=DOMAIN, permissions=PERMISSIONS, inspircd=inspircd,
            network_options={"relay": True, "link_consent_timeout": CONSENT_SECONDS, "bot_nick": "doorbot",
                             "nick_template": "{localpart}[d]", "max_new_dms_per_hour": 1},
            extra_networks={"closed": closed}, provisioning_secret=PROVISIONING_SECRET,
        )
    except ServerUnavailable as exc:
        require(exc)
    yield Stack(local)
    local.stop()


@pytest.fixture
async def op(doors_stack: Stack) -> AsyncIterator[tuple[IrcUser, str]]:
    """An IRC user who made (and so operates) a fresh channel."""
    user = IrcUser(doors_stack.local.inspircd.port, f"op{uuid.uuid4().hex[:6]}")
    name = f"#d{uuid.uuid4().hex[:7]}"
    await user.registered()
    await user.join(name)
    yield user, name
    user.close()


def _account(stack: Stack, name: str) -> Account:
    try:
        return stack.account(name)
    except RuntimeError:  # made earlier in this stack: log in instead
        from tests.e2e.test_irc_portal import _login
        return Account(f"@{name}:{DOMAIN}", _login(stack, name))


def _db(stack: Stack) -> sqlite3.Connection:
    return sqlite3.connect(stack.local.workdir / "rapture.db")


def _portal_rows(stack: Stack, channel: str) -> int:
    db = _db(stack)
    try:
        return db.execute("SELECT count(*) FROM portal WHERE remote_id = ?", (channel.lower(),)).fetchone()[0]
    finally:
        db.close()


def _joins(irc: IrcUser, channel: str, nick: str) -> int:
    return sum(1 for line in irc.seen()
               if f" JOIN {channel}".lower() in line.lower().replace(" :#", " #")
               and line.lstrip(":").lower().startswith(nick.lower() + "!"))


async def _question(irc: IrcUser, requester: str) -> None:
    await irc.wait_for(lambda w: "PRIVMSG" in w and w[2] == irc.nick and requester in " ".join(w),
                       timeout=20)


async def test_provisioning_link_by_a_user_waits_for_an_operators_yes(doors_stack: Stack,
                                                                      op: tuple[IrcUser, str]) -> None:
    irc, name = op
    owner = doors_stack.account()
    async with TestClient(doors_stack.homeserver, owner.user_id, owner.token) as o:
        room = await o.create_room(invite=[doors_stack.bot], name="team room")
        link = {"room_id": room, "network": "local", "channel": name, "user_id": owner.user_id}
        status, reply = await call(doors_stack, "POST", "/link", body=link)
        assert status == 202 and reply["status"] == "waiting_for_consent", reply
        await _question(irc, owner.user_id)
        status, reply = await call(doors_stack, "GET", "/links", params={"room_id": room, "user_id": owner.user_id})
        assert reply == {"links": []}  # nothing yet: the operator has not answered
        irc.send(f"PRIVMSG doorbot :yes")
        await irc.wait_for(command("JOIN", name, nick="doorbot"))
        await o.wait_for_event(room, notice_from(doors_stack.bot, contains=f"Linked {room} to {name}"))
        status, reply = await call(doors_stack, "GET", "/links", params={"room_id": room, "user_id": owner.user_id})
        assert reply == {"links": [{"room_id": room, "network": "local", "channel": name}]}


async def test_provisioning_link_without_an_answer_is_refused(doors_stack: Stack, op: tuple[IrcUser, str]) -> None:
    irc, name = op
    owner = doors_stack.account()
    async with TestClient(doors_stack.homeserver, owner.user_id, owner.token) as o:
        room = await o.create_room(invite=[doors_stack.bot], name="quiet room")
        link = {"room_id": room, "network": "local", "channel": name, "user_id": owner.user_id}
        status, _ = await call(doors_stack, "POST", "/link", body=link)
        assert status == 202
        await _question(irc, owner.user_id)
        notice = await o.wait_for_event(room, notice_from(doors_stack.bot, contains="Not linked"),
                                        timeout=CONSENT_SECONDS + 20)
        assert "no operator" in notice["content"]["body"] and "answered" in notice["content"]["body"]
        status, reply = await call(doors_stack, "GET", "/links", params={"room_id": room, "user_id": owner.user_id})
        assert reply == {"links": []}
        assert _portal_rows(doors_stack, name) == 0 and _joins(irc, name, "doorbot") == 0
        # A late yes changes nothing.
        irc.send("PRIVMSG doorbot :yes")
        status, reply = await call(doors_stack, "GET", "/links", params={"room_id": room, "user_id": owner.user_id})
        assert reply == {"links": []}


async def test_bot_link_by_a_user_asks_the_operator_no_refuses_yes_links(doors_stack: Stack,
                                                                        op: tuple[IrcUser, str]) -> None:
    irc, name = op
    account = doors_stack.account()
    async with TestClient(doors_stack.homeserver, account.user_id, account.token) as c:
        control = await c.create_room(invite=[doors_stack.bot], is_direct=True)
        await c.wait_for_membership(control, doors_stack.bot, "join")
        room = await c.create_room(invite=[doors_stack.bot], name="linked by a user")

        async def ask(text: str) -> str:
            asked = await c.send_text(control, text)
            reply = await c.wait_for_event(control, notice_from(doors_stack.bot, reply_to=asked))
            return str(reply["content"]["body"])

        assert "Asked the operators of" in await ask(f"link {room} local {name}")
        await _question(irc, account.user_id)
        irc.send("PRIVMSG doorbot :no")
        await c.wait_for_event(control, notice_from(doors_stack.bot, contains="said no"))
        assert _portal_rows(doors_stack, name) == 0

        # Operators who said no are not asked again at once (nagging them is how bridges get banned).
        assert "were asked lately and did not agree" in await ask(f"link {room} local {name}")
        assert len([x for x in irc.seen() if account.user_id in x]) == 1

        other = f"#d{uuid.uuid4().hex[:7]}"  # another channel of the same operator
        await irc.join(other)
        assert "Asked the operators of" in await ask(f"link {room} local {other}")
        await irc.wait_for(lambda w: "PRIVMSG" in w and w[2] == irc.nick and "within" in " ".join(w)
                           and len([x for x in irc.seen() if account.user_id in x]) >= 2)
        irc.send("PRIVMSG doorbot :yes")
        await c.wait_for_event(control, notice_from(doors_stack.bot, contains=f"Linked {room} to {other}"))
        await irc.wait_for(command("JOIN", other, nick="doorbot"))
        ghost = f"@local_{irc.nick}:localhost"
        await c.wait_for_event(room, member_event(ghost, "join"))


async def test_closed_network_gives_users_no_alias_portal_and_no_link(doors_stack: Stack,
                                                                     op: tuple[IrcUser, str]) -> None:
    irc, name = op
    user = doors_stack.account()
    async with TestClient(doors_stack.homeserver, user.user_id, user.token) as m:
        with pytest.raises(MatrixError) as refused:
            await m.join(f"#closed_{name}:localhost")
        assert refused.value.status == 404
        room = await m.create_room(invite=[doors_stack.bot], name="no link")
        status, reply = await call(doors_stack, "POST", "/link",
                                   body={"room_id": room, "network": "closed", "channel": name,
                                         "user_id": user.user_id})
        assert status == 403 and "only bridge admins" in reply["error"]
        # The permission check came first: the bot did not even join the room.
        assert (await m.members(room)).get(doors_stack.bot) == "invite"
    # An admin still bridges it (with the bot's `join`); its JOIN is the first the channel sees.
    admin = _account(doors_stack, "admin")
    async with TestClient(doors_stack.homeserver, admin.user_id, admin.token) as a:
        control = await a.create_room(invite=[doors_stack.bot], is_direct=True)
        await a.wait_for_membership(control, doors_stack.bot, "join")
        await a.send_text(control, f"join closed {name}")
        await irc.wait_for(command("JOIN", name, nick="closedbot"))
    assert _joins(irc, name, "closedbot") == 1


async def test_a_none_users_alias_query_opens_nothing(doors_stack: Stack, op: tuple[IrcUser, str]) -> None:
    irc, name = op
    nobody = _account(doors_stack, "nobody")
    alias = f"#local_{name}:localhost"
    async with TestClient(doors_stack.homeserver, nobody.user_id, nobody.token) as n:
        # The room the query made stays dormant and is abandoned at their join: nothing on IRC.
        room = await n.join(alias)
        await n.wait_for_membership(room, nobody.user_id, "leave")
        assert _portal_rows(doors_stack, name) == 0
    # A permitted user after them: their join of the same alias bridges the channel, and that
    # JOIN is the bridge's first in it.
    user = doors_stack.account()
    async with TestClient(doors_stack.homeserver, user.user_id, user.token) as u:
        portal = await u.join(alias)
        assert portal != room
        await irc.wait_for(command("JOIN", name, nick="doorbot"))
        assert _joins(irc, name, "doorbot") == 1
        assert _portal_rows(doors_stack, name) == 1


async def test_a_none_users_ghost_invite_opens_no_private_chat(doors_stack: Stack, op: tuple[IrcUser, str]) -> None:
    irc, _name = op
    nobody = _account(doors_stack, "nobody")
    ghost = f"@local_{irc.nick.lower()}:localhost"
    stranger = f"@local_{irc.nick.lower()}x:localhost"
    async with TestClient(doors_stack.homeserver, nobody.user_id, nobody.token) as n:
        dm = await n.create_room(invite=[ghost, stranger], is_direct=True)
        # A permitted user's invite after theirs is answered: the bridge got that far.
        user = doors_stack.account()
        async with TestClient(doors_stack.homeserver, user.user_id, user.token) as u:
            other = await u.create_room(invite=[ghost], is_direct=True)
            await u.wait_for_membership(other, ghost, "join")
        # No ghost joined (or even answered) the none user's room, and none was registered.
        assert (await n.members(dm)).get(ghost) == "invite"
        db = _db(doors_stack)
        try:
            assert db.execute("SELECT count(*) FROM ghost WHERE mxid = ?", (stranger,)).fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM portal WHERE room_id = ?", (dm,)).fetchone()[0] == 0
        finally:
            db.close()


async def test_new_private_chats_from_irc_are_capped(doors_stack: Stack, op: tuple[IrcUser, str]) -> None:
    irc, name = op  # the stack allows one new private chat per hour (max_new_dms_per_hour: 1)
    account = doors_stack.account()
    puppet = f"{account.user_id[1:].split(':')[0]}[d]"
    second = IrcUser(doors_stack.local.inspircd.port, f"s{uuid.uuid4().hex[:6]}")
    try:
        await second.registered()
        async with TestClient(doors_stack.homeserver, account.user_id, account.token) as m:
            control = await m.create_room(invite=[doors_stack.bot], is_direct=True)
            await m.wait_for_membership(control, doors_stack.bot, "join")
            await m.join(f"#local_{name}:localhost")
            await irc.wait_for(command("JOIN", name, nick=puppet))
            irc.send(f"PRIVMSG {puppet} :first private line")
            dm = await m.wait_for_invite()
            await m.join(dm)
            second.send(f"PRIVMSG {puppet} :second private line")
            told = await m.wait_for_event(control, notice_from(doors_stack.bot, contains=f"from {second.nick} on local "
                                                                                         "was not bridged"))
            # ... and what to do about it: a chat the Matrix user starts is not capped.
            assert f"start a chat with @local_{second.nick}:localhost" in told["content"]["body"], told
            db = _db(doors_stack)
            try:
                ghost = f"@local_{second.nick}:localhost"
                assert db.execute("SELECT count(*) FROM ghost WHERE mxid = ?", (ghost,)).fetchone()[0] == 0
            finally:
                db.close()
    finally:
        second.close()


async def test_an_encrypted_room_is_not_linked_even_by_an_admin(doors_stack: Stack,
                                                                op: tuple[IrcUser, str]) -> None:
    """Linking it would post every line of the channel in the clear into a room its members
    chose to encrypt: refused before anything is bridged, and the bot leaves again."""
    irc, name = op
    admin = _account(doors_stack, "admin")
    async with TestClient(doors_stack.homeserver, admin.user_id, admin.token) as a:
        room = await a.create_room(invite=[doors_stack.bot], name="secret team", encrypted=True)
        link = {"room_id": room, "network": "local", "channel": name, "user_id": admin.user_id}
        status, reply = await call(doors_stack, "POST", "/link", body=link)
        assert status == 400 and "encrypted" in reply["error"], reply
        assert _portal_rows(doors_stack, name) == 0
        await a.wait_for_membership(room, doors_stack.bot, "leave")
    assert _joins(irc, name, "doorbot") == 0
