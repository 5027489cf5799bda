"""The durable intake log of appservice transactions.

A transaction is recorded, with each of its events, in one database transaction before the
homeserver gets its 200. Events are de-duplicated by event id, so a transaction resent after
a crash, or an event repeated under a new txn id, is handled once. Transaction ids alone are
not trusted for that: Synapse numbers them from its own table, which it empties, so after a
Synapse restart the same ids come again with new events. Each event is marked done after it
was handled; those not done when the process stopped are handled again at start, in order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from bridge.db.models import AppServiceEvent, AppServiceTransaction

log = logging.getLogger("rapture.inbox")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event_id: str
    room_id: str
    raw: dict[str, Any]


def _usable(raw: Any) -> bool:
    """An event we can route at all: it needs string ids and a type."""
    return (
        isinstance(raw, dict)
        and isinstance(raw.get("event_id"), str)
        and isinstance(raw.get("room_id"), str)
        and isinstance(raw.get("type"), str)
        and 0 < len(raw["event_id"]) <= 255
        and 0 < len(raw["room_id"]) <= 255
    )


class TransactionInbox:
    def __init__(self, sessionmaker: async_sessionmaker) -> None:
        self._sessions = sessionmaker

    async def record(self, txn_id: str, raw_events: list[Any]) -> list[StoredEvent]:
        """Store a transaction; return those of its events never seen before, in order."""
        events = []
        for raw in raw_events:
            if _usable(raw):
                events.append(raw)
            else:
                # Not an event we could ever act on; say so instead of failing the whole batch,
                # which the homeserver would retry forever.
                log.warning("ignoring a malformed event in transaction %s", txn_id)
        async with self._sessions() as session, session.begin():
            if await session.get(AppServiceTransaction, txn_id) is None:
                session.add(AppServiceTransaction(txn_id=txn_id))
            ids = list({raw["event_id"] for raw in events})
            seen: set[str] = set()
            if ids:
                rows = await session.execute(
                    select(AppServiceEvent.event_id).where(AppServiceEvent.event_id.in_(ids))
                )
                seen = set(rows.scalars())
            fresh: list[AppServiceEvent] = []
            for raw in events:
                if raw["event_id"] in seen:
                    continue
                seen.add(raw["event_id"])
                row = AppServiceEvent(
                    event_id=raw["event_id"], room_id=raw["room_id"], txn_id=txn_id,
                    payload=json.dumps(raw, ensure_ascii=False), done=False,
                )
                session.add(row)
                fresh.append(row)
            await session.flush()  # assigns seq
            return [StoredEvent(r.seq, r.event_id, r.room_id, json.loads(r.payload)) for r in fresh]

    async def mark_done(self, seq: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(AppServiceEvent).where(AppServiceEvent.seq == seq).values(done=True)
            )

    async def pending(self) -> list[StoredEvent]:
        """Events accepted but not handled, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(AppServiceEvent).where(AppServiceEvent.done.is_(False)).order_by(AppServiceEvent.seq)
            )
            return [
                StoredEvent(r.seq, r.event_id, r.room_id, json.loads(r.payload))
                for r in rows.scalars()
            ]

    async def prune(self, older_than: timedelta = timedelta(days=7)) -> None:
        """Forget handled events and transaction ids older than the homeserver would resend."""
        cutoff = datetime.now(timezone.utc) - older_than
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(AppServiceEvent).where(
                    AppServiceEvent.done.is_(True), AppServiceEvent.received_at < cutoff
                )
            )
            await session.execute(
                delete(AppServiceTransaction).where(AppServiceTransaction.received_at < cutoff)
            )
