"""Shared pytest fixtures.

Sections: devstack servers (below). Bridge fixtures go in their own section.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.devstack import ServerUnavailable
from bridge.devstack.inspircd import InspircdServer, start_inspircd
from tests.servers import require

# --- devstack servers ---------------------------------------------------------


@pytest.fixture(scope="session")
def inspircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspircdServer]:
    """One InspIRCd shared by the whole session. Tests must not stop or restart it."""
    try:
        server = start_inspircd(tmp_path_factory.mktemp("inspircd"))
    except ServerUnavailable as exc:
        require(exc)
    yield server
    server.stop()
