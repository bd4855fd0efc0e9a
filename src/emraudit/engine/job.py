"""One partition's work, the same function in every executor.

A `ScanJob` is everything a partition needs besides its events, and it pickles (Spark ships
it to executors; forked workers inherit it): where the lake is, the committed runs, the
time window, the detector settings, the reference snapshots to read, what the scan's
process computed from the reference tables alone (`memo`) and the population statistics.
`pass_one` returns the partition's parts of the population statistics, `pass_two` its
findings. Events come from the lake (the local executor: the partition's own files) or are
handed over (Spark reads the lake itself and gives each group's rows).
"""

from __future__ import annotations

import gc
import pickle
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from emraudit.detection import peak_rss_mb, run_detectors
from emraudit.detectors.base import Context, combine_parts
from emraudit.detectors.bulk import user_day_activity
from emraudit.detectors.profile import DetectorSetting
from emraudit.engine.plan import Task, reads_events
from emraudit.fastops import local_days
from emraudit.lake import Lake
from emraudit.model import code_event_columns, empty_table
from emraudit.packed import PLAIN_BUDGET, pack

# per process: reference snapshots already read, by file (a Spark worker runs many tasks)
_REFS: dict[str, pd.DataFrame] = {}


@dataclass
class ScanJob:
    lake_root: str
    tz: str
    committed: frozenset
    start: pd.Timestamp                 # first instant loaded (window start - look-back)
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    days: list[str] | None              # the window's days (None: every day in it)
    settings: dict[str, DetectorSetting]
    context: dict[str, Any]             # Context keyword arguments (site, hours, params)
    ref_files: dict[str, str | None]    # reference table -> snapshot file
    exclude: tuple[str, ...] = ()       # event columns no detector reads
    memo: dict[str, Any] = field(default_factory=dict)
    population: dict[str, Any] = field(default_factory=dict)
    # a folder the population pass leaves each partition's explanations and duty mask in,
    # for its detection pass to reuse (the local executor; without it they are recomputed)
    spill_dir: str | None = None


# shared work a partition's population pass computes and its detection pass needs again
SPILLED = ("explain", "duty_mask")


def remember_refs(refs: dict[str, pd.DataFrame | None], files: dict[str, str | None]) -> None:
    """Keep frames the scan's process already read, so forked workers do not read them."""
    for t, f in files.items():
        if f is not None and refs.get(t) is not None:
            _REFS[f] = refs[t]


def load_refs(job: ScanJob) -> dict[str, pd.DataFrame | None]:
    lake = Lake(Path(job.lake_root), job.tz)
    out = {}
    for table, f in job.ref_files.items():
        if f is None:
            out[table] = None
            continue
        if f not in _REFS:
            _REFS[f] = lake.read_snapshot_file(Path(f))
        out[table] = _REFS[f]
    return out


def with_window(job: ScanJob, events: pd.DataFrame) -> pd.DataFrame:
    """The `in_window` column, as build_context sets it."""
    ts = events["ts"]
    inside = (ts >= job.window_start) & (ts < job.window_end)
    if job.days is not None:
        inside &= local_days(ts, job.tz).isin(job.days)
    events["in_window"] = inside.to_numpy(dtype=bool)
    return events


def read_partition(job: ScanJob, task: Task) -> pd.DataFrame:
    if not reads_events(job.settings, task):     # what the lake gives for a day it lacks
        return with_window(job, code_event_columns(empty_table("access_log", job.tz)))
    lake = Lake(Path(job.lake_root), job.tz)
    ev = lake.read_events(set(job.committed), job.start, job.window_end, exclude=job.exclude,
                          coded=True, part=task.part)
    return with_window(job, ev)


