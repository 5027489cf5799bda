"""Fixtures for end-to-end tests: one real stack (InspIRCd + Synapse + the bridge) per session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import InspircdServer
from bridge.devstack.stack import LocalStack, start_local_stack
from tests.servers import require

DOMAIN = "localhost"
PROVISIONING_SECRET = "provisioning-secret-for-the-tests"
# Every local user may use the bridge, except three with other levels.
PERMISSIONS = {
    "localhost": "user",
    "@admin:localhost": "admin",
    "@relayer:localhost": "relay",
    "@nobody:localhost": "none",
}


@dataclass
class Account:
    user_id: str
    token: str


class Stack:
    """The running stack plus helpers to make fresh test users."""

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self._counter = itertools.count(1)

    @property
    def homeserver(self) -> str:
        return self.local.synapse.url

    @property
    def bot(self) -> str:
        return self.local.bot_mxid

    def account(self, localpart: str | None = None) -> Account:
        """A new Matrix user; level `user` unless `localpart` is one of PERMISSIONS' names."""
        name = localpart or f"user{next(self._counter)}"
        user_id, token = self.local.synapse.register_user(name, f"pw-{name}")
        return Account(user_id, token)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, inspircd: InspircdServer) -> Iterator[Stack]:
    try:
        local = start_local_stack(
            tmp_path_factory.mktemp("stack"), domain=DOMAIN, permissions=PERMISSIONS, inspircd=inspircd,
            network_options={"relay": True}, provisioning_secret=PROVISIONING_SECRET,
        )
    except ServerUnavailable as exc:
        require(exc)
    yield Stack(local)
    local.stop()
