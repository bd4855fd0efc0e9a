"""`emraudit` with a SIGKILL at one stage, for the kill -9 tests.

    python tests/killable.py STAGE scan --config FILE
    python tests/killable.py ingest:after-lake-write ingest --config FILE

Passes an `on_stage` callback to `emraudit.scan.run_scan` and `emraudit.ingest.ingest` that
kills this process when the work reaches STAGE (one of emraudit.scan.STAGES); everything
else is the real command line.
"""

from __future__ import annotations

import os
import signal
import sys

from emraudit import ingest as ingest_module
from emraudit import scan as scan_module


def main() -> None:
    stage, args = sys.argv[1], sys.argv[2:]
    if stage not in scan_module.STAGES:
        raise SystemExit(f"unknown stage {stage!r}: one of {', '.join(scan_module.STAGES)}")

    def kill_at(name: str) -> None:
        if name == stage:
            os.kill(os.getpid(), signal.SIGKILL)

    cli_with_stage(kill_at, args)


def cli_with_stage(on_stage, args: list[str]) -> None:
    """The real command line, with `on_stage` told each stage of scans and ingests (shared
    by the test scripts that stop, pause or fill the disk at a stage)."""
    run_scan, ingest = scan_module.run_scan, ingest_module.ingest
    scan_module.run_scan = lambda *a, **k: run_scan(*a, on_stage=on_stage, **k)
    ingest_module.ingest = lambda *a, **k: ingest(*a, on_stage=on_stage, **k)
    from emraudit.cli import main as cli
    cli(args, prog_name="emraudit")


if __name__ == "__main__":
    main()
