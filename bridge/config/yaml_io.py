"""Round-trip YAML: load with positions, save without losing comments or key order.

ruamel.yaml's round-trip loader keeps, for every mapping, the line of each key; that is what
lets `check-config` name the line of a problem, and what lets `generate-registration` write
tokens back into an admin's file without destroying their comments.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError


@dataclass(frozen=True, slots=True)
class YAMLSyntaxError(Exception):
    """The file is not valid YAML; `line` is 1-based."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: error: invalid YAML: {self.message}"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def load_document(path: Path) -> CommentedMap:
    """Load a YAML file as a round-trip mapping (an empty file is an empty mapping)."""
    text = path.read_text(encoding="utf-8")
    return parse_document(text, str(path))


def parse_document(text: str, name: str = "<config>") -> CommentedMap:
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YAMLSyntaxError(name, line, (exc.problem or str(exc)).strip()) from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise YAMLSyntaxError(name, 1, "the top level must be a mapping of keys to values")
    return data


def dump_document(data: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


def save_document(path: Path, data: Any, *, mode: int | None = None) -> None:
    """Write atomically, so a crash never leaves a half-written config behind.

    The file has `mode` (by default the mode of the file it replaces, or 0600 for a new one)
    from the moment it exists: configs and registrations hold tokens, so there must be no
    window in which a file created with the umask's mode is readable before a chmod.
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = PRIVATE_FILE_MODE
    tmp = path.with_name(f".{path.name}.tmp")
    write_private_text(tmp, dump_document(data), mode=mode)
    tmp.replace(path)


PRIVATE_FILE_MODE = 0o600


def write_private_text(path: Path, text: str, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write a new file that has exactly `mode` before its first byte is written.

    A leftover file at `path` (say, from a crash) is removed first, and a symlink there is
    not followed: the file is always created by us, with our mode.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`: the umask may have taken bits away
        handle = os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    try:
        with handle:
            handle.write(text)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def key_line(mapping: Any, key: str) -> int | None:
    """1-based line of `key` in a round-trip mapping, or None when unknown."""
    try:
        line, _col = mapping.lc.key(key)
    except (AttributeError, KeyError, TypeError):
        return None
    return int(line) + 1


def mapping_line(mapping: Any) -> int | None:
    """1-based line where a round-trip mapping starts."""
    try:
        return int(mapping.lc.line) + 1
    except (AttributeError, TypeError):
        return None
