"""The IRC `NetworkConnector`: its identity and its configuration keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from connectors.api import ConfigKey, ConnectorInfo, NetworkConnector


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a TCP port (1-65535)"


def _host(value: str) -> str | None:
    return None if value.strip() and " " not in value else "must be a host name or address"


class IRCConnector(NetworkConnector):
    info: ClassVar[ConnectorInfo] = ConnectorInfo(name="irc", display_name="IRC")

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        return (
            ConfigKey(path="host", kind=str, required=True, check=_host,
                      doc="IRC server host name"),
            ConfigKey(path="port", kind=int, default=6667, check=_port,
                      doc="IRC server port (6697 is usual with TLS)"),
            ConfigKey(path="tls", kind=bool, default=False, doc="connect with TLS"),
            ConfigKey(path="nick_template", kind=str, default="{localpart}[m]",
                      doc="nick of a Matrix user's puppet; {localpart} and {displayname}"),
        )
