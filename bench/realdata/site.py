"""A converted data set written as a hospital site (canonical CSVs and emraudit.toml) and
scanned through the command line, as an officer would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

TABLES = ("access_log", "users", "patients", "care_relations", "workstations")


def write_site(root: Path, tables: dict, name: str, extra_toml: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [f'[site]\nname = "{name}"\ntimezone = "UTC"\n',
             '[store]\nurl = "sqlite:///emraudit.db"\nlake = "lake"\n',
             '[reports]\ndir = "reports"\nlang = "en"\n']
    for t in TABLES:
        if t not in tables:
            continue
        df = tables[t].copy()
        for c in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[c]):
                df[c] = df[c].dt.strftime("%Y-%m-%d %H:%M:%S")
        df.to_csv(root / f"{t}.csv", index=False)
        lines.append(f'[sources.{t}]\nconnector = "csv"\npath = "{t}.csv"\n')
    if "truth" in tables:
        tables["truth"].to_csv(root / "truth.csv", index=False)
    cfg = root / "emraudit.toml"
    cfg.write_text("\n".join(lines) + extra_toml, encoding="utf-8")
    return cfg


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emraudit", *args], capture_output=True,
                          text=True)


def scan(cfg: Path) -> dict:
    """`emraudit scan` then `emraudit findings --format jsonl`; exit codes and findings."""
    for p in ("emraudit.db", "lake", "reports"):
        q = cfg.parent / p
        if q.is_dir():
            import shutil
            shutil.rmtree(q)
        elif q.exists():
            q.unlink()
    t0 = time.perf_counter()
    res = cli("scan", "--config", str(cfg), "--quiet")
    secs = time.perf_counter() - t0
    (cfg.parent / "scan.log").write_text(res.stdout + res.stderr, encoding="utf-8")
    out = cli("findings", "--config", str(cfg), "--format", "jsonl")
    found = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    failed = [ln for ln in res.stdout.splitlines() if " failed " in ln]
    return {"exit": res.returncode, "seconds": round(secs, 1), "findings": found,
            "failed": failed, "log": res.stdout[-3000:] + res.stderr[-2000:]}
