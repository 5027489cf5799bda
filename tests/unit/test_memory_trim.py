"""When the bridge hands memory back: a full collection only after a wave of logins."""

from __future__ import annotations

from bridge.memory import TRIM_EVERY_SECONDS, WAVE_CHANGES, WAVE_SETTLE_SECONDS, trim_due


def test_a_wave_of_logins_is_collected_once_it_is_over() -> None:
    # 10,000 puppets connected; the last one 3 s ago: the wave is still going.
    assert trim_due(now=100.0, last_change=97.0, changes_since_trim=20_000, trimmed_at=0.0) is None
    # Quiet for long enough: a trim with a full collection.
    assert trim_due(now=100.0, last_change=100.0 - WAVE_SETTLE_SECONDS, changes_since_trim=20_000,
                    trimmed_at=0.0) is True


def test_a_few_logins_coming_and_going_cost_no_collection() -> None:
    # Churn below a wave never stops the event loop for a collection...
    assert trim_due(now=100.0, last_change=50.0, changes_since_trim=WAVE_CHANGES - 1, trimmed_at=0.0) is None
    # ... but the C heap is still trimmed now and then, which does not hold the interpreter lock.
    assert trim_due(now=TRIM_EVERY_SECONDS + 1, last_change=50.0, changes_since_trim=3, trimmed_at=0.0) is False
    # Constant churn in a big bridge is never quiet: periodic heap trims only.
    now = TRIM_EVERY_SECONDS + 1
    assert trim_due(now=now, last_change=now - 1, changes_since_trim=50_000, trimmed_at=0.0) is False
