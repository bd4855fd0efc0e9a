"""What a writer killed with SIGKILL (or stopped by a full disk) leaves behind, and clearing it.

A scan killed mid-way leaves its `scans` row saying `running` and may leave a half-written
report folder `reports/.tmp-<scan>-<random>` (megabytes each, never renamed into place). The
next scan, holding the writer lock — so no other writer can be mid-way — marks such scans
`interrupted` and removes the temporary folders; ingest does the same for its runs and lake
files (`emraudit.ingest`, `Lake.remove_orphans`). A scan that fails with an error while
running marks its own row `failed` (`marks_failed`), when the store still takes a write.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from emraudit.store import Store, now_utc, scans


def recover(store: Store, reports_dir: Path) -> list[str]:
    """Under the writer lock: mark orphaned `running` scans `interrupted` and remove stale
    temporary report folders. Returns notes for the scan summary (counts only)."""
    from emraudit.lock import holds
    if not holds(store):
        raise RuntimeError("leftovers.recover runs only under the writer lock")
    with store.begin() as c:
        n = c.execute(scans.update().where(scans.c.status == "running").values(
            status="interrupted", finished=now_utc())).rowcount
    removed = remove_temp_reports(Path(reports_dir))
    notes = []
    if n:
        notes.append(f"{n} earlier scan(s) had been interrupted (marked so)")
    if removed:
        notes.append(f"{removed} temporary report folder(s) of interrupted scans removed")
    return notes


def remove_temp_reports(root: Path) -> int:
    """Remove `root/.tmp-*` (report folders being written, swapped out, or a `latest` link
    being replaced): only a writer holding the lock makes them, so under the lock any found
    is a leftover."""
    if not root.is_dir():
        return 0
    removed = 0
    for p in root.glob(".tmp-*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += not p.exists() and not p.is_symlink()
    return removed


@contextmanager
def marks_failed(store: Store, scan_id: str) -> Iterator[None]:
    """A scan stopped by an error ends `failed` (a KeyboardInterrupt: `interrupted`) rather
    than `running`; best effort: when the store is what failed, the next scan marks it."""
    try:
        yield
    except BaseException as exc:
        from emraudit.storage import as_storage_error
        storage = as_storage_error(exc) if isinstance(exc, Exception) else None
        # the error's kind, never its text (it may quote data); a disk's refusal in full
        error = str(storage) if storage is not None else type(exc).__name__
        try:
            with store.begin() as c:
                c.execute(scans.update().where(scans.c.scan_id == scan_id,
                                               scans.c.status == "running").values(
                    status="failed" if isinstance(exc, Exception) else "interrupted",
                    finished=now_utc(), summary=json.dumps({"error": error})))
        except Exception:  # noqa: BLE001 - the original error is what the user must see
            pass
        raise