def canonical_events(job: ScanJob, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows handed over by an engine (Spark's pandas groups) in the lake reader's form:
    times in the site zone, coded columns, ordered by (ts, event_id), a fresh index."""
    df = rows.drop(columns=[c for c in ("_part", "day", "bucket") if c in rows.columns])
    ts = df["ts"]
    ts = pd.to_datetime(ts, unit="ns", utc=True) if pd.api.types.is_integer_dtype(ts) \
        else pd.to_datetime(ts)
    df["ts"] = (ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts).dt.tz_convert(job.tz)
    df = df.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    for c in df.columns:
        if df[c].dtype == object and c not in ("ts",):
            df[c] = df[c].astype("string")
    code_event_columns(df)
    return with_window(job, df)


def partition_context(job: ScanJob, events: pd.DataFrame) -> Context:
    ctx = Context(events=events, window_start=job.window_start, window_end=job.window_end,
                  tz=job.tz, **job.context, **load_refs(job))
    ctx.memo.update(job.memo)
    ctx.population = dict(job.population)
    return ctx


def pass_one(job: ScanJob, task: Task, events: pd.DataFrame | None = None) -> dict:
    """The partition's parts of the population statistics, by detector."""
    t0 = time.perf_counter()
    ev = read_partition(job, task) if events is None else canonical_events(job, events)
    ctx = partition_context(job, ev)
    parts: dict[str, dict] = {"": {"user_day_activity": user_day_activity(ctx)}}
    failed: dict[str, str] = {}
    for det_id in task.detectors:
        try:
            parts[det_id] = job.settings[det_id].instantiate().population_part(ctx)
        except Exception as exc:  # noqa: BLE001 - one detector must not sink the scan
            failed[det_id] = f"{type(exc).__name__}: {exc}"
            parts[det_id] = {}
    _spill(job, task, ctx)
    return {"parts": parts, "failed": failed, "notes": list(ctx.notes), "rows": len(ev),
            "seconds": time.perf_counter() - t0, "peak_mb": _peak_mb()}


def pass_two(job: ScanJob, task: Task, events: pd.DataFrame | None = None) -> dict:
    """The partition's findings, by detector, with their statuses, outputs and notes."""
    t0 = time.perf_counter()
    ev = read_partition(job, task) if events is None else canonical_events(job, events)
    ctx = partition_context(job, ev)
    ctx.memo.update(_unspill(job, task, len(ev)))
    settings = {d: job.settings[d] for d in task.detectors}
    with _events_frozen():
        found, status = run_detectors(ctx, settings)
        # bytes, not nested dicts, in the scan's process: the plain budget shared by the
        # partitions and the task over every event
        found = pack(found, PLAIN_BUDGET // (task.count + 1))
    by_det = {d: f.reset_index(drop=True) for d, f in found.groupby("detector", sort=False)} \
        if len(found) else {}
    return {"found": by_det, "status": status, "outputs": ctx.outputs,
            "notes": list(ctx.notes), "rows": len(ev), "seconds": time.perf_counter() - t0,
            "peak_mb": _peak_mb()}


@contextmanager
def _events_frozen() -> Iterator[None]:
    """The partition's events and context left out of the collector's full passes while
    its detectors run: a night where thousands of findings are built set off full
    collections that walked every object column of the events each time (about 1 s a
    partition at 1M/20%). Unfrozen after, so a long-lived worker (Spark's) frees them."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _spill_path(job: ScanJob, task: Task) -> Path | None:
    return Path(job.spill_dir) / f"{task.index}-{task.count}.pkl" if job.spill_dir else None


def _spill(job: ScanJob, task: Task, ctx: Context) -> None:
    """Keep what the detection pass of the same partition would compute again."""
    path = _spill_path(job, task)
    if path is None:
        return
    keep = {k: ctx.memo[k] for k in SPILLED if k in ctx.memo}
    with open(path, "wb") as fh:
        pickle.dump((len(ctx.events), keep), fh, protocol=pickle.HIGHEST_PROTOCOL)


def _unspill(job: ScanJob, task: Task, rows: int) -> dict:
    """What the population pass kept for this partition (only for the same events: the
    same rows, read in the same order), removed once read."""
    path = _spill_path(job, task)
    if path is None or not path.exists():
        return {}
    with open(path, "rb") as fh:
        n, keep = pickle.load(fh)
    path.unlink(missing_ok=True)
    return keep if n == rows else {}


def combine_population(settings: dict[str, DetectorSetting], results: list[dict]
                       ) -> tuple[dict[str, Any], dict[str, str]]:
    """Every partition's parts put together by the detector that made them; detectors
    whose part failed anywhere are returned with the first message."""
    failed: dict[str, str] = {}
    for r in results:
        for d, msg in r["failed"].items():
            failed.setdefault(d, msg)
    owners = {k: d for r in results for d, kv in r["parts"].items() for k in kv}
    out: dict[str, Any] = {}
    for key, det_id in owners.items():
        values = [r["parts"].get(det_id, {}).get(key) for r in results]
        if det_id == "":
            out[key] = combine_parts(values)
        else:
            out[key] = settings[det_id].instantiate().population_combine(key, values)
    return out, failed


def failure(exc: BaseException) -> dict:
    """What a task returns when it raised: the message, never the events."""
    return {"error": f"{type(exc).__name__}: {exc}",
            "trace": "".join(traceback.format_exception(exc))[-4000:]}


def _peak_mb() -> float:
    return peak_rss_mb()
