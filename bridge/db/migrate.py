"""Apply Alembic migrations.

`rapture run` calls this in a child process (`rapture db upgrade`), so Alembic and its
imports never sit in the serving process's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("rapture.db")

# alembic/ sits at the project root, beside the bridge package.
SCRIPT_LOCATION = Path(__file__).resolve().parents[2] / "alembic"


def _alembic_config(url: str):  # -> alembic.config.Config (imported lazily on purpose)
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["url"] = url
    return cfg


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("unused")).get_current_head()


async def _current_revision(url: str) -> str | None:
    from sqlalchemy import inspect, text

    from bridge.db.engine import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
            return row[0] if row else None
    finally:
        await engine.dispose()


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Migrate to head; returns (revision before, revision after)."""
    from alembic import command

    before = asyncio.run(_current_revision(url))
    command.upgrade(_alembic_config(url), "head")
    after = asyncio.run(_current_revision(url))
    return before, after


async def upgrade_in_child(config_path: str) -> None:
    """Run `python -m bridge db upgrade -c CONFIG` and wait; raise with its output on failure."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "db", "upgrade", "-c", config_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output, _ = await proc.communicate()
    text = output.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"database migration failed (exit {proc.returncode}):\n{text}")
    if text:
        log.info("%s", text)
