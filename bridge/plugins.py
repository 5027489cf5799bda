"""Connector discovery through the `rapture.connectors` entry-point group.

Built-in connectors register in our own pyproject.toml the same way a third-party package
does, so nothing here knows any network by name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from connectors.api import API_VERSION, ConfigKey, NetworkConnector

ENTRY_POINT_GROUP = "rapture.connectors"
log = logging.getLogger("rapture.plugins")


class ConnectorLoadError(RuntimeError):
    """A connector could not be loaded or targets an incompatible API version."""


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_connectors() -> list[str]:
    return sorted(_entry_points())


@functools.cache
def load_connector_class(name: str) -> type[NetworkConnector]:
    try:
        entry = _entry_points()[name]
    except KeyError:
        raise ConnectorLoadError(
            f"unknown connector {name!r}; installed: {', '.join(available_connectors()) or 'none'}"
        ) from None
    try:
        cls = entry.load()
    except Exception as exc:  # a broken plugin must not take the whole bridge down unexplained
        raise ConnectorLoadError(f"connector {name!r} failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, NetworkConnector)):
        raise ConnectorLoadError(f"connector {name!r} ({entry.value}) is not a NetworkConnector")
    major, _minor = cls.info.api_version
    if major != API_VERSION[0] or cls.info.api_version > API_VERSION:
        raise ConnectorLoadError(
            f"connector {name!r} targets connector API {major}.{_minor}, "
            f"this Rapture provides {API_VERSION[0]}.{API_VERSION[1]}"
        )
    return cls


def migration_branches(connector_names: Sequence[str]) -> list[str]:
    """The Alembic branch directories of the named connectors (those that have one)."""
    branches = []
    for name in sorted(set(connector_names)):
        path = load_connector_class(name).migrations
        if path:
            branches.append(str(path))
    return branches


def connector_schema(name: str) -> Sequence[ConfigKey] | None:
    """The connector's extra config keys, or None when no such connector is installed."""
    try:
        return tuple(load_connector_class(name).config_schema())
    except ConnectorLoadError as exc:
        log.debug("connector %s unavailable: %s", name, exc)
        return None
