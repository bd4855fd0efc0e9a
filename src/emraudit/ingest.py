"""Ingest: connectors → validation → the lake and the state database, batch by batch.

Each batch is one ingestion run: its events are written to the lake under the run id, then
its quarantine, coverage, watermark and counts are committed in one transaction. Files of a
run that never committed are invisible and removed by the next ingest, so a crash leaves no
partial batch and a rerun resumes after the last complete one. Counts always reconcile:
read = accepted + quarantined + duplicates.

An ingest holds the store's writer lock (`emraudit.lock`), and the lake refuses a second copy
of an event id whatever the order of writers: batches commit one at a time (a shared commit
point), and each checks its ids, at that point, against what runs committed since it started
have stored (what is being committed by another writer is either before it, and checked, or
after it, and checks this batch).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.errors import LockedError, UserError
from emraudit.fastops import id_hashes, in_sorted, isin, local_days
from emraudit import progress
from emraudit.lake import Lake
from emraudit.lock import ensure_commit_point, serialize_commits, writer_lock
from emraudit.model import SOURCE, empty_quarantine, validate
from emraudit.storage import StorageError, check_writable
from emraudit.store import Store, coverage, ingest_runs, now_utc, quarantine, upsert


@dataclass
class SourceResult:
    """What one source contributed to an ingest."""

    name: str
    table: str
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    batches: int = 0
    status: str = "ok"           # ok | unchanged | failed | disabled
    error: str = ""
    days: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # read, validate, lake, commit

    def timed(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - since
        return now

    def add(self, read: int, accepted: int, quarantined: int, duplicates: int) -> None:
        self.read += read
        self.accepted += accepted
        self.quarantined += quarantined
        self.duplicates += duplicates
        self.batches += 1


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("r%Y%m%dT%H%M%S") + secrets.token_hex(3)


def _begin_run(store: Store, run_id: str, name: str, table: str, wm_before,
               profile_digest: str | None = None) -> None:
    with store.begin() as c:
        c.execute(ingest_runs.insert().values(
            run_id=run_id, source=name, table_name=table, started=now_utc(), status="running",
            watermark_before=json.dumps(wm_before, default=str), profile_digest=profile_digest))


def _fail_stale_runs(store: Store) -> None:
    """Runs left 'running' by a crash are marked failed (their files are orphans)."""
    with store.begin() as c:
        c.execute(ingest_runs.update().where(ingest_runs.c.status == "running")
                  .values(status="failed", finished=now_utc()))


def _merge_coverage(conn: sa.Connection, rows: pd.DataFrame) -> None:
    """Add a batch's per-day coverage to what the store holds (weighted field shares)."""
    if rows.empty:
        return
    keys = list(zip(rows["source"], rows["day"]))
    existing = {}
    for src in rows["source"].unique():
        res = conn.execute(sa.select(coverage).where(coverage.c.source == src,
                                                     coverage.c.day.in_(list(rows["day"]))))
        for r in res:
            existing[(r.source, r.day)] = (r.events, json.loads(r.fields or "{}"))
    out = []
    for (src, day), (_, row) in zip(keys, rows.iterrows()):
        n_new = int(row["events"])
        f_new = json.loads(row["fields"]) if isinstance(row["fields"], str) else dict(row["fields"])
        if (src, day) in existing:
            n_old, f_old = existing[(src, day)]
            total = n_old + n_new
            merged = {k: round((f_old.get(k, 0.0) * n_old + f_new.get(k, 0.0) * n_new) / total, 4)
                      for k in set(f_old) | set(f_new)} if total else f_new
            out.append({"source": src, "day": day, "events": total,
                        "fields": json.dumps(merged, sort_keys=True)})
        else:
            out.append({"source": src, "day": day, "events": n_new,
                        "fields": json.dumps(f_new, sort_keys=True)})
    upsert(conn, coverage, out, ["source", "day"])


def _quarantine_rows(q: pd.DataFrame, run_id: str, name: str) -> list[dict]:
    if q.empty:
        return []
    q = q.astype("object").where(q.notna(), None)
    return [{"run_id": run_id, "source": r["source"] or name, "source_ref": r["source_ref"],
             "reason": r["reason"], "raw": r["raw"]} for r in q.to_dict("records")]


