"""Migrations and the durable inbox on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from bridge.appservice.inbox import TransactionInbox
from bridge.db.engine import make_engine
from bridge.db.models import Base
from bridge.devstack import ServerUnavailable
from tests.cli import rapture
from tests.servers import require
from tests.unit.test_check_config import VALID

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'rapture.db'}"
        return
    name = f"rapture_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError) as exc:
        require(ServerUnavailable(f"PostgreSQL on 127.0.0.1:5432: {exc}"))
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(VALID + f"database:\n  url: {url}\n")
    return path


async def _schema_drift(url: str) -> list:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn):
                return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


def test_migrations_create_the_schema_and_rerun_is_a_no_op(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url)
    first = rapture("db", "upgrade", "-c", str(config))
    assert first.returncode == 0, first.stderr
    assert "migrated from empty to" in first.stdout

    tables = asyncio.run(_tables(database_url))
    assert {"portal", "ghost", "matrix_user", "control_room", "login", "message", "reaction", "outbox",
            "as_txn", "as_event", "alembic_version"} <= tables
    # The migrations produce exactly what the models describe: no forgotten migration.
    assert asyncio.run(_schema_drift(database_url)) == []

    second = rapture("db", "upgrade", "-c", str(config))
    assert second.returncode == 0, second.stderr
    assert "already at revision" in second.stdout and "nothing to do" in second.stdout


async def _inbox_round_trip(url: str) -> None:
    engine = make_engine(url)
    inbox = TransactionInbox(engine, is_ours=lambda mxid: mxid == "@bot:hs")
    try:
        def event(n: int, room: str = "!r:hs") -> dict:
            return {"type": "m.room.message", "room_id": room, "event_id": f"$e{n}",
                    "sender": "@a:hs", "content": {"body": f"ü {n}"}}

        first = await inbox.record("t1", [event(1), event(2), event(1)])
        assert [e.event_id for e in first] == ["$e1", "$e2"]
        assert await inbox.record("t1", [event(1), event(2)]) == []  # a resend: nothing new
        again = await inbox.record("t2", [event(2), event(3, "!other:hs")])
        assert [e.event_id for e in again] == ["$e3"]  # $e2 seen already

        # Synapse reuses transaction ids after it restarts: new events under an old id count.
        reused = await inbox.record("t1", [event(4)])
        assert [e.event_id for e in reused] == ["$e4"]

        pending = await inbox.pending()
        assert [e.event_id for e in pending] == ["$e1", "$e2", "$e3", "$e4"]  # in arrival order
        assert pending[0].raw["content"]["body"] == "ü 1"
        inbox.mark_done(pending[1].seq)
        await inbox.close()  # flushes the batched done marks
        assert [e.event_id for e in await inbox.pending()] == ["$e1", "$e3", "$e4"]

        # The bridge's own echoes are handed on but not stored.
        echo = {**event(5), "sender": "@bot:hs"}
        (handed,) = await inbox.record("t3", [echo])
        assert handed.seq == -1 and handed.event_id == "$e5"
        assert "$e5" not in [e.event_id for e in await inbox.pending()]
        # ... and a transaction of nothing but echoes writes nothing at all.
        async with engine.connect() as conn:
            txns = {row[0] for row in await conn.execute(text("SELECT txn_id FROM as_txn"))}
        assert {"t1", "t2"} <= txns and "t3" not in txns
    finally:
        await engine.dispose()


def test_inbox_deduplicates_and_keeps_order(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url)
    assert rapture("db", "upgrade", "-c", str(config)).returncode == 0
    asyncio.run(_inbox_round_trip(database_url))


def test_a_connector_branch_is_migrated_beside_the_core(tmp_path: Path, database_url: str) -> None:
    from bridge.db.migrate import upgrade

    branch = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "branch"
    before, after = upgrade(database_url, [str(branch)])
    assert before is None and after == "e001"  # the branch head; it depends on the core's 0001
    assert "echo_things" in asyncio.run(_tables(database_url))
    assert upgrade(database_url, [str(branch)]) == ("e001", "e001")  # a second run is a no-op
    # and the core's tables came first, as the branch's depends_on asks
    assert "portal" in asyncio.run(_tables(database_url))
