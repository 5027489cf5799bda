"""Run the real `rapture` command line (`python -m bridge`) in a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def rapture(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False,
    )
