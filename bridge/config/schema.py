"""The core's configuration keys, declared once: validation, defaults and docs come from here."""

from __future__ import annotations

from urllib.parse import urlparse

from connectors.api import ConfigKey

from bridge.identity import LOCALPART_RE, NETWORK_NAME_RE
from bridge.permissions import LEVEL_NAMES

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///rapture.db"
DEFAULT_GHOST_TEMPLATE = "{network}_{nick}"
DEFAULT_ALIAS_TEMPLATE = "{network}_{channel}"


def _http_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"{value!r} is not an http(s) URL"
    return None


def _domain(value: str) -> str | None:
    if not value or any(c.isspace() or c in "/@#!" for c in value):
        return f"{value!r} is not a server name"
    return None


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a TCP port (1-65535)"


def _localpart(value: str) -> str | None:
    if not LOCALPART_RE.match(value):
        return f"{value!r} is not a valid Matrix localpart (lowercase a-z, 0-9, . _ = - / +)"
    return None


def _database_url(value: str) -> str | None:
    if value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return None
    return "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative_int(value: int) -> str | None:
    return None if value >= 0 else "must not be negative (0 refuses every new one)"


def _log_level(value: str) -> str | None:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return None if value.upper() in levels else f"must be one of {', '.join(levels)}"


CORE_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(path="homeserver.address", kind=str, required=True, check=_http_url),
    ConfigKey(path="homeserver.domain", kind=str, required=True, check=_domain),
    ConfigKey(path="appservice.address", kind=str, required=True, check=_http_url),
    ConfigKey(path="appservice.hostname", kind=str, default="127.0.0.1"),
    ConfigKey(path="appservice.port", kind=int, default=29331, check=_port),
    ConfigKey(path="appservice.id", kind=str, default="rapture"),
    ConfigKey(path="appservice.bot_username", kind=str, default="rapturebot", check=_localpart),
    ConfigKey(path="appservice.bot_displayname", kind=str, default="Rapture bridge bot"),
    ConfigKey(path="appservice.as_token", kind=str, default="", secret=True),
    ConfigKey(path="appservice.hs_token", kind=str, default="", secret=True),
    ConfigKey(path="appservice.max_body_size", kind=int, default=10 * 1024 * 1024, check=_positive),
    ConfigKey(path="database.url", kind=str, default=DEFAULT_DATABASE_URL, check=_database_url),
    ConfigKey(path="bridge.permissions", kind=dict, default=None),
    ConfigKey(path="bridge.key_file", kind=str, default="rapture.key"),
    ConfigKey(path="bridge.max_message_lines", kind=int, default=10, check=_positive),
    ConfigKey(path="provisioning.enabled", kind=bool, default=False),
    ConfigKey(path="provisioning.shared_secret", kind=str, default="", secret=True),
    ConfigKey(path="logging.level", kind=str, default="INFO", check=_log_level),
)

# Keys every network section has, whatever its connector; the connector adds its own.
NETWORK_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(path="connector", kind=str, required=True),
    ConfigKey(path="ghost_template", kind=str, default=DEFAULT_GHOST_TEMPLATE),
    ConfigKey(path="alias_template", kind=str, default=DEFAULT_ALIAS_TEMPLATE),
    ConfigKey(path="dynamic_portals", kind=bool, default=True),
    ConfigKey(path="relay", kind=bool, default=False),
    ConfigKey(path="voice_power_level", kind=int, default=1, check=lambda v: None if 0 <= v <= 100 else "must be 0-100"),
    ConfigKey(path="delivery_timeout", kind=int, default=300, check=_positive),
    ConfigKey(path="idle_timeout", kind=int, default=3600, check=_positive),
    ConfigKey(path="link_consent_timeout", kind=(int, float), default=300, check=_positive,
              doc="seconds the channel's operators have to answer a non-admin's link request"),
    ConfigKey(path="max_new_dms_per_hour", kind=int, default=60, check=_non_negative_int,
              doc="new private chats remote users may open on this network per hour, in all"),
    ConfigKey(path="max_new_dms_per_sender_per_hour", kind=int, default=5, check=_non_negative_int,
              doc="new private chats one remote user may open per hour"),
)

# Mappings whose keys are the admin's own names, not schema keys.
FREE_FORM_MAPPINGS = frozenset({"bridge.permissions", "networks"})

VALID_LEVELS = LEVEL_NAMES
VALID_NETWORK_NAME = NETWORK_NAME_RE
