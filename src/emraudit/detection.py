"""Detection in the scan's own process: the context of a window built from the lake and the
store, then every enabled detector run on it (in forked processes, in parallel, when there
are several and the platform forks). The partitioned engines (emraudit.engine) use the same
pieces for their partitions; `emraudit.scan` ties detection into the nightly scan.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from emraudit import progress
from emraudit.memory import peak_rss_mb, rss_mb
from emraudit.config import Config
from emraudit.detectors.base import SHARED_WORK, Context, empty_findings
from emraudit.detectors.profile import DetectorSetting, context_args
from emraudit.fastops import id_hashes, in_sorted, local_days, positions_in
from emraudit.forking import can_fork, fork_pool
from emraudit.lake import Lake
from emraudit.model import REFERENCE_TABLES, SOURCE_REF
from emraudit.state import load_state
from emraudit.store import Store

log = logging.getLogger("emraudit.scan")


@dataclass
class DetectorStatus:
    id: str
    status: str              # ran | skipped | disabled | failed
    findings: int = 0
    seconds: float = 0.0
    message: str = ""
    peak_mb: float = 0.0     # the process's peak resident memory once this detector ran


def _day(ts: pd.Timestamp, tz: str) -> str:
    return ts.tz_convert(tz).strftime("%Y-%m-%d")


# access-log columns no detector reads: reports fetch them from the lake for a case's events
# (the source name is kept, coded: the feed check compares sources)
NOT_FOR_DETECTORS = (SOURCE_REF, "action_raw")


def loaded_start(config: Config, window_start: pd.Timestamp,
                 settings: dict[str, DetectorSetting]) -> pd.Timestamp:
    """The first instant loaded: the window's start less the look-back the enabled
    detectors need (at most [scan] lookback_days)."""
    enabled = [s for s in settings.values() if s.enabled]
    lookback = max([s.instantiate().effective_lookback_days() for s in enabled] or [0])
    lookback = min(lookback, config.scan.lookback_days)
    return window_start - pd.Timedelta(days=lookback)


def build_context(config: Config, store: Store, lake: Lake, window_start: pd.Timestamp,
                  window_end: pd.Timestamp, settings: dict[str, DetectorSetting],
                  days: list[str] | None = None) -> Context:
    """Load the events of the window plus the look-back the enabled detectors need."""
    tz = config.tz
    committed = store.committed_runs()
    start = loaded_start(config, window_start, settings)
    # the stored baseline (SQLite rows and JSON, seconds at a large hospital) is read on a
    # thread while the lake is read here: on two cores that saves ~2 s of ~10 at 10M events
    # (both are CPU work, much of it outside the GIL)
    with _background(_threads_share_store(store)) as run:
        baseline = run(load_state, store, settings, _day(start, tz), _day(window_end, tz), tz)
        events = lake.read_events(committed, start, window_end, exclude=NOT_FOR_DETECTORS,
                                  coded=True)
        ctx_baseline = baseline()
    day = local_days(events["ts"], tz)
    in_window = (events["ts"] >= window_start) & (events["ts"] < window_end)
    if days is not None:
        in_window &= day.isin(days)
    events["in_window"] = in_window.to_numpy()
    refs = {t: lake.read_snapshot(t, committed) for t in REFERENCE_TABLES}
    ctx = Context(events=events, window_start=window_start, window_end=window_end, tz=tz,
                  office_hours=tuple(config.site.office_hours),
                  workdays=tuple(config.site.workdays),
                  **context_args(settings),
                  site_name=config.site.name, site_id=config.site.id,
                  networks=tuple(config.site.networks),
                  **refs)
    ctx.baseline = ctx_baseline
    return ctx


def _threads_share_store(store: Store) -> bool:
    """An in-memory SQLite database exists once per thread: only a real one is shared."""
    url = store.engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


@contextmanager
def _background(enabled: bool):
    """`run(f, ...)` starts f on a thread (or, when not `enabled`, calls it at once) and
    returns a function giving its result, raising what it raised."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emraudit-load") \
        if enabled else None

    def run(f, *args, **kwargs):
        if pool is None:
            value = f(*args, **kwargs)
            return lambda: value
        return pool.submit(f, *args, **kwargs).result

    try:
        yield run
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def run_detectors(ctx: Context, settings: dict[str, DetectorSetting],
                  on_detector: Callable[[DetectorStatus], None] | None = None,
                  workers: int = 1, costs: dict[str, float] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, DetectorStatus]]:
    """Run every enabled detector; one that fails is reported and the others go on.

    With `workers` > 1 (and fork available) the detectors are divided among that many forked
    processes, which inherit the loaded events without copying them; the work several
    detectors share is done once, in this process, while the detectors that need none of it
    already run. Findings and statuses come back in the declared order, so the result is
    the same as a serial run's.
    """
    status: dict[str, DetectorStatus] = {}
    runnable: list[str] = []
    for det_id, st in settings.items():
        if not st.enabled:
            status[det_id] = DetectorStatus(det_id, "disabled")
            continue
        missing = [t for t in st.cls.needs if ctx.table(t) is None]
        if missing:
            status[det_id] = DetectorStatus(
                det_id, "skipped", message=f"needs table {', '.join(missing)} (not loaded)")
            if on_detector:
                on_detector(status[det_id])
            continue
        runnable.append(det_id)
    if workers > 1 and len(runnable) > 1 and can_fork():
        results = _run_forked(ctx, settings, runnable, workers, costs or {})
    else:
        results = (_run_one(ctx, settings[d]) for d in runnable)
    window: _IdSet | None = None
    found_by: dict[str, pd.DataFrame] = {}
    for n_done, (det_id, st_obj, found) in enumerate(results, start=1):
        progress.current().track("detect", n_done, len(runnable), unit="detectors",
                                 what=det_id)
        if len(found) and not (settings[det_id].cls.judges_late
                               or settings[det_id].cls.judges_state):
            if window is None:
                window = _window_ids(ctx)
            found = found.loc[window.any_in(found["event_ids"])]
        st_obj.findings = len(found)
        status[det_id] = st_obj
        if on_detector:
            on_detector(st_obj)
        if len(found):
            found_by[det_id] = found
    out = [found_by[d] for d in settings if d in found_by]
    frame = pd.concat(out, ignore_index=True) if out else empty_findings()
    return finding_sites(frame, ctx), {d: status[d] for d in settings if d in status}


