"""Run the bridge itself as a child process (`python -m bridge run`), for tests and the demo.

A child process, not an in-process task: tests can restart it (durability checks) and see
exactly what an admin's `rapture run` does, migrations in their own child included.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config.yaml_io import dump_document, write_private_text
from bridge.devstack.process import log_tail, spawn, stop_process, wait_until


def write_bridge_config(
    path: Path,
    *,
    homeserver_url: str,
    domain: str,
    appservice_port: int,
    database_url: str,
    permissions: dict[str, str],
    networks: dict[str, dict[str, object]] | None = None,
    log_level: str = "DEBUG",
    provisioning_secret: str | None = None,
) -> None:
    """A complete config for a local stack (tokens are added by generate-registration)."""
    doc: dict[str, Any] = {
        "homeserver": {"address": homeserver_url, "domain": domain},
        "appservice": {
            "address": f"http://127.0.0.1:{appservice_port}",
            "hostname": "127.0.0.1",
            "port": appservice_port,
            "id": "rapture",
            "bot_username": "rapturebot",
            "as_token": "",
            "hs_token": "",
        },
        "database": {"url": database_url},
        "bridge": {"permissions": permissions},
        "logging": {"level": log_level},
        "networks": networks or {},
    }
    if provisioning_secret:
        doc["provisioning"] = {"enabled": True, "shared_secret": provisioning_secret}
    # Private from the start: it holds the provisioning secret, and the tokens later.
    write_private_text(path, "# Generated for a local Rapture stack.\n" + dump_document(doc))


def generate_registration(config: Path, registration: Path, python: str = sys.executable) -> None:
    result = subprocess.run(
        [python, "-m", "bridge", "generate-registration", "-c", str(config), "-r", str(registration)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"generate-registration failed:\n{result.stdout}{result.stderr}")


@dataclass
class BridgeProcess:
    config_path: Path
    port: int
    workdir: Path
    python: str = sys.executable
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bridge.log"

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> None:
        self.process = spawn(
            [self.python, "-m", "bridge", "run", "-c", str(self.config_path)],
            cwd=self.workdir, log_path=self.log_path,
        )
        probe = self._ready if wait_ready else self._listening
        wait_until(probe, proc=self.process, what="the bridge", logs=[self.log_path], timeout=timeout)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return log_tail(self.log_path, lines=200)

    def _status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def _listening(self) -> bool:
        return self._status("/_matrix/mau/live") == 200

    def _ready(self) -> bool:
        # Ready means the bot is registered with the homeserver and the endpoint serves.
        return self._status("/_matrix/mau/ready") == 200
