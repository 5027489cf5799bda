"""Process limits: every puppet is a socket, so the open-file limit must be high."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("rapture.limits")
SPARE_FILES = 256  # database, HTTP clients and servers, logs


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit as far as the hard limit allows; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    log.info("open-file limit: %d", soft)
    return soft


def check_open_file_budget(connections: int) -> None:
    """Say plainly when the limit is too low for the connections the configuration holds."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FILES
    if needed > soft:
        log.warning(
            "the open-file limit (%d) is lower than the %d this bridge needs for %d connections; "
            "raise it (e.g. LimitNOFILE= in the systemd unit, or ulimit -n)", soft, needed, connections,
        )
