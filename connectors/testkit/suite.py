"""`ConformanceSuite`: subclass it in a test module and provide a `harness` fixture."""

from __future__ import annotations

import pytest

from connectors.testkit import scenarios
from connectors.testkit.harness import Harness


class ConformanceSuite:
    """Every scenario as a test method. A network without a capability skips that scenario."""

    async def test_message_both_ways(self, harness: Harness) -> None:
        await scenarios.message_both_ways(harness)

    async def test_emote_and_notice(self, harness: Harness) -> None:
        if not (harness.caps.emotes or harness.caps.notices):
            pytest.skip("the network has neither emotes nor notices")
        await scenarios.emote_and_notice(harness)

    async def test_formatting(self, harness: Harness) -> None:
        """A round trip where the network has formatting; a readable degradation where not."""
        if harness.caps.formatting:
            await scenarios.formatting_round_trip(harness)
        else:
            await scenarios.formatting_degrades(harness)

    async def test_join_and_leave(self, harness: Harness) -> None:
        await scenarios.join_and_leave(harness)

    async def test_rename(self, harness: Harness) -> None:
        if not harness.caps.rename:
            pytest.skip("remote users cannot rename themselves on this network")
        await scenarios.rename(harness)

    async def test_topic(self, harness: Harness) -> None:
        if not harness.caps.topic:
            pytest.skip("the network has no topics")
        await scenarios.topic(harness)

    async def test_dm_both_ways(self, harness: Harness) -> None:
        if not harness.caps.dm:
            pytest.skip("the network has no private chats")
        await scenarios.dm_both_ways(harness)

    async def test_reconnect_without_loss(self, harness: Harness) -> None:
        if not harness.caps.reconnect:
            pytest.skip("the harness cannot take the network down")
        await scenarios.reconnect_without_loss(harness)

    async def test_bad_remote_input(self, harness: Harness) -> None:
        await scenarios.bad_remote_input(harness)
