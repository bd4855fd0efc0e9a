"""The writer lock as two processes see it (issue 23): two Store objects on one database, a
holder on another host (alive as far as we can tell: only its heartbeat can retire it), a
stale heartbeat, a live local holder, a dead or reused pid, re-entry and release.

The "other live process" is a child we start (sleep), never our parent: a lock test must not
send signals to the process running the tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from emraudit.errors import LockedError
from emraudit.lock import (
    LAKE_COMMIT, current_holder, describe, ensure_commit_point, force_unlock, heartbeat,
    holds, serialize_commits, writer_lock,
)
from emraudit.store import Store, locks, now_utc


@pytest.fixture
def stores(tmp_path):
    a = Store(f"sqlite:///{tmp_path / 'state.db'}")
    b = Store(f"sqlite:///{tmp_path / 'state.db'}")
    assert a is not b
    return a, b


@pytest.fixture
def live_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child.pid
    child.kill()
    child.wait()


def _plant(store, holder, *, age=timedelta(0), beat_age=None, command="scan"):
    now = now_utc()
    with store.begin() as c:
        c.execute(locks.insert().values(
            name="scan", holder=holder, acquired=now - age,
            heartbeat=now - (age if beat_age is None else beat_age), command=command))


def _holder(store):
    row = current_holder(store)
    return None if row is None else row.holder


ME = f"{socket.gethostname()}:{os.getpid()}"


def test_one_store_holds_the_other_is_refused_then_gets_it(stores, live_pid):
    a, b = stores
    with writer_lock(a, "ingest"):
        assert holds(a) and holds(b)        # one process: the same holder, by url
        assert _holder(b) == ME
        assert current_holder(b).command == "ingest"
        # the row now names another live process of this host
        with a.begin() as c:
            c.execute(locks.update().values(holder=f"{socket.gethostname()}:{live_pid}"))
        with pytest.raises(LockedError) as err:
            with writer_lock(b, "allow add"):
                pass
        assert err.value.exit_code == 4
        assert f"ingest on host {socket.gethostname()}, pid {live_pid}" in str(err.value)
        with a.begin() as c:
            c.execute(locks.update().values(holder=ME))
    assert _holder(a) is None and not holds(a)
    with writer_lock(b, "scan"):
        assert _holder(a) == ME
    assert _holder(b) is None


def test_a_holder_on_another_host_with_a_fresh_heartbeat_holds(stores):
    a, b = stores
    _plant(a, "ward-server-2:1", age=timedelta(hours=30), beat_age=timedelta(minutes=5))
    with pytest.raises(LockedError) as err:
        with writer_lock(b, "allow add"):
            pass
    assert err.value.exit_code == 4
    assert str(err.value) == (
        "another writer holds this store (scan on host ward-server-2, pid 1, since "
        f"{current_holder(a).acquired:%Y-%m-%d %H:%M:%S} UTC); wait for it to finish, or "
        "remove a stale lock with `emraudit unlock --config FILE`")
    assert _holder(a) == "ward-server-2:1"
    # its heartbeat just under the limit: still held
    with a.begin() as c:
        c.execute(locks.update().values(heartbeat=now_utc() - timedelta(hours=11, minutes=59)))
    with pytest.raises(LockedError):
        with writer_lock(b, "scan"):
            pass
    # a shorter limit retires it
    with writer_lock(b, "scan", stale_after=timedelta(hours=11)):
        assert _holder(a) == ME


def test_a_stale_heartbeat_on_another_host_is_taken_over(stores):
    a, b = stores
    _plant(a, "ward-server-2:1", age=timedelta(hours=13))
    with writer_lock(b, "scan"):
        assert _holder(a) == ME
        assert current_holder(a).command == "scan"
    assert _holder(a) is None


def test_a_live_holder_here_holds_even_with_an_old_heartbeat_until_stale(stores, live_pid):
    a, b = stores
    me = socket.gethostname()
    _plant(a, f"{me}:{live_pid}", beat_age=timedelta(hours=1))
    with pytest.raises(LockedError):
        with writer_lock(b, "scan"):
            pass
    # unlock refuses a live local holder, unless forced
    with pytest.raises(LockedError, match="not stale"):
        force_unlock(b)
    assert _holder(a) == f"{me}:{live_pid}"
    assert force_unlock(b, force=True) is True
    assert _holder(a) is None
    assert force_unlock(b) is False                      # nothing left to remove


def test_unlock_removes_another_hosts_lock_without_force(stores):
    a, b = stores
    _plant(a, "ward-server-2:1")
    assert force_unlock(b) is True
    assert _holder(a) is None


def test_a_dead_pid_here_does_not_hold(stores):
    a, b = stores
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    _plant(a, f"{socket.gethostname()}:{int(done.stdout)}")
    with writer_lock(b, "scan"):
        assert _holder(a) == ME
    # unlock of a dead local holder needs no force
    _plant(a, f"{socket.gethostname()}:{int(done.stdout)}")
    assert force_unlock(b) is True


def test_a_pid_reused_after_the_lock_was_taken_does_not_hold(stores, live_pid):
    a, b = stores
    # the lock was taken an hour before this live process started: the pid was reused
    _plant(a, f"{socket.gethostname()}:{live_pid}", age=timedelta(hours=1),
           beat_age=timedelta(0))
    with a.begin() as c:
        c.execute(locks.update().values(acquired=now_utc() - timedelta(hours=1)))
    with writer_lock(b, "scan"):
        assert _holder(a) == ME


def test_a_holder_started_just_before_the_lock_holds(stores, live_pid):
    a, b = stores
    # acquired now: the live process started before it, so the pid is the holder
    _plant(a, f"{socket.gethostname()}:{live_pid}")
    with pytest.raises(LockedError):
        with writer_lock(b, "scan"):
            pass


def test_re_entry_counts_and_notices_removal(stores):
    a, b = stores
    with writer_lock(a, "scan"):
        with writer_lock(a, "ingest"):           # re-entrant: no second row, no refusal
            assert holds(a)
            with writer_lock(a, "ingest"):
                pass
            assert holds(a)
        assert holds(a) and _holder(a) == ME     # the outer hold is still in force
        assert force_unlock(b, force=True)
        with pytest.raises(LockedError, match="removed while it ran"):
            with writer_lock(a, "ingest"):
                pass
        _plant(a, "ward-server-2:1")
        with pytest.raises(LockedError, match="host ward-server-2"):
            with writer_lock(a, "ingest"):
                pass
        with a.begin() as c:
            c.execute(locks.delete())
    assert not holds(a)


def test_release_removes_only_our_row(stores):
    a, b = stores
    with writer_lock(a, "scan"):
        with a.begin() as c:                       # taken from us meanwhile
            c.execute(locks.update().values(holder="ward-server-2:1"))
    assert _holder(b) == "ward-server-2:1"


def test_heartbeat_moves_only_our_row(stores):
    a, b = stores
    with writer_lock(a, "scan"):
        with a.begin() as c:
            c.execute(locks.update().values(heartbeat=now_utc() - timedelta(hours=5)))
        heartbeat(b)
        assert now_utc() - current_holder(a).heartbeat.replace(tzinfo=now_utc().tzinfo) \
            < timedelta(minutes=1)
    _plant(a, "ward-server-2:1", beat_age=timedelta(hours=5))
    heartbeat(b)
    beat = current_holder(a).heartbeat.replace(tzinfo=now_utc().tzinfo)
    assert now_utc() - beat > timedelta(hours=4)


def test_describe_names_command_host_pid_and_time(stores):
    a, _ = stores
    with a.begin() as c:
        c.execute(locks.insert().values(name="scan", holder="h-1:42",
                                        acquired=now_utc().replace(year=2026, month=9, day=7,
                                                                   hour=2, minute=0, second=0,
                                                                   microsecond=0),
                                        heartbeat=now_utc(), command=None))
    assert describe(current_holder(a)) == \
        "emraudit command on host h-1, pid 42, since 2026-09-07 02:00:00 UTC"


def test_a_long_command_name_is_cut_to_64(stores):
    a, _ = stores
    with writer_lock(a, "x" * 100):
        assert current_holder(a).command == "x" * 64


def test_commit_point_made_once(stores):
    a, b = stores
    ensure_commit_point(a)
    ensure_commit_point(b)
    with a.engine.connect() as c:
        rows = c.execute(sa.select(locks).where(locks.c.name == LAKE_COMMIT)).all()
    assert len(rows) == 1 and rows[0].holder == "lake"
    with b.begin() as c:
        serialize_commits(c)
    # the commit point is not the writer lock
    with writer_lock(a, "scan"):
        assert _holder(b) == ME
