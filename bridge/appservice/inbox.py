"""The durable intake log of appservice transactions.

A transaction is recorded, with each of its events, in one database transaction before the
homeserver gets its 200. Events are de-duplicated by event id, so a transaction resent after
a crash, or an event repeated under a new txn id, is handled once. Transaction ids alone are
not trusted for that: Synapse numbers them from its own table, which it empties, so after a
Synapse restart the same ids come again with new events.

Handled events are marked done in batches (every `DONE_FLUSH_SECONDS`, and at stop): one
write per burst instead of one per event. Events not marked done when the process died are
handled again at start, in order: after a crash (not after a clean stop) the last few
milliseconds of events may be handled twice, never lost.

Events sent by the bridge's own users (its ghosts and bot, echoed back by the homeserver)
are not stored: nothing is bridged from them, only the state cache learns from them.

A message that holds a secret command (`storepass`, `storecert`, `join` with a key; see
bridge/commands/sensitive.py) is stored without its secret: the row (and so the database file
and SQLite's WAL) never holds it. The event handed on in memory keeps it, for the handler;
a replay of the stored copy after a crash asks the user to send it again. A password or key
is also given to the log redactor at once, so no later log line or traceback can show it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.commands.sensitive import CREDENTIAL_COMMANDS, SECRET_REMOVED, message_secret, without_secret
from bridge.db.models import AppServiceEvent, AppServiceTransaction
from bridge.logs import redact_also

log = logging.getLogger("rapture.inbox")
DONE_FLUSH_SECONDS = 0.05
EPHEMERAL = -1  # the seq of an event that was not stored


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int  # EPHEMERAL for events not stored
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
    def __init__(self, engine: AsyncEngine, is_ours: Callable[[str], bool] = lambda _: False) -> None:
        self._engine = engine
        self._is_ours = is_ours
        # Only the dialect in use is imported: PostgreSQL's (with its four drivers) costs ~2 MB.
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert
        self._done: set[int] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, txn_id: str, raw_events: list[Any]) -> list[StoredEvent]:
        """Store a transaction; return those of its events never seen before, in order."""
        durable: list[dict[str, Any]] = []
        out: list[StoredEvent | dict[str, Any]] = []
        seen_here: set[str] = set()
        for raw in raw_events:
            if not _usable(raw):
                # Not an event we could ever act on; say so instead of failing the whole batch,
                # which the homeserver would retry forever.
                log.warning("ignoring a malformed event in transaction %s", txn_id)
                continue
            if raw["event_id"] in seen_here:
                continue
            seen_here.add(raw["event_id"])
            sender = raw.get("sender")
            if isinstance(sender, str) and self._is_ours(sender):
                out.append(StoredEvent(EPHEMERAL, raw["event_id"], raw["room_id"], raw))
            else:
                secret = message_secret(raw)
                if secret is None:
                    durable.append(raw)
                else:
                    if secret.credential:  # (a join key's false positives are ordinary words)
                        redact_also(secret.secret)
                    durable.append(without_secret(raw, secret))
                out.append(raw)
        inserted: dict[str, int] = {}
        insert = self._insert
        # A transaction of nothing but our own echoes (every line the bridge relays comes back
        # as one) needs no write at all: nothing in it can be lost.
        if durable:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(AppServiceTransaction).values(txn_id=txn_id).on_conflict_do_nothing()
                )
                rows = [{"event_id": r["event_id"], "room_id": r["room_id"], "txn_id": txn_id,
                         "payload": json.dumps(r, ensure_ascii=False), "done": False} for r in durable]
                result = await conn.execute(
                    insert(AppServiceEvent).values(rows)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(AppServiceEvent.seq, AppServiceEvent.event_id)
                )
                inserted = {event_id: seq for seq, event_id in result}
        events: list[StoredEvent] = []
        for item in out:
            if isinstance(item, StoredEvent):
                events.append(item)
            elif item["event_id"] in inserted:
                events.append(StoredEvent(inserted[item["event_id"]], item["event_id"], item["room_id"], item))
        return events

    # -- done marks, batched -------------------------------------------------------------------
    def mark_done(self, seq: int) -> None:
        if seq == EPHEMERAL:
            return
        self._done.add(seq)
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(DONE_FLUSH_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush_done())
        else:  # a flush is running: try again shortly
            self._flush_timer = asyncio.get_running_loop().call_later(DONE_FLUSH_SECONDS, self._start_flush)

    async def flush_done(self) -> None:
        while self._done:
            batch, self._done = self._done, set()
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        update(AppServiceEvent).where(AppServiceEvent.seq.in_(batch)).values(done=True)
                    )
            except Exception:
                log.exception("could not mark %d events done; they may be handled again", len(batch))
                return

    async def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush_done()

    async def pending(self) -> list[StoredEvent]:
        """Events accepted but not handled, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(AppServiceEvent.seq, AppServiceEvent.event_id, AppServiceEvent.room_id,
                       AppServiceEvent.payload)
                .where(AppServiceEvent.done.is_(False)).order_by(AppServiceEvent.seq)
            )
            return [StoredEvent(seq, event_id, room_id, json.loads(payload))
                    for seq, event_id, room_id, payload in rows]

    async def scrub_secrets(self) -> int:
        """Take the secret out of rows stored before the intake learnt to (an upgrade from a
        version that stored `storepass` as received); return how many were rewritten.

        On SQLite the old bytes are zeroed too (`secure_delete`) and the WAL, which holds
        copies of the old pages, is checkpointed and truncated.
        """
        sqlite = self._engine.dialect.name == "sqlite"
        async with self._engine.begin() as conn:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA secure_delete=ON")
            rows = await conn.execute(
                select(AppServiceEvent.seq, AppServiceEvent.payload).where(or_(
                    *(AppServiceEvent.payload.ilike(f"%{name}%") for name in CREDENTIAL_COMMANDS)
                ), AppServiceEvent.payload.not_like(f"%{SECRET_REMOVED}%"))  # scrubbed already
            )
            rewritten = 0
            for seq, payload in rows.all():
                try:
                    raw = json.loads(payload)
                except ValueError:
                    continue
                secret = message_secret(raw) if isinstance(raw, dict) else None
                if secret is None or not secret.secret:
                    continue  # already without it (or there was none)
                await conn.execute(update(AppServiceEvent).where(AppServiceEvent.seq == seq).values(
                    payload=json.dumps(without_secret(raw, secret), ensure_ascii=False)))
                rewritten += 1
        if rewritten and sqlite:
            async with self._engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if rewritten:
            log.info("removed the secrets of %d stored commands", rewritten)
        return rewritten

    async def prune(self, older_than: timedelta = timedelta(days=7)) -> None:
        """Forget handled events and transaction ids older than the homeserver would resend."""
        cutoff = datetime.now(timezone.utc) - older_than
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(AppServiceEvent).where(
                    AppServiceEvent.done.is_(True), AppServiceEvent.received_at < cutoff
                )
            )
            await conn.execute(
                delete(AppServiceTransaction).where(AppServiceTransaction.received_at < cutoff)
            )
