"""The bridge bot through a real Synapse: DMs, `help`, refusals, encryption."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.matrix import TestClient, notice_from


async def test_help_round_trip(stack: Stack) -> None:
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as alice:
        room = await alice.create_room(invite=[stack.bot], is_direct=True)
        await alice.wait_for_membership(room, stack.bot, "join")
        await alice.wait_for_event(room, notice_from(stack.bot, contains="help"), what="greeting")

        asked = await alice.send_text(room, "help")
        answer = await alice.wait_for_event(
            room, notice_from(stack.bot, reply_to=asked), what="answer to help"
        )
        body = answer["content"]["body"]
        for command in ("help", "version", "networks"):
            assert f"\n  {command}" in body, body
        # An ordinary user is not shown admin-only commands (there are none yet, but the
        # listing is per level): every listed line is a registered command.
        assert answer["content"]["format"] == "org.matrix.custom.html"


async def test_unknown_command_and_version(stack: Stack) -> None:
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as alice:
        room = await alice.create_room(invite=[stack.bot], is_direct=True)
        await alice.wait_for_membership(room, stack.bot, "join")
        bogus = await alice.send_text(room, "frobnicate now")
        reply = await alice.wait_for_event(room, notice_from(stack.bot, reply_to=bogus))
        assert "Unknown command 'frobnicate'" in reply["content"]["body"]

        version = await alice.send_text(room, "!rapture version")
        reply = await alice.wait_for_event(room, notice_from(stack.bot, reply_to=version))
        assert reply["content"]["body"].startswith("Rapture ")

        wrong = await alice.send_text(room, "help me please")
        reply = await alice.wait_for_event(room, notice_from(stack.bot, reply_to=wrong))
        assert "Usage: help" in reply["content"]["body"]


async def test_user_without_permission_is_refused(stack: Stack) -> None:
    account = stack.account("nobody")
    async with TestClient(stack.homeserver, account.user_id, account.token) as nobody:
        room = await nobody.create_room(invite=[stack.bot], is_direct=True)
        refusal = await nobody.wait_for_event(
            room, notice_from(stack.bot, contains="not allowed"), what="refusal"
        )
        assert "'user'" in refusal["content"]["body"]
        await nobody.wait_for_membership(room, stack.bot, "leave")


async def test_relay_user_is_refused_commands(stack: Stack) -> None:
    account = stack.account("relayer")
    async with TestClient(stack.homeserver, account.user_id, account.token) as relayer:
        room = await relayer.create_room(invite=[stack.bot], is_direct=True)
        refusal = await relayer.wait_for_event(room, notice_from(stack.bot, contains="not allowed"))
        assert "you have level 'relay'" in refusal["content"]["body"]


async def test_encrypted_room_gets_a_plain_answer(stack: Stack) -> None:
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as alice:
        room = await alice.create_room(invite=[stack.bot], is_direct=True, encrypted=True)
        notice = await alice.wait_for_event(
            room, notice_from(stack.bot, contains="encryption"), what="encryption notice"
        )
        assert "does not support encryption" in notice["content"]["body"]
        await alice.wait_for_membership(room, stack.bot, "leave")


async def test_every_dm_with_the_bot_takes_commands(stack: Stack) -> None:
    account = stack.account()
    async with TestClient(stack.homeserver, account.user_id, account.token) as alice:
        rooms = []
        for _ in range(2):
            room = await alice.create_room(invite=[stack.bot], is_direct=True)
            await alice.wait_for_membership(room, stack.bot, "join")
            rooms.append(room)
        for room in rooms:  # the older chat keeps working after a newer one was opened
            asked = await alice.send_text(room, "version")
            await alice.wait_for_event(room, notice_from(stack.bot, reply_to=asked))
