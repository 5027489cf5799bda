"""A throw-away InspIRCd 3 server tuned for bridge tests: loopback only, no flood limits, IRCv3 on."""

from __future__ import annotations

import datetime
import os
import resource
import secrets
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import ServerUnavailable
from .ports import free_port
from .process import find_binary, spawn, stop_process, wait_until

# InspIRCd itself is up in ~15 ms, but InspIRCd 3 completes client
# registrations on its once-a-second background tick, so a readiness probe
# takes ~1 s. (Clients registering concurrently all finish on the same tick.)
START_TIMEOUT = 30.0
PROBE_TIMEOUT = 5.0
DEFAULT_BINARY_PATHS = ("/usr/sbin/inspircd",)
MODULE_DIRS = (Path("/usr/lib/inspircd/modules"),)
# The bridge opens one connection per Matrix user; thousands must fit.
WANTED_NOFILE = 65536

# Loaded when present in the module directory. Chosen for what the bridge
# uses (IRCv3 caps, SASL and services, server linking for netsplit tests) and
# what Atheme's protocol/inspircd expects (svshold, chg*, servprotect, mlock,
# topiclock). Deliberately absent: ident and conn_waitpong (slow down every
# registration), ircv3_sts and TLS (plain loopback; TLS_MODULES join them only
# for a ``tls_port``), cloaking (stable hosts).
MODULES = (
    "cap",
    "ircv3",  # account-notify, away-notify, extended-join
    "ircv3_accounttag",
    "ircv3_batch",
    "ircv3_capnotify",
    "ircv3_chghost",
    "ircv3_ctctags",  # message-tags
    "ircv3_echomessage",
    "ircv3_invitenotify",
    "ircv3_labeledresponse",
    "ircv3_msgid",
    "ircv3_servertime",
    "namesx",  # multi-prefix
    "uhnames",  # userhost-in-names
    "setname",
    "monitor",
    "botmode",
    "chanhistory",  # replays history on join where a channel sets +H
    "sasl",
    "services_account",
    "svshold",
    "servprotect",
    "chghost",
    "chgident",
    "chgname",
    "mlock",
    "topiclock",
    "banexception",
    "inviteexception",
    "sajoin",
    "sapart",
    "sanick",
    "samode",
    "saquit",
    "spanningtree",
)


@dataclass
class InspircdServer:
    """A running (or stopped) InspIRCd whose files all live in ``workdir``."""

    workdir: Path
    port: int
    server_name: str
    process: subprocess.Popen[bytes] | None
    binary: str = field(default="/usr/sbin/inspircd", repr=False)
    # An IRC operator (``OPER <name> <password>`` from 127.0.0.1) for tests
    # that need KILL, SA* or SQUIT.
    oper_name: str = "rapture"
    oper_password: str = field(default="", repr=False)
    # A TLS client port (``start_inspircd(tls_port=...)``), or None. Its certificate is
    # self-signed (``tls_cert_path``); clients' certificate fingerprints (SHA-256) go to
    # services, for NickServ CERT and SASL EXTERNAL.
    tls_port: int | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def config_path(self) -> Path:
        return self.workdir / "inspircd.conf"

    @property
    def log_paths(self) -> list[Path]:
        return [self.workdir / "inspircd.out", self.workdir / "ircd.log"]

    @property
    def tls_cert_path(self) -> Path:
        return self.workdir / "tls-cert.pem"

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        """Stop, then start with the same port and config; returns once clients can register."""
        self.stop()
        self.process = _launch(self.binary, self.config_path, self.workdir, self.port, self.log_paths)


