"""Progress on stderr at a terminal (ingest by source and rows, detection by detector, case
pages), silent with --quiet or when stderr is not a terminal (cron)."""

from __future__ import annotations

import io

import pandas as pd
from click.testing import CliRunner

from emraudit import progress
from emraudit.cli import main
from emraudit.config import load_config
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.store import Store


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _site(tmp_path, n=30):
    rows = [{"event_id": f"e{i}", "ts": f"2026-09-0{1 + i % 3} 10:{i:02d}:00",
             "user_id": f"U{i % 4}", "patient_id": f"P{i % 7}", "action": "view"}
            for i in range(n)]
    pd.DataFrame(rows).to_csv(tmp_path / "access_log.csv", index=False)
    pd.DataFrame([{"user_id": f"U{i}", "role": "nurse", "department": "ICU"}
                  for i in range(4)]).to_csv(tmp_path / "users.csv", index=False)
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\npath = "access_log.csv"\n'
        '[sources.users]\npath = "users.csv"\n', encoding="utf-8")
    return load_config(tmp_path / "emraudit.toml")


def test_only_a_terminal_gets_progress():
    assert progress.wanted(False, Terminal())
    assert not progress.wanted(True, Terminal())            # --quiet
    assert not progress.wanted(False, io.StringIO())        # cron: not a terminal


def test_ingest_shows_each_source_and_its_rows(tmp_path):
    cfg = _site(tmp_path)
    term = Terminal()
    with progress.showing(False, term):
        ingest(cfg, Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz))
    out = term.getvalue()
    assert "ingest users" in out and "ingest access_log" in out
    assert "30" in out.split("ingest access_log")[-1]          # the rows read
    assert "30rows" in out.split("ingest access_log")[-1]      # counted as rows
    assert "4rows" in out.split("ingest users")[-1].split("ingest access_log")[0]
    assert progress.current().enabled is False                 # off again after the block


def test_detection_shows_each_detector(tmp_path):
    from emraudit.detectors.profile import resolve_detectors
    from emraudit.scan import build_context, run_detectors
    cfg = _site(tmp_path)
    store = Store(cfg.store_url)
    lake = Lake(cfg.lake_dir, cfg.tz)
    ingest(cfg, store, lake)
    settings = resolve_detectors({}, None)
    ctx = build_context(cfg, store, lake, pd.Timestamp("2026-09-01", tz=cfg.tz),
                        pd.Timestamp("2026-09-04", tz=cfg.tz), settings)
    term = Terminal()
    with progress.showing(False, term):
        _, status = run_detectors(ctx, settings)
    ran = [d for d, s in status.items() if s.status in ("ran", "failed")]
    out = term.getvalue()
    assert "detect" in out and f"{len(ran)}/{len(ran)}" in out and ran[-1] in out


def test_quiet_and_forked_workers_draw_nothing():
    term = Terminal()
    with progress.showing(True, term) as p:
        p.track("detect", 1, 3)
        p.note("loading events …")
    assert term.getvalue() == ""
    p = progress.Progress(True, term)
    p._pid = -1                                 # as seen from a forked worker
    p.track("case pages", 5, 10)
    assert term.getvalue() == ""
    p = progress.Progress(True, term)
    p.note("loading events …")
    p.track("case pages", 5, 10, unit="pages")
    p.finish()
    assert "loading events" in term.getvalue() and "5/10" in term.getvalue()


def test_cli_under_cron_prints_no_progress(tmp_path):
    _site(tmp_path)
    res = CliRunner().invoke(main, ["ingest", "--config", str(tmp_path / "emraudit.toml")])
    assert res.exit_code == 0, res.output
    assert "rows/s" not in res.output and "\r" not in res.output
    assert "access_log" in res.output and "30" in res.output      # the counts table
