"""Bot commands: a registry of named commands with usage, help text and a permission level."""

from bridge.commands.registry import Command, CommandContext, CommandRegistry, UsageError

__all__ = ["Command", "CommandContext", "CommandRegistry", "UsageError"]
