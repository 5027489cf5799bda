"""Apply Alembic migrations.

`rapture run` calls this in a child process (`rapture db upgrade`), so Alembic and its
imports never sit in the serving process's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("rapture.db")

# alembic/ sits at the project root, beside the bridge package.
SCRIPT_LOCATION = Path(__file__).resolve().parents[2] / "alembic"


def _alembic_config(url: str, branches: Sequence[str] = ()):  # -> alembic.config.Config
    """The core's migrations plus connectors' branches (directories of revision files)."""
    from alembic.config import Config  # imported here: never in the serving process

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    locations = [str(SCRIPT_LOCATION / "versions"), *branches]
    # Alembic splits this option on the separator; paths keep any spaces they have.
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    cfg.attributes["url"] = url
    return cfg


async def _current_revision(url: str) -> str | None:
    from sqlalchemy import inspect, text

    from bridge.db.engine import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            return ",".join(sorted(rows)) or None
    finally:
        await engine.dispose()


def upgrade(url: str, branches: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """Migrate the core and the given connector branches to their heads.

    Returns (revisions before, revisions after), each a comma-separated list or None.
    """
    from alembic import command

    before = asyncio.run(_current_revision(url))
    command.upgrade(_alembic_config(url, branches), "heads")
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
