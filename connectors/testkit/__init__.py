"""A conformance kit for Rapture connectors, run with pytest against a real Synapse.

A connector author implements `Harness` (how to drive and observe their network from a
test) and subclasses `ConformanceSuite`, providing a `harness` fixture:

    class TestMyNetwork(ConformanceSuite):
        @pytest.fixture
        def harness(self, my_stack) -> Harness: ...

Every scenario in `scenarios` then runs against the connector, through the real bridge.
See docs/connectors.md.
"""

from connectors.testkit.harness import Capabilities, Harness, MatrixClient
from connectors.testkit.suite import ConformanceSuite

__all__ = ["Capabilities", "ConformanceSuite", "Harness", "MatrixClient"]
