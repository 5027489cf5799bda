from __future__ import annotations

import logging

from bridge.logs import RedactSecrets


def test_secrets_never_reach_a_log_line(caplog) -> None:
    logger = logging.getLogger("rapture.test.redact")
    caplog.handler.addFilter(RedactSecrets(["s3cret-token-value"]))
    logger.warning("token %s in %s", "s3cret-token-value", "GET /x?access_token=abc123&y=1")
    logger.warning("header Authorization: Bearer zzz.yyy")
    text = caplog.text
    assert "s3cret-token-value" not in text and "abc123" not in text and "zzz.yyy" not in text
    assert text.count("<redacted>") == 3
