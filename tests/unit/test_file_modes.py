"""Files that hold secrets are private from the moment they exist, whatever the umask.

Each test runs under a permissive umask (022) with every chmod made a no-op: a writer that
creates a file with the umask's mode and narrows it afterwards (a window in which anyone may
open it) fails here; only a file created with its final mode passes.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.config.yaml_io import save_document
from bridge.db.engine import make_engine
from bridge.secrets import create_key_file, key_file_problem
from registration import write_registration
from tests.cli import rapture
from tests.unit.test_check_config import VALID


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_chmod(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    old = os.umask(0o022)
    for target, name in ((os, "chmod"), (os, "fchmod"), (Path, "chmod")):
        monkeypatch.setattr(target, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        os.umask(old)


def test_config_and_registration_are_created_private(tmp_path: Path, no_chmod: None) -> None:
    config = tmp_path / "config.yaml"
    save_document(config, {"appservice": {"as_token": "x" * 40}})
    assert _mode(config) == 0o600
    registration = tmp_path / "registration.yaml"
    write_registration(registration, {"as_token": "x" * 40})
    assert _mode(registration) == 0o640
    # Rewriting keeps the file's mode (and a leftover temporary file is not reused).
    (tmp_path / ".registration.yaml.tmp").write_text("leftover")
    write_registration(registration, {"as_token": "y" * 40})
    assert _mode(registration) == 0o640


def test_key_file_is_created_private(tmp_path: Path, no_chmod: None) -> None:
    key = tmp_path / "keys" / "rapture.key"
    assert create_key_file(key)
    assert _mode(key) == 0o600


async def test_sqlite_database_and_its_wal_are_created_private(tmp_path: Path, no_chmod: None) -> None:
    db = tmp_path / "rapture.db"
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT)"))
            await conn.execute(text("INSERT INTO t VALUES ('a')"))
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # WAL mode: both exist while a connection is open
        assert {p.name: _mode(p) for p in (db, wal, shm)} == {
            "rapture.db": 0o600, "rapture.db-wal": 0o600, "rapture.db-shm": 0o600}
    finally:
        await engine.dispose()


def test_generate_registration_writes_private_files(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(VALID)
    config.chmod(0o644)
    registration = tmp_path / "reg.yaml"
    result = rapture("generate-registration", "-c", str(config), "-r", str(registration))
    assert result.returncode == 0, result.stderr
    assert _mode(config) == 0o600
    assert _mode(registration) == 0o640
    assert _mode(tmp_path / "rapture.key") == 0o600


@pytest.mark.parametrize("mode, refused", [
    (0o600, False), (0o400, False), (0o640, False), (0o644, True), (0o604, True), (0o660, True),
    (0o666, True),
])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int, refused: bool) -> None:
    key = tmp_path / "rapture.key"
    create_key_file(key)
    key.chmod(mode)
    problem = key_file_problem(key)
    assert (problem is not None) is refused
    if refused:
        assert str(key) in problem and f"chmod 600 {key}" in problem  # type: ignore[operator]
    assert key_file_problem(tmp_path / "missing.key") is None


def test_run_refuses_a_world_readable_key_file(tmp_path: Path) -> None:
    """The real entry point: `rapture run` stops before serving, naming the file and the fix."""
    config = tmp_path / "config.yaml"
    config.write_text(VALID)
    key = tmp_path / "rapture.key"
    create_key_file(key)
    key.chmod(0o644)
    result = rapture("run", "-c", str(config), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert str(key) in result.stderr and f"chmod 600 {key}" in result.stderr, result.stderr
    assert not (tmp_path / "rapture.db").exists()  # refused before the database was touched


def test_check_config_names_a_world_readable_key_file(tmp_path: Path) -> None:
    """check-config says what `run` would refuse, rather than OK."""
    config = tmp_path / "config.yaml"
    config.write_text(VALID)
    key = tmp_path / "rapture.key"
    create_key_file(key)
    assert rapture("check-config", "-c", str(config)).returncode == 0
    key.chmod(0o644)
    result = rapture("check-config", "-c", str(config))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "OK" not in result.stdout
    assert str(key) in result.stderr and f"chmod 600 {key}" in result.stderr, result.stderr


def test_run_creates_the_database_private(tmp_path: Path) -> None:
    """`rapture db upgrade` (what `run` does first, in a child) under a permissive umask."""
    config = tmp_path / "config.yaml"
    config.write_text(VALID)
    old = os.umask(0o022)
    try:
        result = rapture("db", "upgrade", "-c", str(config))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert _mode(tmp_path / "rapture.db") == 0o600


def test_sqlite_memory_and_postgres_urls_create_no_file(tmp_path: Path) -> None:
    asyncio.run(make_engine("sqlite+aiosqlite:///:memory:").dispose())
    asyncio.run(make_engine("postgresql+asyncpg://u:p@127.0.0.1:1/db").dispose())
    assert not list(tmp_path.iterdir())


def test_an_existing_database_open_to_everyone_is_closed_to_others(tmp_path: Path) -> None:
    """A database an older version made with the umask's 0644 (and its leftover WAL) holds
    every message waiting to be bridged: others lose read access when the bridge opens it."""
    db = tmp_path / "rapture.db"
    for path in (db, Path(f"{db}-wal")):
        path.write_bytes(b"")
        path.chmod(0o644)
    asyncio.run(make_engine(f"sqlite+aiosqlite:///{db}").dispose())
    assert _mode(db) == 0o640 and _mode(Path(f"{db}-wal")) == 0o640
