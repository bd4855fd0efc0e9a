"""The scan lock: two scans of the same store never run at once.

A row in the `locks` table names the holder (host and pid). A second scan finds it and stops
with a clear message (LockedError, exit code 3). A holder killed with SIGKILL leaves its row
behind: on the same host a dead pid is detected and the lock taken over; from another host a
lock whose heartbeat is older than `stale_after` is taken over.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import sqlalchemy as sa

from emraudit.errors import LockedError
from emraudit.store import Store, locks, now_utc


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname():
        return True   # cannot tell; rely on the heartbeat
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@contextmanager
def scan_lock(store: Store, name: str = "scan",
              stale_after: timedelta = timedelta(hours=12)) -> Iterator[None]:
    me = _me()
    now = now_utc()
    with store.begin() as c:
        row = c.execute(sa.select(locks).where(locks.c.name == name)).first()
        if row is not None:
            hb = row.heartbeat if row.heartbeat.tzinfo else row.heartbeat.replace(
                tzinfo=now.tzinfo)
            if _alive(row.holder) and now - hb < stale_after and row.holder != me:
                raise LockedError(
                    f"another scan holds the lock on this store since "
                    f"{row.acquired:%Y-%m-%d %H:%M:%S} UTC ({row.holder}); "
                    "wait for it to finish, or remove a stale lock with "
                    "`emraudit unlock --config FILE`")
            c.execute(locks.delete().where(locks.c.name == name))
    try:
        with store.begin() as c:
            c.execute(locks.insert().values(name=name, holder=me, acquired=now, heartbeat=now))
    except sa.exc.IntegrityError:
        raise LockedError("another scan took the lock on this store a moment ago; "
                          "wait for it to finish") from None
    try:
        yield
    finally:
        with store.begin() as c:
            c.execute(locks.delete().where(sa.and_(locks.c.name == name,
                                                   locks.c.holder == me)))


def heartbeat(store: Store, name: str = "scan") -> None:
    with store.begin() as c:
        c.execute(locks.update().where(sa.and_(locks.c.name == name, locks.c.holder == _me()))
                  .values(heartbeat=now_utc()))


def force_unlock(store: Store, name: str = "scan") -> bool:
    with store.begin() as c:
        return c.execute(locks.delete().where(locks.c.name == name)).rowcount > 0
