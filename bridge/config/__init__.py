"""Configuration: load, validate (naming key and line), and typed access."""

from bridge.config.loader import ConfigError, load_config
from bridge.config.model import Config, NetworkConfig

__all__ = ["Config", "ConfigError", "NetworkConfig", "load_config"]
