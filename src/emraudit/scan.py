"""The nightly scan: ingest what is new, detect, store findings and cases, write reports.

Incremental by ingestion, not by clock: the days to scan are the days that runs committed
since the last scan wrote events into (late-arriving events of earlier days included).
Detectors see those days plus the look-back they declare. Runs are marked scanned only after
findings, cases and reports are committed, so a scan killed anywhere and run again produces
exactly what an uninterrupted scan would: findings and cases are upserted by stable ids.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import sqlalchemy as sa

from emraudit.allow import apply_allowlist
from emraudit.config import Config
from emraudit.dates import day_range
from emraudit.detection import SHARED_SECONDS, DetectorStatus, build_context, loaded_start, \
    peak_rss_mb, run_detectors
from emraudit.detectors.profile import DetectorSetting, resolve_detectors
from emraudit.ingest import SourceResult, ingest
from emraudit.lake import Lake
from emraudit import leftovers
from emraudit.lock import scan_lock
from emraudit.memory import release_memory
from emraudit.storage import check_writable
from emraudit.reports import write_scan_reports
from emraudit.feeds import feed_notes
from emraudit.results import review_quota, save_scan_results
from emraudit.store import Store, ingest_runs, now_utc, scans

log = logging.getLogger("emraudit.scan")


@dataclass
class ScanResult:
    scan_id: str
    sources: list[SourceResult] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    detectors: list[DetectorStatus] = field(default_factory=list)
    findings: int = 0
    new_findings: int = 0
    suppressed: int = 0
    retracted: int = 0
    cases: int = 0
    queued: int = 0            # cases this scan admitted to the review queue
    below_budget: int = 0      # cases it left below the nightly budget
    report_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)   # peak RSS after each stage
    # seconds of each piece of shared work a parallel detection did before its second phase
    shared_work: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # how detection ran when it was partitioned: executor, partitions, seconds per pass
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        failed = any(s.status == "failed" for s in self.sources) or \
            any(d.status == "failed" for d in self.detectors)
        return 1 if failed else 0


def new_scan_id() -> str:
    return datetime.now(timezone.utc).strftime("s%Y%m%dT%H%M%S") + secrets.token_hex(2)


def _day_start(day: str, tz: str) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(tz)


def unscanned_days(store: Store) -> tuple[list[str], list[str]]:
    """Days written by committed access-log runs that no committed scan has covered yet."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(ingest_runs.c.run_id, ingest_runs.c.days).where(
            ingest_runs.c.status == "committed", ingest_runs.c.table_name == "access_log",
            ingest_runs.c.scanned_by.is_(None))).fetchall()
    days = sorted({d for r in rows for d in json.loads(r.days or "[]")})
    return days, [r.run_id for r in rows]


def window_days(config: Config, store: Store, lake: Lake, *, since: str | None,
                until: str | None, full: bool) -> tuple[list[str], list[str]]:
    """The days this scan covers and the runs it will mark as scanned."""
    new_days, runs = unscanned_days(store)
    if full:
        return lake.days(store.committed_runs()), runs
    if since or until:
        all_days = lake.days(store.committed_runs())
        lo, hi = day_range(since, until, config.tz)      # ISO only; both days inclusive
        lo, hi = lo or "0000-00-00", hi or "9999-99-99"
        return [d for d in all_days if lo <= d <= hi], runs
    return new_days, runs


# Stages of a scan, in order, as `on_stage` is told them: a caller may stop the process
# there (the kill -9 tests do) or log progress. Each is reached only once the work before it
# is durable where it must be.
STAGES = ("ingest:after-lake-write", "scan:after-detectors", "scan:after-findings",
          "scan:after-reports")


