from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bridge.secrets import SecretBox, SecretsError, create_key_file


def test_round_trip_and_binding(tmp_path: Path) -> None:
    key = tmp_path / "rapture.key"
    assert create_key_file(key) and not create_key_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    box = SecretBox.from_file(key)
    password = "pässwörd with spaces " + "x" * 300
    blob = box.seal({"password": password}, context="@a:hs\x00libera")
    assert password.encode() not in blob
    assert box.open(blob, context="@a:hs\x00libera") == {"password": password}
    with pytest.raises(SecretsError):
        box.open(blob, context="@b:hs\x00libera")  # copied to another user's row
    with pytest.raises(SecretsError):
        box.open(blob[:-1] + bytes([blob[-1] ^ 1]), context="@a:hs\x00libera")  # tampered
    other = tmp_path / "other.key"
    create_key_file(other)
    with pytest.raises(SecretsError):
        SecretBox.from_file(other).open(blob, context="@a:hs\x00libera")


def test_missing_key_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="generate-registration"):
        SecretBox.from_file(tmp_path / "nope.key")
