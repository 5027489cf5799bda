"""Helpers for tests that run against the devstack's real servers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import NoReturn

import pytest

from bridge.devstack import ServerUnavailable


def require(exc: ServerUnavailable) -> NoReturn:
    """Skip the test because a server is not installed, except in CI.

    A developer without InspIRCd can still run the rest of the suite; CI
    (``CI=true``) is supposed to have everything, so there a missing server
    is a failure, never a silently skipped e2e suite.
    """
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"required test server unavailable in CI: {exc}", pytrace=False)
    pytest.skip(f"test server unavailable: {exc}")


# Gets a received line split on spaces, e.g. [":n!u@h", "PRIVMSG", "#test", ":hi"].
LineMatcher = Callable[[list[str]], bool]


class RawIrcClient:
    """A minimal blocking IRC client for observing a server from tests.

    Every read is bounded by a deadline; nothing here waits forever.
    """

    def __init__(self, port: int, nick: str, *, host: str = "127.0.0.1", wait: bool = True) -> None:
        """Connect and send NICK/USER; with ``wait``, also wait for 001.

        InspIRCd completes registrations once a second, so several clients
        are faster made with ``wait=False`` and then ``wait_registered()``
        on each: they all finish on the same tick.
        """
        self.nick = nick
        self.sock = socket.create_connection((host, port), timeout=10.0)
        self._buf = b""
        self.lines: list[str] = []  # everything received, for assertion messages
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        if wait:
            self.wait_registered()

    def wait_registered(self, timeout: float = 10.0) -> None:
        self.wait_for(lambda parts: len(parts) > 1 and parts[1] == "001", timeout=timeout)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def wait_for(self, match: LineMatcher, *, timeout: float = 10.0) -> str:
        """Read lines (answering PINGs) until ``match(words)`` is true; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" in self._buf:
                raw, self._buf = self._buf.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                parts = line.split(" ")
                if parts[0].startswith("@"):  # IRCv3 message tags: matchers see the message
                    parts = parts[1:]
                if parts[0] == "PING":
                    self.send("PONG " + " ".join(parts[1:]))
                if match(parts):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                raise ConnectionError(f"{self.nick}: server closed the connection; got {self.lines[-10:]}")
            self._buf += chunk
        raise TimeoutError(f"{self.nick}: no matching line within {timeout} s; got {self.lines[-10:]}")

    def close(self) -> None:
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> "RawIrcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

