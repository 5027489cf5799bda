"""Throw-away Atheme services (NickServ, SaslServ) linked to a devstack InspIRCd.

Atheme 7.2 speaks the InspIRCd 2.0 link protocol, which InspIRCd 3 accepts
through its compatibility layer. Atheme connects *in* to the ircd: the ircd
only needs a ``<bind type="servers">`` port and a ``<link>`` block naming
the services server (``services_link_config``). Both are loopback only.

The config is tuned for tests: no e-mail verification, no rate limits on
REGISTER, no flood protection, many logins per account, and no ``secure;``
(which would make ``PRIVMSG NickServ`` answer "use NickServ@services...").
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import ServerUnavailable
from .inspircd import InspircdServer, start_inspircd
from .ports import free_port
from .process import find_binary, log_tail, spawn, stop_process, wait_until

# Atheme links and syncs within milliseconds; the NickServ probe then costs
# one client registration, which InspIRCd completes on its once-a-second tick.
START_TIMEOUT = 30.0
# Bound for one blocking IRC exchange (register, NickServ, WHOIS).
IRC_TIMEOUT = 15.0
DEFAULT_BINARY_PATHS = ("/usr/bin/atheme-services", "/usr/sbin/atheme-services")
# Atheme logs this once its burst to the uplink is done.
SYNCED_MARKER = "finished synching with uplink"

# Atheme's server id. InspIRCd derives its own from its server name ("551" for
# irc.rapture.test), so this one must differ from that.
SERVICES_SID = "42S"

ATHEME_MODULES = (
    "protocol/inspircd",
    "backend/opensex",
    # Fast crypt(3) hashes: tests register many accounts.
    "crypto/posix",
    "nickserv/main",
    "nickserv/help",
    "nickserv/register",
    "nickserv/identify",
    "nickserv/logout",
    "nickserv/ghost",
    "nickserv/group",
    "nickserv/drop",
    "nickserv/info",
    "nickserv/status",
    "nickserv/cert",
    "nickserv/set_core",
    "nickserv/set_password",
    "nickserv/set_accountname",
    "saslserv/main",
    "saslserv/plain",
    "saslserv/external",
)


@dataclass
class AthemeServer:
    """A running (or stopped) Atheme whose config, database and logs live in ``workdir``."""

    workdir: Path
    process: subprocess.Popen[bytes] | None
    services_name: str
    link_port: int
    # The client port of the ircd it is linked to (for probes and helpers).
    ircd_port: int
    # Seconds from spawn until NickServ answered a client.
    link_seconds: float = 0.0
    binary: str = field(default="/usr/bin/atheme-services", repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "atheme.conf"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_paths(self) -> list[Path]:
        # atheme.out (stdout/stderr) has everything atheme.log has, plus
        # errors from before logging starts: error messages quote only it.
        return [self.workdir / "atheme.out", self.workdir / "atheme.log"]

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def services_link_config(*, services_name: str, link_port: int, password: str) -> str:
    """The InspIRCd config lines that let Atheme link in as ``services_name``.

    Pass the result as ``start_inspircd(extra_config=...)``. The modules this
    needs (spanningtree, services_account, svshold) are already in
    ``inspircd.MODULES``; the SASL target and U-line come from
    ``start_inspircd(services_name=...)``, which must be the same name.
    """
    for value in (services_name, password):
        if not value or any(c in value for c in '"<> \t\r\n'):
            raise ValueError(f"not usable in an InspIRCd config value: {value!r}")
    return f"""# Atheme services (bridge/devstack/atheme.py) link in here; loopback only.
<bind address="127.0.0.1" port="{link_port}" type="servers">
# Atheme connects in; nothing <autoconnect>s out to it. InspIRCd 3.15 still
# ignores a <link> without a usable port (absent or "0"), so it gets the
# servers port itself: an oper's /CONNECT would just fail harmlessly.
<link name="{services_name}"
      ipaddr="127.0.0.1"
      port="{link_port}"
      allowmask="127.0.0.1"
      sendpass="{password}"
      recvpass="{password}"
      timeout="15">
