"""The contract between Rapture's core and a network connector.

A connector is found through the `rapture.connectors` entry-point group; the entry point names
a `NetworkConnector` subclass. The core never imports a connector's modules directly, and a
connector never touches the database or Matrix directly: it only uses what the core hands it.

This module grows with the connector issues; what is here is stable:
- `API_VERSION`: a connector states the version it targets in `NetworkConnector.api_version`;
  the core refuses, with a clear message, a connector whose major version differs.
- `ConfigKey`: how a connector declares the keys of its `networks.<name>` config section, so
  `rapture check-config` validates them with the same key-and-line errors as the core's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

API_VERSION = (1, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigKey:
    """One configuration key.

    `path` is dotted and relative to the section that holds it. `kind` is the expected Python
    type (or a tuple of types); `bool` never passes for `int`. `check` returns an error
    message for a value of the right type that is still wrong, or None when it is fine.
    """

    path: str
    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    doc: str = ""
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorInfo:
    """What a connector says about itself."""

    name: str  # the value of `networks.<name>.connector`, e.g. "irc"
    display_name: str  # e.g. "IRC"
    api_version: tuple[int, int] = API_VERSION


class NetworkConnector:
    """One instance serves one configured network.

    Subclasses set `info` and may extend `config_schema()`. Must not block the event loop in
    any method; must not raise from `stop()`.
    """

    info: ClassVar[ConnectorInfo]

    @classmethod
    def config_schema(cls) -> Sequence[ConfigKey]:
        """Keys this connector accepts in its `networks.<name>` section, beyond the core's."""
        return ()

    def __init__(self, network: str, options: dict[str, Any]) -> None:
        self.network = network
        self.options = options

    async def start(self) -> None:
        """Start serving the network (connections are made per login, not here)."""

    async def stop(self) -> None:
        """Stop and release everything; must not raise."""
