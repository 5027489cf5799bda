"""Connector discovery: the API version check."""

from __future__ import annotations


def test_a_connector_for_another_api_version_is_refused_clearly(monkeypatch) -> None:
    import pytest

    from bridge import plugins
    from connectors.api import ConnectorInfo, NetworkConnector

    class FutureConnector(NetworkConnector):
        info = ConnectorInfo(name="future", display_name="Future", api_version=(2, 0))

    class FakeEntry:
        name, value = "future", "somewhere:FutureConnector"

        def load(self) -> type:
            return FutureConnector

    monkeypatch.setattr(plugins, "_entry_points", lambda: {"future": FakeEntry()})
    plugins.load_connector_class.cache_clear()
    try:
        with pytest.raises(plugins.ConnectorLoadError, match="targets connector API 2.0, this Rapture provides 1.0"):
            plugins.load_connector_class("future")
    finally:
        plugins.load_connector_class.cache_clear()
