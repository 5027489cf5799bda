"""The one permission check (bridge/doors.py): who may link, open portals and private chats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config.model import NetworkConfig
from bridge.doors import Door, Doors
from bridge.permissions import Level, Permissions

RULES = {"*": "relay", "example.org": "user", "@boss:example.org": "admin", "@troll:example.org": "none"}


def net(name: str, *, dynamic: bool = True, relay: bool = False) -> NetworkConfig:
    return NetworkConfig(name=name, connector="irc", ghost_template="{network}_{nick}",
                         alias_template="{network}_{channel}", dynamic_portals=dynamic, relay=relay)


def doors(consent: bool = True) -> Doors:
    networks = {"open": net("open"), "relaynet": net("relaynet", relay=True),
                "closed": net("closed", dynamic=False)}
    return Doors(Permissions(RULES), networks, asks_consent=lambda _n: consent)


def test_admins_pass_every_door_without_consent() -> None:
    d = doors(consent=False)
    for door in Door:
        for network in ("open", "relaynet", "closed"):
            verdict = d.check("@boss:example.org", door, network)
            assert verdict.allowed and not verdict.needs_consent


def test_users_link_only_with_consent_and_only_where_portals_are_dynamic() -> None:
    verdict = doors().check("@alice:example.org", Door.LINK, "open")
    assert verdict.allowed and verdict.needs_consent
    closed = doors().check("@alice:example.org", Door.LINK, "closed")
    assert not closed.allowed and "only bridge admins" in closed.reason
    no_asker = doors(consent=False).check("@alice:example.org", Door.LINK, "open")
    assert not no_asker.allowed and "cannot ask" in no_asker.reason


@pytest.mark.parametrize("mxid", ["@troll:example.org", "@someone:elsewhere.net"])
def test_below_user_nobody_links_or_opens_private_chats(mxid: str) -> None:
    for door in (Door.LINK, Door.DM):
        for network in ("open", "relaynet"):
            verdict = doors().check(mxid, door, network)
            assert not verdict.allowed and "needs permission level 'user'" in verdict.reason


def test_new_portals_need_user_or_relay_on_relay_networks_and_admin_when_closed() -> None:
    d = doors()
    assert d.check("@alice:example.org", Door.PORTAL, "open")
    assert not d.check("@someone:elsewhere.net", Door.PORTAL, "open")  # a federated relay user
    assert d.check("@someone:elsewhere.net", Door.PORTAL, "relaynet")
    assert not d.check("@troll:example.org", Door.PORTAL, "relaynet")
    closed = d.check("@alice:example.org", Door.PORTAL, "closed")
    assert not closed.allowed and "only bridge admins may bridge new channels on closed" in closed.reason


@settings(max_examples=200, deadline=None)
@given(level=st.sampled_from(list(Level)), door=st.sampled_from(list(Door)),
       dynamic=st.booleans(), relay=st.booleans(), consent=st.booleans())
def test_the_check_is_monotonic_and_none_never_passes(level: Level, door: Door, dynamic: bool, relay: bool,
                                                      consent: bool) -> None:
    networks = {"n": net("n", dynamic=dynamic, relay=relay)}
    rules = {"@a:x": level.label, "@b:x": "admin"}
    d = Doors(Permissions(rules), networks, asks_consent=lambda _n: consent)
    verdict = d.check("@a:x", door, "n")
    if level == Level.NONE:
        assert not verdict.allowed
    if verdict.allowed:  # whoever passes, every higher level passes too
        for higher in Level:
            if higher >= level:
                rules2 = {"@a:x": higher.label}
                assert Doors(Permissions(rules2), networks, asks_consent=lambda _n: consent).check(
                    "@a:x", door, "n").allowed
    assert verdict.allowed or verdict.reason
    assert d.check("@b:x", door, "n").allowed
