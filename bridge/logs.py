"""Logging set-up, with a filter that keeps secrets out of every log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s\"']+")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")


class RedactSecrets(logging.Filter):
    """Replaces known secrets, `access_token=` values and bearer tokens with `<redacted>`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        text = _QUERY_TOKEN.sub(r"\1<redacted>", text)
        return _BEARER.sub(r"\1<redacted>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log prints request lines with query strings; it adds nothing we need.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosqlite logs every statement twice at DEBUG, drowning the bridge's own lines.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # The irc library logs every line it reads and writes, twice, at DEBUG.
    logging.getLogger("irc").setLevel(logging.INFO)
