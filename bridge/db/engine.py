"""Async engine creation, with the per-backend settings that matter for a bridge.

A SQLite database file is created here, mode 0600, before SQLite opens it: SQLite itself
would create it 0644 (less the umask), and it gives its `-wal` and `-shm` files the mode of
the database file, so all three are private from the first byte.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger("rapture.db")


def make_engine(url: str) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        create_private_sqlite_file(url)
        # One writer at a time is SQLite's nature; wait for the lock rather than failing.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and the writer overlap; NORMAL sync is durable against a process crash,
    # which is the failure the transaction log guards against, at a fraction of FULL's cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


DATABASE_FILE_MODE = 0o600


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names, or None for an in-memory or URI-style database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def create_private_sqlite_file(url: str) -> None:
    """Create the (empty) database file with owner-only access, unless it exists already.

    An empty file is a valid new SQLite database. A missing directory is left for SQLite to
    report, as before. An existing database (made by an older version, or copied in) that
    anyone may read, and its leftover `-wal`/`-shm`, lose the access of others: they hold
    every user's messages waiting to be bridged, and the sealed credentials.
    """
    path = sqlite_path(url)
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_FILE_MODE)
    except FileNotFoundError:
        return
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            _close_to_others(name)
        return
    os.close(fd)


def _close_to_others(path: str) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o007:
            os.chmod(path, mode & ~0o007)
            log.warning("%s was open to every user of this machine (mode %o); it is not any more", path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours to change: say so, go on
        log.warning("%s is open to every user of this machine, and cannot be changed: %s", path, exc)
