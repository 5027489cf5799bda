"""`rapture demo`: a local Synapse, InspIRCd and the bridge on loopback, ready to try.

Everything lives in one directory (default ./rapture-demo); Synapse's database is kept
between runs, so the demo account and its rooms survive a restart of the demo.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path

from bridge.devstack import ServerUnavailable
from bridge.devstack.stack import LocalStack, start_local_stack

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
PREFERRED_PORTS = {"synapse": 8008, "irc": 6667, "appservice": 29331}


def _port_or_none(port: int) -> int | None:
    """The preferred port when it is free, else None (a free one is picked)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves do: a port left in TIME_WAIT by the last demo is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


def _ensure_demo_user(stack: LocalStack) -> None:
    try:
        stack.synapse.register_user(DEMO_USER, DEMO_PASSWORD, admin=True)
    except RuntimeError as exc:
        if "M_USER_IN_USE" not in str(exc):  # the account is kept from an earlier run
            raise


def instructions(stack: LocalStack) -> dict[str, object]:
    assert stack.inspircd is not None
    return {
        "homeserver": stack.synapse.url,
        "server_name": stack.domain,
        "matrix_user": f"@{DEMO_USER}:{stack.domain}",
        "matrix_password": DEMO_PASSWORD,
        "bot": stack.bot_mxid,
        "irc_host": "127.0.0.1",
        "irc_port": stack.inspircd.port,
        "network": stack.network,
        "example_alias": f"#{stack.network}_#demo:{stack.domain}",
        "appservice": stack.bridge.url,
        "config": str(stack.config_path),
        "bridge_log": str(stack.bridge.log_path),
    }


def run_demo(workdir: Path) -> int:
    print("Starting InspIRCd, Synapse and Rapture on 127.0.0.1 ...", flush=True)
    try:
        stack = start_local_stack(
            workdir,
            permissions={"localhost": "admin"},
            synapse_port=_port_or_none(PREFERRED_PORTS["synapse"]),
            irc_port=_port_or_none(PREFERRED_PORTS["irc"]),
            appservice_port=_port_or_none(PREFERRED_PORTS["appservice"]),
            log_level="INFO",
        )
    except ServerUnavailable as exc:
        print(f"rapture demo: {exc}")
        return 1
    except RuntimeError as exc:
        print(f"rapture demo: a server failed to start:\n{exc}")
        return 1
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        _ensure_demo_user(stack)
        facts = instructions(stack)
        (stack.workdir / "demo.json").write_text(json.dumps(facts, indent=2))
        print(
            f"""
Rapture demo is running.

  Matrix:  open a Matrix client (Element, or any other) on homeserver {facts['homeserver']}
           log in as {DEMO_USER} / password {DEMO_PASSWORD}  ({facts['matrix_user']})
           join the room {facts['example_alias']} to talk in IRC channel #demo,
           or start a chat with {facts['bot']} and send: help
  IRC:     connect any IRC client to {facts['irc_host']} port {facts['irc_port']} (no TLS),
           e.g.  irssi -c {facts['irc_host']} -p {facts['irc_port']}   then  /join #demo
           Matrix users appear there as <name>[m]; write to one to open a private chat.

  Bridge log: {facts['bridge_log']}
  Press Ctrl-C to stop everything.
""",
            flush=True,
        )
        while not stopped.wait(1.0):
            if stack.bridge.process is None or stack.bridge.process.poll() is not None:
                print("rapture demo: the bridge stopped; see its log:\n" + stack.bridge.log_text())
                return 1
        return 0
    finally:
        print("Stopping ...", flush=True)
        stack.stop()
