"""Hypothesis profiles for every property test.

The test command replays the same examples on every run ("repeatable", the default), so a
red CI is a finding, never luck. `scripts/explore.sh` sets HYPOTHESIS_PROFILE=explore: fresh
randomness and ten times the examples; pin whatever it finds with @example."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "repeatable")
EXPLORE = PROFILE == "explore"

settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", database=None, print_blob=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """A test's example count: `n` on the test command, ten times as many when exploring."""
    return n * 10 if EXPLORE else n
