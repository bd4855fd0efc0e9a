"""Pools of forked worker processes, shared by detection and report writing.

Forked workers inherit the parent's loaded frames without copying them; where fork is not
available (not Linux) callers stay in one process. Workers die with their parent: a scan
killed with SIGKILL must not leave workers behind holding the store and gigabytes of events
(on Linux the kernel sends them SIGKILL when the parent dies, PR_SET_PDEATHSIG; elsewhere a
thread in each worker watches for the parent to go).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator

_PR_SET_PDEATHSIG = 1
# what the workers of forked_map inherit: set just before its pool forks
_JOB: Any = None


def can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are forked from this process and die with it."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock: the only
        # other threads are pyarrow's idle pool, which re-creates itself after a fork
        warnings.simplefilter("ignore", DeprecationWarning)
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))


def forked_map(fn: Callable[[Any, Any], Any], job: Any, items: Iterable,
               workers: int) -> Iterator:
    """fn(job, item) for each item, the results in order as they come, computed by
    `workers` processes forked now: they inherit `job`, and everything this process has
    built, without copying it. `fn` is pickled: a function of a module or a class."""
    yield from ForkedMap(fn, job, items, workers)


class ForkedMap:
    """forked_map begun at once: its workers fork and start on the items now, while this
    process goes on with other work; iterating gives the results in order (each waits for
    its own) and ends the pool. `close()` ends it early: items not begun are dropped, the
    running ones finish."""

    def __init__(self, fn: Callable[[Any, Any], Any], job: Any, items: Iterable,
                 workers: int):
        global _JOB
        _JOB = job
        gc.freeze()     # the workers' collector must not touch (and so copy) what they inherit
        try:
            self._pool = fork_pool(workers)
            try:
                # a fork pool starts every worker at the first submit: they have forked
                # (with _JOB) when map returns
                self._results = self._pool.map(_run_job, [(fn, item) for item in items])
            except BaseException:
                self.close()
                raise
        finally:
            _JOB = None
            gc.unfreeze()

    def __iter__(self) -> Iterator:
        try:
            yield from self._results
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class Forked:
    """fn(job) in one process forked now, beside what this process goes on doing: it
    inherits `job` and everything built so far without copying it (a snapshot: what this
    process changes afterwards, it does not see). `result()` waits and returns the value
    (pickled back through a file in `folder`); `cancel()` kills it. A failure in it is
    raised here as ForkedError with its traceback."""

    def __init__(self, fn: Callable[[Any], Any], job: Any, folder: str | os.PathLike):
        self._dir = tempfile.mkdtemp(prefix=".forked-", dir=folder)
        self._path = os.path.join(self._dir, "result.pkl")
        gc.freeze()     # as for forked_map: the child's collector leaves inherited objects
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)   # see fork_pool
                self._proc = mp.get_context("fork").Process(
                    target=_call_to_file, args=(fn, job, self._path, os.getpid()),
                    daemon=True)
                self._proc.start()
        finally:
            gc.unfreeze()

    def result(self) -> Any:
        self._proc.join()
        try:
            with open(self._path, "rb") as fh:
                ok, value = pickle.load(fh)
        except OSError:
            raise ForkedError(f"forked process died (exit code {self._proc.exitcode})") \
                from None
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        if not ok:
            raise ForkedError(value)
        return value

    def cancel(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        shutil.rmtree(self._dir, ignore_errors=True)


class ForkedError(RuntimeError):
    """What failed in a Forked process (its traceback as the message)."""


def _call_to_file(fn, job, path: str, parent: int) -> None:
    die_with_parent(parent)
    try:
        out = (True, fn(job))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        out = (False, "".join(traceback.format_exception(exc))[-8000:])
    with open(path + ".tmp", "wb") as fh:
        pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".tmp", path)


def _run_job(task: tuple) -> Any:
    fn, item = task
    return fn(_JOB, item)


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when `parent` dies (its pid passed at fork time, so a parent
    that died before this ran is caught too)."""
    if not _pdeathsig():
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                         name="emraudit-parent-watch").start()
    if os.getppid() != parent:          # the parent is gone already: reparented
        os._exit(1)


def _pdeathsig() -> bool:
    """Ask the kernel for SIGKILL when the parent dies (Linux prctl); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, every: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)
