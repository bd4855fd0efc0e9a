"""Pools of forked worker processes, shared by detection and report writing.

Forked workers inherit the parent's loaded frames without copying them; where fork is not
available (not Linux) callers stay in one process.
"""

from __future__ import annotations

import multiprocessing as mp
import warnings
from concurrent.futures import ProcessPoolExecutor


def can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are forked from this process."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock: the only
        # other threads are pyarrow's idle pool, which re-creates itself after a fork
        warnings.simplefilter("ignore", DeprecationWarning)
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
