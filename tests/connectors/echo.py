"""The example echo connector, installed like any third-party package, and its testkit harness."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bridge.identity import escape_localpart
from connectors.api import MessageKind
from connectors.testkit import Capabilities
from tests.connectors.matrix_side import MatrixSide
from tests.e2e.conftest import Stack

PACKAGE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "echo_connector"
WAIT = 30.0


def install_echo_connector() -> None:
    """pip-install the example into this interpreter's environment (idempotent).

    Built from a copy, so no build/ or egg-info is left in the source tree. Without build
    isolation first (offline); an older setuptools without `wheel` needs the isolated build.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "echo_connector"
        shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        base = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--force-reinstall"]
        done = subprocess.run([*base, "--no-build-isolation", str(src)], capture_output=True, timeout=300)
        if done.returncode != 0:
            subprocess.run([*base, str(src)], check=True, capture_output=True, timeout=300)


class EchoHarness(MatrixSide):
    """Drives the echo network over its line protocol (see rapture_echo's docstring)."""

    caps = Capabilities(formatting=False)

    def __init__(self, stack: Stack, port: int, network: str = "echo") -> None:
        self.stack, self.port, self.network = stack, port, network
        self.lines: list[str] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self) -> EchoHarness:
        for _ in range(50):
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
                break
            except OSError:
                await asyncio.sleep(0.2)
        else:
            raise TimeoutError(f"the echo network does not listen on {self.port}")
        self._reader_task = asyncio.create_task(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        for _ in range(10**9):
            line = await reader.readline()
            if not line:
                return
            self.lines.append(line.rstrip(b"\n").decode(errors="replace"))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()

    def _send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data + b"\n")

    async def _wait_line(self, line: str) -> None:
        deadline = time.monotonic() + WAIT
        for _ in range(int(WAIT / 0.05) + 1):
            if line in self.lines:
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no line {line!r} within {WAIT} s; last: {self.lines[-8:]}")

    # -- Harness ----------------------------------------------------------------------------
    def ghost(self, user: str) -> str:
        return f"@{self.network}_{escape_localpart(user.lower())}:localhost"

    def puppet_name(self, mxid: str) -> str:
        return mxid[1:].split(":", 1)[0]

    async def new_chat(self) -> str:
        return f"c{uuid.uuid4().hex[:8]}"

    async def new_user(self) -> str:
        return f"u{uuid.uuid4().hex[:8]}"

    async def join(self, user: str, chat: str) -> None:
        self._send(f"{chat}|{user}|/join".encode())

    async def leave(self, user: str, chat: str, reason: str) -> None:
        self._send(f"{chat}|{user}|/part {reason}".encode())

    async def say(self, user: str, chat: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        prefix = {MessageKind.EMOTE: "/me ", MessageKind.NOTICE: "/notice "}.get(kind, "")
        self._send(f"{chat}|{user}|{prefix}{text}".encode())

    async def say_bytes(self, user: str, chat: str, data: bytes) -> None:
        self._send(f"{chat}|{user}|".encode() + data)

    async def say_dm(self, user: str, mxid: str, text: str) -> None:
        self._send(f"{mxid}|{user}|{text}".encode())

    async def wait_said(self, chat: str, puppet: str, text: str, kind: MessageKind = MessageKind.TEXT) -> None:
        await self._wait_line(f"{chat}|{puppet}|{kind.value}|{text}")

    async def wait_dm(self, user: str, puppet: str, text: str) -> None:
        await self._wait_line(f"~{user}|{puppet}|m.text|{text}")

    async def wait_joined(self, chat: str, puppet: str) -> None:
        await self._wait_line(f"{chat}|{puppet}|join|")

    async def rename(self, user: str, chat: str) -> str:
        new = f"n{uuid.uuid4().hex[:8]}"
        self._send(f"{chat}|{user}|/nick {new}".encode())
        return new

    async def set_topic(self, user: str, chat: str, topic: str) -> None:
        self._send(f"{chat}|{user}|/topic {topic}".encode())

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        self._send(b"!down")
        try:
            yield
        finally:
            await asyncio.sleep(0.5)  # let the Matrix messages reach the bridge's outbox first
            self._send(b"!up")

    def formatted_samples(self) -> tuple[str, str, str, str, str]:
        raise NotImplementedError("echo has no formatting")

    def unformatted_rendering(self) -> str:
        return "bold it"  # echo carries the plain body


def echo_stack_fixture(label: str):  # -> a module-scoped pytest fixture
    """A module-scoped stack with an `echo` network, for the tests that need one."""
    import pytest

    from bridge.devstack import ServerUnavailable
    from bridge.devstack.ports import free_port
    from bridge.devstack.stack import start_local_stack
    from tests.e2e.conftest import PERMISSIONS
    from tests.servers import require

    @pytest.fixture(scope="module")
    def echo_stack(tmp_path_factory: pytest.TempPathFactory):
        install_echo_connector()
        port = free_port()
        try:
            local = start_local_stack(tmp_path_factory.mktemp(label), permissions=PERMISSIONS, with_irc=False,
                                      extra_networks={"echo": {"connector": "echo", "port": port}})
        except ServerUnavailable as exc:
            require(exc)
        yield Stack(local), port
        local.stop()

    return echo_stack
