"""Crash points for the kill -9 tests: EMRAUDIT_TEST_KILL_AT=<stage> kills the process there.

Stages: ingest:after-lake-write, scan:after-detectors, scan:after-findings,
scan:after-reports. Has no effect unless the variable is set.
"""

from __future__ import annotations

import os
import signal


def maybe_kill(stage: str) -> None:
    if os.environ.get("EMRAUDIT_TEST_KILL_AT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)
