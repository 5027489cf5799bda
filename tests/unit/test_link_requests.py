"""What a user hears when asking a channel's operators goes wrong (bridge/link_requests.py)."""

from __future__ import annotations

from types import SimpleNamespace

from connectors.api import ConsentResult

from bridge.link_requests import LinkRequests


class BrokenAsker:
    async def ask_operators(self, chat_id: str, request: str, timeout: float) -> ConsentResult:
        raise RuntimeError("internal detail /srv/rapture/secret-path")


async def test_a_connector_error_reaches_the_user_without_its_internals() -> None:
    bridge = SimpleNamespace(networks={"local": SimpleNamespace(connector=BrokenAsker())})
    told: list[str] = []

    async def tell(text: str) -> None:
        told.append(text)

    requests = LinkRequests(bridge)  # type: ignore[arg-type]
    keys = {("local", "#chan"), ("", "!room:hs")}
    await requests._consent_then_link("@u:hs", "!room:hs", "#room:hs", "local", "#chan", "#chan", tell, 1.0,
                                      keys)
    assert len(told) == 1 and told[0].startswith("Not linked:"), told
    assert "internal detail" not in told[0] and "secret-path" not in told[0], told
    assert "error in the bridge" in told[0], told
