"""Typed, validated configuration values. Built only from a document that passed validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from connectors.api import ConfigKey

from bridge.config.schema import CORE_KEYS, NETWORK_KEYS
from bridge.identity import alias_template, ghost_template, namespace_regex
from bridge.permissions import Permissions


def _get(doc: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node or node[part] is None:
            return default
        node = node[part]
    return node


def _sqlite_beside(url: str, config_path: str) -> str:
    """A relative SQLite path is relative to the config file, not to wherever we were started."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return url
    file = url[len(prefix):]
    if not file or file.startswith("/") or file.startswith(":memory:"):
        return url
    return prefix + str((Path(config_path).resolve().parent / file))


def _secrets(values: Mapping[str, Any], keys: Sequence[ConfigKey]) -> list[str]:
    """The values of the keys declared secret (a list of strings counts each of them)."""
    out: list[str] = []
    for key in keys:
        if not key.secret:
            continue
        value = values.get(key.path)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item:
                out.append(item)
    return out


def _defaults(doc: Mapping[str, Any], keys: Sequence[ConfigKey]) -> dict[str, Any]:
    return {key.path: _get(doc, key.path, key.default) for key in keys}


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    name: str
    connector: str
    ghost_template: str
    alias_template: str
    dynamic_portals: bool
    relay: bool
    voice_power_level: int = 1
    delivery_timeout: int = 300  # seconds a message may wait in the outbox
    idle_timeout: int = 3600  # seconds a puppet with no bridged rooms stays connected
    link_consent_timeout: float = 300  # seconds a channel's ops have to answer a link request
    max_new_dms_per_hour: int = 60  # new DM rooms remote users may open, network-wide
    max_new_dms_per_sender_per_hour: int = 5  # ... and each remote user
    options: dict[str, Any] = field(default_factory=dict)  # the connector's own keys

    def alias_localpart(self, channel: str) -> str:
        return alias_template(self.alias_template).expand(channel, network=self.name)

    def ghost_regex(self, domain: str) -> str:
        prefix, suffix = ghost_template(self.ghost_template).split(network=self.name)
        return namespace_regex("@", prefix, suffix, domain)

    def alias_regex(self, domain: str) -> str:
        prefix, suffix = alias_template(self.alias_template).split(network=self.name)
        return namespace_regex("#", prefix, suffix, domain)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: str
    homeserver_address: str
    homeserver_domain: str
    appservice_address: str
    appservice_hostname: str
    appservice_port: int
    appservice_id: str
    bot_username: str
    bot_displayname: str
    as_token: str
    hs_token: str
    max_body_size: int
    database_url: str
    permissions: Permissions
    key_file: str  # absolute path of the key that encrypts stored credentials
    provisioning_enabled: bool
    provisioning_secret: str
    log_level: str
    networks: dict[str, NetworkConfig]
    # Every value of a key declared `secret=True` (core and connectors), and the password of
    # the database URL: what the log must never show.
    secret_values: tuple[str, ...] = ()
    # A Matrix message longer than this many lines (after splitting) is cut on line-based
    # networks, with a line saying how much was left out.
    max_message_lines: int = 10

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bot_username}:{self.homeserver_domain}"

    @classmethod
    def from_document(
        cls, doc: Mapping[str, Any], path: str, schema_for: Any
    ) -> Config:
        core = _defaults(doc, CORE_KEYS)
        secrets = _secrets(core, CORE_KEYS)
        database_password = urlsplit(core["database.url"]).password
        if database_password:  # as written (percent-encoded) and as the driver sees it
            secrets += [database_password, unquote(database_password)]
        networks: dict[str, NetworkConfig] = {}
        for name, section in (_get(doc, "networks", {}) or {}).items():
            common = _defaults(section, NETWORK_KEYS)
            extra = schema_for(common["connector"]) or ()
            secrets += _secrets(_defaults(section, extra), extra)
            networks[name] = NetworkConfig(
                name=name,
                connector=common["connector"],
                ghost_template=common["ghost_template"],
                alias_template=common["alias_template"],
                dynamic_portals=common["dynamic_portals"],
                relay=common["relay"],
                voice_power_level=common["voice_power_level"],
                delivery_timeout=common["delivery_timeout"],
                idle_timeout=common["idle_timeout"],
                link_consent_timeout=float(common["link_consent_timeout"]),
                max_new_dms_per_hour=common["max_new_dms_per_hour"],
                max_new_dms_per_sender_per_hour=common["max_new_dms_per_sender_per_hour"],
                options=_defaults(section, extra),
            )
        return cls(
            path=path,
            homeserver_address=core["homeserver.address"].rstrip("/"),
            homeserver_domain=core["homeserver.domain"],
            appservice_address=core["appservice.address"].rstrip("/"),
            appservice_hostname=core["appservice.hostname"],
            appservice_port=core["appservice.port"],
            appservice_id=core["appservice.id"],
            bot_username=core["appservice.bot_username"],
            bot_displayname=core["appservice.bot_displayname"],
            as_token=core["appservice.as_token"],
            hs_token=core["appservice.hs_token"],
            max_body_size=core["appservice.max_body_size"],
            database_url=_sqlite_beside(core["database.url"], path),
            permissions=Permissions(core["bridge.permissions"]),
            key_file=str(Path(path).resolve().parent / core["bridge.key_file"]),
            provisioning_enabled=core["provisioning.enabled"],
            provisioning_secret=core["provisioning.shared_secret"],
            log_level=core["logging.level"].upper(),
            networks=networks,
            secret_values=tuple(dict.fromkeys(secrets)),
            max_message_lines=core["bridge.max_message_lines"],
        )
