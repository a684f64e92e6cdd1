from dcvq.config.compose import CONF_DIR, compose
from dcvq.config.store import register
from dcvq.config.validate import ConfigError, validate

__all__ = ["CONF_DIR", "ConfigError", "compose", "register", "validate"]
