"""The appservice endpoint against the running bridge, over HTTP, as the homeserver sees it."""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
from ruamel.yaml import YAML

from tests.e2e.conftest import Stack
from tests.e2e.matrix import TestClient, notice_from


def _hs_token(stack: Stack) -> str:
    return YAML(typ="safe").load(stack.local.registration_path.read_text())["hs_token"]


def _txn_url(stack: Stack, txn_id: str) -> str:
    return f"{stack.local.bridge.url}/_matrix/app/v1/transactions/{txn_id}"


async def _put(url: str, *, token: str | None, data: bytes) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.put(url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _alive(stack: Stack) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.local.bridge.url}/_matrix/mau/live") as resp:
        return resp.status == 200


async def test_missing_and_wrong_token_are_refused(stack: Stack) -> None:
    body = json.dumps({"events": []}).encode()
    status, reply = await _put(_txn_url(stack, "auth-1"), token=None, data=body)
    assert (status, reply["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, reply = await _put(_txn_url(stack, "auth-2"), token="not-the-token", data=body)
    assert (status, reply["errcode"]) == (403, "M_FORBIDDEN")
    # Same for the user and alias queries.
    async with aiohttp.ClientSession() as http:
        url = f"{stack.local.bridge.url}/_matrix/app/v1/users/@x:localhost"
        async with http.get(url, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["errcode"] == "M_FORBIDDEN"
        async with http.get(url.replace("/users/@x", "/rooms/%23x")) as resp:
            assert resp.status == 401
    # A wrong token is refused before the body is even parsed.
    status, _ = await _put(_txn_url(stack, "auth-3"), token="bad", data=b"{not json")
    assert status == 403


async def test_malformed_bodies_get_400_and_the_bridge_lives(stack: Stack) -> None:
    token = _hs_token(stack)
    cases = {
        b"{not json": "M_NOT_JSON",
        b"\xff\xfe\x00garbage": "M_NOT_JSON",
        b"[1, 2, 3]": "M_BAD_JSON",
        b'"just a string"': "M_BAD_JSON",
        b'{"events": "not a list"}': "M_BAD_JSON",
        b"{}": "M_BAD_JSON",
    }
    for number, (data, errcode) in enumerate(cases.items()):
        status, reply = await _put(_txn_url(stack, f"bad-{uuid.uuid4().hex}-{number}"), token=token, data=data)
        assert (status, reply.get("errcode")) == (400, errcode), (data, status, reply)
    # Events that are not events at all are skipped; the transaction still succeeds.
    junk = json.dumps({"events": [1, "x", {"type": 5}, {"event_id": "$x"}]}).encode()
    status, _ = await _put(_txn_url(stack, f"junk-{uuid.uuid4().hex}"), token=token, data=junk)
    assert status == 200
    assert await _alive(stack)


async def test_oversized_body_gets_413(stack: Stack) -> None:
    token = _hs_token(stack)
    huge = b'{"events": [], "padding": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    status, reply = await _put(_txn_url(stack, f"big-{uuid.uuid4().hex}"), token=token, data=huge)
    assert status == 413
    assert reply["errcode"] == "M_TOO_LARGE"
    assert await _alive(stack)


async def test_resent_transaction_after_restart_is_not_processed_twice(stack: Stack) -> None:
    token = _hs_token(stack)
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as alice:
        room = await alice.create_room(invite=[stack.bot], is_direct=True)
        await alice.wait_for_membership(room, stack.bot, "join")
        await alice.wait_for_event(room, notice_from(stack.bot, contains="help"))

        # A transaction as Synapse would send it: one `version` command from alice.
        event_id = f"$resend-{uuid.uuid4().hex}"
        txn_id = f"resend-{uuid.uuid4().hex}"
        event = {
            "type": "m.room.message", "room_id": room, "sender": account.user_id,
            "event_id": event_id, "origin_server_ts": int(time.time() * 1000),
            "content": {"msgtype": "m.text", "body": "version"},
        }
        payload = json.dumps({"events": [event]}).encode()
        status, _ = await _put(_txn_url(stack, txn_id), token=token, data=payload)
        assert status == 200
        await alice.wait_for_event(room, notice_from(stack.bot, reply_to=event_id), what="first answer")

        stack.local.bridge.restart()

        # The same transaction again, then the same event under a new transaction id.
        status, _ = await _put(_txn_url(stack, txn_id), token=token, data=payload)
        assert status == 200
        status, _ = await _put(_txn_url(stack, f"other-{uuid.uuid4().hex}"), token=token, data=payload)
        assert status == 200

        # A real message afterwards: events of a room are handled in order, so once this one
        # is answered, any second answer to the resent event would already be there.
        marker = await alice.send_text(room, "version")
        await alice.wait_for_event(room, notice_from(stack.bot, reply_to=marker), what="marker answer")
        answers = [e for e in await alice.messages(room) if notice_from(stack.bot, reply_to=event_id)(e)]
        assert len(answers) == 1, answers

        # Synapse numbers transactions anew after its own restart: an old id with a new
        # event in it must still be handled.
        fresh = {**event, "event_id": f"$reused-{uuid.uuid4().hex}"}
        status, _ = await _put(_txn_url(stack, txn_id), token=token,
                               data=json.dumps({"events": [fresh]}).encode())
        assert status == 200
        await alice.wait_for_event(room, notice_from(stack.bot, reply_to=fresh["event_id"]),
                                   what="answer to a new event under a reused transaction id")


async def test_user_query_answers_for_valid_ghost_ids_only(stack: Stack) -> None:
    token = _hs_token(stack)
    ghost = f"@local_ghost{uuid.uuid4().hex[:8]}:localhost"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        base = f"{stack.local.bridge.url}/_matrix/app/v1/users/"
        outsiders = (
            "@someone:localhost",  # not in the ghost namespace
            "@local_x:elsewhere",  # another server
            "@local_=41lice:localhost",  # "Alice": not the case-folded form of a nick
            "@local_=23chan:localhost",  # "#chan" is no nick
            "@local_a=zz:localhost",  # not a valid escape
        )
        for outsider in outsiders:
            async with http.get(base + outsider) as resp:
                assert resp.status == 404, outsider
                assert (await resp.json())["errcode"] == "M_NOT_FOUND"
        async with http.get(base + ghost) as resp:
            assert resp.status == 200
    # The query names no one, so it registers nobody: an unknown ghost is made only once a
    # permitted user invites it or its remote user is seen (see bridge/doors.py).
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.homeserver}/_matrix/client/v3/profile/{ghost}") as resp:
            assert resp.status == 404, await resp.text()
