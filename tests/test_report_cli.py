"""`emraudit report scan|patient|summary` through the CLI."""

from __future__ import annotations

import csv
import stat

import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.store import scans
from test_report_fixture import (CASE_P, PATIENT, PATIENT_NAME, SCAN0, SCAN1, XSS_USER,
                                 build)


def _run(*args):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return res


def test_report_scan_rerenders_a_stored_scan(tmp_path):
    cfg, store, _ = build(tmp_path, lang="en")
    conf = str(tmp_path / "emraudit.toml")
    res = _run("report", "scan", "--config", conf, "--scan-id", SCAN1)
    assert res.exit_code == 0, res.output
    assert (cfg.reports_dir / SCAN1 / "cases" / f"{CASE_P}.html").exists()
    # default: the latest committed scan (SCAN1 is still running in the fixture)
    res = _run("report", "scan", "--config", conf, "--unmask")
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(f"{SCAN0}/index.html")
    assert (cfg.reports_dir / "latest").resolve() == (cfg.reports_dir / SCAN0).resolve()
    with store.engine.connect() as c:
        assert c.execute(sa.select(scans.c.unmasked).where(scans.c.scan_id == SCAN0)).scalar()
    res = _run("report", "scan", "--config", conf, "--scan-id", "nope")
    assert res.exit_code == 2 and "no scan 'nope'" in res.output


def test_patient_access_report(tmp_path):
    build(tmp_path, lang="en")
    conf = str(tmp_path / "emraudit.toml")
    out = tmp_path / "out" / "p.html"
    res = _run("report", "patient", "--config", conf, PATIENT, "--from", "2025-07-01",
               "--to", "2025-07-02", "--out", str(out))
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert PATIENT_NAME not in html and PATIENT not in html and "张*明" in html
    assert 'id="n-accesses">4<' in html and 'id="n-unexplained">3<' in html
    assert "own care relation" in html            # U002's admission explains U002
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS_USER not in html
    rows = list(csv.reader(out.with_suffix(".csv").read_text("utf-8-sig").splitlines()))
    assert rows[0][:3] == ["time", "account", "name"] and len(rows) == 5
    by_user = {}
    for r in rows[1:]:
        by_user.setdefault(r[1], []).append(r)
    assert {r[9] for r in by_user["U001"]} == {"none found"}
    assert by_user["U002"][0][9] == "own care relation"
    # the relation that explains it, in words (the engine's facts, not its internals)
    assert by_user["U002"][0][10] == "admission since 2025-06-30 (ongoing), 骨科, staff U002"
    modules = [r[6] for r in rows[1:]]
    assert "'+SUM(1,2)" in modules                # neutralized
    # the 07-03 day is outside the period: nothing from it
    assert all(r[0] < "2025-07-03" for r in rows[1:])


def test_period_summary(tmp_path):
    cfg, _, _ = build(tmp_path, lang="zh")
    conf = str(tmp_path / "emraudit.toml")
    res = _run("report", "summary", "--config", conf, "--from", "2025-06-01", "--to",
               "2025-07-31")
    assert res.exit_code == 0, res.output
    html_path, xlsx_path = [p for p in res.output.split()]
    html = open(html_path, encoding="utf-8").read()
    # two confirmed problems, none rectified yet: confirming is not rectifying
    assert 'id="kpi-cases">3<' in html and 'id="kpi-confirmed">2<' in html
    assert 'id="kpi-rectified">0<' in html and 'id="kpi-rate">0.0%<' in html
    assert "阶段汇总" in html and "U001" in html           # U001: two cases (repeat)
    assert "（八）泄露患者隐私问题" in html
    from openpyxl import load_workbook
    wb = load_workbook(xlsx_path)
    assert wb.sheetnames[0] == "概况" and "周趋势" in wb.sheetnames
    res = _run("report", "summary", "--config", conf, "--from", "2025-07-31", "--to",
               "2025-07-01")
    assert res.exit_code == 2 and "before --from" in res.output


def test_patient_report_without_the_explanation_engine(tmp_path, monkeypatch):
    """When the engine is missing or fails, accesses are still listed and nothing claims
    they were unexplained."""
    from emraudit.reports import patient
    cfg, store, lake = build(tmp_path, lang="en")
    monkeypatch.setattr(patient, "_explain", lambda *a, **k: None)
    html, _ = patient.write_patient_report(cfg, store, lake, PATIENT, "2025-07-01",
                                           "2025-07-03")
    text = html.read_text(encoding="utf-8")
    assert 'id="n-accesses">4<' in text and 'id="n-unexplained">—<' in text
    assert "explanation engine was not available" in text
    assert PATIENT not in html.name                 # the file name does not carry the id


def test_unmasked_patient_name_is_still_escaped(tmp_path):
    from test_report_fixture import XSS_PATIENT
    build(tmp_path, lang="zh")
    out = tmp_path / "p2.html"
    res = _run("report", "patient", "--config", str(tmp_path / "emraudit.toml"), "P50001",
               "--from", "2025-07-03", "--to", "2025-07-03", "--out", str(out), "--unmask")
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert XSS_PATIENT not in html and "&lt;b&gt;王&lt;/b&gt;小明" in html
    assert "P50001" in html and 'id="unmasked-banner"' in html


def test_a_scan_without_masking_records_it_on_the_scan(tmp_path):
    """[reports] mask_patients = false: the scan records on its own row that its reports
    show patients unmasked (the reports themselves write nothing to the store)."""
    from web_site import write_site
    cfg_path = write_site(tmp_path)
    text = cfg_path.read_text(encoding="utf-8")
    assert "mask_patients = true" in text
    cfg_path.write_text(text.replace("mask_patients = true", "mask_patients = false"),
                        encoding="utf-8")
    res = _run("scan", "--config", str(cfg_path))
    assert res.exit_code == 0, res.output
    from emraudit.config import load_config
    from emraudit.store import Store
    store = Store(load_config(cfg_path).store_url)
    with store.engine.connect() as c:
        flags = [r[0] for r in c.execute(sa.select(scans.c.unmasked))]
    assert flags == [True]


def test_two_scans_in_one_process_each_log_into_their_own_folder(tmp_path):
    """The scan's log file is its own: a second scan in the same process (of another
    configuration, whose first folder is gone) neither fails nor writes into the first's."""
    import logging
    import shutil
    from web_site import write_site
    first, second = write_site(tmp_path / "a"), write_site(tmp_path / "b")
    assert _run("scan", "--config", str(first)).exit_code == 0
    log_a = first.parent / "reports" / "emraudit.log"
    before = log_a.read_text(encoding="utf-8")
    assert "scan started" in before
    res = _run("scan", "--config", str(second))
    assert res.exit_code == 0, res.output
    assert log_a.read_text(encoding="utf-8") == before
    assert "scan started" in (second.parent / "reports" / "emraudit.log").read_text("utf-8")
    shutil.rmtree(first.parent)
    assert _run("scan", "--config", str(second)).exit_code == 0
    assert not [h for h in logging.getLogger("emraudit").handlers
                if isinstance(h, logging.FileHandler)
                and h.baseFilename.endswith("emraudit.log")]
