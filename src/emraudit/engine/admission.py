"""When the local engine may start another worker: a memory budget for the process tree.

Workers are forked from the scan's process, so what they add is their private memory: the
partition's events, the detectors' work, the findings before they are packed. On most nights
two workers fit beside the scan's process; on a night where much stays unexplained the scan's
process grows (population statistics, packed findings) and two workers can push the tree
past what the machine has. Rather than let the kernel kill a worker (and lose its partition),
the executor starts another worker only when the tree's PSS now, plus the most one worker has
been seen to grow for each running worker and for the new one, stays within the budget. Before
any worker of a pass has ended its size is unknown: under a configured budget the second
worker waits for the first; under the default one a worker is assumed to add as much as the
scan's process holds. A worker always starts when none is running: the budget decides how
many run at once, never whether the scan runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from emraudit import memory

AUTO_SHARE = 0.7        # of the memory available when the scan starts, without a set limit


def default_limit_mb(configured: int | None) -> float | None:
    """The budget in force: the configured one, else 70% of what the system has available
    (None when the system does not say: no budget)."""
    if configured:
        return float(configured)
    avail = memory.available_mb()
    return AUTO_SHARE * avail if avail else None


@dataclass
class Admission:
    """The budget and what the workers have shown they add (one per executor map)."""

    limit_mb: float | None
    tree_mb: Callable[[Iterable[int]], float] = field(
        default=lambda pids: memory.pss_mb() + sum(memory.pss_mb(p) for p in pids))
    worker_mb: Callable[[int], float] = memory.private_mb
    # before any worker of the pass has ended, what a worker may add is not known: with a
    # budget the configuration sets, a second worker waits until one has ended (None); with
    # the default budget a worker is assumed to add as much as the scan's own process holds
    # (its RSS: its PSS halves once a child shares its pages)
    prior_mb: Callable[[], float] | None = memory.rss_mb
    grow_mb: float | None = None    # the most a finished worker grew above its start
    held_back: int = 0              # times a worker start waited for memory

    def admit(self, running: list[int]) -> bool:
        """May one more worker start beside the `running` ones (their pids)?"""
        if not self.limit_mb or not running:
            return True
        if self.grow_mb is None and self.prior_mb is None:
            self.held_back += 1
            return False
        est = self.prior_mb() if self.grow_mb is None else self.grow_mb
        held = [self.worker_mb(p) for p in running]
        # the tree without the workers' own memory, each running worker at the most it is
        # expected to reach (a worker just forked has not grown yet), and the new one
        base = self.tree_mb(running) - sum(held)
        if base + sum(max(h, est) for h in held) + est <= self.limit_mb:
            return True
        self.held_back += 1
        return False

    def finished(self, grew_mb: float | None) -> None:
        """A worker ended, having grown `grew_mb` above its own resident memory when it
        started (its peak, as it measured itself; None: it did not say)."""
        if grew_mb is not None:
            self.grow_mb = max(self.grow_mb or 0.0, float(grew_mb))
