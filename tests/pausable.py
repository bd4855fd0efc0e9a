"""`emraudit` that pauses at one stage until a file appears, for the concurrent-writer tests.

    python tests/pausable.py STAGE READY GO scan --config FILE

At STAGE (one of emraudit.scan.STAGES, e.g. ingest:after-lake-write) it creates READY and
waits until GO exists (two minutes at most), then goes on; everything else is the real
command line. The test runs a second writer in between.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from emraudit import scan as scan_module
from killable import cli_with_stage


def main() -> None:
    stage, ready, go, args = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    if stage not in scan_module.STAGES:
        raise SystemExit(f"unknown stage {stage!r}: one of {', '.join(scan_module.STAGES)}")

    def pause_at(name: str) -> None:
        if name == stage and not ready.exists():
            ready.touch()
            t0 = time.time()
            while not go.exists() and time.time() - t0 < 120:
                time.sleep(0.02)

    cli_with_stage(pause_at, args)


if __name__ == "__main__":
    main()
