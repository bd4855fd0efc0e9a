"""How many partitions a scan divides its users into, and which detectors each pass runs.

Partitions are users whose stable hash modulo n is r (`lake.in_partition`); n is a power of
two, so each partition is whole buckets of the lake (n <= BUCKETS) or part of one bucket
(n > BUCKETS): a partition's read is a read of its own files.
"""

from __future__ import annotations

from dataclasses import dataclass

from emraudit.detectors.base import Detector
from emraudit.detectors.profile import DetectorSetting

MAX_PARTITIONS = 4096


@dataclass(frozen=True)
class Task:
    """One partition's work in a pass: users of partition (index, count) — every user when
    count is 1 — and the detectors it runs."""

    index: int
    count: int
    detectors: tuple[str, ...]

    @property
    def part(self) -> tuple[int, int] | None:
        return None if self.count <= 1 else (self.index, self.count)

    @property
    def label(self) -> str:
        return f"partition {self.index + 1}/{self.count}"


def partition_count(events: int, per_partition: int) -> int:
    """The smallest power of two that keeps partitions at most `per_partition` events."""
    n = 1
    while n < MAX_PARTITIONS and events > n * max(per_partition, 1):
        n *= 2
    return n


def split_detectors(settings: dict[str, DetectorSetting], runnable: list[str]
                    ) -> tuple[list[str], list[str]]:
    """(detectors that divide by user, detectors that need every event at once)."""
    divided = [d for d in runnable if settings[d].cls.partition_key in ("user", "user_day")]
    whole = [d for d in runnable if d not in set(divided)]
    return divided, whole


def has_population_part(setting: DetectorSetting) -> bool:
    """Does the detector compute a part of the population statistics per partition?"""
    return setting.cls.population_part is not Detector.population_part


def reads_events(settings: dict[str, DetectorSetting], task: Task) -> bool:
    """Does a task need events? Not one over every user whose detectors read only the
    reference tables and what the population pass gathered (the rights detectors that
    judge grants): it loads none instead of the whole night."""
    if task.count > 1:
        return True
    return any("access_log" in settings[d].cls.needs + settings[d].cls.uses
               for d in task.detectors)


def tasks(settings: dict[str, DetectorSetting], runnable: list[str], count: int
          ) -> list[Task]:
    """The tasks of the detection pass: each partition with the divided detectors, and one
    task over every event for the others (patient-keyed and global detectors)."""
    divided, whole = split_detectors(settings, runnable)
    out = [Task(r, count, tuple(divided)) for r in range(count)] if divided else []
    if whole:
        out.append(Task(0, 1, tuple(whole)))
    return out
