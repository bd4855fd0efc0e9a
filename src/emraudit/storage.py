"""Clean failures of the disk and the store: writable folders checked before any work, and a
full or read-only disk reported in one line instead of a traceback.

A scan or an ingest that cannot write its reports, its lake or its store should fail before it
reads a row, not after detection has run. When the disk fills half-way, nothing is lost:
batches, findings and reports are committed atomically (a temporary name renamed, one
transaction), so what was committed stays and the rest is redone by the next run; this
module only turns the operating system's or the database's error into a message saying
that (StorageError, exit code 2).
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from emraudit.errors import UserError

# errors of the place written to, not of emraudit: the operator fixes them
_DISK = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
         errno.EPERM: "permission denied", errno.EFBIG: "the file is too large for the disk",
         errno.ENOTDIR: "a part of the path is a file, not a folder",
         errno.EIO: "input/output error"}
# SQLite's words for the same (as SQLAlchemy's OperationalError carries them)
_DB = (("disk is full", "no space left on the device"),
       ("readonly database", "the store is read-only"),
       ("unable to open database file", "the store's file cannot be opened for writing"),
       ("disk i/o error", "input/output error"),
       ("no space left", "no space left on the device"))

AFTER = ("what was committed before stays and the rest is redone: free the space or fix "
         "the permissions, then run the command again")


class StorageError(UserError):
    """The disk or the store refused a write (full, read-only, no permission)."""


def as_storage_error(exc: BaseException) -> StorageError | None:
    """`exc` as a StorageError when it is the disk's or the store's refusal, else None (a
    bug keeps its traceback)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK:
        place = f" while writing {exc.filename}" if exc.filename else ""   # pyarrow names none
        return StorageError(f"{_DISK[exc.errno]}{place}; {AFTER}")
    try:
        import sqlalchemy as sa
    except ImportError:         # pragma: no cover - a dependency
        return None
    if isinstance(exc, sa.exc.OperationalError):
        text = str(getattr(exc, "orig", exc)).lower()
        for needle, words in _DB:
            if needle in text:
                return StorageError(f"{words} (the state database refused a write); {AFTER}")
    return None


def probe(folder: Path, what: str, key: str | None = None, file: str | None = None) -> None:
    """Make `folder` if missing and write (then remove) a small file in it; StorageError
    naming the folder when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        test = folder / f".tmp-probe-{secrets.token_hex(4)}"
        fd = os.open(test, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"emraudit")
            os.fsync(fd)
        finally:
            os.close(fd)
            test.unlink(missing_ok=True)
    except OSError as exc:
        reason = _DISK.get(exc.errno, exc.strerror or str(exc))
        raise StorageError(f"{what} {folder} is not writable: {reason}", key=key,
                           file=file) from None


def check_writable(config, *, reports: bool) -> None:
    """Before ingesting: the lake (and, for a scan, the reports folder) take a file, and a
    SQLite store's folder too (its journal lives beside it). The store itself proves it is
    writable when the writer lock is taken."""
    cfg_file = str(config.path)
    if reports:
        probe(config.reports_dir, "the reports folder", "reports.dir", cfg_file)
    probe(config.lake_dir, "the event lake's folder", "store.lake", cfg_file)
    url = config.store_url
    if url.startswith("sqlite:///") and ":memory:" not in url and "uri=true" not in url:
        from sqlalchemy.engine import make_url
        db = make_url(url).database
        if db:
            probe(Path(db).resolve().parent, "the store's folder", "store.url", cfg_file)
