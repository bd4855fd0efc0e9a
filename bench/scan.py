"""End-to-end benchmark of the nightly scan (issue 8). Run by hand, not in the tests:

    .venv/bin/python bench/scan.py                 # 1, 3 and 10 million events
    .venv/bin/python bench/scan.py --sizes 1000000 --keep --profile
    .venv/bin/python bench/scan.py --reuse         # rescan the nights a --keep run left

For each size N it generates a hospital with the sample generator (three days of about N
events each: the generator needs three; the second is the history day, the third the night
being scanned, the first is dropped), scans the history day in a scratch store to obtain its
user-day features, and builds the store the night's scan runs on: the reference tables, the
night's access log and a 30-day baseline of stored user-day features (the history day's
replayed over the 30 days before the night, as a month of nightly scans would have left
them). It then times `emraudit scan` of the night in a subprocess: end to end, per stage
(read, validate, lake write, load, each detector, store findings and cases, reports), and
peak resident memory after each stage and detector. It prints one table and the time pyarrow
alone needs to parse the same day's CSV: the floor no scan can beat.

`--raw-history` keeps the history day's raw events in the lake too, so detectors with a raw
look-back (explanations by earlier treatment, 28-day volume and hour baselines, pending
break-the-glass) load two days instead of one: the cost of each raw look-back day.

`--unexplained 0,0.03,0.2` scans each size once per share (the night is generated once;
each share's run restores it and moves its own share): that share of the night's
record views and look-ups is moved to patients lying in *other* departments (a feed that
explains less, or staff browsing), so the cost of what stays unexplained is measured: the
scan's time and memory must not grow with it (issue 16).

`--repeat 3` scans each share's night three times, the shares interleaved, and reports the
run of median time (with every run's time): the same night's time swings by a fifth on a
shared machine, and the bound is a ratio of two nights.

`--backlog 30` measures a hospital's first self-inspection instead (issue 21): the generator
builds 30 days of about N events each, and one `emraudit scan` on a fresh store ingests and
scans all of them (no stored baseline: the backlog builds its own). Its peak memory is to be
compared with a one-night run of the same N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _split_days(src: Path, day1: Path, day2: Path) -> str:
    """Split the generated access log into the history day and the scanned day (pyarrow:
    30 million rows as pandas strings would not fit beside the scan)."""
    with src.open(encoding="utf-8") as fh:
        names = fh.readline().strip().split(",")
    table = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False))
    days = pc.utf8_slice_codeunits(table.column("ts"), 0, 10)
    vc = pc.value_counts(days)
    counts = pd.Series(vc.field("counts").to_numpy(),
                       index=vc.field("values").to_pylist()).sort_index()
    # the last full day (a night shift spills a few events past the generated period)
    last = counts[counts >= counts.median() / 2].index[-1]
    prev = counts.index[counts.index < last][-1]
    opts = pacsv.WriteOptions(quoting_style="needed")
    pacsv.write_csv(table.filter(pc.and_(pc.greater_equal(days, prev), pc.less(days, last))),
                    day1, opts)
    pacsv.write_csv(table.filter(pc.greater_equal(days, last)), day2, opts)
    return last


def _replay_baseline(db_url: str, first_day: str, n_days: int = 30) -> pd.DataFrame:
    """The stored features of the history day, copied over the 30 days before it too."""
    from emraudit.store import Store, user_day_features
    store = Store(db_url)
    rows = store.read_table(user_day_features, user_day_features.c.day == first_day)
    if rows.empty:
        return rows
    out = [rows]
    for k in range(1, n_days + 1):
        part = rows.copy()
        part["day"] = (pd.Timestamp(first_day) - pd.Timedelta(days=k)).strftime("%Y-%m-%d")
        out.append(part)
    return pd.concat(out, ignore_index=True)


def _store_baseline(db_url: str, rows: pd.DataFrame) -> None:
    from emraudit.store import Store, upsert, user_day_features
    store = Store(db_url)
    with store.begin() as c:   # days a scan already stored are overwritten alike
        upsert(c, user_day_features, rows.to_dict("records"), ["user_id", "day"])


ENGINE: list[str] = []     # extra `emraudit scan` arguments (--engine spark …)
MEMORY_LIMIT: list[int] = []   # --memory-limit-mb: [engine] memory_limit_mb of the night's scan
_LIMIT_MARK = "# bench: memory budget of the night's scan\n"


def _scan(cfg: Path, profile: Path | None = None) -> tuple[float, int, dict]:
    """Run one scan in a child process; wall time, peak RSS (bytes) and its stored summary.

    With `profile`, the scan runs under pyinstrument (pip install pyinstrument) and its call
    tree is written there; times then include the profiler's overhead.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    prefix = [PY, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(profile)] \
        if profile else [PY]
    proc = subprocess.Popen(prefix + ["-m", "emraudit", "scan", "--config", str(cfg)] + ENGINE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = _TreePss(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    sampler.stop = True
    sampler.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed:\n{out}\n{err}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    import sqlalchemy as sa
    eng = sa.create_engine(f"sqlite:///{cfg.parent / 'emraudit.db'}")
    with eng.connect() as c:
        summary = json.loads(c.execute(sa.text(
            "SELECT summary FROM scans WHERE status='committed' ORDER BY started DESC LIMIT 1"))
            .scalar())
    eng.dispose()
    summary["tree_pss_peak_mb"] = sampler.peak_mb
    summary["tree_pss_peak_at"] = [round(sampler.peak_at, 1), sampler.peak_procs]
    return wall, max(peak, before) * 1024, summary


class _TreePss(threading.Thread):
    """Samples the proportional set size of the scan and its worker processes together
    (shared pages counted once) every 0.2 s: the machine's memory the scan needs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_mb = pid, False, 0.0
        # when the peak was reached (s after the scan started) and by how many processes:
        # which stage to look at
        self.peak_at, self.peak_procs = 0.0, 0
        self.t0 = time.perf_counter()

    def _tree(self, pid: int) -> list[int]:
        out = [pid]
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    for child in fh.read().split():
                        out += self._tree(int(child))
        except OSError:
            pass
        return out

    @staticmethod
    def _pss_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stop:
            tree = self._tree(self.pid)
            total = sum(self._pss_kb(p) for p in tree)
            if total / 1024 > self.peak_mb:
                self.peak_mb = total / 1024
                self.peak_at, self.peak_procs = time.perf_counter() - self.t0, len(tree)
            time.sleep(0.2)


def _redirect(log: Path, work: Path, share: float, seed: int) -> int:
    """Move `share` of the log's views and look-ups to patients admitted to another
    department than the accessing user's; returns how many were moved."""
    if share <= 0:
        return 0
    rng = np.random.default_rng(seed)
    table = pacsv.read_csv(log, convert_options=pacsv.ConvertOptions(
        column_types={"patient_id": pa.string(), "user_id": pa.string()},
        strings_can_be_null=True))
    rel = pd.read_csv(work / "care_relations.csv", dtype=str, usecols=["patient_id",
                                                                        "department"])
    rel = rel.dropna().drop_duplicates("patient_id")
    users = pd.read_csv(work / "users.csv", dtype=str, usecols=["user_id", "department"])
    action = table.column("action").to_numpy(zero_copy_only=False)
    pid = table.column("patient_id").to_numpy(zero_copy_only=False)
    uid = table.column("user_id").to_numpy(zero_copy_only=False)
    cand = np.flatnonzero(np.isin(action, ["view", "query"]) & pd.notna(pid))
    pick = np.sort(rng.choice(cand, size=int(round(share * len(cand))), replace=False))
    udept = pd.Series(users["department"].to_numpy(), index=users["user_id"]).reindex(
        uid[pick]).to_numpy()
    depts = rel["department"].to_numpy()
    choice = rng.integers(0, len(rel), size=len(pick))
    same = depts[choice] == udept
    while same.any():          # redraw the few that landed in the user's own department
        choice[same] = rng.integers(0, len(rel), size=int(same.sum()))
        same = depts[choice] == udept
    new = pid.copy()
    new[pick] = rel["patient_id"].to_numpy()[choice]
    table = table.set_column(table.schema.get_field_index("patient_id"), "patient_id",
                             pa.array(new, type=pa.string()))
    pacsv.write_csv(table, log, pacsv.WriteOptions(quoting_style="needed"))
    return len(pick)


def _night_files(work: Path) -> list[Path]:
    return [work / "emraudit.db", work / "access_log.csv"]


def _save_night(work: Path) -> None:
    """Keep a copy of the prepared night (store + log) so `--reuse` can rerun the scan alone."""
    import sqlite3
    db, log = _night_files(work)
    saved = db.with_name(db.name + ".night")
    saved.unlink(missing_ok=True)
    # the backup API copies what the WAL still holds too (a plain copy of the file would
    # miss it while this process keeps the store open)
    with sqlite3.connect(db) as src, sqlite3.connect(saved) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    shutil.copy(log, log.with_name(log.name + ".night"))


def _restore_night(work: Path) -> bool:
    saved = [f.with_name(f.name + ".night") for f in _night_files(work)]
    if not all(f.exists() for f in saved):
        return False
    for f, s in zip(_night_files(work), saved):
        f.unlink(missing_ok=True)     # a new file: a connection still open keeps the old one
        shutil.copy(s, f)
    for extra in ("emraudit.db-wal", "emraudit.db-shm"):
        (work / extra).unlink(missing_ok=True)
    shutil.rmtree(work / "lake", ignore_errors=True)
    shutil.rmtree(work / "reports", ignore_errors=True)
    return True


def _parse_floor(csv: Path) -> float:
    """Seconds pyarrow alone needs to parse the file, in a child process: the parsed table
    (12 GB for a 30-day backlog) is not to stay in this process's memory pool."""
    code = ("import sys, time, pyarrow.csv as c; t = time.perf_counter(); "
            "c.read_csv(sys.argv[1]); print(time.perf_counter() - t)")
    out = subprocess.run([PY, "-c", code, str(csv)], check=True, capture_output=True,
                         text=True).stdout
    return float(out.strip())


def _set_memory_limit(cfg: Path) -> None:
    """The night's config with the budget asked for (or without any the bench added)."""
    text = cfg.read_text(encoding="utf-8").split(_LIMIT_MARK)[0]
    if MEMORY_LIMIT:
        text += f"{_LIMIT_MARK}[engine]\nmemory_limit_mb = {MEMORY_LIMIT[0]}\n"
    cfg.write_text(text, encoding="utf-8")


def _run_night(work: Path, n: int, out: Path, profile: bool, gen_s: float,
               baseline_rows: int, night_csv: Path) -> dict:
    floor = _parse_floor(night_csv)
    _set_memory_limit(work / "emraudit.toml")
    wall, peak, summary = _scan(work / "emraudit.toml",
                                out / f"profile-{n}.txt" if profile else None)
    src = summary["sources"]["access_log"]
    # the scan's own record of its peak (ru_maxrss of children also counts the history scan)
    peak_gb = max(summary.get("peak_mb", {}).values(), default=peak / 2**20) / 1024
    return {"n": src["read"], "generate_s": gen_s, "wall_s": wall, "peak_gb": peak_gb,
            "pyarrow_s": floor, "baseline_rows": baseline_rows, "summary": summary,
            "ingest": src.get("timings", {})}


def bench_one(n: int, out: Path, seed: int, profile: bool = False,
              raw_history: bool = False, reuse: bool = False, keep: bool = False,
              unexplained: float = 0.0) -> dict:
    from emraudit.commands.demo import sample_config
    from emraudit.demo.generate import generate
    work = out / f"n{n}"
    if reuse and _restore_night(work):
        rows = int((work / "baseline_rows").read_text())
        moved = _redirect(work / "access_log.csv", work, unexplained, seed)
        res = _run_night(work, n, out, profile, 0.0, rows, work / "access_log.csv")
        res.update(unexplained=unexplained, moved=moved)
        return res
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    generate(work, seed=seed, days=3, size=3 * n)
    gen_s = time.perf_counter() - t
    full = work / "access_log.csv"
    day1, day2 = work / "day1.csv", work / "day2.csv"
    last = _split_days(full, day1, day2)
    full.unlink()
    cfg = work / "emraudit.toml"
    cfg.write_text(sample_config("reports", work.name), encoding="utf-8")
    db = work / "emraudit.db"
    # the history day: ingest + scan, which leaves its user-day features in the store
    shutil.move(day1, full)
    _scan(cfg)
    first = (pd.Timestamp(last) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    baseline = _replay_baseline(f"sqlite:///{db}", first)
    if raw_history:   # the night's log is appended to the history day's
        with full.open("a", encoding="utf-8") as fh, day2.open(encoding="utf-8") as src:
            next(src)
            shutil.copyfileobj(src, fh)
    else:             # a store holding only the 30-day baseline; the night's log alone
        db.unlink()
        for extra in ("emraudit.db-wal", "emraudit.db-shm"):
            (work / extra).unlink(missing_ok=True)
        shutil.rmtree(work / "lake")
        shutil.rmtree(work / "reports", ignore_errors=True)
        shutil.copy(day2, full)
    from emraudit.store import Store
    Store(f"sqlite:///{db}")   # creates the schema
    _store_baseline(f"sqlite:///{db}", baseline)
    if keep and not raw_history:   # the night before any views are moved: every share's
        _save_night(work)          # run restores it and moves its own share
        (work / "baseline_rows").write_text(str(len(baseline)))
    moved = _redirect(full, work, unexplained, seed)
    res = _run_night(work, n, out, profile, gen_s, len(baseline), day2 if raw_history else full)
    res.update(unexplained=unexplained, moved=moved)
    return res


def bench_backlog(n: int, days: int, out: Path, seed: int, reuse: bool = False,
                  keep: bool = False) -> dict:
    """Generate `days` days of about `n` events each and scan them all in one run."""
    work = out / f"backlog{days}x{n}"
    log = work / "access_log.csv"
    saved = log.with_name(log.name + ".backlog")
    gen_s = 0.0
    if not (reuse and saved.exists()):
        shutil.rmtree(work, ignore_errors=True)
        t = time.perf_counter()
        # in a child process: the generator's 30 days of events in memory (~13 GB at 30M)
        # are returned to the machine before the scan starts
        subprocess.run([PY, "-m", "emraudit", "demo", "generate", "--out", str(work),
                        "--seed", str(seed), "--days", str(days), "--size", str(days * n),
                        "--reports-dir", "reports"], check=True, stdout=subprocess.DEVNULL)
        gen_s = time.perf_counter() - t
        if keep:
            shutil.copy(log, saved)
    else:                       # a fresh store over the same generated backlog
        for f in ("emraudit.db", "emraudit.db-wal", "emraudit.db-shm", "emraudit.lock"):
            (work / f).unlink(missing_ok=True)
        for d in ("lake", "reports", "state"):
            shutil.rmtree(work / d, ignore_errors=True)
        shutil.copy(saved, log)
    res = _run_night(work, n, out, False, gen_s, 0, log)
    res.update(unexplained=0.0, moved=0, backlog_days=days)
    return res


def _median_run(runs: list[dict]) -> dict:
    """The run of median time (the lower of the middle two: a run that happened, with all
    its stages), carrying every run's time as `runs_s`."""
    chosen = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return dict(chosen, runs_s=[r["wall_s"] for r in runs])


def _against_zero(r: dict, results: list[dict]) -> str:
    """This night's time over the time of the same size's night with nothing moved."""
    base = next((b for b in results if b["n"] == r["n"] and not b.get("unexplained")
                 and not b.get("backlog_days")), None)
    return f"{r['wall_s'] / base['wall_s']:.2f}x" if base and base["wall_s"] else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,3000000,10000000")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true",
                    help="keep the generated data and the prepared night (for --reuse)")
    ap.add_argument("--reuse", action="store_true",
                    help="rerun the scan of a night kept by an earlier --keep run")
    ap.add_argument("--profile", action="store_true",
                    help="profile the night's scan with pyinstrument (bench/out/profile-N.txt)")
    ap.add_argument("--raw-history", action="store_true",
                    help="keep the history day's raw events in the lake (two days loaded)")
    ap.add_argument("--unexplained", default="0",
                    help="shares of the night's views moved to other departments' patients, "
                         "e.g. 0,0.03,0.2 (one scan each)")
    ap.add_argument("--engine", choices=("local", "spark"),
                    help="detection engine of the night's scan (default: the config's)")
    ap.add_argument("--spark-master", help="with --engine spark: the master (local[2])")
    ap.add_argument("--memory-limit-mb", type=int, metavar="MB",
                    help="[engine] memory_limit_mb of the night's scan (default: the engine's, "
                         "70%% of the memory available)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="scan each share's night N times, the shares interleaved (0%%, "
                         "20%%, 0%%, 20%% …); the table shows each share's median run and "
                         "every run's time (a shared machine swings one night by a fifth)")
    ap.add_argument("--backlog", type=int, default=0, metavar="DAYS",
                    help="generate DAYS days of N events each and scan them in one run "
                         "on a fresh store (a first self-inspection)")
    args = ap.parse_args()
    if args.engine:
        ENGINE[:] = ["--engine", args.engine] + (
            ["--spark-master", args.spark_master] if args.spark_master else [])
    if args.memory_limit_mb:
        MEMORY_LIMIT[:] = [args.memory_limit_mb]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    sizes = [int(x) for x in args.sizes.split(",")]
    for n in sizes if args.backlog else ():
        r = bench_backlog(n, args.backlog, out, args.seed, args.reuse, args.keep)
        results.append(r)
        print(f"done backlog {args.backlog} x {n:,}: {r['wall_s']:.1f}s", file=sys.stderr)
    for n in () if args.backlog else sizes:
        shares = [float(x) for x in args.unexplained.split(",")]
        runs: dict[float, list[dict]] = {share: [] for share in shares}
        # the night is generated and prepared once per size; each further run restores it
        # (kept for the run) and moves its own share of the views
        many = (len(shares) > 1 or args.repeat > 1) and not args.raw_history
        k = 0
        for _ in range(max(1, args.repeat)):
            for share in shares:
                r = bench_one(n, out, args.seed, args.profile, args.raw_history,
                              args.reuse or k > 0 and many, args.keep or args.reuse or many,
                              unexplained=share)
                k += 1
                runs[share].append(r)
                print(f"done {n:,} ({share:.0%} moved): {r['wall_s']:.1f}s", file=sys.stderr)
        for share in shares:
            results.append(_median_run(runs[share]))
        if not (args.keep or args.reuse):
            shutil.rmtree(out / f"n{n}", ignore_errors=True)
    stages = ["read", "validate", "lake", "commit"]
    det_ids = sorted({d for r in results for d in r["summary"]["detectors"]})
    head = ["stage"] + [f"{r['n']:,} ev" + (f", {r['unexplained']:.0%} moved"
                                             if r.get("unexplained") else "")
                        + (f", {r['backlog_days']} days" if r.get("backlog_days") else "")
                        for r in results]
    rows = [["scan end to end (s)"] + [f"{r['wall_s']:.1f}" for r in results],
            ["  every run, in order (s)"] + [
                ", ".join(f"{w:.1f}" for w in r.get("runs_s", [r["wall_s"]])) for r in results],
            ["  against the size's 0% night"] + [_against_zero(r, results) for r in results],
            ["pyarrow parse alone (s)"] + [f"{r['pyarrow_s']:.1f}" for r in results],
            ["ratio to pyarrow"] + [f"{r['wall_s'] / r['pyarrow_s']:.1f}x" for r in results],
            ["peak RSS (GB)"] + [f"{r['peak_gb']:.2f}" for r in results],
            ["peak PSS, scan + workers, sampled (GB)"] + [
                f"{r['summary'].get('tree_pss_peak_mb', 0) / 1024:.2f}" for r in results],
            ["  reached at (s after start) / processes"] + [
                "{} / {}".format(*r["summary"].get("tree_pss_peak_at", ["?", "?"]))
                for r in results],
            ["  memory budget (MB) / worker starts held back"] + [
                "{} / {}".format(r["summary"].get("engine", {}).get("memory_limit_mb", "-"),
                                 r["summary"].get("engine", {}).get("held_back", "-"))
                for r in results]]
    for phase in ("plan", "population", "global", "detect"):
        # the scan's own process after each engine phase: RSS then / high-water so far
        rows.append([f"  scan's process after {phase}: RSS / peak (GB)"] + [
            "{:.2f} / {:.2f}".format(m.get("rss", 0) / 1024, m.get("peak", 0) / 1024)
            if (m := r["summary"].get("engine", {}).get("parent_mb", {}).get(phase))
            else "-" for r in results])
    for s, label in (("population", "population pass"), ("global", "global step"),
                     ("detect", "detect pass")):
        rows.append([f"  engine: {label} (s)"]
                    + [f"{r['summary'].get('engine', {}).get(s, 0):.2f}" for r in results])
    for s in stages:
        rows.append([f"  ingest: {s} (s)"] + [f"{r['ingest'].get(s, 0):.2f}" for r in results])
    for s in ("load", "detect", "store", "reports"):
        rows.append([f"  {s} (s)"] + [f"{r['summary']['timings'].get(s, 0):.2f}"
                                      for r in results])
    shared = sorted({k for r in results for k in r["summary"].get("shared_work", {})})
    for k in shared:
        rows.append([f"    detect: shared work {k} (s)"] + [
            f"{r['summary'].get('shared_work', {}).get(k, 0):.2f}" for r in results])
    rows.append(["  start-up, imports, commit (s)"] + [
        f"{r['wall_s'] - sum(v for k, v in r['summary']['timings'].items() if k != 'total'):.2f}"
        for r in results])
    rows.append(["  baseline user-days stored"] + [f"{r['baseline_rows']:,}" for r in results])
    for s in ("ingest", "load", "detect", "store", "reports"):
        rows.append([f"  peak RSS after {s} (GB)"] + [
            f"{r['summary'].get('peak_mb', {}).get(s, 0) / 1024:.2f}" for r in results])
    for d in det_ids:
        rows.append([f"    {d} (s)"] + [
            f"{r['summary']['detectors'].get(d, {}).get('seconds', 0):.2f}" for r in results])
    for d in det_ids:
        rows.append([f"    peak after {d} (GB)"] + [
            f"{r['summary']['detectors'].get(d, {}).get('peak_mb', 0) / 1024:.2f}"
            for r in results])
    rows.append(["findings"] + [str(r["summary"]["findings"]) for r in results])
    rows.append(["cases touched"] + [str(r["summary"].get("cases", "")) for r in results])
    rows.append(["  admitted to the review queue"] + [
        str(r["summary"].get("queued", "")) for r in results])
    rows.append(["  below the budget"] + [str(r["summary"].get("below_budget", ""))
                                          for r in results])
    rows.append(["views moved to other departments"] + [str(r.get("moved", 0))
                                                         for r in results])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    for row in [head] + rows:
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))))
    print(f"\nmachine: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
