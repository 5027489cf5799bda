"""The provisioning API over HTTP against the running bridge, with real Synapse and InspIRCd."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from tests.e2e.conftest import PROVISIONING_SECRET, Stack
from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, member_event, message_from, notice_from

PREFIX = "/_rapture/provision/v1"


async def call(stack: Stack, method: str, path: str, *, secret: str | None = PROVISIONING_SECRET,
               params: dict[str, str] | None = None, body: Any = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.request(method, f"{stack.local.bridge.url}{PREFIX}{path}", params=params,
                                json=body) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_bad_secret_and_bad_input(stack: Stack) -> None:
    user = stack.account().user_id
    for secret in (None, "wrong-secret"):
        status, reply = await call(stack, "GET", "/networks", secret=secret, params={"user_id": user})
        assert (status, reply["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, reply = await call(stack, "GET", "/networks", params={"user_id": user})
    assert status == 200 and {"name": "local", "connector": "irc"} in reply["networks"]
    status, reply = await call(stack, "GET", "/networks")
    assert status == 400 and reply["errcode"] == "M_INVALID_PARAM"
    status, reply = await call(stack, "POST", "/link", body=["not", "an", "object"])
    assert status == 400
    status, reply = await call(stack, "POST", "/link", body={"user_id": user, "room_id": "!x:localhost",
                                                            "network": "nope", "channel": "#x"})
    assert status == 400 and "unknown network" in reply["error"]
    status, reply = await call(stack, "POST", "/link", body={"user_id": "@nobody:localhost",
                                                            "room_id": "!x:localhost",
                                                            "network": "local", "channel": "#x"})
    assert status == 403


async def test_link_list_unlink_round_trip_with_moderator_check(stack: Stack) -> None:
    owner, member = stack.account(), stack.account()
    name = f"#p{uuid.uuid4().hex[:7]}"
    irc = IrcUser(stack.local.inspircd.port, f"p{uuid.uuid4().hex[:6]}")
    await irc.registered()
    await irc.join(name)
    try:
        async with TestClient(stack.homeserver, owner.user_id, owner.token) as o, \
                TestClient(stack.homeserver, member.user_id, member.token) as m:
            room = await o.create_room(invite=[stack.bot, member.user_id], name="team room")
            await m.join(room)
            link = {"room_id": room, "network": "local", "channel": name}

            # A member without power is refused; the room's creator (a moderator) may link.
            status, reply = await call(stack, "POST", "/link", body={**link, "user_id": member.user_id})
            assert status == 403 and reply["errcode"] == "M_FORBIDDEN"
            # A user (not an admin) needs the channel operator's yes, asked on IRC.
            status, reply = await call(stack, "POST", "/link", body={**link, "user_id": owner.user_id})
            assert status == 202, reply
            assert reply["status"] == "waiting_for_consent" and reply["channel"] == name
            status, reply = await call(stack, "POST", "/link", body={**link, "user_id": owner.user_id})
            assert status == 409  # one request at a time
            await irc.wait_for(lambda w: "PRIVMSG" in w and w[2] == irc.nick and owner.user_id in " ".join(w))
            irc.send("PRIVMSG rapture :yes")
            await o.wait_for_event(room, notice_from(stack.bot, contains=f"Linked {room} to {name}"))
            status, reply = await call(stack, "POST", "/link", body={**link, "user_id": owner.user_id})
            assert status == 409

            status, reply = await call(stack, "GET", "/links", params={"room_id": room, "user_id": member.user_id})
            assert reply == {"links": [{"room_id": room, "network": "local", "channel": name}]}

            ghost = f"@local_{irc.nick}:localhost"
            await o.wait_for_event(room, member_event(ghost, "join"))
            irc.send(f"PRIVMSG {name} :provisioned!")
            await o.wait_for_event(room, message_from(ghost, body="provisioned!"))

            status, reply = await call(stack, "POST", "/unlink", body={"room_id": room, "user_id": member.user_id})
            assert status == 403
            status, reply = await call(stack, "POST", "/unlink", body={"room_id": room, "user_id": owner.user_id})
            assert status == 200
            await o.wait_for_event(room, member_event(ghost, "leave"))
            await irc.wait_for(command("PART", name, nick="rapture"))
            status, reply = await call(stack, "GET", "/links", params={"room_id": room, "user_id": owner.user_id})
            assert reply == {"links": []}
            status, reply = await call(stack, "POST", "/unlink", body={"room_id": room, "user_id": owner.user_id})
            assert status == 404
    finally:
        irc.close()