def ingest_source(config: Config, store: Store, lake: Lake, name: str,
                  committed: set[str], on_batch: Callable[[SourceResult], None] | None = None,
                  on_stage: Callable[[str], None] | None = None) -> SourceResult:
    """Ingest everything new from one source; raises UserError for user mistakes."""
    from emraudit.connectors import open_connector
    from emraudit.connectors.provenance import record_steps
    from emraudit.coverage import day_coverage

    table = config.source_table(name)
    res = SourceResult(name, table)
    src = config.sources[name]
    if not src.enabled:
        res.status = "disabled"
        return res
    connector = open_connector(name, config)
    mapped_by = record_steps(store, connector.profile, table)   # named by each run below
    wm = store.get_watermark(name)
    ref_frames: list[pd.DataFrame] = []
    ref_quarantine: list[pd.DataFrame] = []
    ref_read = 0
    ref_position = None
    known = _KnownIds(lake, committed)
    writer = _LakeWriter(lake)
    pending: _Pending | None = None
    t = time.perf_counter()
    batches = _read_ahead(connector.batches(wm)) if table == "access_log" else \
        connector.batches(wm)
    try:
        for batch in batches:
            t = res.timed("read", t)
            if table != "access_log":
                ref_frames.append(batch.frame)
                ref_quarantine.append(batch.quarantine)
                ref_read += batch.read
                ref_position = batch.position
                progress.current().track(f"ingest {name}", ref_read, unit="rows")
                continue
            run_id = new_run_id()
            _begin_run(store, run_id, name, table, wm, mapped_by)
            v = validate(table, batch.frame, config.tz, name, config.source_site(name))
            acc = v.accepted
            acc[SOURCE] = name
            t = res.timed("validate", t)
            day = local_days(acc["ts"], config.tz)
            days = sorted(day.dropna().unique()) if len(acc) else []
            hashes = id_hashes(acc["event_id"])
            dup = known.duplicates(acc["event_id"], days, hashes)
            acc, day = acc.loc[~dup], day.loc[~dup]
            known.add(run_id, acc["event_id"], hashes[~dup], day)
            q = pd.concat([x for x in (batch.quarantine, v.quarantine) if len(x)] or
                          [empty_quarantine()], ignore_index=True)
            nxt = _Pending(run_id, batch, q, day_coverage(acc, name, config.tz, day=day),
                           dict(read=batch.read, accepted=len(acc), quarantined=len(q),
                                duplicates=v.duplicates + int(dup.sum())),
                           writer.submit(acc, day, run_id),
                           lambda ev: day_coverage(ev, name, config.tz))
            wm = batch.position
            t = res.timed("lake", t)
            # the previous batch commits while this one's files are being written
            if pending is not None:
                done, pending = pending, None
                t = _commit_batch(store, lake, name, done, committed, known, res, t, on_batch,
                                  on_stage)
            pending = nxt
    finally:
        try:
            # the last batch commits here, and so does a batch whose successor failed to read
            if pending is not None:
                _commit_batch(store, lake, name, pending, committed, known, res, t, on_batch,
                              on_stage)
        finally:
            writer.close()
            close = getattr(batches, "close", None)
            if close is not None:
                close()                 # stops the read-ahead thread now, not at collection
    if table != "access_log" and ref_frames:
        frame = pd.concat(ref_frames, ignore_index=True)
        v = validate(table, frame, config.tz, name, config.source_site(name))
        q = pd.concat([x for x in (*ref_quarantine, v.quarantine) if len(x)] or
                      [empty_quarantine()], ignore_index=True)
        if q.empty and _same_as_snapshot(lake, table, v.accepted, committed):
            res.status = "unchanged"
            return res
        run_id = new_run_id()
        _begin_run(store, run_id, name, table, wm, mapped_by)
        lake.write_snapshot(table, v.accepted, run_id)
        counts = dict(read=ref_read, accepted=len(v.accepted), quarantined=len(q),
                      duplicates=v.duplicates)
        with store.begin() as c:
            rows = _quarantine_rows(q, run_id, name)
            if rows:
                c.execute(quarantine.insert(), rows)
            store.set_watermark(c, name, ref_position)
            c.execute(ingest_runs.update().where(ingest_runs.c.run_id == run_id).values(
                status="committed", finished=now_utc(),
                watermark_after=json.dumps(ref_position, default=str), **counts))
        committed.add(run_id)
        res.add(**counts)
        res.runs.append(run_id)
    if res.batches == 0:
        res.status = "unchanged"
    return res


