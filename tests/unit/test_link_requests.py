"""Consent requests cost the remote network (NAMES and private messages from the bridge's own
connection): they are capped per network and requester, and a channel whose operators did not
agree is not asked again at once. The bridge is faked: only what LinkRequests uses."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.api import ConsentResult

from bridge import link_requests
from bridge.doors import Verdict
from bridge.link_requests import LinkRefused, LinkRequests
from bridge.permissions import Level


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Operators:
    """A connector whose operators never agree; counts how often they were asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def ask_operators(self, chat_id: str, request: str, timeout: float) -> ConsentResult:
        self.asked.append(chat_id)
        return ConsentResult(granted=False, reason="no operator answered")


def _requests() -> tuple[LinkRequests, Operators, Clock]:
    operators = Operators()
    tasks: list[Any] = []
    bridge = SimpleNamespace(
        doors=SimpleNamespace(check=lambda *a: Verdict(allowed=True, level=Level.USER, needs_consent=True)),
        portals=SimpleNamespace(by_room=lambda room: None, by_chat=lambda net, chat: None),
        config=SimpleNamespace(networks={"libera": SimpleNamespace(link_consent_timeout=1.0)}),
        networks={"libera": SimpleNamespace(connector=operators)},
        spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)),
        tasks=tasks,
    )
    clock = Clock()
    return LinkRequests(bridge, clock=clock), operators, clock  # type: ignore[arg-type]


async def _ask(requests: LinkRequests, user: str, room: str, chat: str) -> None:
    """Steps 1 and 3 as the bot's `link` and provisioning run them (step 2 needs Matrix)."""
    verdict = requests.check(user, room, "libera", chat, chat)
    told: list[str] = []

    async def tell(text: str) -> None:
        told.append(text)

    requests.ask_in_background(user, room, room, "libera", chat, chat, tell)
    await asyncio.gather(*requests.bridge.tasks)  # type: ignore[attr-defined]
    assert verdict.needs_consent and told and "Not linked" in told[0]


async def test_one_user_cannot_have_the_bridge_spam_operators() -> None:
    requests, operators, clock = _requests()
    for n in range(link_requests.ASKS_PER_USER_PER_HOUR):
        await _ask(requests, "@mallory:hs", f"!r{n}:hs", f"#chan{n}")
    with pytest.raises(LinkRefused) as refused:
        requests.check("@mallory:hs", "!more:hs", "libera", "#another", "#another")
    assert refused.value.status == 429
    assert len(operators.asked) == link_requests.ASKS_PER_USER_PER_HOUR
    await _ask(requests, "@alice:hs", "!a:hs", "#alices")  # someone else still may
    clock.now += 3600
    await _ask(requests, "@mallory:hs", "!later:hs", "#another")  # and an hour later, they again


async def test_the_network_is_asked_a_bounded_number_of_times_an_hour() -> None:
    requests, operators, clock = _requests()
    for n in range(link_requests.ASKS_PER_HOUR):
        await _ask(requests, f"@user{n}:hs", f"!r{n}:hs", f"#chan{n}")
    with pytest.raises(LinkRefused):
        requests.check("@fresh:hs", "!x:hs", "libera", "#x", "#x")
    assert len(operators.asked) == link_requests.ASKS_PER_HOUR


async def test_operators_who_did_not_agree_are_not_asked_again_at_once() -> None:
    requests, operators, clock = _requests()
    await _ask(requests, "@alice:hs", "!a:hs", "#chan")
    with pytest.raises(LinkRefused) as refused:
        requests.check("@bob:hs", "!b:hs", "libera", "#chan", "#chan")  # anyone, any room
    assert refused.value.status == 429 and "not asked again" in str(refused.value)
    clock.now += link_requests.REASK_SECONDS
    await _ask(requests, "@bob:hs", "!b:hs", "#chan")
    assert operators.asked == ["#chan", "#chan"]


class BrokenAsker:
    async def ask_operators(self, chat_id: str, request: str, timeout: float) -> ConsentResult:
        raise RuntimeError("internal detail /srv/rapture/secret-path")


async def test_a_connector_error_reaches_the_user_without_its_internals() -> None:
    requests, _operators, _clock = _requests()
    requests.bridge.networks = {"libera": SimpleNamespace(connector=BrokenAsker())}  # type: ignore[attr-defined]
    told: list[str] = []

    async def tell(text: str) -> None:
        told.append(text)

    await requests._consent_then_link("@u:hs", "!room:hs", "#room:hs", "libera", "#chan", "#chan", tell, 1.0,
                                      {("libera", "#chan"), ("", "!room:hs")})
    assert len(told) == 1 and told[0].startswith("Not linked:"), told
    assert "internal detail" not in told[0] and "secret-path" not in told[0], told
    assert "error in the bridge" in told[0], told
