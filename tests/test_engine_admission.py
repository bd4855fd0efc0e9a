"""The local engine's memory budget (engine/admission.py): another worker starts only while
the process tree's PSS plus what one worker adds stays within the budget; a worker always
starts when none runs; partitions held back still run and give the same findings."""

from __future__ import annotations

import os
import time
from pathlib import Path

from emraudit import memory
from emraudit.engine import plan
from emraudit.engine.admission import AUTO_SHARE, Admission, default_limit_mb
from emraudit.engine.local import LocalExecutor


def budget(limit, tree=1000.0, workers=None, grow=0.0, prior=700.0):
    """An Admission whose measurements are given: tree PSS, each worker's private MB, the
    scan's own size (assumed for a worker before any has ended) and what a finished worker
    grew (None: none has ended yet)."""
    workers = workers or {}
    return Admission(limit, tree_mb=lambda pids: tree, worker_mb=lambda p: workers.get(p, 0.0),
                     prior_mb=lambda: prior, grow_mb=grow)


def test_no_budget_or_no_running_worker_always_admits():
    assert budget(None, tree=10**6).admit([1, 2])
    a = budget(100.0, tree=10**6, grow=10**6)
    assert a.admit([]) and a.held_back == 0          # the scan never stalls for memory


def test_admits_while_each_worker_at_its_expected_size_fits_and_counts_what_it_holds_back():
    """tree 1000 MB of which the running worker holds 500 privately: the rest (500) plus that
    worker at max(500, what a worker adds) plus the new one at what a worker adds."""
    assert budget(1500.0, tree=1000.0, workers={7: 500.0}, grow=250.0).admit([7])   # 1250
    assert budget(1500.0, tree=1000.0, workers={7: 500.0}, grow=500.0).admit([7])   # 1500
    a = budget(1500.0, tree=1000.0, workers={7: 500.0}, grow=500.5)                  # 1501
    assert not a.admit([7]) and not a.admit([7]) and a.held_back == 2


def test_a_worker_just_forked_is_expected_to_grow_like_the_others():
    # 990 + 600 (the running one, still at 10 MB, will reach 600) + 600 (the new one)
    assert not budget(2189.0, tree=1000.0, workers={7: 10.0}, grow=600.0).admit([7])
    assert budget(2190.0, tree=1000.0, workers={7: 10.0}, grow=600.0).admit([7])
    # two running: 600 + max(100, 500) + max(900, 500) + 500
    assert budget(2500.0, tree=1600.0, workers={7: 100.0, 8: 900.0}, grow=500.0).admit([7, 8])
    assert not budget(2499.0, tree=1600.0, workers={7: 100.0, 8: 900.0},
                      grow=500.0).admit([7, 8])


def test_before_any_worker_ended_a_worker_is_assumed_to_add_what_the_scan_holds():
    # 950 + 700 + 700: the scan's own 700 MB stands for each worker until one has ended
    assert budget(2350.0, tree=1000.0, workers={7: 50.0}, grow=None, prior=700.0).admit([7])
    a = budget(2349.0, tree=1000.0, workers={7: 50.0}, grow=None, prior=700.0)
    assert not a.admit([7])                           # the second waits for the first
    a = budget(2349.0, tree=1000.0, workers={7: 50.0}, grow=300.0, prior=700.0)
    assert a.admit([7])                               # once known, what was seen counts


def test_a_configured_budget_lets_no_second_worker_start_before_one_has_ended():
    """Without a worker's size, a set budget is not gambled on a guess."""
    a = Admission(10**6, tree_mb=lambda pids: 10.0, worker_mb=lambda p: 0.0, prior_mb=None)
    assert a.admit([]) and not a.admit([7]) and a.held_back == 1
    a.finished(40.0)
    assert a.admit([7])


def test_the_executor_with_a_configured_budget_runs_its_first_two_one_after_the_other():
    ex = LocalExecutor(2, memory_limit_mb=10**7)      # plenty, but set: the first pair waits
    out = ex.map(_span, None, [plan.Task(r, 2, ("x",)) for r in range(2)])
    (a0, a1), (b0, b1) = sorted(o["span"] for o in out)
    assert a1 <= b0 and ex.held_back == 1