def run_scan(config: Config, *, since: str | None = None, until: str | None = None,
             full: bool = False, unmask: bool = False, skip_ingest: bool = False,
             echo: Callable[[str], None] = print,
             on_stage: Callable[[str], None] | None = None, engine: str | None = None,
             spark_master: str | None = None) -> ScanResult:
    """The whole nightly job. Raises UserError when it cannot run at all."""
    settings = resolve_detectors(config.detectors, config.path)   # config errors first
    check_writable(config, reports=True)        # an unwritable folder fails before any work
    store = Store(config.store_url)
    lake = Lake(config.lake_dir, config.tz)
    stage = on_stage or (lambda _name: None)
    with scan_lock(store), ExitStack() as on_error:
        cleared = leftovers.recover(store, config.reports_dir)   # of scans killed earlier
        scan_id = new_scan_id()
        res = ScanResult(scan_id)
        res.notes += cleared
        res.notes += getattr(settings, "notes", [])   # old profile keys still in use
        t0 = time.perf_counter()
        with store.begin() as c:
            c.execute(scans.insert().values(
                scan_id=scan_id, started=now_utc(), status="running", stage="ingest",
                unmasked=unmask or not config.reports.mask_patients,
                params=json.dumps({"since": since, "until": until, "full": full,
                                   "unmask": unmask})))
        on_error.enter_context(leftovers.marks_failed(store, scan_id))
        if not skip_ingest:
            echo("ingesting sources …")
            res.sources = ingest(config, store, lake, on_batch=lambda r: echo(
                f"  {r.name}: {r.read:,} rows read in {r.batches} batch(es)"),
                on_stage=stage)
        res.timings["ingest"] = time.perf_counter() - t0
        res.peak_mb["ingest"] = peak_rss_mb()
        release_memory()      # ingest's batches are gone: detection starts without them
        days, runs = window_days(config, store, lake, since=since, until=until, full=full)
        res.days = days
        if not days:
            res.notes.append("nothing new to scan (use --full or --since/--until to rescan)")
            _finish(store, scan_id, res, runs=runs)
            return res
        ws, we = _day_start(days[0], config.tz), _day_start(days[-1], config.tz) + \
            pd.Timedelta(days=1)
        t1 = time.perf_counter()
        on_det = lambda d: echo(f"  {d.id}: {d.status}, {d.findings} findings, "  # noqa: E731
                                f"{d.seconds:.1f}s")
        engine = engine or config.engine.kind
        n_events = lake_events(store, lake, config, ws, we, settings)
        if engine == "spark" or n_events >= config.scan.parallel_min_events:
            from emraudit.engine.driver import detect
            echo(f"detecting over {n_events:,} events in partitions ({engine}) …")
            executor = make_executor(config, engine, spark_master)
            det = detect(config, store, lake, ws, we, settings, days, executor,
                         on_detector=on_det)
            ctx, found, status = det.ctx, det.found, det.status
            res.engine = {"kind": det.executor, "partitions": det.partitions,
                          **{k: round(v, 3) for k, v in det.timings.items()},
                          "parent_mb": det.parent_mb}
            if getattr(executor, "memory_limit_mb", None):
                res.engine["memory_limit_mb"] = round(executor.memory_limit_mb)
                res.engine["held_back"] = executor.held_back
                if executor.held_back:
                    echo(f"  memory budget {executor.memory_limit_mb / 1024:.1f} GB: "
                         f"{executor.held_back} worker starts waited for memory")
            res.timings["load"] = det.timings.get("plan", 0.0)
            res.peak_mb["load"] = peak_rss_mb()
            res.timings["detect"] = time.perf_counter() - t1 - res.timings["load"]
            res.peak_mb["detect"] = max(peak_rss_mb(), det.peak_mb)
        else:
            echo(f"loading events {days[0]} .. {days[-1]} and look-back …")
            ctx = build_context(config, store, lake, ws, we, settings, days)
            res.timings["load"] = time.perf_counter() - t1
            res.peak_mb["load"] = peak_rss_mb()
            t2 = time.perf_counter()
            echo(f"running detectors on {len(ctx.events):,} events …")
            found, status = run_detectors(ctx, settings, on_detector=on_det, workers=1)
            res.timings["detect"] = time.perf_counter() - t2
            res.peak_mb["detect"] = peak_rss_mb()
        res.shared_work = dict(ctx.memo.get(SHARED_SECONDS, {}))
        res.detectors = list(status.values())
        stage("scan:after-detectors")
        t3 = time.perf_counter()
        with store.begin() as c:
            found = apply_allowlist(c, found, now_utc(), ctx.users,
                                    care_relations=ctx.care_relations)
            res.suppressed = int(found["suppressed_by"].notna().sum()) if len(found) else 0
            ran = [d.id for d in res.detectors if d.status == "ran"]
            saved = save_scan_results(c, found, scan_id, ran=ran, window_start=ws,
                                      window_end=we, days=days, tz=config.tz,
                                      users=ctx.users,
                                      quota=review_quota(config.review.budget, days),
                                      outputs=ctx.outputs, held_dir=lake.root / "held")
            res.new_findings, res.retracted = saved.new_findings, saved.retracted
            res.cases = len(saved.cases)
            res.queued, res.below_budget = saved.admitted, saved.below_budget
            res.notes += feed_notes(ctx.outputs.get("feed_health"), saved.feed_gaps)
            c.execute(scans.update().where(scans.c.scan_id == scan_id).values(
                stage="findings", window_start=ws.to_pydatetime(),
                window_end=we.to_pydatetime()))
        res.findings = len(found)
        res.timings["store"] = time.perf_counter() - t3
        res.peak_mb["store"] = peak_rss_mb()
        # the reports read what was stored: the findings and the context are not needed
        # again, and a night of many findings must not hold them through the reports
        found = ctx = saved = det = None       # noqa: F841
        release_memory()
        stage("scan:after-findings")
        t4 = time.perf_counter()
        echo("writing reports …")
        res.report_dir = write_scan_reports(config, store, lake, scan_id, unmask=unmask)
        res.timings["reports"] = time.perf_counter() - t4
        res.peak_mb["reports"] = peak_rss_mb()
        stage("scan:after-reports")
        _finish(store, scan_id, res, runs=runs)
        res.timings["total"] = time.perf_counter() - t0
        return res


def lake_events(store: Store, lake: Lake, config: Config, ws: pd.Timestamp, we: pd.Timestamp,
                settings: dict[str, DetectorSetting]) -> int:
    """Events a scan of [ws, we) loads, look-back included, from the Parquet footers."""
    start = loaded_start(config, ws, settings)
    return sum(lake.history(store.committed_runs(), start, we)["rows"].values())


