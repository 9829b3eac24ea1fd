"""The project's one retry delay: doubling, capped, jittered, reset by a success."""

from __future__ import annotations

import random

import pytest

from sealtrail.backoff import Backoff


def test_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    for delay, base in zip(delays, (0.5, 1.0, 2.0, 4.0, 4.0, 4.0), strict=True):
        assert 0.8 * base <= delay <= 1.2 * base
    assert len({round(d / b, 6) for d, b in zip(delays, (0.5, 1, 2, 4, 4, 4), strict=True)}) > 1
    backoff.reset()
    assert 0.4 <= backoff.next() <= 0.6


def test_gateways_that_fail_together_do_not_retry_together() -> None:
    first = [Backoff(1.0, 30.0, random.Random(seed)).next() for seed in range(100)]
    assert max(first) - min(first) > 0.3  # spread over +/-20 %


@pytest.mark.parametrize("initial, cap", [(0, 1), (2.0, 1.0), (-1, 5)])
def test_nonsense_is_refused(initial: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap)
