"""XMPP connector: an external component (XEP-0114) on slixmpp; MUCs are channel portals."""

from connectors.xmpp.connector import XMPPConnector

__all__ = ["XMPPConnector"]
