"""The `rapture` command line. Subcommand names and options are a public contract."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import stat
import sys
from pathlib import Path

from bridge import __version__

EXIT_CONFIG = 2


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="config.yaml", type=Path,
                        help="config file (default: config.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rapture", description="Rapture: a Matrix bridge for IRC and more.")
    parser.add_argument("--version", action="version", version=f"rapture {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate-registration", help="write the appservice registration and tokens")
    _add_config(gen)
    gen.add_argument("-r", "--registration", default="registration.yaml", type=Path,
                     help="registration file to write (default: registration.yaml)")

    check = sub.add_parser("check-config", help="validate a config file (exit 2 on errors)")
    _add_config(check)

    run = sub.add_parser("run", help="apply migrations, then serve")
    _add_config(run)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply pending migrations")
    _add_config(upgrade)

    sub.add_parser("connectors", help="list installed network connectors")

    demo = sub.add_parser("demo", help="run a local Synapse, InspIRCd and the bridge to try it out")
    demo.add_argument("--dir", default="rapture-demo", type=Path,
                      help="working directory for the demo stack (default: ./rapture-demo)")
    return parser


def _print_config_errors(exc: Exception) -> int:
    print(str(exc), file=sys.stderr)
    return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config.loader import check_file

    doc, problems, lines = check_file(args.config)
    for line in lines:
        print(line, file=sys.stderr)
    if doc is None or any(p.severity == "error" for p in problems):
        return EXIT_CONFIG
    # `run` refuses a key file others can read: say so here, before the admin tries to start.
    from bridge.config import ConfigError, load_config
    from bridge.secrets import key_file_problem

    try:
        problem = key_file_problem(load_config(args.config).config.key_file)
    except ConfigError as exc:
        return _print_config_errors(exc)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.config}: OK" + (f" ({len(lines)} warnings)" if lines else ""))
    return 0


def cmd_generate_registration(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config
    from bridge.config.yaml_io import PRIVATE_FILE_MODE, save_document
    from bridge.secrets import create_key_file
    from registration import build_registration, generate_tokens, write_registration

    try:
        loaded = load_config(args.config, require_tokens=False)
    except ConfigError as exc:
        return _print_config_errors(exc)
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    as_token, hs_token = generate_tokens()
    registration = build_registration(loaded.config, as_token, hs_token)
    write_registration(args.registration, registration)
    # Write the tokens back into the admin's file, keeping their comments and key order.
    doc = loaded.document
    appservice = doc.setdefault("appservice", {})
    appservice["as_token"] = as_token
    appservice["hs_token"] = hs_token
    config = loaded.config
    if config.provisioning_enabled and not config.provisioning_secret:
        doc.setdefault("provisioning", {})["shared_secret"] = generate_tokens()[0]
        print("Generated provisioning.shared_secret.")
    # The config now holds the same secrets as the registration: owner-only from the moment
    # the new file exists (the group and others lose whatever access they had).
    try:
        old_mode = stat.S_IMODE(args.config.stat().st_mode)
    except FileNotFoundError:
        old_mode = PRIVATE_FILE_MODE
    save_document(args.config, doc, mode=(old_mode & 0o700) | 0o600)
    print(f"Wrote {args.registration} and the new tokens into {args.config}.")
    if old_mode & 0o077:
        print(f"{args.config} holds the tokens now, so it is readable by its owner only.")
    if create_key_file(Path(config.key_file)):
        print(f"Created {config.key_file}, the key that encrypts stored passwords (keep it, mode 0600).")
    print(f"Add {args.registration.resolve()} to Synapse's app_service_config_files and restart it.")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config
    from bridge.db.migrate import upgrade
    from bridge.plugins import migration_branches

    try:
        loaded = load_config(args.config, require_tokens=False)
    except ConfigError as exc:
        return _print_config_errors(exc)
    branches = migration_branches([net.connector for net in loaded.config.networks.values()])
    before, after = upgrade(loaded.config.database_url, branches)
    if before == after:
        print(f"database already at revision {after}; nothing to do")
    else:
        print(f"database migrated from {before or 'empty'} to {after}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config
    from bridge.logs import setup_logging

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        return _print_config_errors(exc)
    config = loaded.config
    from bridge.secrets import key_file_problem

    problem = key_file_problem(config.key_file)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, secrets=config.secret_values)
    from bridge.limits import raise_open_file_limit

    raise_open_file_limit()
    for warning in loaded.warnings:
        logging.getLogger("rapture.config").warning("%s", warning)
    return asyncio.run(_serve(config))


async def _serve(config: object) -> int:
    from bridge.db.migrate import upgrade_in_child
    from bridge.runtime import Bridge

    log = logging.getLogger("rapture")
    await upgrade_in_child(config.path)  # type: ignore[attr-defined]
    bridge = Bridge(config)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bridge.start()
    log.info("Rapture %s running", __version__)
    await stop.wait()
    log.info("stopping")
    await bridge.stop()
    return 0


def cmd_connectors(_args: argparse.Namespace) -> int:
    from bridge.plugins import ConnectorLoadError, available_connectors, load_connector_class

    for name in available_connectors():
        try:
            cls = load_connector_class(name)
            major, minor = cls.info.api_version
            print(f"{name}\t{cls.info.display_name}\tAPI {major}.{minor}")
        except ConnectorLoadError as exc:
            print(f"{name}\tunusable: {exc}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return run_demo(args.dir)


# Commands that create files holding secrets (the database and its -wal/-shm, the config,
# the registration, the key): whatever they create, and their children (the migration runs in
# one), is owner-only from the start. Each writer also sets its own mode; this is the net.
PRIVATE_UMASK = 0o077
WRITES_SECRETS = frozenset({"run", "db", "generate-registration"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in WRITES_SECRETS:
        os.umask(PRIVATE_UMASK)
    handlers = {
        "generate-registration": cmd_generate_registration,
        "check-config": cmd_check_config,
        "run": cmd_run,
        "db": cmd_db_upgrade,
        "connectors": cmd_connectors,
        "demo": cmd_demo,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