def test_a_finished_worker_teaches_how_much_it_grew():
    a = budget(5000.0, grow=None)
    a.finished(None)                                  # a worker that died says nothing
    assert a.grow_mb is None
    a.finished(500.0)
    assert a.grow_mb == 500.0
    a.finished(300.0)                                 # smaller: the most is kept
    assert a.grow_mb == 500.0


def _grows(job, task):
    """A worker that holds about 60 MB more at its peak than when it started."""
    block = bytearray(60 * 2**20)
    block[::4096] = b"x" * len(block[::4096])         # touch every page
    return {"n": len(block)}


def test_the_executor_learns_what_its_workers_grew():
    seen: list[float | None] = []
    orig = Admission.finished

    def spy(self, grew):
        seen.append(grew)
        orig(self, grew)
    try:
        Admission.finished = spy
        LocalExecutor(2).map(_grows, None, [plan.Task(r, 2, ("x",)) for r in range(2)])
    finally:
        Admission.finished = orig
    assert len(seen) == 2 and all(55 <= g <= 200 for g in seen), seen


def test_default_budget_is_the_configured_one_else_a_share_of_what_is_available(monkeypatch):
    assert default_limit_mb(3000) == 3000.0
    monkeypatch.setattr(memory, "available_mb", lambda: 10_000.0)
    assert default_limit_mb(None) == AUTO_SHARE * 10_000.0 == 7000.0
    monkeypatch.setattr(memory, "available_mb", lambda: None)
    assert default_limit_mb(None) is None


def test_this_process_has_a_pss_and_private_memory():
    """The measurements read /proc (Linux): a Python process holds tens of MB."""
    assert memory.pss_mb() > 10 and memory.private_mb() > 10 and memory.rss_mb() > 10
    assert memory.pss_mb(999_999_999) == 0.0          # a process that is gone


def _span(job, task):
    t0 = time.time()
    time.sleep(0.3)
    return {"span": (t0, time.time()), "pid": os.getpid()}


def _meet(folder: Path, task):
    """Each of two tasks says it started and waits (at most 20 s) for the other."""
    (folder / f"started-{task.index}").touch()
    other = folder / f"started-{1 - task.index}"
    deadline = time.time() + 20
    while not other.exists() and time.time() < deadline:
        time.sleep(0.01)
    return {"met": other.exists()}


def test_over_budget_partitions_run_one_at_a_time_and_all_finish():
    tasks = [plan.Task(r, 3, ("x",)) for r in range(3)]
    ex = LocalExecutor(2, memory_limit_mb=1)          # any tree is over 1 MB
    out = ex.map(_span, None, tasks)
    spans = sorted(o["span"] for o in out)
    assert len(spans) == 3 and len({o["pid"] for o in out}) == 3
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))    # never two at once
    assert ex.held_back >= 2


def test_within_the_default_budget_two_workers_run_together(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_mb", lambda: 10.0**7)
    ex = LocalExecutor(2)
    out = ex.map(_meet, tmp_path, [plan.Task(r, 2, ("x",)) for r in range(2)])
    assert [o["met"] for o in out] == [True, True] and ex.held_back == 0


READ_AT: list[float] = []


class _Marker:
    """Records when the scan's process unpickles it (a partition's result being read)."""

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        READ_AT.append(time.time())


def _finds(job, task):
    time.sleep(0.2 * task.index)
    return {"found": _Marker(), "ended": time.time(), "peak_mb": 100.0}


def test_no_result_is_read_while_a_worker_still_runs():
    """A partition's findings wait on disk until every worker has ended: the scan's process
    does not hold the findings of finished partitions beside the workers still running."""
    READ_AT.clear()
    ex = LocalExecutor(2)
    out = ex.map(_finds, None, [plan.Task(r, 4, ("x",)) for r in range(4)])
    assert len(READ_AT) == 4 and all(o["peak_mb"] == 100.0 for o in out)
    assert min(READ_AT) >= max(o["ended"] for o in out)


def test_with_on_done_each_result_is_handed_over_as_it_ends():
    READ_AT.clear()
    seen: list[int] = []
    LocalExecutor(1).map(_finds, None, [plan.Task(r, 2, ("x",)) for r in range(2)],
                         on_done=lambda i, r: seen.append((i, len(READ_AT))))
    assert seen == [(0, 1), (1, 2)]