def start_inspircd(
    workdir: Path,
    *,
    port: int | None = None,
    server_name: str = "irc.rapture.test",
    binary: str = "inspircd",
    services_name: str = "services.rapture.test",
    extra_config: str = "",
    exclude_modules: Collection[str] = (),
    tls_port: int | None = None,
) -> InspircdServer:
    """Write a config into ``workdir`` and start InspIRCd in the foreground.

    ``services_name`` becomes the SASL target and a U-line, ready for Atheme
    to link in; ``extra_config`` is appended verbatim (``<link>``,
    ``<bind type="servers">``, ``<autoconnect>`` for multi-server tests).
    ``exclude_modules`` leaves some of ``MODULES`` out, e.g. ``("sasl",)``
    for a server whose ``CAP LS`` does not offer ``sasl``.
    ``tls_port`` adds a TLS client port (GnuTLS, a self-signed certificate made in
    ``workdir``) that asks clients for a certificate and passes its SHA-256 fingerprint on
    to services (``sslinfo``); without it there is no TLS at all, as before.

    Returns once a TCP client can complete registration (sees 001). Raises
    ``ServerUnavailable`` if the binary is missing and ``RuntimeError`` with
    the log tail if the server does not come up.
    """
    binary_path = _find_binary(binary)
    unknown = set(exclude_modules) - set(MODULES)
    if unknown:
        raise ValueError(f"exclude_modules names modules that are not loaded anyway: {sorted(unknown)}")
    for value in (server_name, services_name):
        if not value or '"' in value or "." not in value:
            raise ValueError(f"not a usable IRC server name: {value!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    oper_password = secrets.token_urlsafe(12)
    tls_config = ""
    if tls_port is not None:
        tls_config = _tls_config(workdir, server_name, tls_port)
    config = render_config(
        workdir=workdir,
        port=port,
        server_name=server_name,
        services_name=services_name,
        oper_password=oper_password,
        modules=[name for name in _available_modules() if name not in exclude_modules],
        extra_config=tls_config + extra_config,
    )
    (workdir / "motd.txt").write_text("Rapture test server. Anything goes.\n")
    config_path = workdir / "inspircd.conf"
    config_path.write_text(config)
    server = InspircdServer(
        workdir=workdir,
        port=port,
        server_name=server_name,
        process=None,
        binary=binary_path,
        oper_password=oper_password,
        tls_port=tls_port,
    )
    server.process = _launch(binary_path, config_path, workdir, port, server.log_paths)
    return server


# Only with a TLS port; InspIRCd 3 on Debian ships GnuTLS (m_ssl_gnutls), not OpenSSL.
TLS_MODULES = ("ssl_gnutls", "sslinfo")


def _tls_config(workdir: Path, server_name: str, tls_port: int) -> str:
    """Config lines for a TLS client port, and the self-signed certificate they name."""
    missing = [name for name in TLS_MODULES if not _module_present(name)]
    if missing:
        raise ServerUnavailable(f"InspIRCd has no {', '.join(missing)} module for a TLS port")
    cert_path, key_path = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    cert_pem, key_pem = self_signed_certificate(server_name)
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    modules = "\n".join(f'<module name="{name}">' for name in TLS_MODULES)
    return f"""# TLS client port (tls_port): a self-signed certificate; clients are asked for
# theirs, and its SHA-256 fingerprint goes to services (NickServ CERT, SASL EXTERNAL).
{modules}
<sslprofile name="clients" provider="gnutls" certfile="{cert_path}" keyfile="{key_path}"
            hash="sha256" requestclientcert="yes" priority="NORMAL">
<sslinfo operonly="no">
<bind address="127.0.0.1" port="{tls_port}" type="clients" ssl="clients">
"""


def self_signed_certificate(common_name: str) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key and a self-signed certificate for it, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _module_present(name: str) -> bool:
    dirs = [d for d in MODULE_DIRS if d.is_dir()]
    # Unknown layout (a source build): let InspIRCd report a missing module.
    return not dirs or any((d / f"m_{name}.so").exists() for d in dirs)


def _find_binary(binary: str) -> str:
    return find_binary(binary, usual_paths=DEFAULT_BINARY_PATHS, default_name="inspircd",
                       what="InspIRCd 3", package="inspircd")


def _available_modules() -> list[str]:
    for module_dir in MODULE_DIRS:
        if module_dir.is_dir():
            return [name for name in MODULES if (module_dir / f"m_{name}.so").exists()]
    # Unknown layout (a source build): ask for everything and let InspIRCd
    # report a missing module in its log.
    return list(MODULES)


def _launch(binary: str, config_path: Path, workdir: Path, port: int, logs: list[Path]) -> subprocess.Popen[bytes]:
    argv = [binary, f"--config={config_path}", "--nofork"]
    if os.geteuid() == 0:
        # InspIRCd refuses root (exit code 8) without this.
        argv.append("--runasroot")
    argv = _with_nofile_limit(argv)
    # The log is appended to across restarts: only this run's output counts.
    offset = logs[0].stat().st_size if logs[0].exists() else 0
    proc = spawn(argv, cwd=workdir, log_path=logs[0])

    def ready() -> bool:
        # Probe only once InspIRCd says it is up (~15 ms): before that, the
        # port might belong to someone else, and a probe would hang on it.
        return "InspIRCd is now running" in _output_since(logs[0], offset) and can_register(port)

    wait_until(
        ready,
        proc=proc,
        what="InspIRCd",
        logs=logs,
        timeout=START_TIMEOUT,
        interval=0.05,
        failed=lambda: _bind_failure(_output_since(logs[0], offset)),
    )
    return proc


def _output_since(stdout_log: Path, offset: int) -> str:
    try:
        with open(stdout_log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _bind_failure(output: str) -> str | None:
    # InspIRCd keeps running when its client port is taken; that is a failed start for us.
    if "listeners failed to bind" in output:
        return "its client port could not be bound (already in use?)"
    return None


def _with_nofile_limit(argv: list[str]) -> list[str]:
    """Raise the open-file soft limit for the ircd alone, up to the hard limit.

    InspIRCd sizes its connection table from RLIMIT_NOFILE, and the common
    soft default of 1024 is too few for a bridge with thousands of puppets.
    A shell ``ulimit`` + ``exec`` (same pid) avoids both ``preexec_fn``
    (unsafe with threads) and changing the caller's own limits.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = WANTED_NOFILE if hard == resource.RLIM_INFINITY else min(WANTED_NOFILE, hard)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return argv
    return ["/bin/sh", "-c", f'ulimit -S -n {target} && exec "$0" "$@"', *argv]


def can_register(port: int, host: str = "127.0.0.1", timeout: float = PROBE_TIMEOUT) -> bool:
    """True if a client can connect and complete registration (receives 001)."""
    nick = "probe" + secrets.token_hex(3)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"NICK {nick}\r\nUSER probe 0 * :devstack probe\r\n".encode())
            buf = b""
            # Bounded by the deadline and by the amount read (64 KiB).
            while time.monotonic() < deadline and len(buf) < 65536:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                buf += chunk
                for line in buf.split(b"\r\n"):
                    if line.startswith(b"PING "):
                        sock.sendall(b"PONG " + line[5:] + b"\r\n")
                    parts = line.split(b" ")
                    if len(parts) > 1 and parts[1] == b"001":
                        sock.sendall(b"QUIT :probe done\r\n")
                        return True
                    if parts and parts[0] == b"ERROR":
                        return False
                buf = buf[buf.rfind(b"\r\n") + 2 :] if b"\r\n" in buf else buf
    except OSError:
        return False
    return False


def render_config(
    *,
    workdir: Path,
    port: int,
    server_name: str,
    services_name: str,
    oper_password: str,
    modules: list[str],
    extra_config: str = "",
) -> str:
    """The InspIRCd 3 config text. Every path is absolute and inside ``workdir``."""
    module_tags = "\n".join(f'<module name="{name}">' for name in modules)
    return f"""# Generated by bridge/devstack/inspircd.py for tests and `rapture demo`. Do not edit.
<server name="{server_name}" description="Rapture test server" network="RaptureTest">
<admin name="Rapture devstack" nick="admin" email="admin@rapture.test">

# Loopback only.
<bind address="127.0.0.1" port="{port}" type="clients">

<path configdir="{workdir}" datadir="{workdir}" logdir="{workdir}">
<pid file="{workdir}/inspircd.pid">
# -MODULE: a load/unload line per module would bury errors in log tails.
<log method="file" type="* -USERINPUT -USEROUTPUT -MODULE" level="default" target="{workdir}/ircd.log" flush="1">
<files motd="{workdir}/motd.txt">
# No user lookups happen (resolvehostnames="no"); keep the resolver on
# loopback anyway so the test server never talks to the outside world.
<dns server="127.0.0.1" timeout="1">

# The bridge makes one connection per Matrix user, all from 127.0.0.1, and
# tests send in bursts: no clone limits, no flood kills, no fake lag, big
# queues, no DNS or ident lookups (each would delay registration).
<connect name="loopback"
         allow="127.0.0.1"
         maxchans="20000"
         timeout="60"
         pingfreq="120"
         hardsendq="16M"
         softsendq="1M"
         recvq="1M"
         threshold="1000000000"
         commandrate="1000000000"
         fakelag="no"
         localmax="1000000"
         globalmax="1000000"
         maxconnwarn="no"
         limit="1000000"
         resolvehostnames="no"
         useident="no"
         modes="">
<cidr ipv4clone="32" ipv6clone="128">
<performance netbuffersize="65536" somaxconn="4096" clonesonconnect="no" quietbursts="yes" timeskipwarn="0">

<options prefixquit="Quit: " suffixquit="" prefixpart="" suffixpart=""
         syntaxhints="no" announcets="yes" hostintopic="yes"
         pingwarning="15" serverpingfreq="1m" splitwhois="no" defaultmodes="not"
         allowzerolimit="no" invitebypassmodes="yes">
# hidesplits="no": a netsplit shows real server names in QUIT, as tests expect.
<security hidesplits="no" hideulines="no" flatlinks="no" hidebans="no"
          announceinvites="dynamic" genericoper="no" restrictbannedusers="yes"
          maxtargets="50" userstats="Pu">
<maxlist chan="*" limit="500">

# Tests may need an operator (KILL, SA*, SQUIT).
<class name="Everything" commands="*" privs="*" usermodes="*" chanmodes="*" snomasks="*">
<type name="NetAdmin" classes="Everything" host="admin.rapture.test">
<oper name="rapture" password="{oper_password}" host="*@127.0.0.1" type="NetAdmin">

{module_tags}

<ircv3 accountnotify="yes" awaynotify="yes" extendedjoin="yes">
<chanhistory bots="yes" maxlines="50" prefixmsg="no" enableumode="no">
<setname operonly="no" notifyopers="no">
<monitor maxentries="1000">
<svshold silent="yes">
# Services (Atheme) link in under this name; SASL goes there.
<sasl target="{services_name}" requiressl="no">
<uline server="{services_name}" silent="yes">

{extra_config}
"""
