"""`rapture generate-registration`: the registration, and the tokens written back with comments kept."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from ruamel.yaml import YAML

from tests.cli import rapture
from tests.unit.test_check_config import VALID


def test_registration_and_tokens(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# The admin's own comment, at the top\n" + VALID.replace(
        "  domain: example.org", "  domain: example.org  # keep me too"
    ))
    registration = tmp_path / "reg.yaml"
    result = rapture("generate-registration", "-c", str(config), "-r", str(registration))
    assert result.returncode == 0, result.stderr

    reg = YAML(typ="safe").load(registration.read_text())
    assert reg["id"] == "rapture"
    assert reg["url"] == "http://127.0.0.1:29331"
    assert reg["sender_localpart"] == "rapturebot"
    assert reg["rate_limited"] is False
    assert len(reg["as_token"]) >= 40 and len(reg["hs_token"]) >= 40
    assert reg["as_token"] != reg["hs_token"]
    assert stat.S_IMODE(registration.stat().st_mode) & 0o007 == 0  # not world-readable

    users = [ns["regex"] for ns in reg["namespaces"]["users"]]
    aliases = [ns["regex"] for ns in reg["namespaces"]["aliases"]]
    assert all(ns["exclusive"] for ns in reg["namespaces"]["users"] + reg["namespaces"]["aliases"])
    assert any(re.fullmatch(r, "@rapturebot:example.org") for r in users)
    assert any(re.fullmatch(r, "@libera_alice:example.org") for r in users)
    assert not any(re.fullmatch(r, "@alice:example.org") for r in users)
    assert not any(re.fullmatch(r, "@libera_alice:example.org.evil") for r in users)
    assert any(re.fullmatch(r, "#libera_#python:example.org") for r in aliases)

    text = config.read_text()
    assert text.startswith("# The admin's own comment, at the top\n")
    assert "domain: example.org  # keep me too" in text
    saved = YAML(typ="safe").load(text)
    assert saved["appservice"]["as_token"] == reg["as_token"]
    assert saved["appservice"]["hs_token"] == reg["hs_token"]
    # Key order survives: homeserver stays first, networks last.
    assert list(saved) == ["homeserver", "appservice", "bridge", "networks"]

    # Running it again makes fresh tokens.
    assert rapture("generate-registration", "-c", str(config), "-r", str(registration)).returncode == 0
    again = YAML(typ="safe").load(registration.read_text())
    assert again["as_token"] != reg["as_token"]


def test_refuses_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(VALID.replace("connector: irc", "connector: nope"))
    result = rapture("generate-registration", "-c", str(config), "-r", str(tmp_path / "reg.yaml"))
    assert result.returncode == 2
    assert "networks.libera.connector" in result.stderr
    assert not (tmp_path / "reg.yaml").exists()


def test_config_with_tokens_becomes_private(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(VALID)
    config.chmod(0o644)
    assert rapture("generate-registration", "-c", str(config), "-r", str(tmp_path / "r.yaml")).returncode == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_relative_sqlite_path_is_beside_the_config(tmp_path: Path) -> None:
    from bridge.config import load_config

    config = tmp_path / "config.yaml"
    config.write_text(VALID + "database:\n  url: sqlite+aiosqlite:///data/rapture.db\n")
    loaded = load_config(config)
    assert loaded.config.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/rapture.db"
