"""A whole local stack: InspIRCd, Synapse with the bridge's registration, and the bridge.

One function for the test fixtures and for `rapture demo`, so what the demo shows a new
user is exactly what CI proves works.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.devstack.bridge import BridgeProcess, generate_registration, write_bridge_config
from bridge.devstack.inspircd import InspircdServer, start_inspircd
from bridge.devstack.ports import free_port
from bridge.devstack.synapse import SynapseServer, start_synapse

DEFAULT_NETWORK = "local"


@dataclass
class LocalStack:
    workdir: Path
    domain: str
    synapse: SynapseServer
    bridge: BridgeProcess
    inspircd: InspircdServer | None
    config_path: Path
    registration_path: Path
    network: str = DEFAULT_NETWORK
    owns_inspircd: bool = True

    @property
    def bot_mxid(self) -> str:
        return f"@rapturebot:{self.domain}"

    def stop(self) -> None:
        # Bridge first, so it can still talk to both servers while saying goodbye.
        self.bridge.stop()
        self.synapse.stop()
        if self.inspircd is not None and self.owns_inspircd:
            self.inspircd.stop()


def start_local_stack(
    workdir: Path,
    *,
    domain: str = "localhost",
    permissions: dict[str, str] | None = None,
    with_irc: bool = True,
    inspircd: InspircdServer | None = None,
    database_url: str | None = None,
    synapse_port: int | None = None,
    irc_port: int | None = None,
    appservice_port: int | None = None,
    log_level: str = "DEBUG",
    python: str = sys.executable,
    network_options: dict[str, object] | None = None,
    extra_networks: dict[str, dict[str, object]] | None = None,
    provisioning_secret: str | None = None,
    extra_registrations: Sequence[Path] = (),
    synapse_postgres_database: str | None = None,
) -> LocalStack:
    """Start (or reuse `inspircd`), then Synapse with the bridge registered, then the bridge.

    `network_options` go into the local IRC network's section; `extra_networks` are added
    as they are (e.g. a network whose server is down, for failure tests).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    owns_inspircd = inspircd is None
    if inspircd is None and with_irc:
        inspircd = start_inspircd(workdir / "inspircd", port=irc_port)

    def stop_own_ircd() -> None:
        if inspircd is not None and owns_inspircd:
            inspircd.stop()

    try:
        hs_port = synapse_port or free_port()
        as_port = appservice_port or free_port()
        networks: dict[str, dict[str, object]] = {}
        if inspircd is not None:
            networks[DEFAULT_NETWORK] = {
                "connector": "irc", "host": "127.0.0.1", "port": inspircd.port, **(network_options or {}),
            }
        networks.update(extra_networks or {})
        config_path = workdir / "config.yaml"
        registration_path = workdir / "registration.yaml"
        write_bridge_config(
            config_path,
            homeserver_url=f"http://127.0.0.1:{hs_port}",
            domain=domain,
            appservice_port=as_port,
            database_url=database_url or f"sqlite+aiosqlite:///{workdir / 'rapture.db'}",
            permissions=permissions or {domain: "admin"},
            networks=networks,
            log_level=log_level,
            provisioning_secret=provisioning_secret,
        )
        generate_registration(config_path, registration_path, python=python)
        synapse = start_synapse(
            workdir / "synapse", server_name=domain, port=hs_port,
            app_service_config_files=[registration_path, *extra_registrations], python=python,
            postgres_database=synapse_postgres_database,
        )
    except BaseException:
        stop_own_ircd()
        raise
    bridge = BridgeProcess(config_path=config_path, port=as_port, workdir=workdir, python=python)
    try:
        bridge.start()
    except BaseException:
        synapse.stop()
        stop_own_ircd()
        raise
    return LocalStack(
        workdir=workdir, domain=domain, synapse=synapse, bridge=bridge, inspircd=inspircd,
        config_path=config_path, registration_path=registration_path, owns_inspircd=owns_inspircd,
    )