def finding_sites(found: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """`site_id` of each finding: the site of its earliest event in ctx.events (events are in
    time order); ctx.site_id when none of its events is there (account findings, rights)."""
    found["site_id"] = ctx.site_id
    ev = ctx.events
    if not len(found) or "site_id" not in ev.columns or not len(ev):
        return found
    flat = found["event_ids"].reset_index(drop=True).explode().astype("string")
    wanted = pd.Index(flat.dropna().unique(), dtype="string")
    hit = positions_in(ev["event_id"].astype("string"), wanted)   # probe, no 10M hash
    at = np.full(len(wanted) + 1, len(ev), dtype=np.int64)
    at[hit[hit >= 0]] = np.flatnonzero(hit >= 0)
    code = np.asarray(wanted.get_indexer(flat), dtype=np.int64)
    pos = pd.Series(at[code], index=flat.index)                    # -1 (absent) -> last
    first = pos.groupby(level=0).min().reindex(range(len(found)),
                                               fill_value=len(ev)).to_numpy()
    sites = np.append(ev["site_id"].astype("string").fillna(ctx.site_id)
                      .to_numpy(dtype=object), ctx.site_id)
    found["site_id"] = sites[first]
    return found


def _run_one(ctx: Context, st: DetectorSetting) -> tuple[str, DetectorStatus, pd.DataFrame]:
    det_id = st.cls.id
    t0 = time.perf_counter()
    try:
        found = st.instantiate().run(ctx)
    except Exception as exc:  # noqa: BLE001 - one detector must not sink the scan
        log.exception("detector %s failed", det_id)
        return det_id, DetectorStatus(det_id, "failed", seconds=time.perf_counter() - t0,
                                      message=f"{type(exc).__name__}: {exc}"), empty_findings()
    return det_id, DetectorStatus(det_id, "ran", len(found), time.perf_counter() - t0,
                                  peak_mb=peak_rss_mb()), found


def _window_ids(ctx: Context) -> "_IdSet":
    """Membership in the scan window, by whichever side is smaller: a finding's events all
    come from ctx.events, so "some event in the window" is "not every event in the
    look-back" (a night with no raw look-back hashes nothing)."""
    ev = ctx.events
    inside = ev["in_window"].to_numpy(dtype=bool) if len(ev) else np.zeros(0, dtype=bool)
    if inside.sum() <= len(inside) // 2:
        return _IdSet(ev.loc[inside, "event_id"] if len(ev) else pd.Series([], dtype="string"))
    return _IdSet(ev.loc[~inside, "event_id"], complement=True)


# ctx.memo key: the peak memory of a parallel detection, all processes together (MB)
WORKERS_PEAK_MB = "scan.workers_peak_mb"
# ctx.memo key: {shared work name: seconds} of a parallel detection
SHARED_SECONDS = "scan.shared_seconds"

# what a forked worker inherits: set just before the pool forks, read only in the workers
_FORK_STATE: tuple[Context, dict[str, DetectorSetting]] | None = None


def _forked_run(det_id: str) -> tuple[tuple, dict, list[str], int]:
    """In a worker: run one detector on the inherited context; return its result and what it
    left for the pipeline (ctx.outputs, notes)."""
    ctx, settings = _FORK_STATE
    n_notes = len(ctx.notes)
    before = dict(ctx.outputs)
    res = _run_one(ctx, settings[det_id])
    outputs = {k: v for k, v in ctx.outputs.items() if before.get(k) is not v}
    return res, outputs, ctx.notes[n_notes:], os.getpid()


def _run_forked(ctx: Context, settings: dict[str, DetectorSetting], runnable: list[str],
                workers: int, costs: dict[str, float]):
    """Yield (id, status, findings) as forked workers finish them, longest first.

    Two phases, so that no core waits on the shared work: detectors that share none of it
    start at once in `workers` - 1 processes while this process does the shared work
    (explanations, duty mask, household pairs); then `workers` processes, forked after it
    and so inheriting it, run the detectors that use it."""
    global _FORK_STATE
    order = sorted(runnable, key=lambda d: -costs.get(
        d, 10.0 if settings[d].cls.kind == "anomaly" else 1.0))
    shared = sorted({n for d in order for n in settings[d].cls.shares if n in SHARED_WORK})
    alone = [d for d in order if not settings[d].cls.shares] if shared else order
    after = [d for d in order if d not in set(alone)]
    _FORK_STATE = (ctx, settings)
    pools: list[tuple[ProcessPoolExecutor, float, dict]] = []
    worker_peak: dict[int, tuple[int, float, float]] = {}   # pid -> (pool, base, peak)
    overlap = False     # the first phase's workers still busy when the second phase forked
    try:
        if alone:
            first = fork_pool(max(1, workers - 1) if after else workers)
            pools.append((first, rss_mb(), {first.submit(_forked_run, d): d for d in alone}))
        for name in shared:
            t0 = time.perf_counter()
            SHARED_WORK[name](ctx)
            ctx.memo.setdefault(SHARED_SECONDS, {})[name] = time.perf_counter() - t0
        parent_peak = peak_rss_mb()         # the loaded events plus the shared work's peak
        if after:
            overlap = bool(pools) and not all(f.done() for f in pools[0][2])
            second = fork_pool(workers)
            pools.append((second, rss_mb(), {second.submit(_forked_run, d): d for d in after}))
        futures = {f: (d, base, i) for i, (_, base, fs) in enumerate(pools)
                   for f, d in fs.items()}
        left = [len(fs) for _, _, fs in pools]
        for fut in as_completed(futures):
            det_id, base_mb, i = futures[fut]
            left[i] -= 1
            if left[i] == 0:    # an idle worker still holds its memos: let it go at once
                pools[i][0].shutdown(wait=True)
            try:
                (rid, st_obj, found), outputs, notes, pid = fut.result()
            except BrokenProcessPool as exc:
                yield det_id, DetectorStatus(
                    det_id, "failed", message=f"worker process died ({exc}); out of "
                    "memory? run with scan.workers = 1"), empty_findings()
                continue
            ctx.outputs.update(outputs)
            ctx.notes.extend(notes)
            worker_peak[pid] = (i, base_mb, max(worker_peak.get(pid, (i, 0.0, 0.0))[2],
                                                st_obj.peak_mb))
            yield rid, st_obj, found
    finally:
        _FORK_STATE = None
        for pool, _, _ in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    ctx.memo[WORKERS_PEAK_MB] = _phases_peak_mb(pools, worker_peak, parent_peak, overlap)


def _phases_peak_mb(pools: list, worker_peak: dict[int, tuple[int, float, float]],
                    parent_peak: float, overlap: bool) -> float:
    """The machine's peak over the phases, estimated: in each phase the parent (what the
    workers inherit is counted once) plus each running worker's growth over what it
    inherited; the first phase's workers count in the second only if they were still busy
    when it forked. A sampled figure (bench/scan.py) is the measurement; this is the scan's
    own account of it."""
    growth = [0.0] * len(pools)
    for i, base, peak in worker_peak.values():
        growth[i] += max(peak - base, 0.0)
    if not pools:
        return parent_peak
    est = [max(parent_peak, pools[0][1]) + growth[0]]
    if len(pools) > 1:
        est.append(pools[1][1] + growth[1] + (growth[0] if overlap else 0.0))
    return max(est)


class _IdSet:
    """Membership of event ids in a large set (the window's), by sorted 64-bit hashes:
    no Python set of millions of strings."""

    def __init__(self, ids: pd.Series, complement: bool = False):
        # complement: `ids` are those *outside* the set, within a known universe
        self.sorted = np.sort(id_hashes(ids))
        self.complement = complement

    def any_in(self, lists: pd.Series) -> np.ndarray:
        """For each list of ids: does any of them belong to the set?"""
        lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        if lens.sum() == 0 or (len(self.sorted) == 0 and not self.complement):
            return np.zeros(len(lists), dtype=bool)
        flat = np.concatenate([np.asarray(x, dtype=object) for x in lists if len(x)])
        hit = in_sorted(self.sorted, id_hashes(flat.astype(str)))
        hit = (~hit if self.complement else hit).astype(np.int64)
        owner = np.repeat(np.arange(len(lists)), lens)
        return np.bincount(owner, weights=hit, minlength=len(lists)) > 0
