"""The Matrix half every conformance harness shares: fresh accounts, and the network's aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.e2e.conftest import Stack
from tests.e2e.matrix import TestClient


class MatrixSide:
    stack: Stack
    network: str  # the network's name in the bridge config (the default alias template's prefix)

    @asynccontextmanager
    async def matrix_client(self) -> AsyncIterator[TestClient]:
        account = self.stack.account()
        async with TestClient(self.stack.homeserver, account.user_id, account.token) as client:
            yield client

    def alias(self, chat: str) -> str:
        return f"#{self.network}_{chat}:localhost"
