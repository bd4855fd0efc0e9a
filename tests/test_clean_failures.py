"""Clean failures (issue 17 item 5): an unwritable reports folder or store stops a scan before
it ingests, with one line naming the place and exit 2; a disk that fills half-way (the lake's
files, or the state database) ends in one clear line and exit 2, never a traceback, and leaves
the state so that a rerun produces exactly what an uninterrupted scan would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store, ingest_runs, scans
from sample_site import copy_sample, emraudit, state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    cfg = copy_sample(tmp_path_factory.mktemp("baseline"))
    r = emraudit("scan", "--config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    st = state(cfg)
    assert st["findings"] and st["events"] == st["unique_events"]
    return st


def _rerun_equals(cfg: Path, baseline: dict) -> dict:
    """Scan again on a disk that has room: every event once, the uninterrupted scan's
    findings and cases."""
    r = emraudit("scan", "--config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    after = state(cfg)
    assert after["events"] == after["unique_events"] == baseline["events"]
    assert after["findings"] == baseline["findings"]
    assert after["cases"] == baseline["cases"]
    return after


def _runs(cfg: Path) -> int:
    store = Store(load_config(cfg).store_url)
    with store.engine.connect() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(ingest_runs)).scalar()
    store.dispose()
    return n


def test_a_reports_folder_that_cannot_be_written_stops_the_scan_before_ingesting(tmp_path):
    cfg = copy_sample(tmp_path / "h", dir='"blocked/reports"')
    (tmp_path / "h" / "blocked").write_text("a file where the folder should be")
    res = CliRunner().invoke(main, ["scan", "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert "the reports folder" in res.output and "blocked/reports" in res.output
    assert "key 'reports.dir'" in res.output and "not writable" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert _runs(cfg) == 0                         # nothing was ingested


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_reports_folder_stops_the_scan_before_ingesting(tmp_path):
    cfg = copy_sample(tmp_path / "h")
    (tmp_path / "h" / "reports").mkdir(mode=0o500)
    try:
        res = CliRunner().invoke(main, ["scan", "--config", str(cfg)])
    finally:
        (tmp_path / "h" / "reports").chmod(0o700)
    assert res.exit_code == 2 and "permission denied" in res.output, res.output
    assert _runs(cfg) == 0


def test_a_read_only_store_is_one_line_and_exit_2(tmp_path):
    cfg = copy_sample(tmp_path / "h")
    Store(load_config(cfg).store_url).dispose()     # the database exists, with its tables
    db = tmp_path / "h" / "emraudit.db"
    text = cfg.read_text(encoding="utf-8").replace(
        'url = "sqlite:///emraudit.db"', f'url = "sqlite:///file:{db}?mode=ro&uri=true"')
    cfg.write_text(text, encoding="utf-8")
    r = emraudit("ingest", "--config", cfg)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the store is read-only" in r.stderr and "Traceback" not in r.stderr
    assert "run the command again" in r.stderr


def test_a_full_disk_while_writing_the_lake_then_a_rerun_recovers(tmp_path, baseline):
    cfg = copy_sample(tmp_path / "h")
    # small batches: some commit before the disk is full
    text = cfg.read_text(encoding="utf-8").replace(
        'path = "access_log.csv"\n', 'path = "access_log.csv"\nbatch_rows = 3000\n')
    cfg.write_text(text, encoding="utf-8")
    # nine reference snapshots, then the access log's day files: the 30th write fails
    r = emraudit("lake", 30, "scan", "--config", cfg, script="diskfull.py")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no space left on the device" in r.stderr and "Traceback" not in r.stderr
    mid = state(cfg)
    assert mid["scans"] == ["failed"]                 # not left "running"
    assert 0 < mid["events"] == mid["unique_events"] < baseline["events"]
    lake = tmp_path / "h" / "lake"
    assert not list(lake.rglob(".tmp-*"))              # no half-written file kept
    _rerun_equals(cfg, baseline)


@pytest.mark.parametrize("stage", ["scan:after-detectors", "scan:after-findings"])
def test_a_full_state_database_then_a_rerun_recovers(tmp_path, baseline, stage):
    """SQLite's own 'database or disk is full' (max_page_count at the file's size) while the
    findings or the reports' records are being written."""
    cfg = copy_sample(tmp_path / "h")
    r = emraudit("store", stage, "scan", "--config", cfg, script="diskfull.py")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no space left on the device (the state database refused a write)" in r.stderr
    assert "Traceback" not in r.stderr
    after = _rerun_equals(cfg, baseline)
    # the scan the full disk stopped is not left "running"
    assert after["scans"][0] in ("failed", "interrupted") and after["scans"][-1] == "committed"


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(where)], capture_output=True)
    return r.returncode == 0


def test_a_real_tiny_file_system_fills_up_then_a_rerun_recovers(tmp_path, baseline):
    """Where this machine lets a test mount a file system: store, lake and reports on a
    tmpfs too small for them, then grown (as freeing space would)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1500k"):
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        cfg = copy_sample(tmp_path / "h", dir=f'"{disk}/reports"')
        text = cfg.read_text(encoding="utf-8").replace(
            'url = "sqlite:///emraudit.db"', f'url = "sqlite:///{disk}/emraudit.db"').replace(
            'lake = "lake"', f'lake = "{disk}/lake"')
        cfg.write_text(text, encoding="utf-8")
        r = emraudit("scan", "--config", cfg)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "no space left on the device" in r.stderr and "Traceback" not in r.stderr
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        _rerun_equals(cfg, baseline)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
