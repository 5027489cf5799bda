"""A throw-away Synapse homeserver: SQLite, loopback only, no federation, no rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ServerUnavailable
from .ports import free_port
from .process import spawn, stop_process, wait_until

START_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0

# Raised far beyond anything a test or benchmark does. Synapse's defaults
# (e.g. 0.2 messages/s, 10 local joins burst) would make a bridge test with a
# few dozen ghosts fail with M_LIMIT_EXCEEDED for reasons unrelated to the
# code under test. Keys checked against synapse/config/ratelimiting.py 1.163.
_UNLIMITED = {"per_second": 100000, "burst_count": 100000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}


@dataclass
class SynapseServer:
    """A running (or stopped) Synapse. ``stop()`` and ``restart()`` keep all data in ``workdir``."""

    workdir: Path
    port: int
    server_name: str
    shared_secret: str
    process: subprocess.Popen[bytes] | None
    python: str = field(default=sys.executable, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "synapse.log"

    def register_user(self, localpart: str, password: str, admin: bool = False) -> tuple[str, str]:
        """Create a user with the shared-secret admin API; return ``(user_id, access_token)``.

        This works with ``enable_registration: false``: the nonce + HMAC-SHA1
        scheme is how synapse's own ``register_new_matrix_user`` does it.
        """
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = _http_json("GET", endpoint)["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        reply = _http_json("POST", endpoint, body)
        return reply["user_id"], reply["access_token"]

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        """Stop and start again with the same config, port and database."""
        self.stop()
        self.process = _launch(self.workdir, self.config_path, self.log_path, self.port, self.python)


def start_synapse(
    workdir: Path,
    *,
    server_name: str = "localhost",
    port: int | None = None,
    app_service_config_files: Sequence[Path] = (),
    python: str = sys.executable,
    log_level: str = "WARNING",
    postgres_database: str | None = None,
) -> SynapseServer:
    """Write a config into ``workdir`` and start Synapse; return once it answers HTTP.

    With ``postgres_database`` (an existing, empty database with C collation on the local
    PostgreSQL, user ``postgres``) Synapse uses PostgreSQL instead of SQLite, as production
    homeservers do; benchmarks use it, since SQLite serialises every write.

    Reusing a ``workdir`` keeps the database, signing key and secrets (handy
    for ``rapture demo``); the config itself is rewritten every time because
    the port and app-service list may change.

    Raises ``ServerUnavailable`` if ``python`` cannot import synapse, and
    ``RuntimeError`` (with the log tail) if it does not come up in time.
    """
    _check_synapse_installed(python)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    secret_values = _load_or_create_secrets(workdir)
    signing_key = workdir / "signing.key"
    if not signing_key.exists():
        signing_key.write_text(_new_signing_key())
        signing_key.chmod(0o600)

    log_path = workdir / "synapse.log"
    log_config = workdir / "log.config"
    _write_json_yaml(log_config, _log_config(log_level))
    config_path = workdir / "homeserver.yaml"
    config = _homeserver_config(
        workdir=workdir,
        server_name=server_name,
        port=port,
        log_config=log_config,
        signing_key=signing_key,
        secret_values=secret_values,
        app_service_config_files=[str(Path(p).resolve()) for p in app_service_config_files],
    )
    if postgres_database:
        config["database"] = {"name": "psycopg2", "args": {
            "user": "postgres", "host": "127.0.0.1", "port": 5432, "database": postgres_database,
            "cp_min": 5, "cp_max": 10,
        }}
    _write_json_yaml(config_path, config)

    process = _launch(workdir, config_path, log_path, port, python)
    return SynapseServer(
        workdir=workdir,
        port=port,
        server_name=server_name,
        shared_secret=secret_values["registration_shared_secret"],
        process=process,
        python=python,
    )


def _launch(workdir: Path, config_path: Path, log_path: Path, port: int, python: str) -> subprocess.Popen[bytes]:
    argv = [python, "-m", "synapse.app.homeserver", "-c", str(config_path)]
    proc = spawn(argv, cwd=workdir, log_path=log_path)
    url = f"http://127.0.0.1:{port}/_matrix/client/versions"
    wait_until(lambda: _answers(url), proc=proc, what="Synapse", logs=[log_path], timeout=START_TIMEOUT)
    return proc


def _check_synapse_installed(python: str) -> None:
    # Same interpreter: a spec lookup is instant. Another one: ask it (~0.1 s).
    if python == sys.executable:
        if importlib.util.find_spec("synapse") is not None:
            return
    else:
        try:
            probe = subprocess.run(
                [python, "-c", "import synapse"], capture_output=True, timeout=60, check=False
            )
            if probe.returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
    raise ServerUnavailable(
        f"Synapse is not installed for {python}. Install it with `pip install -e '.[demo]'` "
        "(or run scripts/bootstrap, which installs the project's test extra)."
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _http_json(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise RuntimeError(f"{method} {url} failed: HTTP {err.code}: {detail}") from err


def _load_or_create_secrets(workdir: Path) -> dict[str, str]:
    path = workdir / "devstack-secrets.json"
    if path.exists():
        values: dict[str, str] = json.loads(path.read_text())
        return values
    values = {
        "registration_shared_secret": secrets.token_urlsafe(32),
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
    }
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


def _new_signing_key() -> str:
    """An ed25519 signing key in Synapse's file format, without running Synapse.

    The file holds ``<alg> <version> <unpadded base64 seed>`` and an ed25519
    key is fully defined by a 32-byte random seed, so the stdlib suffices. This
    saves a second Synapse start-up (``--generate-keys``, ~1-2 s) per server.
    """
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    version = "a_" + secrets.token_hex(2)
    return f"ed25519 {version} {seed}\n"


def _write_json_yaml(path: Path, data: dict[str, Any]) -> None:
    # JSON is valid YAML, so no YAML library is needed to write Synapse's config.
    path.write_text(json.dumps(data, indent=2) + "\n")


def _log_config(level: str) -> dict[str, Any]:
    # A console handler on stdout, which spawn() sends to synapse.log together
    # with stderr: one file holds both logging and start-up tracebacks.
    return {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"}},
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "precise",
                "filters": ["context"],
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": level.upper(), "handlers": ["console"]},
        "disable_existing_loggers": False,
    }


def _homeserver_config(
    *,
    workdir: Path,
    server_name: str,
    port: int,
    log_config: Path,
    signing_key: Path,
    secret_values: dict[str, str],
    app_service_config_files: list[str],
) -> dict[str, Any]:
    return {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                # Client API (including /_synapse/admin) only; no federation listener.
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(log_config),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(signing_key),
        # No federation: no key servers, no remote domains, no outbound traffic.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "report_stats": False,
        "enable_metrics": False,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_registration": False,
        "registration_shared_secret": secret_values["registration_shared_secret"],
        "macaroon_secret_key": secret_values["macaroon_secret_key"],
        "form_secret": secret_values["form_secret"],
        "app_service_config_files": app_service_config_files,
        **RATE_LIMITS,
    }
