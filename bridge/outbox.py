"""The durable outbox: Matrix messages accepted for a network but not yet delivered there.

A message goes here when its sender's puppet is not connected (or earlier messages of theirs
are still waiting, to keep order). When the puppet connects, the outbox is flushed in order.
A message that still cannot be delivered after `delivery_timeout` seconds is dropped with a
notice to its sender that says which message failed and why: never silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from connectors.api import ChatKind, ChatRef, MessageKind, OutgoingMessage, SendError

from bridge.db.models import Outbox as OutboxRow

log = logging.getLogger("rapture.outbox")

Sender = Callable[[ChatRef, OutgoingMessage], Awaitable[None]]
FailureReport = Callable[[str, str, OutgoingMessage, str], Awaitable[None]]  # room, mxid, msg, why


def encode(chat: ChatRef, message: OutgoingMessage) -> dict[str, Any]:
    data = asdict(message)
    data["kind"] = message.kind.value
    return {"chat": {"id": chat.id, "kind": chat.kind.value, "receiver": chat.receiver}, "message": data}


def decode(payload: dict[str, Any]) -> tuple[ChatRef, OutgoingMessage]:
    chat = payload["chat"]
    message = dict(payload["message"])
    message["kind"] = MessageKind(message["kind"])
    return ChatRef(chat["id"], ChatKind(chat["kind"]), chat["receiver"]), OutgoingMessage(**message)


class Outbox:
    def __init__(self, sessions: async_sessionmaker, report_failure: FailureReport) -> None:
        self._sessions = sessions
        self._report = report_failure
        self._waiting: dict[tuple[str, str], int] = {}  # (mxid, network) -> rows waiting
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def load(self) -> None:
        async with self._sessions() as session:
            for mxid, network in (await session.execute(select(OutboxRow.mxid, OutboxRow.network))).all():
                key = (mxid, network)
                self._waiting[key] = self._waiting.get(key, 0) + 1

    def has_waiting(self, mxid: str, network: str) -> bool:
        return self._waiting.get((mxid, network), 0) > 0

    def depth(self) -> int:
        return sum(self._waiting.values())

    async def add(self, mxid: str, network: str, room_id: str, chat: ChatRef, message: OutgoingMessage) -> None:
        async with self._sessions() as session, session.begin():
            session.add(OutboxRow(mxid=mxid, network=network, room_id=room_id,
                                  event_id=message.event_id or f"~{id(message)}",
                                  payload=encode(chat, message), attempts=0))
        key = (mxid, network)
        self._waiting[key] = self._waiting.get(key, 0) + 1

    async def flush(self, mxid: str, network: str, send: Sender) -> None:
        """Send waiting messages in order; stop at the first retriable failure."""
        key = (mxid, network)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            while self.has_waiting(mxid, network):
                async with self._sessions() as session:
                    row = (await session.execute(
                        select(OutboxRow).where(OutboxRow.mxid == mxid, OutboxRow.network == network)
                        .order_by(OutboxRow.id).limit(1)
                    )).scalar_one_or_none()
                if row is None:
                    self._waiting.pop(key, None)
                    return
                chat, message = decode(row.payload)
                try:
                    await send(chat, message)
                except SendError as exc:
                    if exc.retriable:
                        return  # try again on the next connect
                    await self._report(row.room_id, mxid, message, str(exc))
                await self._delete(row.id, key)

    async def _delete(self, row_id: int, key: tuple[str, str]) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(OutboxRow).where(OutboxRow.id == row_id))
        left = self._waiting.get(key, 1) - 1
        if left > 0:
            self._waiting[key] = left
        else:
            self._waiting.pop(key, None)

    async def expire(self, timeouts: dict[str, float]) -> None:
        """Give up on messages older than their network's delivery timeout, telling the sender."""
        now = datetime.now(timezone.utc)
        async with self._sessions() as session:
            rows = (await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars().all()
        for row in rows:
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
            limit = timeouts.get(row.network, 300.0)
            if now - created < timedelta(seconds=limit):
                continue
            key = (row.mxid, row.network)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                _chat, message = decode(row.payload)
                minutes = max(1, round(limit / 60))
                await self._report(row.room_id, row.mxid, message,
                                   f"not connected to {row.network} for {minutes} minute(s)")
                await self._delete(row.id, key)
