"""A throw-away Prosody (XMPP server) for bridge tests: loopback only, no TLS, MUC, one component.

The bridge connects to Prosody as an external component (XEP-0114) that owns
``component_domain``; test users are ordinary c2s accounts on ``domain``; rooms live on
``muc_domain``. All state (accounts, room state, logs, pid) is inside ``workdir``.

Facts this relies on (Prosody 0.12, see /work/shared/test-servers.md):
- as root, Prosody (and prosodyctl) need ``run_as_root = true``, or the server hangs;
- ``muc_room_locking = false``, or a room created by a join stays locked (item-not-found)
  until its creator submits the config form;
- Prosody keeps a component's occupants in rooms after the component disconnects and even
  across restarts (room state is saved): a fresh ``workdir`` per test run avoids ghosts.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import ServerUnavailable
from .ports import free_port
from .process import spawn, stop_process, wait_until

START_TIMEOUT = 30.0
REGISTER_TIMEOUT = 30.0


@dataclass
class ProsodyServer:
    """A running (or stopped) Prosody whose files all live in ``workdir``."""

    workdir: Path
    c2s_port: int
    component_port: int
    domain: str
    muc_domain: str
    component_domain: str
    component_secret: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    binary: str = field(default="/usr/bin/prosody", repr=False)
    ctl: str = field(default="/usr/bin/prosodyctl", repr=False)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prosody.cfg.lua"

    @property
    def log_paths(self) -> list[Path]:
        return [self.workdir / "prosody.out", self.workdir / "prosody.log"]

    def network_options(self, **extra: object) -> dict[str, object]:
        """A bridge `networks.<name>` section for this server (connector `xmpp`)."""
        return {
            "connector": "xmpp", "host": self.host, "component_port": self.component_port,
            "component_domain": self.component_domain, "component_secret": self.component_secret,
            "domain": self.domain, "muc_domain": self.muc_domain, **extra,
        }

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        """Stop, then start with the same ports and config (room state survives, see above)."""
        self.stop()
        self.process = _launch(self.binary, self)

    def register_user(self, name: str, password: str) -> str:
        """Create (or reset) the account ``name@domain``; returns its JID."""
        jid = f"{name}@{self.domain}"
        result = subprocess.run(
            [self.ctl, "--config", str(self.config_path), "register", name, self.domain, password],
            cwd=self.workdir, capture_output=True, text=True, timeout=REGISTER_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"prosodyctl register {jid} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return jid


def start_prosody(
    workdir: Path,
    *,
    c2s_port: int | None = None,
    component_port: int | None = None,
    domain: str = "xmpp.localhost",
    muc_domain: str = "muc.xmpp.localhost",
    component_domain: str = "matrix.xmpp.localhost",
    component_secret: str | None = None,
    binary: str = "prosody",
) -> ProsodyServer:
    """Write a config into ``workdir`` and start Prosody in the foreground.

    Returns once both the c2s and the component port accept TCP connections. Raises
    ``ServerUnavailable`` if prosody is not installed and ``RuntimeError`` (with the log
    tail) if it does not come up.
    """
    binary_path = _find(binary)
    ctl_path = _find("prosodyctl")
    for value in (domain, muc_domain, component_domain):
        if not value or '"' in value or "." not in value:
            raise ValueError(f"not a usable XMPP domain: {value!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    (workdir / "certs").mkdir(exist_ok=True)  # an empty certs dir silences certmanager
    server = ProsodyServer(
        workdir=workdir, c2s_port=c2s_port or free_port(), component_port=component_port or free_port(),
        domain=domain, muc_domain=muc_domain, component_domain=component_domain,
        component_secret=component_secret or secrets.token_urlsafe(16),
        binary=binary_path, ctl=ctl_path,
    )
    server.config_path.write_text(render_config(server))
    server.process = _launch(binary_path, server)
    return server


def _find(binary: str) -> str:
    for candidate in (shutil.which(binary), f"/usr/bin/{binary}", f"/usr/sbin/{binary}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(f"Prosody ({binary!r}) not found. Install it with `apt-get install prosody`.")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _launch(binary: str, server: ProsodyServer) -> subprocess.Popen[bytes]:
    logs = server.log_paths
    proc = spawn([binary, "-F", "--config", str(server.config_path)], cwd=server.workdir, log_path=logs[0])
    wait_until(
        lambda: _accepts(server.c2s_port) and _accepts(server.component_port),
        proc=proc, what="Prosody", logs=logs, timeout=START_TIMEOUT, interval=0.05,
        failed=lambda: _bind_failure(logs[1]),
    )
    return proc


def _bind_failure(log: Path) -> str | None:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    # Prosody keeps running when a port is taken; for us that is a failed start.
    if "Failed to open server port" in text:
        return "a port could not be bound (already in use?)"
    return None


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(server: ProsodyServer) -> str:
    """The Prosody 0.12 config text. Every path is absolute and inside ``server.workdir``."""
    w = server.workdir
    return f"""-- Generated by bridge/devstack/prosody.py for tests. Do not edit.
run_as_root = true  -- as root, Prosody otherwise refuses and then hangs
pidfile = {_lua(str(w / "prosody.pid"))}
data_path = {_lua(str(w / "data"))}
certificates = {_lua(str(w / "certs"))}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = {_lua(str(w / "prosody.log"))} }} }}

-- Loopback only; no s2s, no HTTP.
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {server.c2s_port} }}
component_ports = {{ {server.component_port} }}
component_interfaces = {{ "127.0.0.1" }}
modules_disabled = {{ "s2s" }}

-- Plain loopback: no TLS anywhere (SCRAM is still offered).
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
allow_registration = true
min_seconds_between_registrations = 0

modules_enabled = {{
    "roster"; "saslauth"; "disco"; "ping"; "register"; "posix"; "version"; "uptime"; "time";
}}
-- Tests send in bursts.
limits = {{}}

VirtualHost {_lua(server.domain)}

Component {_lua(server.muc_domain)} "muc"
    muc_room_locking = false  -- a room made by a join is usable at once
    muc_room_default_public_jids = true  -- occupants see real JIDs (stable ghost ids)
    muc_room_default_history_length = 20
    muc_room_default_change_subject = true  -- any occupant may set the subject (topic tests)
    restrict_room_creation = false
    muc_tombstones = false

Component {_lua(server.component_domain)}
    component_secret = {_lua(server.component_secret)}
"""
