"""One configured network at run time: its connector, the context it gets, and its logins."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from connectors.api import LoginState, NetworkConnector, RemoteEvent

from bridge.config.model import NetworkConfig
from bridge.logins import LoginManager
from bridge.plugins import load_connector_class

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.networks")


class ConnectorContextImpl:
    """The narrow interface a connector gets (see `connectors.api.ConnectorContext`)."""

    def __init__(self, runtime: NetworkRuntime) -> None:
        self._runtime = runtime
        self.network = runtime.config.name

    def queue_remote_event(self, event: RemoteEvent) -> None:
        self._runtime.bridge.queue_remote(self.network, event)

    def login_state(self, mxid: str, state: LoginState, message: str = "") -> None:
        self._runtime.logins.on_state(mxid, state, message)

    def login_renamed(self, mxid: str, name: str) -> None:
        self._runtime.bridge.spawn(self._runtime.logins.on_renamed(mxid, name))

    def is_puppet(self, mxid: str) -> bool:
        return not self._runtime.bridge.is_bridge_user(mxid)

    def notify_user(self, mxid: str, text: str) -> None:
        self._runtime.bridge.spawn(self._runtime.bridge.tell_user(mxid, text))


class NetworkRuntime:
    def __init__(self, bridge: Bridge, config: NetworkConfig) -> None:
        self.bridge = bridge
        self.config = config
        cls = load_connector_class(config.connector)
        self.ctx = ConnectorContextImpl(self)
        self.connector: NetworkConnector = cls(config.name, dict(config.options), self.ctx)
        self.logins = LoginManager(self)

    def status(self) -> str:
        """The bridge's own presence on the network, in a word, as the connector reports it."""
        return self.connector.status()

    def outbox_waiting(self, mxid: str) -> bool:
        return self.bridge.outbox.has_waiting(mxid, self.config.name)

    async def start(self) -> None:
        await self.connector.start()
        for portal in self.bridge.portals.all():
            if portal.network == self.config.name and portal.chat.receiver == "":
                await self.connector.open_chat(portal.chat.id)
        await self.logins.start()

    async def stop(self) -> None:
        await self.logins.stop()
        try:
            await self.connector.stop()
        except Exception:
            log.exception("connector %s did not stop cleanly", self.config.name)
