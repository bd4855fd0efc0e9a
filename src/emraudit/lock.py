"""The store's writer lock: one writing command at a time on a store.

Every command that changes the state database or the lake (`scan`, `ingest`, `allow add`,
`allow remove`, `report scan`, …) holds it; two of them at once would each see the other's
half-written work as missing and store events twice (issue 17). A row in the `locks` table
names the holder (host, pid, command). A second writer finds it and stops with a clear
message (LockedError, exit code 4: a conflict). A holder killed with SIGKILL leaves its row
behind: on the same host a dead pid — or a pid reused by a process started after the lock was
taken — is detected and the lock taken over; from another host a lock whose heartbeat is
older than `stale_after` is taken over. Taking over is a compare-and-delete of the row that
was seen, so two processes that both find a stale row cannot both take the lock.

The lock is re-entrant within a process (`run_scan` ingests under its own lock). Reviewers'
dispositions (`cases resolve`) do not take it: each is one short transaction guarded by the
case's version, and must not wait for a nightly scan.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Iterator

import sqlalchemy as sa

from emraudit.errors import LockedError
from emraudit.store import Store, locks, now_utc

WRITER = "scan"        # the one writer lock (its name predates the other writers)

# (store url, lock name) -> how many times this process holds it
_held: dict[tuple[str, str], int] = {}
_held_guard = threading.Lock()


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _started(pid: int) -> datetime | None:
    """When a local process started (Linux /proc), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])              # starttime, field 22 of stat
        with open("/proc/stat", "rb") as fh:
            boot = next(int(ln.split()[1]) for ln in fh if ln.startswith(b"btime"))
        from datetime import timezone
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), timezone.utc)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(holder: str, acquired: datetime | None = None) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname():
        return True   # cannot tell; rely on the heartbeat
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    started = _started(int(pid))
    if started is not None and acquired is not None and \
            started > acquired + timedelta(seconds=2):
        return False     # the pid now belongs to a process started after the lock was taken
    return True


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=now_utc().tzinfo)


def describe(row) -> str:
    """'scan on host h, pid 123, since 2026-09-07 02:00:00 UTC' for messages."""
    host, _, pid = row.holder.rpartition(":")
    what = getattr(row, "command", None) or "emraudit command"
    return f"{what} on host {host}, pid {pid}, since {_utc(row.acquired):%Y-%m-%d %H:%M:%S} UTC"


@contextmanager
def writer_lock(store: Store, command: str, name: str = WRITER,
                stale_after: timedelta = timedelta(hours=12)) -> Iterator[None]:
    """Hold the store's writer lock for `command` (its name, shown to a refused writer)."""
    key = (store.url, name)
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            row = current_holder(store, name)
            if row is None or row.holder != _me():
                # taken from this process meanwhile (`unlock --force`): go no further
                raise LockedError(f"another writer holds this store ({describe(row)}); this "
                                  "process's lock was removed while it ran" if row else
                                  "this process's writer lock was removed while it ran "
                                  "(`emraudit unlock --force`?); run the command again")
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    _acquire(store, command, name, stale_after)
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        with store.begin() as c:
            c.execute(locks.delete().where(sa.and_(locks.c.name == name,
                                                   locks.c.holder == _me())))


def _acquire(store: Store, command: str, name: str, stale_after: timedelta) -> None:
    me = _me()
    now = now_utc()
    with store.begin() as c:
        row = c.execute(sa.select(locks).where(locks.c.name == name)).first()
        if row is not None:
            hb = _utc(row.heartbeat)
            if row.holder != me and now - hb < stale_after and \
                    _alive(row.holder, _utc(row.acquired)):
                raise LockedError(
                    f"another writer holds this store ({describe(row)}); wait for it to "
                    "finish, or remove a stale lock with `emraudit unlock --config FILE`")
            # compare-and-delete: only the row seen, so a racing writer's fresh lock stays
            c.execute(locks.delete().where(sa.and_(locks.c.name == name,
                                                   locks.c.holder == row.holder,
                                                   locks.c.acquired == row.acquired)))
    try:
        with store.begin() as c:
            c.execute(locks.insert().values(name=name, holder=me, acquired=now, heartbeat=now,
                                            command=command[:64]))
    except sa.exc.IntegrityError:
        raise LockedError("another writer took the lock on this store a moment ago; wait "
                          "for it to finish") from None


def scan_lock(store: Store, name: str = WRITER,
              stale_after: timedelta = timedelta(hours=12)):
    """The writer lock held by a scan (the name kept for callers of the first version)."""
    return writer_lock(store, "scan", name, stale_after)


def holds(store: Store, name: str = WRITER) -> bool:
    """Whether this process holds the lock (for code that must only run under it)."""
    with _held_guard:
        return bool(_held.get((store.url, name)))


def heartbeat(store: Store, name: str = WRITER) -> None:
    with store.begin() as c:
        c.execute(locks.update().where(sa.and_(locks.c.name == name, locks.c.holder == _me()))
                  .values(heartbeat=now_utc()))


def current_holder(store: Store, name: str = WRITER):
    with store.engine.connect() as c:
        return c.execute(sa.select(locks).where(locks.c.name == name)).first()


def force_unlock(store: Store, name: str = WRITER, *, force: bool = False) -> bool:
    """Remove the lock row; a holder alive on this host is refused unless `force`."""
    row = current_holder(store, name)
    if row is None:
        return False
    if not force and row.holder != _me() and _alive(row.holder, _utc(row.acquired)) \
            and row.holder.rpartition(":")[0] == socket.gethostname():
        raise LockedError(f"the lock is held by a running process ({describe(row)}); it is "
                          "not stale. Stop that process, or use --force if you are sure")
    with store.begin() as c:
        return c.execute(locks.delete().where(sa.and_(
            locks.c.name == name, locks.c.holder == row.holder))).rowcount > 0


# the lake's commit point: batches of any writer commit one at a time (see ingest)
LAKE_COMMIT = "lake-commit"


def ensure_commit_point(store: Store) -> None:
    """The row `serialize_commits` updates, made once per store."""
    with store.engine.connect() as c:
        if c.execute(sa.select(locks.c.name).where(locks.c.name == LAKE_COMMIT)).first():
            return
    now = now_utc()
    try:
        with store.begin() as c:
            c.execute(locks.insert().values(name=LAKE_COMMIT, holder="lake", acquired=now,
                                            heartbeat=now, command="commit point"))
    except sa.exc.IntegrityError:
        pass          # made by another writer meanwhile


def serialize_commits(conn: sa.Connection) -> None:
    """First statement of a transaction that must not interleave with another writer's:
    an update of one shared row (the database's write lock on SQLite, a row lock on
    PostgreSQL), held until the transaction ends. Needs `ensure_commit_point` once."""
    conn.execute(locks.update().where(locks.c.name == LAKE_COMMIT).values(heartbeat=now_utc()))
