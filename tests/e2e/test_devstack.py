"""Smoke tests: the devstack launchers start real servers that work."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import InspircdServer, start_inspircd
from bridge.devstack.synapse import SynapseServer, start_synapse
from tests.servers import RawIrcClient, require

pytestmark = pytest.mark.e2e


def _get_json(url: str, token: str | None = None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        data: dict[str, object] = json.loads(resp.read())
        return data


# --- Synapse -----------------------------------------------------------------


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    # Our own instance: the session-wide Synapse (with the bridge's
    # registration) belongs to the bridge fixtures.
    try:
        server = start_synapse(tmp_path_factory.mktemp("synapse"))
    except ServerUnavailable as exc:
        require(exc)
    yield server
    server.stop()


def test_synapse_answers_versions(synapse: SynapseServer) -> None:
    versions = _get_json(f"{synapse.url}/_matrix/client/versions")
    assert versions["versions"]


def test_register_user_token_works(synapse: SynapseServer) -> None:
    user_id, token = synapse.register_user("alice", "correct horse", admin=True)
    assert user_id == f"@alice:{synapse.server_name}"
    whoami = _get_json(f"{synapse.url}/_matrix/client/v3/account/whoami", token)
    assert whoami["user_id"] == user_id


def test_synapse_keeps_data_across_restart(synapse: SynapseServer) -> None:
    user_id, token = synapse.register_user("bob", "battery staple")
    synapse.restart()
    whoami = _get_json(f"{synapse.url}/_matrix/client/v3/account/whoami", token)
    assert whoami["user_id"] == user_id


def test_synapse_data_stays_in_workdir(synapse: SynapseServer) -> None:
    for name in ("homeserver.yaml", "homeserver.db", "signing.key", "synapse.log"):
        assert (synapse.workdir / name).exists(), name


# --- InspIRCd ----------------------------------------------------------------


def test_inspircd_relays_channel_message(inspircd: InspircdServer) -> None:
    with RawIrcClient(inspircd.port, "devA", wait=False) as alice, RawIrcClient(inspircd.port, "devB", wait=False) as bob:
        for client in (alice, bob):
            client.wait_registered()
            client.send("JOIN #test")
            client.wait_for(lambda p: len(p) > 2 and p[1] == "JOIN" and p[0].startswith(f":{client.nick}!"))
        alice.send("PRIVMSG #test :hello from the devstack")
        line = bob.wait_for(lambda p: len(p) > 2 and p[1] == "PRIVMSG" and p[2] == "#test")
        assert line.startswith(":devA!")
        assert line.endswith(":hello from the devstack")


def test_inspircd_offers_ircv3(inspircd: InspircdServer) -> None:
    with RawIrcClient(inspircd.port, "devCaps") as client:
        client.send("CAP LS 302")
        caps: set[str] = set()
        # CAP LS may span several lines ("CAP * LS * :..."); the last has no "*".
        for _ in range(10):
            line = client.wait_for(lambda p: len(p) > 3 and p[1] == "CAP" and p[3] == "LS")
            caps.update(line.split(" :", 1)[1].split())
            if line.split(" ")[4] != "*":
                break
    names = {cap.split("=", 1)[0] for cap in caps}
    for wanted in ("server-time", "message-tags", "echo-message", "multi-prefix", "labeled-response", "batch"):
        assert wanted in names, f"{wanted} missing from {sorted(names)}"


def test_inspircd_restart(tmp_path: Path) -> None:
    # A private instance: restarting the shared one would cut other tests off.
    try:
        server = start_inspircd(tmp_path / "ircd")
    except ServerUnavailable as exc:
        require(exc)
    try:
        port = server.port
        server.restart()
        assert server.port == port
        with RawIrcClient(server.port, "after"):
            pass
    finally:
        server.stop()
    assert server.process is None


def test_two_inspircd_instances_run_side_by_side(inspircd: InspircdServer, tmp_path: Path) -> None:
    # start_inspircd() returns only once a client could register on it.
    try:
        other = start_inspircd(tmp_path / "second", server_name="irc2.rapture.test")
    except ServerUnavailable as exc:
        require(exc)
    try:
        assert other.port != inspircd.port
        assert other.workdir != inspircd.workdir
        assert inspircd.process is not None and inspircd.process.poll() is None
    finally:
        other.stop()
