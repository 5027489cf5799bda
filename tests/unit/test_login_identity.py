"""A Matrix user of another homeserver never gets the remote identity of a local user with
the same localpart (an XMPP puppet's JID is made from `LoginInfo.localpart`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connectors.api import LoginInfo
from connectors.xmpp.jids import puppet_jid

from bridge.logins import LoginManager


async def _login_info(mxid: str) -> LoginInfo:
    """What the core's LoginManager hands the connector for `mxid` (the rest faked)."""
    made: list[LoginInfo] = []

    class Client:
        async def join(self, chat_id: str) -> None:
            pass

        async def connect(self) -> None:
            pass

    def make_client(login: LoginInfo) -> Any:
        made.append(login)
        return Client()

    manager = object.__new__(LoginManager)
    manager.runtime = SimpleNamespace(connector=SimpleNamespace(make_client=make_client))  # type: ignore[assignment]
    manager.bridge = SimpleNamespace(config=SimpleNamespace(homeserver_domain="hs.example"))  # type: ignore[assignment]
    manager.clients = {}
    manager._channels = {}
    row = SimpleNamespace(mxid=mxid, meta={"displayname": "Alice", "channels": []}, nick=None, username=None,
                          credentials=None)
    await manager._build(row)  # type: ignore[arg-type]
    return made[0]


async def test_a_federated_user_is_not_a_local_users_puppet() -> None:
    local = await _login_info("@alice:hs.example")
    federated = await _login_info("@alice:elsewhere.org")
    assert local.localpart == "alice"  # local users keep their identity (and existing puppets)
    domain = "xmpp.hs.example"
    assert puppet_jid(local.localpart, domain) == "alice@xmpp.hs.example"
    assert puppet_jid(federated.localpart, domain) not in (None, puppet_jid(local.localpart, domain))
