"""The core (`bridge/`) never imports a connector: only `connectors.api` (and `connectors`).

Connectors are found through entry points (`bridge/plugins.py`); an import of
`connectors.irc` from the core would make one network special and break third-party ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
ALLOWED = {"connectors", "connectors.api"}


def forbidden_imports(source: str, module: str = "") -> list[str]:
    """`line: name` of every import in `source` that reaches a connector's own modules.

    `module` is the dotted name of the file, to resolve relative imports (`from .. import x`).
    """
    found: list[str] = []
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from connectors import irc` imports connectors.irc too.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names if base == "connectors"]
        for name in names:
            if (name == "connectors" or name.startswith("connectors.")) and not _allowed(name):
                found.append(f"{node.lineno}: {name}")
    return found


def _allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith("connectors.api.")


def _modules() -> list[Path]:
    return sorted(BRIDGE.rglob("*.py"))


def test_the_detector_flags_offending_sources() -> None:
    offending = {
        "import connectors.irc": "connectors.irc",
        "from connectors.xmpp.stanzas import Message": "connectors.xmpp.stanzas",
        "from connectors import irc": "connectors.irc",
        "import connectors.testkit as tk": "connectors.testkit",
        "def f():\n    from connectors.irc import IRCConnector": "connectors.irc",
    }
    for source, name in offending.items():
        assert [hit.split(": ")[1] for hit in forbidden_imports(source, "bridge.x")] == [name], source
    # Relative imports resolve inside the core's package, never to `connectors`.
    assert forbidden_imports("from ..plugins import x\nfrom . import y", "bridge.sub.mod") == []
    fine = "import connectors\nimport connectors.api\nfrom connectors.api import ChatRef\nfrom connectors import api"
    assert forbidden_imports(fine, "bridge.x") == []


def test_the_core_has_modules_to_check() -> None:
    assert len(_modules()) > 10


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(BRIDGE.parent)))
def test_core_module_imports_no_connector(path: Path) -> None:
    module = ".".join(path.relative_to(BRIDGE.parent).with_suffix("").parts)
    hits = forbidden_imports(path.read_text(encoding="utf-8"), module)
    assert not hits, f"{path.relative_to(BRIDGE.parent)} imports a connector's modules: {hits}"