"""


def start_atheme(
    workdir: Path,
    *,
    ircd: InspircdServer,
    link_port: int,
    password: str,
    services_name: str = "services.rapture.test",
    binary: str = "atheme-services",
) -> AthemeServer:
    """Write a config into ``workdir`` and start Atheme in the foreground, linked to ``ircd``.

    ``ircd`` must have been started with ``services_link_config(...)`` for
    the same ``services_name``, ``link_port`` and ``password``. Returns once
    a client's ``PRIVMSG NickServ :HELP`` gets an answer. Raises
    ``ServerUnavailable`` if Atheme is not installed and ``RuntimeError``
    with the log tails if it does not link.
    """
    binary_path = _find_binary(binary)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server = AthemeServer(
        workdir=workdir,
        process=None,
        services_name=services_name,
        link_port=link_port,
        ircd_port=ircd.port,
        binary=binary_path,
    )
    server.data_dir.mkdir(exist_ok=True)
    server.config_path.write_text(
        render_config(
            workdir=workdir,
            services_name=services_name,
            uplink_name=ircd.server_name,
            link_port=link_port,
            password=password,
        )
    )
    argv = [
        binary_path,
        "-n",  # foreground
        "-c", str(server.config_path),
        "-D", str(server.data_dir),
        "-l", str(server.log_paths[1]),
        "-p", str(workdir / "atheme.pid"),
    ]
    started = time.monotonic()
    # Logs are appended to across runs: only this run's lines count.
    offset = _size(server.log_paths[1])
    ircd_log = ircd.log_paths[-1]
    ircd_offset = _size(ircd_log)

    def link_refused() -> str | None:
        # Atheme retries a refused link every `recontime` seconds forever;
        # the ircd's log says why at once (wrong password, no <link> block).
        for line in _text_since(ircd_log, ircd_offset).splitlines():
            if "LINK:" in line and any(word in line for word in ("denied", "Invalid", "ERROR", "refused")):
                return "InspIRCd refused the services link: " + line
        return None

    proc = spawn(argv, cwd=workdir, log_path=server.log_paths[0])
    server.process = proc
    wait_until(
        lambda: SYNCED_MARKER in _text_since(server.log_paths[1], offset),
        proc=proc,
        what="Atheme (linking to InspIRCd)",
        logs=[server.log_paths[0], *ircd.log_paths],
        timeout=START_TIMEOUT,
        interval=0.02,
        failed=link_refused,
    )
    try:
        _wait_for_nickserv(ircd.port, timeout=max(1.0, START_TIMEOUT - (time.monotonic() - started)))
    except (OSError, RuntimeError) as exc:
        stop_process(proc)
        server.process = None
        raise RuntimeError(
            f"Atheme linked but NickServ does not answer: {exc}\n{log_tail(server.log_paths[0], *ircd.log_paths)}"
        ) from exc
    server.link_seconds = time.monotonic() - started
    return server


def start_irc_with_services(
    workdir: Path, *, port: int | None = None, sasl: bool = True, tls_port: int | None = None
) -> tuple[InspircdServer, AthemeServer]:
    """InspIRCd plus Atheme linked to it, ready once NickServ answers.

    With ``sasl=False`` InspIRCd runs without its sasl module, so ``CAP LS``
    does not offer ``sasl`` and clients must fall back to NickServ IDENTIFY.
    With ``tls_port`` InspIRCd also has a TLS client port whose clients'
    certificate fingerprints reach Atheme (``NickServ CERT``, SASL EXTERNAL).
    Stop both (Atheme first) when done.
    """
    _find_binary("atheme-services")  # fail before starting the ircd
    workdir = Path(workdir).resolve()
    services_name = "services.rapture.test"
    link_port = free_port()
    password = secrets.token_hex(12)
    ircd = start_inspircd(
        workdir / "inspircd",
        port=port,
        services_name=services_name,
        extra_config=services_link_config(services_name=services_name, link_port=link_port, password=password),
        exclude_modules=() if sasl else ("sasl",),
        tls_port=tls_port,
    )
    try:
        services = start_atheme(
            workdir / "atheme", ircd=ircd, link_port=link_port, password=password, services_name=services_name
        )
    except BaseException:
        ircd.stop()
        raise
    return ircd, services


def nickserv_register(port: int, account: str, password: str) -> None:
    """Register ``account`` with NickServ from a client named ``account``, then quit.

    Blocking (about a second: one client registration). Raises
    ``RuntimeError`` with NickServ's answer if it refuses, e.g. "is already
    registered" or "You cannot use your nickname as a password."
    """
    if not password or any(c.isspace() for c in password):
        raise ValueError("NickServ passwords cannot be empty or contain whitespace")
    with _RawClient(port, account) as client:
        client.send(f"PRIVMSG NickServ :REGISTER {password} {account}@example.invalid")
        for _ in range(1000):
            prefix, command, params = client.read_message()
            if command == "900":  # RPL_LOGGEDIN: a successful REGISTER also logs the client in
                return
            if command == "NOTICE" and prefix.split("!")[0].lower() == "nickserv":
                text = params[-1].replace("\x02", "")
                if "is now registered" in text:  # the success notice; 900 comes with it
                    continue
                if text.startswith("This nickname is registered"):
                    # Sent unasked when a client takes a registered nick (racing
                    # our REGISTER); the answer to REGISTER itself follows.
                    continue
                raise RuntimeError(f"NickServ refused to register {account!r}: {text}")
        raise RuntimeError(f"no answer from NickServ to REGISTER {account!r}")


def nickserv_cert_add(port: int, account: str, password: str, fingerprint: str) -> None:
    """Log in to ``account`` (NickServ IDENTIFY) and add a certificate fingerprint to it.

    Blocking (about a second). ``fingerprint`` is hex as the ircd computes it (SHA-256 of
    the DER certificate here). Raises ``RuntimeError`` with NickServ's answer on refusal.
    """
    if any(c.isspace() for c in password + fingerprint) or not fingerprint:
        raise ValueError("the password and fingerprint cannot be empty or contain whitespace")
    with _RawClient(port, "cert" + secrets.token_hex(3)) as client:
        client.send(f"PRIVMSG NickServ :IDENTIFY {account} {password}")
        _nickserv_answer(client, lambda command, text: command == "900", f"IDENTIFY {account}")
        client.send(f"PRIVMSG NickServ :CERT ADD {fingerprint}")
        _nickserv_answer(client, lambda command, text: text.startswith("Added fingerprint"), "CERT ADD")


def _nickserv_answer(client: _RawClient, done: Callable[[str, str], bool], what: str) -> None:
    """Read until ``done(command, notice text)``; a NickServ notice that is not it is a refusal."""
    for _ in range(1000):  # and bounded by the client's deadline
        prefix, command, params = client.read_message()
        from_nickserv = command == "NOTICE" and prefix.split("!")[0].lower() == "nickserv"
        text = params[-1].replace("\x02", "") if from_nickserv else ""
        if done(command, text):
            return
        if from_nickserv and not text.startswith(("You are now identified", "This nickname is registered")):
            raise RuntimeError(f"NickServ refused {what}: {text}")
    raise RuntimeError(f"no answer from NickServ to {what}")


def account_of(port: int, nick: str) -> str | None:
    """The services account ``nick`` is logged in to (WHOIS numeric 330), or None."""
    with _RawClient(port, "whois" + secrets.token_hex(3)) as client:
        client.send(f"WHOIS {nick}")
        account: str | None = None
        for _ in range(100):
            _, command, params = client.read_message()
            if command == "330" and len(params) >= 3:  # <me> <nick> <account> :is logged in as
                account = params[2]
            elif command in ("318", "401"):  # end of WHOIS / no such nick
                return account
        raise RuntimeError(f"WHOIS {nick} did not end")


def _wait_for_nickserv(port: int, *, timeout: float) -> None:
    """A client asks NickServ for HELP (again, while 401) until a NOTICE answers."""
    deadline = time.monotonic() + timeout
    with _RawClient(port, "svcprobe" + secrets.token_hex(3), timeout=timeout) as client:
        for _ in range(int(timeout / 0.1) + 1):
            client.send("PRIVMSG NickServ :HELP")
            for _ in range(1000):  # and bounded by the deadline in read_message
                prefix, command, params = client.read_message(deadline=deadline)
                if command == "NOTICE" and prefix.split("!")[0].lower() == "nickserv":
                    return
                if command == "401":  # no such nick: services not (fully) there yet
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    raise RuntimeError(f"NickServ did not answer within {timeout:.1f} s")


class _RawClient:
    """A tiny blocking IRC client; every read is bounded by a deadline."""

    def __init__(self, port: int, nick: str, *, timeout: float = IRC_TIMEOUT) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.seen: list[str] = []
        try:
            self.send(f"NICK {nick}")
            self.send(f"USER {nick[:10]} 0 * :devstack helper")
            for _ in range(1000):
                _, command, params = self.read_message()
                if command == "001":
                    return
                if command in ("432", "433", "ERROR"):
                    raise RuntimeError(f"cannot register as {nick!r}: {command} {params}")
            raise RuntimeError(f"no 001 for {nick!r}")
        except BaseException:
            self.sock.close()
            raise

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read_message(self, *, deadline: float | None = None) -> tuple[str, str, list[str]]:
        """The next message as ``(prefix, command, params)``, answering PINGs on the way."""
        deadline = min(deadline or self.deadline, self.deadline)
        for _ in range(100_000):  # bounded by the deadline as well
            while b"\r\n" in self.buf:
                raw, self.buf = self.buf.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                self.seen.append(line)
                prefix, command, params = parse_message(line)
                if command == "PING":
                    self.send("PONG :" + (params[-1] if params else ""))
                    continue
                return prefix, command, params
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"IRC exchange timed out; last lines: {self.seen[-5:]}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"server closed the connection; last lines: {self.seen[-5:]}")
            self.buf += chunk
        raise RuntimeError("IRC exchange read too many chunks without a complete line")

    def __enter__(self) -> _RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("QUIT :done")
        except OSError:
            pass
        self.sock.close()


def parse_message(line: str) -> tuple[str, str, list[str]]:
    """Split an IRC line into ``(prefix, command, params)``; tags are dropped.

    The trailing parameter loses its colon, so ``AUTHENTICATE :+`` and
    ``AUTHENTICATE +`` both give ``("", "AUTHENTICATE", ["+"])``.
    """
    if line.startswith("@"):
        line = line.split(" ", 1)[1] if " " in line else ""
    prefix = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    if " :" in line:
        head, _, trailing = line.partition(" :")
        words = head.split()
        params = [*words[1:], trailing]
    elif line.startswith(":"):
        words, params = [], [line[1:]]
    else:
        words = line.split()
        params = words[1:]
    command = words[0].upper() if words else ""
    return prefix, command, params


def render_config(*, workdir: Path, services_name: str, uplink_name: str, link_port: int, password: str) -> str:
    """The Atheme 7.2 config text. Every path is absolute and inside ``workdir``."""
    modules = "\n".join(f'loadmodule "modules/{name}";' for name in ATHEME_MODULES)
    return f"""/* Generated by bridge/devstack/atheme.py for tests and `rapture demo`. Do not edit. */
{modules}

