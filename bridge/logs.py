"""Logging set-up, with a filter that keeps secrets out of every log line.

Every secret the config declares (`ConfigKey(secret=True)`, core and connector keys alike, see
`Config.secret_values`) is replaced by `<redacted>` in the message, in the formatted traceback
and in the stack, before any handler writes the record. Secrets learnt while running (a
password a user stores, credentials unsealed for a login) are added with `redact_also`.

Deviation: secrets shorter than `MIN_SECRET_LENGTH` characters are not redacted, because
replacing every occurrence of, say, "abc" would garble unrelated text; `setup_logging` warns
about each such config value instead.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s\"']+")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 4
MAX_RUNTIME_SECRETS = 10_000  # learnt secrets kept; the oldest go first

_active: list[RedactSecrets] = []  # the filters installed by setup_logging


class RedactSecrets(logging.Filter):
    """Replaces known secrets, `access_token=` values and bearer tokens with `<redacted>`,
    in the message, the exception text and the stack of every record it sees."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._config = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        self._learnt: dict[str, None] = {}  # ordered: the oldest is dropped first
        self._forms = {form for secret in self._config for form in _forms(secret)}
        self._sorted: list[str] | None = None  # made from _forms when a line is next redacted

    @property
    def secrets(self) -> list[str]:
        """Every form to redact, longest first: a secret that contains another must not be
        left half-replaced. Sorted on use, not on every `add`: at start-up every stored
        password is added, and no line is logged in between."""
        if self._sorted is None:
            self._sorted = sorted(self._forms, key=len, reverse=True)
        return self._sorted

    def add(self, secret: str) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH or secret in self._config:
            return
        self._learnt.pop(secret, None)
        self._learnt[secret] = None
        if len(self._learnt) > MAX_RUNTIME_SECRETS:
            while len(self._learnt) > MAX_RUNTIME_SECRETS:
                del self._learnt[next(iter(self._learnt))]
            # A dropped secret's forms go too (rare: only beyond the cap).
            self._forms = {form for kept in self._config | self._learnt.keys() for form in _forms(kept)}
        else:
            self._forms |= _forms(secret)
        self._sorted = None

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _QUERY_TOKEN.sub(r"\1" + REDACTED, text)
        return _BEARER.sub(r"\1" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set: format the traceback here, once, so the
            # text every handler writes is the redacted one (exception messages and the source
            # lines shown in a traceback can hold a secret as well as the message can).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _forms(secret: str) -> set[str]:
    """A secret as it may be written: as is, and escaped the ways a log line escapes text (a
    `repr` in an exception or a `%r`, JSON in a request body or event, URL-encoding). A
    password with a quote, a backslash or an accent looks different in each of them."""
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             secret.encode("unicode_escape").decode("ascii"), quote(secret, safe=""), quote_plus(secret, safe="")}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class RedactingFormatter(logging.Formatter):
    """The last line of defence: the whole formatted record is redacted once more."""

    def __init__(self, redactor: RedactSecrets, fmt: str) -> None:
        super().__init__(fmt)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


def redact_also(secret: str | None) -> None:
    """Keep `secret` (a password learnt at run time) out of every later log line."""
    if secret:
        for redactor in _active:
            redactor.add(secret)


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    secrets = list(secrets)
    redactor = RedactSecrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    _active[:] = [redactor]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log prints request lines with query strings; it adds nothing we need.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosqlite logs every statement twice at DEBUG, drowning the bridge's own lines.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # The irc library logs every line it reads and writes, twice, at DEBUG (PASS, AUTHENTICATE
    # and NickServ IDENTIFY lines among them).
    logging.getLogger("irc").setLevel(logging.INFO)
    short = sum(1 for s in secrets if s and len(s) < MIN_SECRET_LENGTH)
    if short:
        logging.getLogger("rapture.logs").warning(
            "%d secret(s) in the config are shorter than %d characters and cannot be kept out of "
            "the log; use longer ones", short, MIN_SECRET_LENGTH)
