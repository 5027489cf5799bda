"""Commands every bridge has, whatever its networks."""

from __future__ import annotations

from bridge import __version__
from bridge.commands.registry import CommandContext, CommandRegistry, UsageError
from bridge.permissions import Level


def register_builtin(registry: CommandRegistry) -> None:
    @registry.command("help", "show this list of commands", level=Level.USER)
    async def _help(ctx: CommandContext) -> None:
        if ctx.args:
            raise UsageError("'help' takes no arguments.")
        lines = ["Commands (send them here, or as '!rapture <command>' in a bridged room):"]
        for command in registry.visible_to(ctx.level):
            lines.append(f"  {command.usage_line}: {command.summary}")
        await ctx.reply("\n".join(lines))

    @registry.command("version", "show the bridge's version", level=Level.USER)
    async def _version(ctx: CommandContext) -> None:
        await ctx.reply(f"Rapture {__version__}")

    @registry.command("networks", "list the networks this bridge serves", level=Level.USER)
    async def _networks(ctx: CommandContext) -> None:
        networks = ctx.bridge.config.networks if ctx.bridge else {}
        if not networks:
            await ctx.reply("This bridge has no networks configured.")
            return
        lines = ["Networks:"]
        for net in networks.values():
            lines.append(f"  {net.name} ({net.connector})")
        await ctx.reply("\n".join(lines))
