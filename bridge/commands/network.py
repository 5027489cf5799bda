"""User commands about networks: joining, leaving, nick, whois, credentials, connections."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mautrix.errors import MatrixError

from connectors.api import SendError

from bridge.commands.registry import CommandContext, CommandRegistry, UsageError
from bridge.doors import Door

if TYPE_CHECKING:
    from bridge.networks import NetworkRuntime
    from bridge.runtime import Bridge


def _runtime(ctx: CommandContext, name: str) -> NetworkRuntime:
    bridge: Bridge = ctx.bridge
    runtime = bridge.networks.get(name)
    if runtime is None:
        known = ", ".join(sorted(bridge.networks)) or "none"
        raise UsageError(f"Unknown network '{name}' (networks: {known}).")
    return runtime


def _runtimes(ctx: CommandContext) -> list[NetworkRuntime]:
    if len(ctx.args) > 1:
        raise UsageError()
    if ctx.args:
        return [_runtime(ctx, ctx.args[0])]
    return list(ctx.bridge.networks.values())


def _channel(runtime: NetworkRuntime, name: str) -> str:
    chat_id = runtime.connector.normalize_chat(name)
    if chat_id is None:
        raise UsageError(f"'{name}' is not a valid channel name on {runtime.config.name}.")
    return chat_id


def register_network_commands(registry: CommandRegistry) -> None:
    @registry.command("join", "join a channel (its room is created if needed)", "<network> <#channel> [key]")
    async def _join(ctx: CommandContext) -> None:
        if len(ctx.args) not in (2, 3):
            raise UsageError()
        bridge: Bridge = ctx.bridge
        runtime = _runtime(ctx, ctx.args[0])
        chat_id = _channel(runtime, ctx.args[1])
        key = ctx.args[2] if len(ctx.args) == 3 else ""
        portal = bridge.portals.by_chat(runtime.config.name, bridge.channel_ref(chat_id))
        if portal is None:
            verdict = bridge.doors.check(ctx.sender, Door.PORTAL, runtime.config.name)
            if not verdict.allowed:
                await ctx.reply(f"{ctx.args[1]} is not bridged, and {verdict.reason}.")
                return
            portal = await bridge.create_channel_portal(runtime.config.name, chat_id, ctx.args[1])
        try:
            await runtime.logins.join(ctx.sender, chat_id, key)
        except SendError as exc:  # e.g. a key the network cannot carry
            await ctx.reply(f"Could not join {ctx.args[1]} on {runtime.config.name}: {exc}.")
            return
        try:
            await bridge.az.intent.invite_user(portal.room_id, ctx.sender)
        except MatrixError:
            pass  # already in the room (or invited): nothing to do
        await ctx.reply(f"Joining {ctx.args[1]} on {runtime.config.name}: you are invited to its room "
                        f"{portal.room_id}.")

    @registry.command("part", "leave a channel and its room", "<network> <#channel>")
    async def _part(ctx: CommandContext) -> None:
        if len(ctx.args) != 2:
            raise UsageError()
        bridge: Bridge = ctx.bridge
        runtime = _runtime(ctx, ctx.args[0])
        chat_id = _channel(runtime, ctx.args[1])
        if chat_id not in runtime.logins.channels_of(ctx.sender):
            await ctx.reply(f"You are not in {ctx.args[1]} on {runtime.config.name}.")
            return
        await runtime.logins.part(ctx.sender, chat_id, "Leaving")
        portal = bridge.portals.by_chat(runtime.config.name, bridge.channel_ref(chat_id))
        if portal is not None:
            try:
                await bridge.az.intent.kick_user(portal.room_id, ctx.sender, f"You left {ctx.args[1]}")
            except MatrixError:
                pass
        await ctx.reply(f"Left {ctx.args[1]} on {runtime.config.name}.")

    @registry.command("nick", "show or change your nick (kept for later connections)", "<network> [nick]")
    async def _nick(ctx: CommandContext) -> None:
        if len(ctx.args) not in (1, 2):
            raise UsageError()
        runtime = _runtime(ctx, ctx.args[0])
        logins = runtime.logins
        if len(ctx.args) == 1:
            current = await logins.current_nick(ctx.sender)
            await ctx.reply(f"Your nick on {runtime.config.name} is {current or '(not chosen yet)'}.")
            return
        nick = ctx.args[1]
        if runtime.connector.normalize_user(nick) is None:
            raise UsageError(f"'{nick}' is not a valid nick on {runtime.config.name}.")
        await logins.set_nick(ctx.sender, nick)
        await ctx.reply(f"Your nick on {runtime.config.name} is now {nick}.")

    @registry.command("whois", "look up a user on a network", "<network> <nick|@mxid>")
    async def _whois(ctx: CommandContext) -> None:
        if len(ctx.args) != 2:
            raise UsageError()
        bridge: Bridge = ctx.bridge
        runtime = _runtime(ctx, ctx.args[0])
        target = ctx.args[1]
        if target.startswith("@"):
            name = bridge.to_remote.remote_name(runtime.config.name, target)
            if name is None:
                await ctx.reply(f"{target} has no name on {runtime.config.name}.")
                return
            target = name
        client = await runtime.logins.client_for(ctx.sender)
        try:
            lines = await client.whois(target)
        except NotImplementedError:
            await ctx.reply(f"{runtime.config.name} does not support whois.")
            return
        except SendError as exc:
            await ctx.reply(f"Could not look up {target}: {exc}.")
            return
        await ctx.reply("\n".join(lines) or f"Nothing known about {target}.")

    @registry.command("listrooms", "list the channels and private chats you are in", "[network]")
    async def _listrooms(ctx: CommandContext) -> None:
        bridge: Bridge = ctx.bridge
        lines = []
        for runtime in _runtimes(ctx):
            net = runtime.config.name
            for chat_id in runtime.logins.channels_of(ctx.sender):
                portal = bridge.portals.by_chat(net, bridge.channel_ref(chat_id))
                lines.append(f"  {net} {chat_id}" + (f" -> {portal.room_id}" if portal else ""))
            for portal in bridge.portals.dms_of(net, ctx.sender):
                lines.append(f"  {net} private chat with {portal.chat.id} -> {portal.room_id}")
        await ctx.reply("Your rooms:\n" + "\n".join(lines) if lines else "You are in no bridged rooms.")

    @registry.command("username", "set the user/account name used to log in", "<network> <name>")
    async def _username(ctx: CommandContext) -> None:
        if len(ctx.args) != 2:
            raise UsageError()
        runtime = _runtime(ctx, ctx.args[0])
        name = ctx.args[1]
        if not name.isprintable() or len(name) > 64:
            raise UsageError("That is not a usable user name.")
        await runtime.logins.set_username(ctx.sender, name)
        await ctx.reply(f"Your user name on {runtime.config.name} is now {name}; "
                        f"send 'reconnect {runtime.config.name}' to use it.")

    @registry.command("storepass", "store your password (encrypted) to log in with; only in your "
                      "private chat with the bot", "<network> <password>")
    async def _storepass(ctx: CommandContext) -> None:
        network, _, password = ctx.raw_args.partition(" ")
        password = password.strip("\r\n")
        if not network or not password:
            raise UsageError()
        runtime = _runtime(ctx, network)
        await runtime.logins.store_password(ctx.sender, password)
        redacted = await ctx.bridge.bot.try_redact(ctx.room_id, ctx.event_id)
        advice = "" if redacted else " You may want to delete your message that contains it."
        await ctx.reply(f"Password for {runtime.config.name} stored, encrypted. Send "
                        f"'reconnect {runtime.config.name}' to log in with it.{advice}")

    @registry.command("removepass", "forget your stored password", "<network>")
    async def _removepass(ctx: CommandContext) -> None:
        if len(ctx.args) != 1:
            raise UsageError()
        runtime = _runtime(ctx, ctx.args[0])
        await runtime.logins.store_password(ctx.sender, None)
        await ctx.reply(f"Your password for {runtime.config.name} is forgotten.")

    @registry.command("storecert", "store a client certificate and key (encrypted) to log in with "
                      "(SASL EXTERNAL); only in your private chat with the bot", "<network> <PEM certificate and private key, pasted>")
    async def _storecert(ctx: CommandContext) -> None:
        # A private key is a secret even when the rest is refused: take it out of the room first.
        redacted = "PRIVATE KEY" in ctx.raw_args and await ctx.bridge.bot.try_redact(ctx.room_id, ctx.event_id)
        advice = "" if redacted or "PRIVATE KEY" not in ctx.raw_args else \
            " You may want to delete your message that contains the private key."
        parts = ctx.raw_args.split(None, 1)
        if not parts:
            raise UsageError()
        runtime = _runtime(ctx, parts[0])
        if len(parts) < 2:
            raise UsageError("Paste your certificate and its unencrypted private key (PEM) after the "
                             "network name, in the same message.")
        from bridge.client_cert import ClientCertError, parse_client_cert  # only when needed

        try:
            cert = parse_client_cert(parts[1])
        except ClientCertError as exc:
            raise UsageError(f"{exc}{advice}") from None
        await runtime.logins.store_client_cert(ctx.sender, cert.pem)
        net = runtime.config.name
        expired = cert.not_after < datetime.now(timezone.utc)
        date = f"{cert.not_after:%Y-%m-%d}"
        validity = f"expired on {date}!" if expired else f"valid until {date}"
        await ctx.reply(
            f"Client certificate for {net} stored, encrypted ({cert.subject or 'no subject'}, {validity}).\n"
            f"Its fingerprints, to register with the network's services "
            f"(e.g. /msg NickServ CERT ADD <fingerprint>, while identified):\n"
            f"SHA-256: {cert.sha256}\nSHA-512: {cert.sha512}\n"
            f"Send 'reconnect {net}' to log in with it (SASL EXTERNAL).{advice}"
        )

    @registry.command("removecert", "forget your stored client certificate", "<network>")
    async def _removecert(ctx: CommandContext) -> None:
        if len(ctx.args) != 1:
            raise UsageError()
        runtime = _runtime(ctx, ctx.args[0])
        if await runtime.logins.store_client_cert(ctx.sender, None):
            await ctx.reply(f"Your client certificate for {runtime.config.name} is forgotten.")
        else:
            await ctx.reply(f"You have no client certificate stored for {runtime.config.name}.")

    @registry.command("reconnect", "reconnect to a network (or all), staying in your rooms", "[network]")
    async def _reconnect(ctx: CommandContext) -> None:
        done = []
        for runtime in _runtimes(ctx):
            await runtime.logins.reconnect(ctx.sender, "Reconnecting")
            done.append(runtime.config.name)
        await ctx.reply(f"Reconnecting to {', '.join(done)}.")

    @registry.command("quit", "disconnect from a network (or all)", "[network]")
    async def _quit(ctx: CommandContext) -> None:
        done = [r.config.name for r in _runtimes(ctx) if await r.logins.quit(ctx.sender, "Quit")]
        await ctx.reply(f"Disconnected from {', '.join(done)}." if done else "You were not connected.")