def make_executor(config: Config, engine: str, master: str | None = None):
    """The executor a scan's partitions run on."""
    if engine == "spark":
        from emraudit.engine.spark import SparkExecutor
        return SparkExecutor.from_config(config, master)
    from emraudit.engine.local import LocalExecutor
    return LocalExecutor(config.scan.workers, scratch=config.engine.scratch,
                         memory_limit_mb=config.engine.memory_limit_mb)


def _last_costs(store: Store) -> dict[str, float]:
    """Seconds each detector took in the last committed scan: a parallel scan starts the
    longest first, so the processes finish together."""
    with store.engine.connect() as c:
        row = c.execute(sa.select(scans.c.summary).where(scans.c.status == "committed")
                        .order_by(scans.c.started.desc()).limit(1)).scalar()
    try:
        dets = json.loads(row or "{}").get("detectors", {})
        return {k: float(v.get("seconds", 0.0)) for k, v in dets.items()}
    except (ValueError, AttributeError, TypeError):
        return {}


def _finish(store: Store, scan_id: str, res: ScanResult, *, runs: list[str]) -> None:
    """Commit the scan: only now are the runs it covered marked as scanned."""
    summary = {
        "days": res.days, "findings": res.findings, "new": res.new_findings,
        "suppressed": res.suppressed, "retracted": res.retracted, "cases": res.cases,
        "queued": res.queued, "below_budget": res.below_budget,
        "detectors": {d.id: {"status": d.status, "findings": d.findings,
                             "seconds": round(d.seconds, 3), "message": d.message,
                             "peak_mb": round(d.peak_mb)}
                      for d in res.detectors},
        "sources": {s.name: {"read": s.read, "accepted": s.accepted,
                             "quarantined": s.quarantined, "duplicates": s.duplicates,
                             "status": s.status, "error": s.error,
                             "timings": {k: round(v, 3) for k, v in s.timings.items()}}
                    for s in res.sources},
        "timings": {k: round(v, 3) for k, v in res.timings.items()},
        "peak_mb": {k: round(v) for k, v in res.peak_mb.items()},
        "shared_work": {k: round(v, 3) for k, v in res.shared_work.items()},
        "engine": res.engine,
        "notes": res.notes,
    }
    with store.begin() as c:
        if runs:
            for i in range(0, len(runs), 500):
                c.execute(ingest_runs.update().where(ingest_runs.c.run_id.in_(runs[i:i + 500]))
                          .values(scanned_by=scan_id))
        c.execute(scans.update().where(scans.c.scan_id == scan_id).values(
            status="committed", stage="done", finished=now_utc(),
            report_dir=str(res.report_dir) if res.report_dir else None,
            summary=json.dumps(summary, ensure_ascii=False, default=str)))


def format_summary(res: ScanResult) -> str:
    """The one-screen summary printed at the end of a scan."""
    from emraudit.ingest import format_results
    lines = [f"scan {res.scan_id}"]
    if res.sources:
        lines += ["", format_results(res.sources)]
    if res.days:
        lines += ["", f"days scanned: {res.days[0]} .. {res.days[-1]} ({len(res.days)} days)"]
    if res.detectors:
        lines += ["", f"{'detector':28} {'status':9} {'findings':>8} {'seconds':>8}"]
        # detectors skipped for the same reason (a missing table) are said once, together
        skipped: dict[str, list[str]] = {}
        for d in res.detectors:
            if d.status == "skipped" and d.message:
                skipped.setdefault(d.message, []).append(d.id)
        for d in res.detectors:
            if len(skipped.get(d.message, ())) > 1 and d.status == "skipped":
                continue
            extra = f"  {d.message}" if d.message else ""
            lines.append(f"{d.id:28} {d.status:9} {d.findings:>8} {d.seconds:>8.2f}{extra}")
        for msg, ids in skipped.items():
            if len(ids) > 1:
                lines.append(f"skipped, {msg}: {', '.join(ids)}")
    lines += ["", f"findings: {res.findings} ({res.new_findings} new, {res.suppressed} "
                  f"suppressed by allowlist, {res.retracted} retracted)  cases touched: "
                  f"{res.cases}"]
    if res.queued or res.below_budget:
        lines.append(f"review queue: {res.queued} case(s) admitted, {res.below_budget} below "
                     "the nightly budget (stored; `emraudit cases list --below-budget`)")
    if res.timings.get("total"):
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items() if k != "total")
        lines.append(f"time: {res.timings['total']:.1f}s ({stages}); peak memory "
                     f"{max(res.peak_mb.values(), default=0) / 1024:.2f} GB")
    if res.report_dir:
        lines.append(f"report: {res.report_dir}")
    lines += res.notes
    return "\n".join(lines)


def detector_settings(config: Config) -> dict[str, DetectorSetting]:
    return resolve_detectors(config.detectors, config.path)


__all__ = ["run_scan", "build_context", "run_detectors", "format_summary", "ScanResult",
           "STAGES"]
