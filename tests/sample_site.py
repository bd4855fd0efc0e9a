"""A private copy of the bundled sample hospital, run through the real command line (shared by
the clean-failure, leftover and masking tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"
TESTS = Path(__file__).resolve().parent


def copy_sample(dest: Path, **reports) -> Path:
    """The sample's CSVs and configuration in `dest`, its reports in `dest/reports`;
    `reports` keys replace [reports] keys (e.g. lang="en"). Returns the config's path."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in SAMPLE.glob("*.csv"):
        shutil.copy(f, dest / f.name)
    text = (SAMPLE / "emraudit.toml").read_text(encoding="utf-8")
    text = text.replace('dir = "../reports"', 'dir = "reports"')
    for key, value in reports.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        text = "\n".join(lines) + "\n"
        text = text.replace("[reports]\n", f"[reports]\n{key} = {value}\n")
    (dest / "emraudit.toml").write_text(text, encoding="utf-8")
    return dest / "emraudit.toml"


def env(**extra) -> dict:
    out = {k: v for k, v in os.environ.items()
           if k not in ("EMRAUDIT_STORE_URL", "EMRAUDIT_LAKE", "EMRAUDIT_CONFIG")}
    out.update(extra)
    return out


def emraudit(*args, script: str | None = None, timeout: int = 300
             ) -> subprocess.CompletedProcess:
    """`emraudit ARGS` in a fresh process (through tests/SCRIPT when given)."""
    head = [str(TESTS / script)] if script else ["-m", "emraudit"]
    return subprocess.run([sys.executable, *head, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env())


def state(cfg_path: Path) -> dict:
    """What a scan leaves: live findings, cases, event ids in the lake, scan statuses."""
    from emraudit.config import load_config
    from emraudit.lake import Lake
    from emraudit.store import Store, cases, findings, scans
    cfg = load_config(cfg_path)
    store = Store(cfg.store_url)
    try:
        with store.engine.connect() as c:
            fids = sorted(r[0] for r in c.execute(sa.select(findings.c.finding_id).where(
                findings.c.retracted_scan.is_(None))))
            cids = sorted(r[0] for r in c.execute(sa.select(cases.c.case_id)))
            statuses = [r[0] for r in c.execute(sa.select(scans.c.status)
                                                .order_by(scans.c.started))]
        ids = Lake(cfg.lake_dir, cfg.tz).read_events(store.committed_runs(),
                                                    columns=["event_id"])["event_id"]
    finally:
        store.dispose()
    return {"findings": fids, "cases": cids, "events": len(ids),
            "unique_events": int(ids.nunique()), "scans": statuses}
