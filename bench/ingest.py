"""Ingest benchmark: a generated canonical CSV, parsed by pyarrow alone vs emraudit's csv
connector + model.validate over every batch. Prints rows/s and peak memory of each.

Run by hand (not part of the tests):

    .venv/bin/python bench/ingest.py                    # 10 million rows, about 800 MB
    .venv/bin/python bench/ingest.py --rows 2000000     # a quicker check

Targets (issue 2): the connector + validation within 3x of pyarrow's time, peak memory under
3 GB. Each measurement runs in its own process so that its peak RSS is its own. The file is
written under /tmp by default and removed afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ACTIONS = np.array(["view"] * 14 + ["query"] * 3 + ["update", "print", "export", "login",
                                                    "logout", "sign", "create"])
MODULES = np.array(["病历", "医嘱", "影像", "检验", "病案首页", "护理"])


def _text(a: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(a), pa.string())


def generate(path: Path, rows: int, seed: int = 7, chunk: int = 1_000_000,
             event_id: bool = True) -> None:
    """A canonical access_log CSV, written chunk by chunk with vectorized numpy/pyarrow.
    With `event_id` the rows carry the source's own ids (E0000001 …, as most EMR logs have a
    row id); without, validation derives them by hashing every row."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-07-01T00:00:00", "s")
    span = 30 * 86400
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            secs = np.sort(rng.integers(0, span, n))
            ts = pa.array(start + secs.astype("timedelta64[s]"), pa.timestamp("s"))
            users = rng.integers(0, 5000, n)
            ids = {"event_id": pc.binary_join_element_wise(
                "E", _text(np.arange(first + 1, first + n + 1)), "")} if event_id else {}
            table = pa.table({
                **ids,
                "ts": pc.strftime(ts, format="%Y-%m-%d %H:%M:%S"),
                "user_id": pc.binary_join_element_wise("U", _text(users), ""),
                "patient_id": pc.binary_join_element_wise(
                    "P", _text(rng.integers(0, 400_000, n)), ""),
                "action": pa.array(ACTIONS[rng.integers(0, len(ACTIONS), n)]),
                "module": pa.array(MODULES[rng.integers(0, len(MODULES), n)]),
                "workstation": pc.binary_join_element_wise("WS-", _text(users % 800), ""),
                "ip": pc.binary_join_element_wise("10.8.", _text(users // 250), ".",
                                                  _text(users % 250), ""),
                "outcome": pa.array(np.where(rng.random(n) < 0.002, "failure", "success")),
            })
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema,
                                         write_options=pacsv.WriteOptions(quoting_style="none"))
            writer.write_table(table)
        if writer is not None:
            writer.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def phase_pyarrow(path: Path, batch_rows: int) -> dict:
    """pyarrow alone: stream the file, every column as a string (what the connector asks)."""
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as fh:
        columns = fh.readline().strip().split(",")
    reader = pacsv.open_csv(
        str(path), read_options=pacsv.ReadOptions(block_size=64 << 20),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}))
    rows = 0
    for batch in reader:
        rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb()}


def phase_emraudit(path: Path, batch_rows: int) -> dict:
    """The csv connector (canonical profile) + model.validate on every batch."""
    from emraudit import model
    from emraudit.config import parse_config
    from emraudit.connectors import open_connector

    cfg = parse_config({"sources": {"access_log": {"path": str(path), "batch_rows": batch_rows}}},
                       path.parent / "emraudit.toml")
    t0 = time.perf_counter()
    conn = open_connector("access_log", cfg)
    read = accepted = quarantined = duplicates = 0
    t_validate = 0.0
    for batch in conn.batches(None):
        t1 = time.perf_counter()
        v = model.validate("access_log", batch.frame, cfg.tz, "access_log")
        t_validate += time.perf_counter() - t1
        read += batch.read
        accepted += len(v.accepted)
        quarantined += len(batch.quarantine) + len(v.quarantine)
        duplicates += v.duplicates
    return {"rows": read, "accepted": accepted, "quarantined": quarantined,
            "duplicates": duplicates, "seconds": time.perf_counter() - t0,
            "validate_seconds": t_validate, "peak_mb": peak_rss_mb()}


PHASES = {"pyarrow": phase_pyarrow, "emraudit": phase_emraudit}


def run_phase(name: str, path: Path, batch_rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--file", str(path),
                          "--batch-rows", str(batch_rows)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out-dir", default=os.path.join(tempfile.gettempdir(), "emraudit-bench"))
    ap.add_argument("--batch-rows", type=int, default=500_000)
    ap.add_argument("--keep", action="store_true", help="keep the generated CSV")
    ap.add_argument("--no-event-id", action="store_true",
                    help="leave event_id out, so validation derives every id by hashing")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](Path(args.file), args.batch_rows)))
        return

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"access_log_{args.rows}{'_noid' if args.no_event_id else ''}.csv"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.rows, event_id=not args.no_event_id)
        print(f"generated {args.rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB in "
              f"{time.perf_counter() - t0:.1f}s: {path}")
    try:
        base = run_phase("pyarrow", path, args.batch_rows)
        ours = run_phase("emraudit", path, args.batch_rows)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    for name, r in (("pyarrow alone", base), ("csv connector + validate", ours)):
        print(f"{name:26} {r['rows']:>12,} rows {r['seconds']:8.1f} s "
              f"{r['rows'] / r['seconds']:>12,.0f} rows/s  peak RSS {r['peak_mb']:,.0f} MB")
    print(f"  of which validate: {ours['validate_seconds']:.1f} s; accepted {ours['accepted']:,}, "
          f"quarantined {ours['quarantined']:,}, duplicates {ours['duplicates']:,}")
    ratio = ours["seconds"] / base["seconds"]
    print(f"ratio {ratio:.2f}x pyarrow (target <= 3x): {'OK' if ratio <= 3 else 'SLOWER'}; "
          f"peak {ours['peak_mb']:,.0f} MB (target < 3072 MB): "
          f"{'OK' if ours['peak_mb'] < 3072 else 'OVER'}")


if __name__ == "__main__":
    main()