def _read_ahead(batches: Iterator) -> Iterator:
    """The next batch is read on a background thread while this one is validated and
    written (pyarrow's parsing and most column kernels run outside the GIL). One batch ahead
    at most; an error reading it is raised here, in order, after the batches before it."""
    out: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    taken = threading.Event()
    done = object()

    def offer(item) -> bool:
        """Hand an item over and wait until it is taken, unless the consumer has stopped
        (then never block): the next batch is read only then, so at most two batches are
        in memory, the one being validated and the one being read."""
        taken.clear()
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        while not stop.is_set():
            if taken.wait(0.1):
                return True
        return False

    def produce() -> None:
        try:
            for b in batches:
                if not offer((b, None)):
                    return
            offer((done, None))
        except BaseException as exc:   # noqa: BLE001 - handed to the consumer, raised there
            offer((done, exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()      # the connector's files are closed by the thread reading them

    th = threading.Thread(target=produce, name="emraudit-read-ahead", daemon=True)
    th.start()
    try:
        while True:
            item, exc = out.get()
            taken.set()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        th.join()


@dataclass
class _Pending:
    """A validated batch whose lake files are being written; it commits once they are."""

    run_id: str
    batch: object
    quarantine: pd.DataFrame
    coverage: pd.DataFrame
    counts: dict
    files: Future
    coverage_of: Callable[[pd.DataFrame], pd.DataFrame] | None = None   # for a trimmed batch


class _LakeWriter:
    """Writes each batch's Parquet files on one background thread, so that encoding and
    fsync (pyarrow, outside the GIL) overlap reading and validating the next batch. Batches
    still commit one by one and only after their files are written, so a crash leaves what
    it always left: committed batches, and uncommitted files the next ingest removes."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emraudit-lake")

    def submit(self, events: pd.DataFrame, day: pd.Series, run_id: str) -> Future:
        return self.pool.submit(self.lake.write_events, events, run_id, day)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _commit_batch(store: Store, lake: Lake, name: str, p: _Pending, committed: set[str],
                  known: "_KnownIds", res: SourceResult, t: float,
                  on_batch: Callable[[SourceResult], None] | None,
                  on_stage: Callable[[str], None] | None = None) -> float:
    """Wait for a batch's files, then commit its run, quarantine, coverage and watermark in
    one transaction. Returns the stage clock."""
    files = p.files.result()
    t = res.timed("lake", t)
    if on_stage:
        on_stage("ingest:after-lake-write")
    with store.begin() as c:
        serialize_commits(c)       # first: no other writer's batch commits until this one has
        files = _refuse_foreign_copies(c, lake, p, files, committed, known)
        written_days = sorted({lake.day_of(f) for f in files})
        rows = _quarantine_rows(p.quarantine, p.run_id, name)
        if rows:
            c.execute(quarantine.insert(), rows)
        _merge_coverage(c, p.coverage)
        store.set_watermark(c, name, p.batch.position)
        done = c.execute(ingest_runs.update().where(
            ingest_runs.c.run_id == p.run_id, ingest_runs.c.status == "running").values(
            status="committed", finished=now_utc(),
            watermark_after=json.dumps(p.batch.position, default=str),
            days=json.dumps(written_days),
            detail=json.dumps({"files": [str(f.relative_to(lake.root)) for f in files],
                               "notes": p.batch.notes}, ensure_ascii=False),
            **p.counts))
        if done.rowcount != 1:
            raise UserError(f"ingest run {p.run_id} of source '{name}' was marked failed by "
                            "another process while it ran (a lock removed by force?); this "
                            "batch was not kept: run the command again")
    committed.add(p.run_id)
    known.landed(p.run_id)
    t = res.timed("commit", t)
    res.add(**p.counts)
    res.days.update(written_days)
    res.runs.append(p.run_id)
    if on_batch:
        on_batch(res)
    progress.current().track(f"ingest {name}", res.read, unit="rows")
    return t


def _refuse_foreign_copies(conn: sa.Connection, lake: Lake, p: _Pending, files: list,
                           committed: set[str], known: "_KnownIds") -> list:
    """At the commit point: drop from this batch the events a run committed since this
    ingest began (another writer) already stored, rewriting its (still invisible) files, and
    count them as duplicates. Returns the batch's files. Nothing to do, and no file read,
    unless such a run touched the batch's days."""
    days = sorted({lake.day_of(f) for f in files})
    if not days:
        return files
    runs = conn.execute(sa.select(ingest_runs.c.run_id).where(
        ingest_runs.c.status == "committed", ingest_runs.c.table_name == "access_log",
        sa.or_(*[ingest_runs.c.days.like(f'%"{d}"%') for d in days]))).scalars().all()
    foreign = sorted(set(runs) - committed - {p.run_id})
    if not foreign:
        return files
    committed.update(foreign)
    known.forget(days)          # later batches reload these days, the foreign runs included
    stored = lake.existing_event_ids(set(foreign), days)
    ids = known.in_flight.get(p.run_id)
    if ids is None or not len(stored) or not isin(ids, pd.Series(stored, dtype="string")).any():
        return files
    kept, events = lake.drop_events(files, stored)
    gone = p.counts["accepted"] - len(events)
    p.counts["accepted"] -= gone
    p.counts["duplicates"] += gone
    if p.coverage_of is not None:
        p.coverage = p.coverage_of(events) if len(events) else p.coverage.iloc[0:0]
    return kept


KNOWN_IDS_MAX = 16_000_000    # hashes of stored event ids held at once (128 MB)


class _KnownIds:
    """Event ids already in the lake for the days a source's batches touch, to drop
    re-delivered rows.

    Kept per site-local day as sorted 64-bit hashes, loaded when a batch first touches the
    day and grown with each written batch, so a large file in many batches is not re-read
    from the lake batch after batch (that was quadratic). At most KNOWN_IDS_MAX hashes are
    held: past that the days touched longest ago are let go and read again if touched again,
    so a month's backlog delivered in order holds a few days' ids, not the month's (30
    million ids, merged into one array per batch, were most of a backlog ingest's memory).
    Batches written but not committed yet are checked whatever their day. A hash hit is
    confirmed against the stored ids themselves, so a collision never drops an event: only
    true duplicates are counted.
    """

    def __init__(self, lake: Lake, committed: set[str]):
        self.lake, self.committed = lake, committed
        self.by_day: dict[str, np.ndarray] = {}       # least recently touched first
        # ids of batches added but not yet committed (their files are still being written)
        self.in_flight: dict[str, pd.Series] = {}
        self._flying: dict[str, np.ndarray] = {}       # their hashes, sorted

    @property
    def held(self) -> int:
        return sum(len(h) for h in self.by_day.values())

    def _touch(self, days: list[str]) -> None:
        """Load the days not held, mark all of them recently touched, let old days go."""
        for d in days:
            h = self.by_day.pop(d, None)
            if h is None:
                h = np.sort(id_hashes(self.lake.existing_event_ids(self.committed, [d])))
            self.by_day[d] = h
        keep = set(days)
        for d in list(self.by_day):
            if self.held <= KNOWN_IDS_MAX:
                break
            if d not in keep:
                del self.by_day[d]

    def duplicates(self, ids: pd.Series, days: list[str], hashes: np.ndarray) -> np.ndarray:
        """Which of `ids` (whose `id_hashes` are `hashes`) are stored."""
        self._touch(days)
        hit = np.zeros(len(hashes), dtype=bool)
        for h in [*(self.by_day[d] for d in days), *self._flying.values()]:
            hit |= in_sorted(h, hashes)
        if hit.any():   # confirm exactly (rare outside a re-delivered file)
            stored = pd.Series(self.lake.existing_event_ids(self.committed, days),
                               dtype="string")
            exact = pd.concat([stored, *(s.astype("string") for s in self.in_flight.values())],
                              ignore_index=True)
            hit[hit] = isin(ids[hit], exact)
        return hit

    def add(self, run_id: str, ids: pd.Series, hashes: np.ndarray, day: pd.Series) -> None:
        """A batch about to be written (`day`: each row's site-local day): its ids count as
        known from now on."""
        self.in_flight[run_id] = ids
        self._flying[run_id] = np.sort(hashes)
        codes, days = pd.factorize(pd.Series(day).astype("string"))
        for i, d in enumerate(days):
            held = self.by_day.get(d)
            if held is not None:     # timsort on two sorted runs is a linear merge
                self.by_day[d] = np.sort(np.concatenate([held, np.sort(hashes[codes == i])]),
                                         kind="stable")

    def landed(self, run_id: str) -> None:
        """The batch committed: its ids are read from the lake from now on."""
        self.in_flight.pop(run_id, None)
        self._flying.pop(run_id, None)

    def forget(self, days: list[str]) -> None:
        """Load these days again when next touched (another writer added to them)."""
        for d in days:
            self.by_day.pop(d, None)


def _same_as_snapshot(lake: Lake, table: str, frame: pd.DataFrame, committed: set[str]) -> bool:
    """A reference table identical to its newest snapshot needs no new snapshot."""
    old = lake.read_snapshot(table, committed)
    if old is None or len(old) != len(frame):
        return False
    new = frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
    if list(old.columns) != list(new.columns):
        return False
    return bool((_row_hashes(old) == _row_hashes(new)).all())


def _row_hashes(df: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row, comparable across a Parquet round trip.

    Timestamps are hashed as UTC nanoseconds, not formatted as text (formatting a million
    tz-aware timestamps costs tens of seconds); everything else as its string form.
    """
    cols = {}
    for name, col in df.items():
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
            if isinstance(col.dtype, pd.DatetimeTZDtype):
                col = col.dt.tz_convert("UTC").dt.tz_localize(None)
            cols[name] = col.dt.as_unit("ns").to_numpy().view("i8")
        else:
            cols[name] = col.astype("string")
    return pd.util.hash_pandas_object(pd.DataFrame(cols, index=df.index), index=False).to_numpy()


def ingest(config: Config, store: Store, lake: Lake, *, only: list[str] | None = None,
           on_batch: Callable[[SourceResult], None] | None = None,
           on_stage: Callable[[str], None] | None = None) -> list[SourceResult]:
    """Ingest every enabled source (reference tables first, then access logs).

    A source that fails (unreadable, malformed beyond quarantine) is reported with its error
    and the others go on; configuration mistakes are raised before anything is read.
    """
    check_writable(config, reports=False)
    with writer_lock(store, "ingest"):
        _fail_stale_runs(store)          # under the lock: no other writer's run is live
        committed = store.committed_runs()
        lake.remove_orphans(committed)
        ensure_commit_point(store)
        names = [n for n in config.sources if only is None or n in only]
        names.sort(key=lambda n: (config.source_table(n) == "access_log", n))
        results = []
        for name in names:
            try:
                results.append(ingest_source(config, store, lake, name, committed, on_batch,
                                             on_stage))
            except UserError as err:
                if isinstance(err, (LockedError, StorageError)):
                    raise                # not this source's fault: the others would fail too
                results.append(SourceResult(name, config.source_table(name), status="failed",
                                            error=str(err)))
        return results


def format_results(results: list[SourceResult]) -> str:
    """The per-source table `emraudit ingest` and `scan` print."""
    lines = [f"{'source':24} {'table':16} {'read':>10} {'accepted':>10} {'quarantined':>11} "
             f"{'duplicate':>10}  status"]
    for r in results:
        status = r.status if not r.error else f"FAILED: {r.error}"
        lines.append(f"{r.name:24} {r.table:16} {r.read:>10,} {r.accepted:>10,} "
                     f"{r.quarantined:>11,} {r.duplicates:>10,}  {status}")
    return "\n".join(lines)
