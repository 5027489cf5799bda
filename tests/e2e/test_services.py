"""Services for tests: Atheme (NickServ, SaslServ) linked to InspIRCd, driven by raw IRC clients.

Each module fixture starts its own InspIRCd + Atheme pair: one with SASL,
one whose ircd lacks the sasl module (clients must use NickServ IDENTIFY).
InspIRCd completes each client registration on a once-a-second tick, so
every connection here costs about a second.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.atheme import (
    AthemeServer,
    account_of,
    nickserv_register,
    parse_message,
    start_atheme,
    start_irc_with_services,
)
from bridge.devstack.inspircd import InspircdServer
from tests.servers import RawIrcClient, require

pytestmark = pytest.mark.e2e

Pair = tuple[InspircdServer, AthemeServer]


def _start_pair(tmp_path_factory: pytest.TempPathFactory, *, sasl: bool) -> Iterator[Pair]:
    try:
        ircd, services = start_irc_with_services(tmp_path_factory.mktemp("services"), sasl=sasl)
    except ServerUnavailable as exc:
        require(exc)
    try:
        yield ircd, services
    finally:
        services.stop()
        ircd.stop()


@pytest.fixture(scope="module")
def with_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from _start_pair(tmp_path_factory, sasl=True)


@pytest.fixture(scope="module")
def without_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from _start_pair(tmp_path_factory, sasl=False)


class CapClient(RawIrcClient):
    """A RawIrcClient that sends ``CAP LS 302`` before NICK/USER.

    The server then holds registration until ``CAP END``, as a real
    SASL-capable client (the bridge) would have it.
    """

    def __init__(self, port: int, nick: str) -> None:
        # Same state as RawIrcClient.__init__, but CAP LS goes first.
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        self._buf = b""
        self.lines = []
        self.send("CAP LS 302")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")

    def read_caps(self) -> dict[str, str]:
        """The ``CAP LS`` reply, possibly several lines (``CAP * LS * :...``), as ``{name: value}``."""
        caps: dict[str, str] = {}
        for _ in range(50):
            line = self.wait_for(lambda p: len(p) > 2 and p[1] == "CAP" and p[3] == "LS")
            _, _, params = parse_message(line)  # [target, "LS", ("*",) caps]
            for cap in params[-1].split():
                name, _, value = cap.partition("=")
                caps[name] = value
            if len(params) < 4 or params[2] != "*":  # no continuation marker: last line
                return caps
        raise AssertionError(f"CAP LS never ended: {self.lines[-10:]}")

    def wait_command(self, *commands: str, timeout: float = 10.0) -> tuple[str, list[str]]:
        """The next message whose command is one of ``commands``, as ``(command, params)``."""
        line = self.wait_for(lambda p: len(p) > 1 and (p[0].upper() in commands or p[1].upper() in commands), timeout=timeout)
        _, command, params = parse_message(line)
        return command, params

    def sasl_plain(self, account: str, password: str) -> str:
        """Run SASL PLAIN; return the final numeric (903 success, 904 failure)."""
        self.send("CAP REQ :sasl")
        command, params = self.wait_command("CAP")
        assert params[1] == "ACK" and params[-1].split() == ["sasl"], self.lines[-5:]
        self.send("AUTHENTICATE PLAIN")
        command, params = self.wait_command("AUTHENTICATE", "904", "908")
        # InspIRCd sends "AUTHENTICATE :+"; as an IRC parameter it is just "+".
        assert command == "AUTHENTICATE" and params == ["+"], self.lines[-5:]
        blob = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
        self.send(f"AUTHENTICATE {blob}")
        command, _ = self.wait_command("903", "904", "905", "906")
        return command


def test_parse_message_reads_authenticate_plus_both_ways() -> None:
    assert parse_message("AUTHENTICATE :+") == ("", "AUTHENTICATE", ["+"])
    assert parse_message("AUTHENTICATE +") == ("", "AUTHENTICATE", ["+"])
    assert parse_message("@time=x :srv 330 me nick acct :is logged in as") == (
        "srv",
        "330",
        ["me", "nick", "acct", "is logged in as"],
    )


def test_services_link_and_answer(with_sasl: Pair) -> None:
    ircd, services = with_sasl
    assert services.process is not None and services.process.poll() is None
    # Linking itself takes milliseconds; the NickServ probe costs one client registration.
    assert services.link_seconds < 10, services.link_seconds
    assert services.data_dir.is_dir()


def test_missing_atheme_binary_is_server_unavailable(with_sasl: Pair, tmp_path: Path) -> None:
    ircd, services = with_sasl
    with pytest.raises(ServerUnavailable):
        start_atheme(tmp_path, ircd=ircd, link_port=services.link_port, password="x", binary="no-such-atheme")


def test_register_then_sasl_plain_logs_in(with_sasl: Pair) -> None:
    ircd, _ = with_sasl
    nickserv_register(ircd.port, "alice", "alice-secret")
    with CapClient(ircd.port, "alice_m") as client:
        caps = client.read_caps()
        assert "sasl" in caps, caps
        assert "PLAIN" in caps["sasl"].split(","), caps
        assert client.sasl_plain("alice", "alice-secret") == "903", client.lines[-5:]
        assert any(parse_message(line)[1] == "900" and parse_message(line)[2][2] == "alice" for line in client.lines)
        client.send("CAP END")
        client.wait_registered()
        assert account_of(ircd.port, "alice_m") == "alice"


def test_sasl_with_wrong_password_fails(with_sasl: Pair) -> None:
    ircd, _ = with_sasl
    nickserv_register(ircd.port, "bob", "bob-secret")
    with CapClient(ircd.port, "bob_m") as client:
        assert "sasl" in client.read_caps()
        assert client.sasl_plain("bob", "not-the-password") == "904"
        client.send("CAP END")
        client.wait_registered()
        assert account_of(ircd.port, "bob_m") is None


def test_register_refuses_a_taken_account(with_sasl: Pair) -> None:
    ircd, _ = with_sasl
    nickserv_register(ircd.port, "carol", "carol-secret")
    with pytest.raises(RuntimeError, match="already registered"):
        nickserv_register(ircd.port, "carol", "another-secret")


def test_without_sasl_cap_ls_lacks_sasl_and_identify_works(without_sasl: Pair) -> None:
    ircd, _ = without_sasl
    nickserv_register(ircd.port, "dave", "dave-secret")
    with CapClient(ircd.port, "dave_m") as client:
        caps = client.read_caps()
        assert "sasl" not in caps, caps
        assert "account-notify" in caps  # the rest of IRCv3 is still there
        client.send("CAP END")
        client.wait_registered()
        assert account_of(ircd.port, "dave_m") is None
        client.send("PRIVMSG NickServ :IDENTIFY dave dave-secret")
        command, params = client.wait_command("900")
        assert params[2] == "dave"
        assert account_of(ircd.port, "dave_m") == "dave"
