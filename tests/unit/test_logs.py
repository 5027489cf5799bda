from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.logs import RedactSecrets, redact_also, setup_logging
from tests.unit.test_check_config import VALID


def test_secrets_never_reach_a_log_line(caplog) -> None:
    logger = logging.getLogger("rapture.test.redact")
    caplog.handler.addFilter(RedactSecrets(["s3cret-token-value"]))
    logger.warning("token %s in %s", "s3cret-token-value", "GET /x?access_token=abc123&y=1")
    logger.warning("header Authorization: Bearer zzz.yyy")
    text = caplog.text
    assert "s3cret-token-value" not in text and "abc123" not in text and "zzz.yyy" not in text
    assert text.count("<redacted>") == 3


XMPP_SECRET = "xmpp-component-secret-value"
IRC_PASSWORD = "irc-server-pass-value"
PROVISIONING = "provisioning-shared-secret-value"
DB_PASSWORD = "db-pass-w0rd"
CONFIG = VALID.replace("    host: irc.example.org\n", f"    host: irc.example.org\n    password: {IRC_PASSWORD}\n") + f"""\
  xmpp:
    connector: xmpp
    host: 127.0.0.1
    component_domain: bridge.example.org
    component_secret: {XMPP_SECRET}
provisioning:
  enabled: true
  shared_secret: {PROVISIONING}
database:
  url: postgresql+asyncpg://rapture:{DB_PASSWORD}@127.0.0.1/rapture
"""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_configured_secret_is_redacted_even_in_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    config = load_config(path).config
    secrets = [config.as_token, config.hs_token, PROVISIONING, XMPP_SECRET, IRC_PASSWORD, DB_PASSWORD]
    assert set(secrets) <= set(config.secret_values)
    setup_logging("DEBUG", secrets=config.secret_values)
    capsys.readouterr()
    log = logging.getLogger("rapture.test.secrets")
    for secret in secrets:
        log.info("plain %s", secret)
        log.warning("in the format string itself: " + secret)
        try:
            raise RuntimeError(f"failed with {secret!r} inside")
        except RuntimeError:
            log.exception("a traceback")
        try:
            raise ValueError("outer") from KeyError(secret)
        except ValueError as exc:
            log.error("chained", exc_info=exc)
        log.debug("with the stack", stack_info=True)
    # A password learnt at run time (a user's storepass) is redacted from then on.
    user_password = "user's own password 123"
    redact_also(user_password)
    try:
        raise ConnectionError(f"IDENTIFY alice {user_password}")
    except ConnectionError:
        log.exception("login failed")
    err = capsys.readouterr().err
    for secret in [*secrets, user_password]:
        assert secret not in err
    assert err.count("Traceback") == 2 * len(secrets) + 1
    assert err.count("<redacted>") == 4 * len(secrets) + 1


def test_a_secret_is_redacted_however_the_line_escapes_it(caplog) -> None:
    """A stored password with a quote, a backslash or an accent: a `%r`, an exception's repr,
    a JSON body or a URL shows it escaped, and the escaped form is a copy all the same."""
    password = "pa\\ss'wörd\"\tZq9x"
    logger = logging.getLogger("rapture.test.escaped")
    redactor = RedactSecrets()
    redactor.add(password)
    caplog.handler.addFilter(redactor)
    import json
    from urllib.parse import quote

    logger.warning("as repr %r", password)
    logger.warning("as JSON %s", json.dumps({"password": password}))
    logger.warning("as ASCII JSON %s", json.dumps({"password": password}, ensure_ascii=True))
    logger.warning("in a URL %s", "https://x/?p=" + quote(password, safe=""))
    try:
        raise ValueError(("bad", password))
    except ValueError:
        logger.exception("in a traceback")
    assert "ss'w" not in caplog.text and "ss\\'w" not in caplog.text and "Zq9" not in caplog.text, caplog.text
    assert caplog.text.count("<redacted>") == 5
