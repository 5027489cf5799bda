"""Check a loaded config document against the schema; every problem names its key and line."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.api import ConfigKey

from bridge.config.schema import (
    CORE_KEYS,
    FREE_FORM_MAPPINGS,
    NETWORK_KEYS,
    VALID_LEVELS,
    VALID_NETWORK_NAME,
)
from bridge.config.yaml_io import key_line, mapping_line
from bridge.identity import TemplateError, check_alias_template, check_ghost_template

_MISSING = object()
# A connector lookup: name -> its extra keys, or None when no such connector is installed.
SchemaLookup = Callable[[str], Sequence[ConfigKey] | None]


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str  # "error" or "warning"
    path: str
    line: int | None
    message: str

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.severity}: {self.path}: {self.message}"


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping",
               list: "a list", float: "a number"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # YAML `true` is not a port number
    return isinstance(value, kinds)


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Checker:
    def __init__(self, schema_for: SchemaLookup, require_tokens: bool) -> None:
        self.schema_for = schema_for
        self.require_tokens = require_tokens
        self.problems: list[Problem] = []

    def error(self, path: str, line: int | None, message: str) -> None:
        self.problems.append(Problem("error", path, line, message))

    def warning(self, path: str, line: int | None, message: str) -> None:
        self.problems.append(Problem("warning", path, line, message))

    # -- generic walking -------------------------------------------------------------------
    def lookup(
        self, root: Mapping[str, Any], dotted: str, base_line: int | None = None
    ) -> tuple[Any, Any, int | None]:
        """Return (value or _MISSING, innermost mapping reached, line to blame).

        A missing key is blamed on the line of the deepest parent key that exists
        (`base_line` for `root` itself: the line of the key that holds it).
        """
        node: Any = root
        line = base_line or mapping_line(root) or 1
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING, node, line
            line = key_line(node, part) or line
            if i == len(parts) - 1:
                return node[part], node, line
            node = node[part]
        return _MISSING, node, line

    def check_keys(
        self, root: Mapping[str, Any], keys: Iterable[ConfigKey], prefix: str,
        base_line: int | None = None,
    ) -> None:
        for key in keys:
            full = f"{prefix}{key.path}"
            value, _parent, line = self.lookup(root, key.path, base_line)
            if value is _MISSING or value is None:
                if key.required:
                    self.error(full, line, "missing required key")
                continue
            if not _is_kind(value, key.kind):
                self.error(full, line, f"expected {_type_name(key.kind)}, got {_describe(value)}")
                continue
            if key.check is not None:
                message = key.check(value)
                if message:
                    self.error(full, line, message)

    def check_unknown(
        self,
        node: Any,
        known: set[str],
        prefix: str,
        free_form: frozenset[str],
        report_prefix: str = "",
    ) -> None:
        """Warn about keys the schema does not know (typos, keys from another version)."""
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in free_form:
                continue
            if path in known:
                continue
            if any(k.startswith(path + ".") for k in known):
                if isinstance(value, Mapping):
                    self.check_unknown(value, known, path + ".", free_form, report_prefix)
                continue
            self.warning(report_prefix + path, key_line(node, key), "unknown key (ignored)")

    # -- sections --------------------------------------------------------------------------
    def check_permissions(self, doc: Mapping[str, Any]) -> None:
        value, _, _ = self.lookup(doc, "bridge.permissions")
        if not isinstance(value, Mapping):
            return
        for who, level in value.items():
            path = f"bridge.permissions.{who}"
            if not isinstance(level, str) or level.lower() not in VALID_LEVELS:
                self.error(path, key_line(value, who),
                           f"{_describe(level)} is not a level; use one of {', '.join(VALID_LEVELS)}")
            elif not (who == "*" or who.startswith("@") and ":" in who or "@" not in who):
                self.error(path, key_line(value, who), "must be '*', a server name or a full MXID")

    def check_networks(self, doc: Mapping[str, Any]) -> None:
        networks, _, line = self.lookup(doc, "networks")
        if networks is _MISSING or networks is None:
            return
        if not isinstance(networks, Mapping):
            self.error("networks", line, f"expected a mapping of network names, got {_describe(networks)}")
            return
        for name, section in networks.items():
            prefix = f"networks.{name}."
            name_line = key_line(networks, name)
            if not isinstance(name, str) or not VALID_NETWORK_NAME.match(name):
                self.error(f"networks.{name}", name_line,
                           "network names are lowercase letters, digits, '_' or '-', starting with a letter")
                continue
            if not isinstance(section, Mapping):
                self.error(f"networks.{name}", name_line, f"expected a mapping, got {_describe(section)}")
                continue
            self.check_keys(section, NETWORK_KEYS, prefix, name_line)
            connector = section.get("connector")
            extra: Sequence[ConfigKey] = ()
            if isinstance(connector, str):
                found = self.schema_for(connector)
                if found is None:
                    self.error(f"{prefix}connector", key_line(section, "connector"),
                               f"unknown connector {connector!r} (is its package installed?)")
                else:
                    extra = found
                    self.check_keys(section, extra, prefix, name_line)
            self.check_templates(name, section, prefix)
            if connector is None or self.schema_for(str(connector)) is not None:
                known = {k.path for k in (*NETWORK_KEYS, *extra)}
                self.check_unknown(section, known, "", frozenset(), report_prefix=prefix)

    def check_templates(self, name: str, section: Mapping[str, Any], prefix: str) -> None:
        checks = (("ghost_template", check_ghost_template), ("alias_template", check_alias_template))
        for key, check in checks:
            text = section.get(key)
            if not isinstance(text, str):
                continue  # default, or already reported as a wrong type
            try:
                check(text, name)
            except TemplateError as exc:
                self.error(f"{prefix}{key}", key_line(section, key), str(exc))

    def check_provisioning(self, doc: Mapping[str, Any]) -> None:
        enabled, _, _ = self.lookup(doc, "provisioning.enabled")
        secret, _, line = self.lookup(doc, "provisioning.shared_secret")
        if enabled is True and (not isinstance(secret, str) or len(secret) < 16):
            self.error("provisioning.shared_secret", line,
                       "needs at least 16 characters when provisioning is enabled "
                       "(`rapture generate-registration` makes one)")

    def check_tokens(self, doc: Mapping[str, Any]) -> None:
        for key in ("as_token", "hs_token"):
            value, _, line = self.lookup(doc, f"appservice.{key}")
            if value is _MISSING or value in (None, ""):
                self.error(f"appservice.{key}", line,
                           "missing; run `rapture generate-registration` to create the tokens")


def validate(
    doc: Mapping[str, Any], schema_for: SchemaLookup, *, require_tokens: bool = True
) -> list[Problem]:
    """All problems in `doc`, errors and warnings, in file order where lines are known."""
    checker = _Checker(schema_for, require_tokens)
    checker.check_keys(doc, CORE_KEYS, "", 1)
    checker.check_permissions(doc)
    checker.check_networks(doc)
    if require_tokens:
        checker.check_tokens(doc)
        checker.check_provisioning(doc)
    known = {k.path for k in CORE_KEYS} | {"networks"}
    checker.check_unknown(doc, known, "", FREE_FORM_MAPPINGS)
    # De-duplicate (a token can be reported missing by two routes) and sort by line.
    unique = list(dict.fromkeys(checker.problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.path))
