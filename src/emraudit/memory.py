"""Handing freed memory back to the system between the stages of a scan.

A stage's peak stays in the process after the stage: glibc keeps freed pages in its arenas
and pyarrow's pool (mimalloc) keeps what Parquet reads and string columns released. A scan
that then forks detection workers carries that high-water mark through detection (the
workers share the pages, and the process tree's PSS counts them). On a 1M-event night the
scan's process held 0.81 GB after loading the reference tables and the stored baseline, of
which 0.28 GB was freed memory kept by the allocators: this gives it back.
"""

from __future__ import annotations

import ctypes
import gc
import resource


def release_memory() -> None:
    """Collect what was freed and hand the allocators' free pages back to the system."""
    gc.collect()
    try:
        import pyarrow as pa
        pa.default_memory_pool().release_unused()
    except (ImportError, AttributeError):      # an older pyarrow: nothing to ask
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):          # not glibc: nothing to hand back this way
        pass


def _proc_kb(path: str, fields: tuple[str, ...]) -> float | None:
    """The sum of some `Name:  N kB` lines of a /proc file, in MB (None when unreadable)."""
    try:
        with open(path, encoding="ascii") as fh:
            total = sum(int(line.split()[1]) for line in fh if line.split(":")[0] in fields)
    except (OSError, ValueError, IndexError):
        return None
    return total / 1024


def pss_mb(pid: int | str = "self") -> float:
    """A process's proportional set size in MB: its private pages plus its share of the pages
    it shares with the scan's other processes, so the PSS of a process tree adds up to what
    the tree really holds (0 when the system does not say)."""
    return _proc_kb(f"/proc/{pid}/smaps_rollup", ("Pss",)) or 0.0


def private_mb(pid: int | str = "self") -> float:
    """Memory only this process holds, in MB (what a forked worker adds to its parent)."""
    return _proc_kb(f"/proc/{pid}/smaps_rollup", ("Private_Clean", "Private_Dirty")) or 0.0


def available_mb() -> float | None:
    """Memory the system can still give without swapping (MemAvailable), in MB."""
    return _proc_kb("/proc/meminfo", ("MemAvailable",))


def rss_mb() -> float:
    """This process's resident memory now, in MB (0 when the system does not say)."""
    return _proc_kb("/proc/self/status", ("VmRSS",)) or 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    On Linux from VmHWM: ru_maxrss survives exec, so a scan started by a large parent (cron
    wrapper, benchmark) would report the parent's high-water mark as its own."""
    return _proc_kb("/proc/self/status", ("VmHWM",)) or \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
