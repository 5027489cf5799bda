"""Admin commands: linking rooms to channels, and the bridge's status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mautrix.errors import MatrixError

from connectors.api import LoginState

from bridge.commands.registry import CommandContext, CommandRegistry, UsageError
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


def register_admin_commands(registry: CommandRegistry) -> None:
    @registry.command("link", "bridge an existing room to a channel", "<room id|alias> <network> <#channel>",
                      level=Level.ADMIN)
    async def _link(ctx: CommandContext) -> None:
        if len(ctx.args) != 3:
            raise UsageError()
        bridge: Bridge = ctx.bridge
        room_id = await _room_id(ctx, ctx.args[0])
        runtime = bridge.networks.get(ctx.args[1])
        if runtime is None:
            raise UsageError(f"Unknown network '{ctx.args[1]}'.")
        chat_id = runtime.connector.normalize_chat(ctx.args[2])
        if chat_id is None:
            raise UsageError(f"'{ctx.args[2]}' is not a valid channel name.")
        try:
            await bridge.link(room_id, runtime.config.name, chat_id, ctx.args[2])
        except ValueError as exc:
            await ctx.reply(f"Cannot link: {exc}.")
            return
        except MatrixError as exc:
            await ctx.reply(f"Cannot link: I could not join {ctx.args[0]} ({exc}); invite me first.")
            return
        await ctx.reply(f"Linked {ctx.args[0]} to {ctx.args[2]} on {runtime.config.name}.")

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
