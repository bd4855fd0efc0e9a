"""A partitioned detection from start to end: plan, pass one, the population, pass two.

The scan's own process holds the reference tables, the stored baseline and the population
statistics, never the events. It returns what `detection.run_detectors` returns (findings
in the declared order, one status per detector) and a context without events whose outputs
and notes are those of the whole population, so the rest of the scan is the same whichever
way detection ran.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from emraudit.config import Config
from emraudit.detection import NOT_FOR_DETECTORS, DetectorStatus, _day, loaded_start
from emraudit.detectors.base import REFERENCE_WORK, SHARED_WORK, Context, empty_findings
from emraudit.detectors.profile import DetectorSetting, context_args
from emraudit.engine import plan
from emraudit.engine.job import ScanJob, combine_population, pass_one, pass_two, \
    remember_refs
from emraudit.feeds import held_outputs
from emraudit.lake import Lake
from emraudit.memory import peak_rss_mb, release_memory, rss_mb
from emraudit.model import REFERENCE_TABLES, code_event_columns, empty_table
from emraudit.state import load_state
from emraudit.store import Store

# outputs a partition leaves that are put together from every partition
PARTITION_OUTPUTS = ("feed_gap_accesses",)


@dataclass
class Detection:
    found: pd.DataFrame
    status: dict
    ctx: Context                       # no events: refs, outputs, notes, population
    partitions: int = 1
    executor: str = "local"
    timings: dict[str, float] = field(default_factory=dict)
    peak_mb: float = 0.0               # the largest worker's peak
    # the scan's own process after each phase: its resident memory then and its high-water
    # mark so far (MB), to tell which phase a parent's growth belongs to
    parent_mb: dict[str, dict[str, float]] = field(default_factory=dict)


def parent_context(config: Config, store: Store, lake: Lake, window_start: pd.Timestamp,
                   window_end: pd.Timestamp, settings: dict[str, DetectorSetting],
                   days: list[str] | None) -> tuple[Context, ScanJob, dict]:
    """The scan process's context (reference tables and stored baseline, no events) and the
    job every partition starts from; also the history of the loaded days."""
    tz = config.tz
    committed = store.committed_runs()
    start = loaded_start(config, window_start, settings)
    files = {t: lake.snapshot_file(t, committed) for t in REFERENCE_TABLES}
    refs = {t: (lake.read_snapshot_file(f) if f is not None else None)
            for t, f in files.items()}
    ctx = Context(events=code_event_columns(empty_table("access_log", tz)).assign(
                      in_window=pd.Series(dtype=bool)),
                  window_start=window_start, window_end=window_end, tz=tz,
                  **_context_args(config, settings), **refs)
    ctx.baseline = load_state(store, settings, _day(start, tz), _day(window_end, tz), tz)
    hist = lake.history(committed, start, window_end)
    ctx.population["history"] = hist
    ref_files = {t: (str(f) if f is not None else None) for t, f in files.items()}
    remember_refs(refs, ref_files)
    job = ScanJob(lake_root=str(lake.root), tz=tz, committed=frozenset(committed),
                  start=start, window_start=window_start, window_end=window_end, days=days,
                  settings=settings, context=_context_args(config, settings),
                  ref_files=ref_files, exclude=tuple(NOT_FOR_DETECTORS))
    return ctx, job, hist


def _context_args(config: Config, settings: dict[str, DetectorSetting]) -> dict:
    return {"office_hours": tuple(config.site.office_hours),
            "workdays": tuple(config.site.workdays),
            **context_args(settings),
            "site_name": config.site.name, "site_id": config.site.id,
            "networks": tuple(config.site.networks)}


def detect(config: Config, store: Store, lake: Lake, window_start: pd.Timestamp,
           window_end: pd.Timestamp, settings: dict[str, DetectorSetting],
           days: list[str] | None, executor, *, per_partition: int | None = None,
           on_detector: Callable | None = None) -> Detection:
    """Run every enabled detector over the partitions with `executor` (local or spark)."""
    t0 = time.perf_counter()
    ctx, job, hist = parent_context(config, store, lake, window_start, window_end, settings,
                                    days)
    status: dict[str, DetectorStatus] = {}
    runnable: list[str] = []
    for det_id, st in settings.items():
        if not st.enabled:
            status[det_id] = DetectorStatus(det_id, "disabled")
        elif any(ctx.table(t) is None for t in st.cls.needs if t != "access_log"):
            missing = [t for t in st.cls.needs if t != "access_log" and ctx.table(t) is None]
            status[det_id] = DetectorStatus(
                det_id, "skipped", message=f"needs table {', '.join(missing)} (not loaded)")
        else:
            runnable.append(det_id)
    for det_id in runnable:
        settings[det_id].instantiate().population_prepare(ctx)
    for name in sorted({n for d in runnable for n in settings[d].cls.shares
                        if n in REFERENCE_WORK}):
        SHARED_WORK[name](ctx)                      # from the reference tables alone, once
    job.memo = dict(ctx.memo)
    job.population = dict(ctx.population)
    release_memory()            # before the workers fork: what loading freed is not shared
    if executor.name == "local":
        job.spill_dir = tempfile.mkdtemp(prefix="emraudit-spill-", dir=config.engine.scratch)
    try:
        return _passes(config, settings, executor, ctx, job, hist, status, runnable,
                       per_partition, on_detector, t0)
    finally:
        if job.spill_dir:
            shutil.rmtree(job.spill_dir, ignore_errors=True)


def _passes(config, settings, executor, ctx, job, hist, status, runnable, per_partition,
            on_detector, t0) -> Detection:
    events = sum(hist["rows"].values())
    per = per_partition or config.engine.partition_events
    count = plan.partition_count(events, per)
    divided, whole = plan.split_detectors(settings, runnable)
    # pass one also runs the population parts of detectors that judge over every user
    # (rights.unused gathers the usage there, so its own task loads no events)
    counted = divided + [d for d in whole if plan.has_population_part(settings[d])]
    timings = {"plan": time.perf_counter() - t0}
    parent = {"plan": _parent_memory()}

    # pass one: each partition's part of the population statistics
    t1 = time.perf_counter()
    failed: dict[str, str] = {}
    peak = 0.0
    if counted:
        first = executor.map(pass_one, job, [plan.Task(r, count, tuple(counted))
                                             for r in range(count)])
        ok = [r for r in first if "error" not in r]
        for r in first:
            if "error" in r:
                for d in counted:
                    failed.setdefault(d, f"partition failed: {r['error']}")
        peak = max([r.get("peak_mb", 0.0) for r in ok] or [0.0])
        population, part_failed = combine_population(settings, ok)
        for d, msg in part_failed.items():
            failed.setdefault(d, msg)
        ctx.population.update(population)
    timings["population"] = time.perf_counter() - t1
    parent["population"] = _parent_memory()
    t2 = time.perf_counter()
    for det_id in counted:
        if det_id in failed:
            continue
        try:
            settings[det_id].instantiate().population_finish(ctx)
        except Exception as exc:  # noqa: BLE001 - one detector must not sink the scan
            failed[det_id] = f"{type(exc).__name__}: {exc}"
    timings["global"] = time.perf_counter() - t2
    parent["global"] = _parent_memory()

    # pass two: the findings of each partition
    t3 = time.perf_counter()
    job.population = {k: v for k, v in ctx.population.items()
                      if not k.startswith(("features.", "feed_counts:"))}
    todo = [d for d in runnable if d not in failed]
    tasks = plan.tasks(settings, todo, count)
    release_memory()            # the population's parts are combined: fork without them
    second = executor.map(pass_two, job, tasks) if tasks else []
    timings["detect"] = time.perf_counter() - t3
    found, merged = _merge(settings, tasks, second, ctx)
    parent["detect"] = _parent_memory()
    for det_id, msg in failed.items():
        merged[det_id] = DetectorStatus(det_id, "failed", message=msg)
    for r in second:
        peak = max(peak, r.get("peak_mb", 0.0) if "error" not in r else 0.0)
    for det_id in settings:
        if det_id in merged:
            status[det_id] = merged[det_id]
    ordered = {d: status[d] for d in settings if d in status}
    if on_detector:
        for st in ordered.values():
            on_detector(st)
    return Detection(found, ordered, ctx, partitions=count, executor=executor.name,
                     timings=timings, peak_mb=peak, parent_mb=parent)


def _parent_memory() -> dict[str, float]:
    return {"rss": round(rss_mb(), 1), "peak": round(peak_rss_mb(), 1)}


def _merge(settings: dict[str, DetectorSetting], tasks: list, results: list[dict],
           ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Findings of every partition in the declared detector order (each detector's sorted as
    findings_frame sorts them), statuses summed, outputs and notes put together."""
    frames: dict[str, list[pd.DataFrame]] = defaultdict(list)
    status: dict[str, DetectorStatus] = {}
    collected: dict[str, list] = defaultdict(list)
    notes = list(ctx.notes)
    for task, r in zip(tasks, results):
        if "error" in r:
            for d in task.detectors:
                status[d] = DetectorStatus(d, "failed", message=f"{task.label} failed: "
                                           f"{r['error']}")
            continue
        for d, f in r["found"].items():
            frames[d].append(f)
        for d, st in r["status"].items():
            old = status.get(d)
            if old is None:
                status[d] = st
            elif old.status != "failed":
                if st.status == "failed":
                    status[d] = st
                else:
                    old.seconds += st.seconds
                    old.peak_mb = max(old.peak_mb, st.peak_mb)
        for k, v in r["outputs"].items():
            if k in PARTITION_OUTPUTS:
                collected[k].append(v)
            else:
                ctx.outputs[k] = v
        notes += [n for n in r["notes"] if n not in notes]
    ctx.notes[:] = notes
    held = [h for h in collected.get("feed_gap_accesses", []) if h is not None and len(h)]
    if held:
        ctx.outputs.update(held_outputs(pd.concat(held, ignore_index=True)))
    out = []
    for d in settings:
        if d in frames:
            f = pd.concat(frames[d], ignore_index=True).sort_values(
                ["start", "finding_id"]).reset_index(drop=True)
            out.append(f)
            if d in status:
                status[d].findings = len(f)
        elif d in status and status[d].status != "failed":
            status[d].findings = 0
    found = pd.concat(out, ignore_index=True) if out else empty_findings()
    return found, status


def lake_path(config: Config) -> Path:
    return config.lake_dir
