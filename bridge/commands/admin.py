"""Linking rooms to channels (admins at once, users with an operator's consent); admin commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mautrix.errors import MatrixError

from connectors.api import LoginState

from bridge.commands.registry import CommandContext, CommandRegistry, UsageError
from bridge.doors import Door
from bridge.link_requests import LinkRefused
from bridge.permissions import Level

if TYPE_CHECKING:
    from bridge.runtime import Bridge


async def _room_id(ctx: CommandContext, room: str) -> str:
    if room.startswith("!"):
        return room
    if room.startswith("#"):
        try:
            return (await ctx.bridge.az.intent.resolve_room_alias(room)).room_id
        except MatrixError:
            raise UsageError(f"No room has the alias {room}.") from None
    raise UsageError(f"'{room}' is neither a room ID (!...) nor an alias (#...).")


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"


def register_admin_commands(registry: CommandRegistry) -> None:
    @registry.command("link", "bridge an existing room to a channel (unless you are an admin, one of the "
                      "channel's operators must agree)", "<room id|alias> <network> <#channel>")
    async def _link(ctx: CommandContext) -> None:
        if len(ctx.args) != 3:
            raise UsageError()
        bridge: Bridge = ctx.bridge
        runtime = bridge.networks.get(ctx.args[1])
        if runtime is None:
            raise UsageError(f"Unknown network '{ctx.args[1]}'.")
        chat_id = runtime.connector.normalize_chat(ctx.args[2])
        if chat_id is None:
            raise UsageError(f"'{ctx.args[2]}' is not a valid channel name.")
        net, name = runtime.config.name, ctx.args[2]
        requests = bridge.link_requests
        try:
            # The permission check first, before the alias lookup or the bot's join.
            first = bridge.doors.check(ctx.sender, Door.LINK, net)
            if not first.allowed:
                raise LinkRefused(first.reason)
            room_id = await _room_id(ctx, ctx.args[0])
            verdict = requests.check(ctx.sender, room_id, net, chat_id, name)
            label = await requests.enter(ctx.sender, room_id, verdict)
            if not verdict.needs_consent:
                await requests.link_now(room_id, net, chat_id, name)
                await ctx.reply(f"Linked {ctx.args[0]} to {name} on {net}.")
                return
        except LinkRefused as exc:
            await ctx.reply(f"Cannot link: {exc}.")
            return
        timeout = requests.ask_in_background(ctx.sender, room_id, label, net, chat_id, name, ctx.reply)
        await ctx.reply(f"Asked the operators of {name} on {net} whether {ctx.args[0]} may be linked to it; "
                        f"I will tell you their answer (they have {_duration(timeout)}).")

    @registry.command("unlink", "stop bridging a room", "<room id|alias>", level=Level.ADMIN)
    async def _unlink(ctx: CommandContext) -> None:
        if len(ctx.args) != 1:
            raise UsageError()
        bridge: Bridge = ctx.bridge
        room_id = await _room_id(ctx, ctx.args[0])
        portal = bridge.portals.by_room(room_id)
        if portal is None:
            await ctx.reply(f"{ctx.args[0]} is not bridged.")
            return
        await bridge.unlink(portal)
        await ctx.reply(f"Unlinked {ctx.args[0]} from {portal.chat.id} on {portal.network}.")

    @registry.command("status", "connections, portals and queues", level=Level.ADMIN)
    async def _status(ctx: CommandContext) -> None:
        bridge: Bridge = ctx.bridge
        lines = [f"Portals: {len(bridge.portals.all())}",
                 f"Queued events: {sum(bridge.dispatcher.depth().values())}",
                 f"Messages waiting in the outbox: {bridge.outbox.depth()}"]
        for name, runtime in sorted(bridge.networks.items()):
            states = runtime.logins.states
            up = sum(1 for s in states.values() if s is LoginState.CONNECTED)
            lines.append(f"{name} ({runtime.config.connector}): {up} of {len(runtime.logins.clients)} "
                         f"puppets connected; bridge connection {runtime.status()}")
        await ctx.reply("\n".join(lines))
