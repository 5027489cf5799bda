"""The command registry: parsing a line, checking the level, dispatching, and help."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.permissions import Level

COMMAND_PREFIX = "!rapture"  # how a command starts outside the bot's DM ("!rapture help")


class UsageError(Exception):
    """Raised by a command handler when its arguments are wrong; the usage line is shown."""


@dataclass(slots=True, kw_only=True)
class CommandContext:
    """What a handler gets: who asked, where, with which arguments, and how to answer."""

    sender: str
    room_id: str
    event_id: str
    level: Level
    args: list[str]
    reply: Callable[[str], Awaitable[None]]  # sends an m.notice in reply to the command
    raw_args: str = ""  # the text after the command name, untouched (passwords keep spaces)
    bridge: Any = None  # the running bridge, for commands that act on it


Handler = Callable[[CommandContext], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    name: str
    summary: str
    usage: str = ""  # arguments, e.g. "<network> <#channel> [key]"
    level: Level = Level.USER
    handler: Handler

    @property
    def usage_line(self) -> str:
        return f"{self.name} {self.usage}".strip()


@dataclass
class CommandRegistry:
    commands: dict[str, Command] = field(default_factory=dict)

    def add(self, command: Command) -> None:
        if command.name in self.commands:
            raise ValueError(f"command {command.name!r} registered twice")
        self.commands[command.name] = command

    def command(self, name: str, summary: str, usage: str = "", level: Level = Level.USER
                ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(Command(name=name, summary=summary, usage=usage, level=level, handler=handler))
            return handler
        return decorate

    def visible_to(self, level: Level) -> list[Command]:
        return sorted((c for c in self.commands.values() if level >= c.level), key=lambda c: c.name)

    @staticmethod
    def split(text: str) -> list[str]:
        """Split a command line like a shell would; unbalanced quotes fall back to spaces."""
        try:
            return shlex.split(text)
        except ValueError:
            return text.split()

    async def dispatch(self, text: str, ctx: CommandContext) -> None:
        words = self.split(text)
        if not words:
            return
        name, ctx.args = words[0].lower(), words[1:]
        ctx.raw_args = text.strip()[len(words[0]):].lstrip() if text.strip().startswith(words[0]) else ""
        command = self.commands.get(name)
        if command is None:
            await ctx.reply(f"Unknown command '{name}'. Send 'help' for the list of commands.")
            return
        if ctx.level < command.level:
            await ctx.reply(
                f"'{name}' needs permission level '{command.level.label}'; "
                f"you have '{ctx.level.label}'."
            )
            return
        try:
            await command.handler(ctx)
        except UsageError as exc:
            detail = f"{exc} " if str(exc) else ""
            await ctx.reply(f"{detail}Usage: {command.usage_line}")
