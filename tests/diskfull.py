"""`emraudit` on a disk that fills up, for the clean-failure tests.

    python tests/diskfull.py lake N scan --config FILE     # the N-th lake file write on: ENOSPC
    python tests/diskfull.py store STAGE scan --config F   # the state database full from STAGE

`lake`: the lake's atomic writer raises OSError(ENOSPC) from its N-th call on, as a full disk
would (pyarrow raises exactly that). `store`: from scan stage STAGE on (one of
emraudit.scan.STAGES), every SQLite connection gets `PRAGMA max_page_count` = its current
size, so the next write that grows the file fails with SQLite's own "database or disk is
full". Everything else is the real command line.
"""

from __future__ import annotations

import errno
import sys

import sqlalchemy as sa

from emraudit import lake as lake_module
from killable import cli_with_stage


def main() -> None:
    mode, arg, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "lake":
        real, calls, first = lake_module._atomic_write, [0], int(arg)

        def full(df, path, **options):
            calls[0] += 1
            if calls[0] >= first:
                raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] "
                                            "No space left on device")
            return real(df, path, **options)
        lake_module._atomic_write = full
    elif mode == "store":
        full = {"on": False}

        @sa.event.listens_for(sa.pool.Pool, "checkout")
        def cap(dbapi_conn, _record, _proxy):
            if full["on"]:
                cur = dbapi_conn.cursor()
                pages = cur.execute("PRAGMA page_count").fetchone()[0]
                cur.execute(f"PRAGMA max_page_count = {pages}")
                cur.close()

        def at(name: str) -> None:
            if name == arg:
                full["on"] = True
        cli_with_stage(at, args)
        return
    else:
        raise SystemExit(f"unknown mode {mode!r}: lake or store")
    from emraudit.cli import main as cli
    cli(args, prog_name="emraudit")


if __name__ == "__main__":
    main()
