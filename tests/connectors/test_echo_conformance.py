"""The testkit against the example echo connector, installed as a third-party package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.ports import free_port
from bridge.devstack.stack import start_local_stack
from connectors.testkit import ConformanceSuite
from tests.connectors.echo import EchoHarness, install_echo_connector
from tests.e2e.conftest import PERMISSIONS, Stack
from tests.servers import require

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    install_echo_connector()
    port = free_port()
    try:
        local = start_local_stack(tmp_path_factory.mktemp("echo"), permissions=PERMISSIONS, with_irc=False,
                                  extra_networks={"echo": {"connector": "echo", "port": port}})
    except ServerUnavailable as exc:
        require(exc)
    yield Stack(local), port
    local.stop()


@pytest.fixture
async def harness(echo_stack: tuple[Stack, int]) -> AsyncIterator[EchoHarness]:
    stack, port = echo_stack
    h = await EchoHarness(stack, port).open()
    yield h
    await h.close()


class TestEchoConformance(ConformanceSuite):
    pass
