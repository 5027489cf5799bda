"""Caps on new DM rooms opened by remote users (bridge/dm_caps.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.dm_caps import NewDMCaps


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_per_sender_and_network_caps_in_a_sliding_hour() -> None:
    clock = Clock()
    caps = NewDMCaps(per_hour=3, per_sender=2, clock=clock)
    assert caps.admit("alice").allowed
    assert caps.admit("alice").allowed
    refused = caps.admit("alice")
    assert not refused.allowed and refused.reason == "sender"
    assert caps.admit("bob").allowed
    refused = caps.admit("carol")
    assert not refused.allowed and refused.reason == "network"
    clock.now = 3599.0
    assert not caps.admit("carol").allowed
    clock.now = 3600.0  # every opening of the first hour leaves the window
    assert caps.admit("carol").allowed
    assert caps.admit("alice").allowed
    assert (len(caps), caps.senders) == (2, 2)


def test_zero_refuses_everything() -> None:
    assert not NewDMCaps(per_hour=0, per_sender=5).admit("x").allowed
    assert not NewDMCaps(per_hour=5, per_sender=0).admit("x").allowed


@settings(max_examples=200, deadline=None)
@given(per_hour=st.integers(0, 20), per_sender=st.integers(0, 5),
       steps=st.lists(st.tuples(st.integers(0, 50), st.floats(0, 2000)), max_size=300))
def test_memory_and_admissions_stay_within_the_caps(per_hour: int, per_sender: int,
                                                    steps: list[tuple[int, float]]) -> None:
    clock = Clock()
    caps = NewDMCaps(per_hour=per_hour, per_sender=per_sender, clock=clock)
    admitted: list[tuple[float, int]] = []
    for sender, advance in steps:
        clock.now += advance
        if caps.admit(f"n{sender}").allowed:
            admitted.append((clock.now, sender))
        recent = [(t, s) for t, s in admitted if clock.now - t < 3600]
        assert len(recent) <= per_hour
        assert all(sum(1 for _, s in recent if s == x) <= per_sender for _, x in recent)
        # Bounded memory: only admitted openings of the last hour are remembered.
        assert len(caps) <= max(per_hour, 0) and caps.senders <= len(caps)