serverinfo {{
	name = "{services_name}";
	desc = "Rapture test services";
	numeric = "{SERVICES_SID}";
	/* Reconnect soon after an ircd restart. */
	recontime = 2;
	netname = "RaptureTest";
	hidehostsuffix = "users.rapture.test";
	adminname = "Rapture devstack";
	adminemail = "admin@rapture.test";
	registeremail = "noreply@rapture.test";
	loglevel = {{ error; info; admin; network; }};
	/* Many connections (a bridge's puppets, parallel tests) may share an account. */
	maxlogins = 1000;
	maxusers = 1000;
	mdlimit = 30;
	emaillimit = 10;
	emailtime = 300;
	/* No e-mail verification: REGISTER completes at once. */
	auth = none;
	casemapping = rfc1459;
}};

uplink "{uplink_name}" {{
	host = "127.0.0.1";
	password = "{password}";
	port = {link_port};
}};

nickserv {{
	nick = "NickServ";
	user = "NickServ";
	host = "{services_name}";
	real = "Nickname Services";
	aliases {{
		"ID" = "IDENTIFY";
	}};
	maxnicks = 100;
	expire = 0;
}};

saslserv {{
	nick = "SaslServ";
	user = "SaslServ";
	host = "{services_name}";
	real = "SASL Authentication Agent";
}};

logfile "{workdir}/account.log" {{ register; set; }};
logfile "{workdir}/commands.log" {{ commands; }};

general {{
	/* No "secure;": that would make PRIVMSG NickServ refuse to work. */
	uflags = {{ hidemail; }};
	cflags = {{ verbose; }};
	/* No flood protection and no ratelimit_uses/ratelimit_period: tests
	 * register many accounts from one host in a burst. */
	flood_msgs = 0;
	flood_time = 10;
	kline_time = 7;
	clone_time = 0;
	commit_interval = 5;
	default_clone_allowed = 100000;
	default_clone_warn = 100000;
	uplink_sendq_limit = 1048576;
	language = "en";
	exempts {{
		"*@127.0.0.1";
	}};
	immune_level = immune;
}};
"""


def _find_binary(binary: str) -> str:
    return find_binary(binary, usual_paths=DEFAULT_BINARY_PATHS, default_name="atheme-services",
                       what="Atheme", package="atheme-services")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _text_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""
