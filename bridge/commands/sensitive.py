"""Commands that carry a secret, recognised before anything stores them.

The AS intake asks `find_secret_command` about every message before it writes the event to
`as_event`; the bot asks it before it dispatches a command. One recogniser for both, so what
the bot would handle as `storepass` is exactly what the intake keeps off the disk.

The commands and their secrets (see bridge/commands/network.py):
- `storepass <network> <password>`: the password (everything after the network);
- `storecert <network> <PEM certificate and private key>`: the private key;
- `join <network> <#channel> <key>`: the channel key.
`storepass` and `storecert` are *credentials*: the bot takes them only in the user's private DM
with it. A `join` with a key is taken anywhere, like any join; only its stored copy loses the key.

The stored copy of such an event keeps only the command's name and the marker
`SECRET_REMOVED`: the secret is removed, not sealed. The in-memory event carries the secret to
the handler; only a replay after a crash (the process died between the 200 and the handling,
a window of milliseconds) finds it gone, and the bot asks the user to send it again. Removing
is chosen over sealing because the secret is needed once: the sealed copy the handler writes
to `login` is the only one worth keeping, and a second sealed copy in `as_event` would only
be one more place for it, and would make the intake depend on the key file.

Recognition errs on the wide side: a message is a secret command when its first word, with
quotes and backslashes taken out (as the shell-like splitter would) and after an optional
`!rapture` prefix, names one of these commands, in any room. A false positive costs nothing
but the crash-replay of that one message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bridge.commands.registry import COMMAND_PREFIX, CommandRegistry

SECRET_REMOVED = "org.rapture.secret_removed"  # content key of a stored copy without its secret
CREDENTIAL_COMMANDS = frozenset({"storepass", "storecert"})
_QUOTING = re.compile(r"[\"'\\]")
_SPLIT_LIMIT = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretCommand:
    name: str  # the command, lowercase: "storepass", "storecert" or "join"
    secret: str  # the secret part of the text, for the log redactor ("" when none)

    @property
    def credential(self) -> bool:
        """Taken only in the user's private DM with the bot."""
        return self.name in CREDENTIAL_COMMANDS


def _split_first(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def find_secret_command(body: str) -> SecretCommand | None:
    """The secret command `body` holds (with or without the `!rapture` prefix), or None."""
    if not isinstance(body, str):
        return None
    first, rest = _split_first(body)
    if first.lower() == COMMAND_PREFIX:
        first, rest = _split_first(rest)
    name = _QUOTING.sub("", first).lower()
    if name in CREDENTIAL_COMMANDS:
        _network, secret = _split_first(rest)
        return SecretCommand(name=name, secret=secret.strip())
    if name == "join":
        # `join <network> <#channel> [key]`: a key is there when a third argument is. Quoting
        # only ever joins words, so three plain words are the widest test; the shell-like split
        # (bounded: this runs on every message that starts with "join") finds the key itself.
        plain = rest.split(None, 3)
        if len(plain) >= 3:
            args = CommandRegistry.split(rest) if len(rest) <= _SPLIT_LIMIT else plain
            return SecretCommand(name=name, secret=args[2] if len(args) >= 3 else plain[2])
    return None


def _bodies(content: dict[str, Any]) -> list[Any]:
    bodies = [content.get("body")]
    new_content = content.get("m.new_content")
    if isinstance(new_content, dict):  # an edit: the new text is a second copy
        bodies.append(new_content.get("body"))
    return bodies


def content_secret(content: Any) -> SecretCommand | None:
    """The secret command a message's content holds, in its body or, for an edit, in its new
    content (an edit's `body` is "* text", so the command is only found in `m.new_content`).
    The intake and the bot's refusal both ask this: an edit into `storepass` is one too."""
    if not isinstance(content, dict):
        return None
    found = [f for f in (find_secret_command(b) for b in _bodies(content) if isinstance(b, str)) if f]
    # The one that holds a secret, if either does (an edit may add it to a bare command).
    return max(found, key=lambda f: bool(f.secret)) if found else None


def message_secret(raw: dict[str, Any]) -> SecretCommand | None:
    """The secret command an event (as received) holds, or None. Only room messages count."""
    if raw.get("type") != "m.room.message":
        return None
    return content_secret(raw.get("content"))


def without_secret(raw: dict[str, Any], command: SecretCommand) -> dict[str, Any]:
    """The event to store: its content replaced by the command's name and `SECRET_REMOVED`
    (the formatted body and an edit's new content go too: they are copies of the text)."""
    content = raw.get("content") or {}
    stored = dict(raw)
    stored["content"] = {
        "msgtype": content.get("msgtype", "m.text"),
        "body": command.name,
        SECRET_REMOVED: True,
    }
    return stored


def secret_was_removed(content: Any) -> bool:
    return isinstance(content, dict) and content.get(SECRET_REMOVED) is True
