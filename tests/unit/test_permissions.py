from __future__ import annotations

from bridge.permissions import Level, Permissions


def test_most_specific_rule_wins() -> None:
    perms = Permissions({
        "*": "relay", "example.org": "user", "@boss:example.org": "admin",
        "@troll:example.org": "none",
    })
    assert perms.level_for("@someone:elsewhere.net") == Level.RELAY
    assert perms.level_for("@alice:example.org") == Level.USER
    assert perms.level_for("@boss:example.org") == Level.ADMIN
    assert perms.level_for("@troll:example.org") == Level.NONE
    assert perms.allows("@boss:example.org", Level.USER)
    assert not perms.allows("@alice:example.org", Level.ADMIN)


def test_no_rules_means_no_access() -> None:
    assert Permissions(None).level_for("@a:b") == Level.NONE

