"""Load a config file: parse, validate, and build the typed `Config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from bridge.config.model import Config
from bridge.config.validate import Problem, SchemaLookup, validate
from bridge.config.yaml_io import YAMLSyntaxError, load_document
from bridge.plugins import connector_schema


@dataclass
class ConfigError(Exception):
    """The config cannot be used; `lines` are ready to print, one problem each."""

    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    document: CommentedMap
    warnings: list[str]


def check_file(
    path: Path, *, require_tokens: bool = True, schema_for: SchemaLookup = connector_schema
) -> tuple[CommentedMap | None, list[Problem], list[str]]:
    """Parse and validate; returns (document or None, problems, formatted lines)."""
    try:
        doc = load_document(path)
    except FileNotFoundError:
        return None, [], [f"{path}: error: file not found"]
    except YAMLSyntaxError as exc:
        return None, [], [str(exc)]
    except UnicodeDecodeError as exc:
        return None, [], [f"{path}: error: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    problems = validate(doc, schema_for, require_tokens=require_tokens)
    return doc, problems, [p.format(str(path)) for p in problems]


def load_config(
    path: Path | str, *, require_tokens: bool = True, schema_for: SchemaLookup = connector_schema
) -> LoadedConfig:
    """Load a usable config or raise ConfigError listing every problem."""
    path = Path(path)
    doc, problems, lines = check_file(path, require_tokens=require_tokens, schema_for=schema_for)
    if doc is None or any(p.severity == "error" for p in problems):
        raise ConfigError([line for line in lines if ": warning: " not in line] or lines)
    warnings = [line for line in lines if ": warning: " in line]
    return LoadedConfig(Config.from_document(doc, str(path), schema_for), doc, warnings)
