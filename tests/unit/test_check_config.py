"""`rapture check-config`: every problem names its key path and line, and the exit code is 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.cli import rapture

VALID = textwrap.dedent(
    """\
    homeserver:
      address: http://127.0.0.1:8008
      domain: example.org
    appservice:
      address: http://127.0.0.1:29331
      port: 29331
      as_token: "a-token-for-the-tests"
      hs_token: "another-token-for-tests"
    bridge:
      permissions:
        "*": relay
        example.org: user
    networks:
      libera:
        connector: irc
        host: irc.example.org
    """
)

# (name, config text, [(key path, line)] that must be reported as errors)
BROKEN = [
    (
        "wrong type",
        VALID.replace("  port: 29331", "  port: twelve"),
        [("appservice.port", 6)],
    ),
    (
        "missing required key",
        VALID.replace("  domain: example.org\n", ""),
        [("homeserver.domain", 1)],
    ),
    (
        "unknown connector",
        VALID.replace("connector: irc", "connector: carrier-pigeon"),
        [("networks.libera.connector", 15)],
    ),
    (
        "template that cannot make MXIDs",
        VALID + '    ghost_template: "IRC User {nick}"\n',
        [("networks.libera.ghost_template", 17)],
    ),
    (
        "several at once: bad level, port out of range, network without host",
        VALID.replace('"*": relay', '"*": overlord').replace("  port: 29331", "  port: 99999")
        .replace("    host: irc.example.org\n", ""),
        [("bridge.permissions.*", 11), ("appservice.port", 6), ("networks.libera.host", 14)],
    ),
]


def test_valid_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID)
    result = rapture("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_key_and_line(tmp_path: Path, name: str, text: str,
                                          expected: list[tuple[str, int]]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = rapture("check-config", "-c", str(path))
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    for key, line in expected:
        assert any(e.startswith(f"{path}:{line}: error: {key}: ") for e in errors), (key, line, errors)
    assert len(errors) == len(expected), errors


def test_unknown_key_is_a_warning_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID.replace("  port: 29331\n", "  port: 29331\n  prot: 1\n"))
    result = rapture("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}:7: warning: appservice.prot: unknown key" in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID.replace("  domain: example.org", "  domain: [example.org"))
    result = rapture("check-config", "-c", str(path))
    assert result.returncode == 2
    assert "invalid YAML" in result.stderr and f"{path}:" in result.stderr


def test_example_config_is_valid_after_generate_registration(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    path = tmp_path / "config.yaml"
    path.write_text(example.read_text())
    before = rapture("check-config", "-c", str(path))
    assert before.returncode == 2 and "appservice.as_token" in before.stderr  # no tokens yet
    assert rapture("generate-registration", "-c", str(path), "-r", str(tmp_path / "r.yaml")).returncode == 0
    after = rapture("check-config", "-c", str(path))
    assert after.returncode == 0, after.stderr


def test_example_xmpp_section_is_valid_when_uncommented(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    start = example.index("  # jabber:")
    uncommented = example[:start] + example[start:].replace("  # jabber:", "  jabber:").replace("\n  #   ", "\n    ")
    path = tmp_path / "config.yaml"
    path.write_text(uncommented.replace('as_token: ""', 'as_token: "a-token-for-the-tests"')
                    .replace('hs_token: ""', 'hs_token: "another-token-for-tests"'))
    result = rapture("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
