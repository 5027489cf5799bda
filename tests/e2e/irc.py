"""An async face for the blocking raw IRC test client: waits run in a thread, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.servers import RawIrcClient

Words = list[str]


class IrcUser:
    """A plain IRC user, as a person with irssi would be."""

    def __init__(self, port: int, nick: str) -> None:
        self.client = RawIrcClient(port, nick, wait=False)
        self.nick = nick

    async def registered(self) -> None:
        await asyncio.to_thread(self.client.wait_registered, 15.0)

    def send(self, line: str) -> None:
        self.client.send(line)

    async def wait_for(self, match: Callable[[Words], bool], timeout: float = 20.0) -> str:
        return await asyncio.to_thread(self.client.wait_for, match, timeout=timeout)

    async def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        await self.wait_for(lambda w: len(w) > 2 and w[1] == "366" and w[3].lower() == channel.lower())

    def seen(self) -> list[str]:
        return list(self.client.lines)

    def close(self) -> None:
        self.client.close()


def sender_nick(words: Words) -> str:
    prefix = words[0]
    if prefix.startswith("@"):  # message tags
        return ""
    return prefix[1:].split("!", 1)[0]


def _strip_tags(words: Words) -> Words:
    return words[1:] if words and words[0].startswith("@") else words


def command(cmd: str, target: str | None = None, *, nick: str | None = None,
            text: str | None = None) -> Callable[[Words], bool]:
    """Matches `:nick!u@h CMD target :text` (text compared exactly after the colon)."""

    def match(raw: Words) -> bool:
        words = _strip_tags(raw)
        if len(words) < 2 or words[1] != cmd:
            return False
        if nick is not None and words[0][1:].split("!", 1)[0].lower() != nick.lower():
            return False
        if target is not None and (len(words) < 3 or words[2].lstrip(":").lower() != target.lower()):
            return False
        if text is not None:
            line = " ".join(words[3:])
            return line[1:] == text if line.startswith(":") else line == text
        return True

    return match
