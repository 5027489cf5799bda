"""Process plumbing shared by the server launchers: spawn, wait, stop, log tails."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Servers still running when the interpreter exits (a test run that crashed
# before its teardown, a demo that raised). Stopping them in an atexit hook
# keeps stray daemons from holding ports and piling up between runs. It does
# not help against SIGKILL; nothing in-process can.
_live: set[subprocess.Popen[bytes]] = set()


def _stop_leftovers() -> None:
    for proc in list(_live):
        stop_process(proc, timeout=5.0)


atexit.register(_stop_leftovers)


def spawn(argv: Sequence[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    ``start_new_session`` puts the server in its own process group, so a
    Ctrl-C in the terminal reaches only our process; we then stop servers in
    order (the bridge can still say goodbye to IRC before the ircd goes away).
    """
    with open(log_path, "ab") as log:
        # The child keeps its own copy of the descriptor; ours can close now.
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _live.add(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None, *, timeout: float = 15.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL (bounded as well)."""
    if proc is None:
        return
    _live.discard(proc)
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
        return
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        # The whole group: a server that forked helpers should not leave them behind.
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
        pass


def log_tail(*paths: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of each existing log, for error messages."""
    parts: list[str] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"--- last lines of {path} ---\n{tail}")
    return "\n".join(parts) if parts else "(no log output)"


def wait_until(
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    logs: Sequence[Path],
    timeout: float,
    interval: float = 0.1,
    failed: Callable[[], str | None] | None = None,
) -> float:
    """Poll ``ready()`` until it is true; return the seconds it took.

    Bounded twice over: by ``timeout`` and by the number of attempts, so a
    ``ready()`` that itself blocks cannot stretch the wait unnoticed. Fails
    fast if the server process exits or ``failed()`` returns a reason (for
    servers that keep running in a useless state). On failure the server is
    stopped and a ``RuntimeError`` carries the tail of its logs.
    """
    started = time.monotonic()
    deadline = started + timeout
    max_attempts = int(timeout / interval) + 1
    for _ in range(max_attempts):
        code = proc.poll()
        if code is not None:
            _live.discard(proc)
            raise RuntimeError(f"{what} exited with code {code} while starting\n{log_tail(*logs)}")
        reason = failed() if failed is not None else None
        if reason:
            stop_process(proc)
            raise RuntimeError(f"{what} failed to start: {reason}\n{log_tail(*logs)}")
        if ready():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    stop_process(proc)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s\n{log_tail(*logs)}")


def find_binary(binary: str, *, usual_paths: Sequence[str], default_name: str, what: str, package: str) -> str:
    """The server program to run: on PATH, or (for the default name) where Debian puts it,
    which is often not on a normal user's PATH. Raises ServerUnavailable saying what to install."""
    from bridge.devstack import ServerUnavailable

    candidates = [shutil.which(binary)]
    if binary == default_name:
        candidates.extend(usual_paths)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(
        f"{what} ({binary!r}) not found. Install it with `apt-get install {package}` "
        "(or run scripts/bootstrap)."
    )
