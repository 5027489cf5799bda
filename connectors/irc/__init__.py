"""IRC connector (built on the `irc` library's asyncio client)."""

from connectors.irc.connector import IRCConnector

__all__ = ["IRCConnector"]
