"""The testkit against the example echo connector, installed as a third-party package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.testkit import ConformanceSuite
from tests.connectors.echo import EchoHarness, echo_stack_fixture
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


echo_stack = echo_stack_fixture("echo")


@pytest.fixture
async def harness(echo_stack: tuple[Stack, int]) -> AsyncIterator[EchoHarness]:
    stack, port = echo_stack
    h = await EchoHarness(stack, port).open()
    yield h
    await h.close()


class TestEchoConformance(ConformanceSuite):
    pass
