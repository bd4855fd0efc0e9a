"""The scan lock: a second scan on the same store stops with a clear message."""

import subprocess
import sys

import pytest

from emraudit.errors import LockedError
from emraudit.lock import force_unlock, scan_lock
from emraudit.store import Store, locks


def test_second_holder_refused_then_released(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    other = Store(store.url)
    with scan_lock(store):
        # simulate another live process holding it: rewrite the holder to our parent pid
        import os
        import socket
        with store.begin() as c:
            c.execute(locks.update().values(holder=f"{socket.gethostname()}:{os.getppid()}"))
        with pytest.raises(LockedError) as err:
            with scan_lock(other):
                pass
        assert "another writer holds this store (scan on host" in str(err.value)
        assert err.value.exit_code == 4          # DESIGN.md: a held lock is a conflict
        with pytest.raises(LockedError, match="not stale"):
            force_unlock(store)                  # its holder runs on this host
        assert force_unlock(store, force=True)
    with scan_lock(other):   # free again
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    code = ("import os, socket, sys\n"
            "from emraudit.store import Store, locks, now_utc\n"
            f"s = Store({store.url!r})\n"
            "with s.begin() as c:\n"
            "    c.execute(locks.insert().values(name='scan', holder=f'{socket.gethostname()}:"
            "{os.getpid()}', acquired=now_utc(), heartbeat=now_utc()))\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    with scan_lock(store):   # the holder's pid is gone: the lock is stale
        pass
