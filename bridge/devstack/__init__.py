"""Real local servers for tests, benchmarks and ``rapture demo``.

The devstack starts throw-away Synapse and InspIRCd instances on free loopback
ports, each confined to its own working directory, so several can run at once
(parallel tests, a two-server IRC network for netsplit tests).

Everything here is synchronous and uses only the standard library (plus
Synapse itself, run as a subprocess): it is called from pytest fixtures and
from the CLI before any event loop exists. Async callers should wrap the
blocking calls in ``asyncio.to_thread``.
"""

from __future__ import annotations


class ServerUnavailable(RuntimeError):
    """A server program the devstack needs is not installed.

    Separate from a plain ``RuntimeError`` (server installed but failed to
    start) so tests can skip on a developer machine without the server while
    CI, which must have everything, fails loudly instead.
    """


__all__ = ["ServerUnavailable"]
