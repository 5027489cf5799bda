"""A small async Matrix client for tests: the calls a person's client makes, nothing more.

Raw JSON in and out, so tests assert on exactly what the homeserver stored. Every wait is
bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

Event = dict[str, Any]


class MatrixError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class TestClient:
    __test__ = False  # not a pytest test class

    def __init__(self, base_url: str, user_id: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TestClient:
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        assert self._session is not None, "use `async with TestClient(...)`"
        url = f"{self.base_url}/_matrix/client/v3{path}"
        async with self._session.request(method, url, json=body, params=params or None) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise MatrixError(resp.status, data)
            return data

    # -- rooms -----------------------------------------------------------------------------
    async def create_room(self, *, invite: list[str] = (), is_direct: bool = False,
                          encrypted: bool = False, name: str | None = None) -> str:
        body: dict[str, Any] = {"preset": "private_chat", "invite": list(invite), "is_direct": is_direct}
        if name:
            body["name"] = name
        if encrypted:
            body["initial_state"] = [{
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }]
        return (await self.request("POST", "/createRoom", body))["room_id"]

    async def join(self, room: str) -> str:
        return (await self.request("POST", f"/join/{quote(room, safe='')}", {}))["room_id"]

    async def leave(self, room_id: str, reason: str | None = None) -> None:
        body = {"reason": reason} if reason else {}
        await self.request("POST", f"/rooms/{quote(room_id)}/leave", body)

    async def send_text(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        return await self.send_content(room_id, {"msgtype": msgtype, "body": body})

    async def send_content(self, room_id: str, content: dict[str, Any]) -> str:
        txn = uuid.uuid4().hex
        path = f"/rooms/{quote(room_id)}/send/m.room.message/{txn}"
        return (await self.request("PUT", path, content))["event_id"]

    async def state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        return await self.request("GET", f"/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}")

    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any],
                        state_key: str = "") -> str:
        path = f"/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}"
        return (await self.request("PUT", path, content))["event_id"]

    async def kick(self, room_id: str, user_id: str, reason: str = "") -> None:
        await self.request("POST", f"/rooms/{quote(room_id)}/kick", {"user_id": user_id, "reason": reason})

    async def wait_for_invite(self, timeout: float = 30.0) -> str:
        """The next room this user is invited to (incremental sync: Synapse caches repeats
        of an identical initial sync, so polling one would never see a new invite)."""
        deadline = time.monotonic() + timeout
        since: str | None = None
        for _ in range(int(timeout) + 2):
            params = {"timeout": "1000"}
            if since:
                params["since"] = since
            data = await self.request("GET", "/sync", **params)
            invites = list(data.get("rooms", {}).get("invite", {}).keys())
            if invites:
                return invites[0]
            since = data.get("next_batch")
            if time.monotonic() >= deadline:
                break
        raise TimeoutError(f"{self.user_id} got no invite within {timeout} s")

    async def messages(self, room_id: str, limit: int = 100) -> list[Event]:
        """The room's latest events, oldest first."""
        data = await self.request("GET", f"/rooms/{quote(room_id)}/messages", dir="b", limit=str(limit))
        return list(reversed(data.get("chunk", [])))

    async def members(self, room_id: str) -> dict[str, str]:
        data = await self.request("GET", f"/rooms/{quote(room_id)}/members")
        return {e["state_key"]: e["content"].get("membership", "") for e in data.get("chunk", [])}

    # -- waiting ---------------------------------------------------------------------------
    async def wait_for_event(self, room_id: str, match: Callable[[Event], bool], *,
                             timeout: float = 30.0, what: str = "event") -> Event:
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        for _ in range(int(timeout / 0.2) + 1):
            seen = await self.messages(room_id)
            for event in seen:
                if match(event):
                    return event
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        summary = [(e.get("sender"), e.get("type"), e.get("content", {}).get("body")) for e in seen[-10:]]
        raise TimeoutError(f"no {what} in {room_id} within {timeout} s; last events: {summary}")

    async def wait_for_membership(self, room_id: str, user_id: str, membership: str,
                                  timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        current = None
        for _ in range(int(timeout / 0.2) + 1):
            current = (await self.members(room_id)).get(user_id)
            if current == membership:
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{user_id} is {current!r} in {room_id}, not {membership!r}, after {timeout} s")


def message_from(sender: str, *, body: str | None = None, msgtype: str | None = None,
                 contains: str = "") -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        content = event.get("content", {})
        return (
            event.get("type") == "m.room.message" and event.get("sender") == sender
            and (body is None or content.get("body") == body)
            and (msgtype is None or content.get("msgtype") == msgtype)
            and contains in content.get("body", "")
        )

    return match


def member_event(user_id: str, membership: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return (event.get("type") == "m.room.member" and event.get("state_key") == user_id
                and event.get("content", {}).get("membership") == membership)

    return match


def notice_from(sender: str, *, contains: str = "", reply_to: str | None = None) -> Callable[[Event], bool]:
    """Matches an m.notice from `sender` whose body contains `contains` (and replies to an event)."""

    def match(event: Event) -> bool:
        content = event.get("content", {})
        if event.get("type") != "m.room.message" or event.get("sender") != sender:
            return False
        if content.get("msgtype") != "m.notice" or contains not in content.get("body", ""):
            return False
        if reply_to is not None:
            in_reply = content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            return in_reply == reply_to
        return True

    return match
