"""The pure parts of the encrypted-room guard: reading an invite, and telling once, not per message."""

from __future__ import annotations

from mautrix.types import StateEvent

from bridge.encrypted_rooms import invite_is_encrypted
from bridge.notice_limiter import NoticeLimiter


def _invite(stripped: list[dict[str, object]]) -> StateEvent:
    return StateEvent.deserialize({
        "type": "m.room.member", "state_key": "@local_bob:hs", "sender": "@alice:hs", "event_id": "$e",
        "room_id": "!r", "origin_server_ts": 1, "content": {"membership": "invite"},
        "unsigned": {"invite_room_state": stripped},
    })


def test_an_invite_says_whether_its_room_is_encrypted() -> None:
    name = {"type": "m.room.name", "state_key": "", "sender": "@alice:hs", "content": {"name": "x"}}
    encryption = {"type": "m.room.encryption", "state_key": "", "sender": "@alice:hs",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
    assert invite_is_encrypted(_invite([name, encryption]))
    assert not invite_is_encrypted(_invite([name]))
    assert not invite_is_encrypted(_invite([]))


def test_a_sender_is_told_once_per_room_and_period() -> None:
    limiter = NoticeLimiter(every=60, capacity=3)
    assert limiter.should_tell("!a", "@u", now=0)
    assert not limiter.should_tell("!a", "@u", now=59)
    assert limiter.should_tell("!b", "@u", now=59)  # another room
    assert limiter.should_tell("!a", "@v", now=59)  # another sender
    assert limiter.should_tell("!a", "@u", now=120)  # the period is over


def test_the_limiter_forgets_the_oldest_beyond_its_capacity() -> None:
    limiter = NoticeLimiter(every=60, capacity=2)
    for room in ("!a", "!b", "!c"):
        assert limiter.should_tell(room, "@u", now=0)
    assert len(limiter._told) == 2
    assert limiter.should_tell("!a", "@u", now=1)  # forgotten: told again rather than never
