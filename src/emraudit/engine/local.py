"""The local executor: each partition in a fresh forked process, at most `workers` at once.

A fresh process per partition keeps memory bounded by the largest partition, not by all
the partitions a long-lived worker has seen (allocators rarely give memory back). Workers
inherit the scan's small tables (reference snapshots, population statistics) without
copying them; each reads its own events from the lake and hands back its result as a
pickle in a scratch folder. A worker that dies (the kernel's OOM killer) is reported as
that partition's failure, not a hung scan. Another worker starts only while the process
tree stays within its memory budget (engine/admission.py). Without fork (not Linux)
partitions run one after another in the scan's own process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import warnings
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable

from emraudit import memory
from emraudit.engine.admission import Admission, default_limit_mb
from emraudit.engine.job import failure
from emraudit.forking import can_fork


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 2, scratch: str | None = None,
                 memory_limit_mb: int | None = None):
        self.workers = max(1, int(workers))
        self.scratch = scratch
        self.configured_mb = memory_limit_mb
        self.memory_limit_mb = default_limit_mb(memory_limit_mb)
        self.held_back = 0          # worker starts that waited for memory, over every map

    def map(self, fn: Callable[..., dict], job: Any, tasks: list,
            on_done: Callable[[int, dict], None] | None = None) -> list[dict]:
        """fn(job, task) for every task; results in task order (a failure as
        {"error": …})."""
        if not can_fork():
            out = []
            for i, t in enumerate(tasks):
                out.append(_call(fn, job, t))
                if on_done:
                    on_done(i, out[-1])
            return out
        # per map: a pass's workers do other work than the last pass's and grow otherwise
        # a configured budget: a second worker waits until the pass's first has shown its size
        admission = Admission(self.memory_limit_mb, prior_mb=None) if self.configured_mb \
            else Admission(self.memory_limit_mb)
        try:
            return list(_forked(fn, job, tasks, self.workers, self.scratch, on_done,
                                admission))
        finally:
            self.held_back += admission.held_back


def _call(fn, job, task) -> dict:
    try:
        return fn(job, task)
    except Exception as exc:  # noqa: BLE001 - reported as the partition's failure
        return failure(exc)


def _child(fn, job, task, path: str) -> None:
    start = memory.rss_mb()
    res = _call(fn, job, task)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)
    # how much this worker grew (its peak, as VmHWM says, above where it started): the
    # budget reads it at once, the result only after every worker has ended
    with open(path + ".grew", "w", encoding="ascii") as fh:
        fh.write(str(max(0.0, memory.peak_rss_mb() - start)))
    os.replace(tmp, path)


def _load(path: str) -> dict:
    with open(path, "rb") as fh:
        res = pickle.load(fh)
    os.unlink(path)
    return res


def _grew(path: str) -> float | None:
    try:
        with open(path + ".grew", encoding="ascii") as fh:
            return float(fh.read())
    except (OSError, ValueError):
        return None


def _forked(fn, job, tasks: list, workers: int, scratch: str | None, on_done,
            admission: Admission) -> Iterable[dict]:
    """Results are read once every worker has ended (unless `on_done` wants each at once):
    a partition's findings wait on disk, so the scan's process does not hold them beside
    the workers still running."""
    folder = tempfile.mkdtemp(prefix="emraudit-parts-", dir=scratch)
    ctx = mp.get_context("fork")
    results: list[dict | str | None] = [None] * len(tasks)
    running: dict[Any, tuple[Any, int, str]] = {}
    todo = list(enumerate(tasks))
    try:
        while todo or running:
            while todo and len(running) < workers and \
                    admission.admit([p.pid for p, *_ in running.values()]):
                i, task = todo.pop(0)
                path = os.path.join(folder, f"{i}.pkl")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)   # see forking.py
                    proc = ctx.Process(target=_child, args=(fn, job, task, path))
                    proc.start()
                running[proc.sentinel] = (proc, i, path)
            for sentinel in wait(list(running)):
                proc, i, path = running.pop(sentinel)
                proc.join()
                if proc.exitcode == 0 and os.path.exists(path):
                    admission.finished(_grew(path))
                    results[i] = _load(path) if on_done else path
                else:
                    results[i] = {"error": f"worker process died (exit code {proc.exitcode});"
                                  " out of memory? lower [engine] partition_events"}
                if on_done:
                    on_done(i, results[i])
        results = [_load(r) if isinstance(r, str) else r for r in results]
    finally:
        for proc, *_ in running.values():
            proc.kill()
            proc.join()
        shutil.rmtree(folder, ignore_errors=True)
    return results
