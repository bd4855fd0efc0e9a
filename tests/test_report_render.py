"""The per-scan report folder: contents, permissions, contract, escaping, masking, ledger,
languages, grouping display and crash safety."""

from __future__ import annotations

import csv
import html as html_mod
import json
import re
import stat
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit.model import FINDING_COLUMNS
from emraudit.reports import write_scan_reports
from emraudit.store import findings, scans
from test_report_fixture import (CASE_A, CASE_OLD, CASE_P, FORMULA_DEPT, PATIENT, PATIENT_NAME,
                                 SCAN1, XSS_USER, build)

ZH_HEADERS = ["序号", "案件编号", "整改事项", "问题描述", "检出规则", "风险等级",
              "涉及人员（工号/姓名/科室）", "岗位", "患者", "发现时间", "立案日期", "证据（事件及来源）",
              "核实结论", "整改措施", "已采取的整改措施", "责任部门", "责任人", "整改时限", "整改状态",
              "整改完成日期", "是否逾期"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One zh rendering shared by the read-only tests of this module."""
    tmp = tmp_path_factory.mktemp("rep")
    cfg, store, lake = build(tmp, lang="zh")
    out = write_scan_reports(cfg, store, lake, SCAN1)
    return cfg, store, lake, out


def _read(p):
    return p.read_text(encoding="utf-8")


def test_folder_contents_permissions_and_latest(rendered):
    cfg, _, _, out = rendered
    assert out == cfg.reports_dir / SCAN1
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert names == {"index.html", "findings.jsonl", "ledger.csv", "ledger.xlsx", "ledger.html",
                     "cases", f"cases/{CASE_P}.html", f"cases/{CASE_A}.html"}
    for p in [out, out / "cases", cfg.reports_dir]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in out.rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    latest = cfg.reports_dir / "latest"
    assert latest.resolve() == out.resolve()
    assert not list(cfg.reports_dir.glob(".tmp-*"))


def test_findings_jsonl_is_exactly_the_contract(rendered):
    _, store, _, out = rendered
    lines = _read(out / "findings.jsonl").splitlines()
    objs = [json.loads(line) for line in lines]
    # the contract's fields, and in a Chinese report each sentence in Chinese beside it
    assert all(set(o) == set(FINDING_COLUMNS) | {"summary_zh"} for o in objs)
    with store.engine.connect() as c:
        want = {r[0] for r in c.execute(sa.select(findings.c.finding_id)
                                        .where(findings.c.last_scan == SCAN1))}
    assert {o["finding_id"] for o in objs} == want and len(objs) == 2
    assert all(isinstance(o["event_ids"], list) and isinstance(o["evidence"], dict)
               for o in objs)
    by = {o["detector"]: o for o in objs}
    vip = by["snoop.vip"]
    assert vip["message_id"] == "snoop.vip" and vip["message_args"]["patient"] == "P0*****67"
    assert vip["summary"].startswith("U001 opened the record of VIP patient P0*****67 3 times")
    assert vip["summary_zh"].startswith("U001 在无诊疗关系、也无其他正当理由的情况下查阅重点人员")
    assert by["bulk.volume"]["message_id"] is None           # stored before messages
    assert by["bulk.volume"]["summary_zh"] == "批量查阅：账号 U002"


def test_log_values_are_escaped_everywhere(rendered):
    _, _, _, out = rendered
    index = _read(out / "index.html")
    case = _read(out / "cases" / f"{CASE_P}.html")
    for page in (index, case):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "</script><script>" not in page
    # server-rendered: HTML entities
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in case
    assert "&lt;img src=x onerror=alert(3)&gt;" in case
    assert "&lt;/script&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in case
    assert "审核员&lt;i&gt;x&lt;/i&gt;" in _read(out / "cases" / f"{CASE_A}.html")
    # inline JSON for the table script: \u escapes, cannot close the script block
    block = re.search(r'<script type="application/json" id="case-data">(.*?)</script>', index,
                      re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in block
    rows = json.loads(block)
    assert {r["userName"] for r in rows} >= {XSS_USER}
    # exactly the two script elements we write (data block + table script); none in cases
    assert index.count("<script") == 2 and case.count("<script") == 0


def test_no_external_resources_and_csp(rendered):
    _, _, _, out = rendered
    for page in out.rglob("*.html"):
        html = _read(page)
        assert not re.search(r'(src|href|action)\s*=\s*["\']?\s*(https?:)?//', html, re.I), page
        assert "@import" not in html and not re.search(r"url\(\s*['\"]?(https?:)?//", html)
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
        assert csp and "default-src 'none'" in html_mod.unescape(csp.group(1))


def test_patients_masked_in_pages_and_ledger(rendered):
    _, _, _, out = rendered
    texts = [_read(p) for p in out.rglob("*.html")] + [_read(out / "ledger.csv"),
                                                        _read(out / "findings.jsonl")]
    for t in texts:
        assert PATIENT_NAME not in t and PATIENT not in t
    case = _read(out / "cases" / f"{CASE_P}.html")
    assert "张*明" in case and "P0*****67" in case


def test_unmask_is_explicit_and_recorded(tmp_path):
    """The pages show what was asked; recording it is the caller's (the scan, `report scan
    --unmask`: tests/test_report_cli.py): reports only read the store."""
    from emraudit.results import mark_unmasked
    cfg, store, lake = build(tmp_path, lang="en")
    out = write_scan_reports(cfg, store, lake, SCAN1, unmask=True)
    case = _read(out / "cases" / f"{CASE_P}.html")
    assert PATIENT_NAME in case and PATIENT in case and 'id="unmasked-banner"' in case
    with store.engine.connect() as c:
        assert not c.execute(sa.select(scans.c.unmasked)
                             .where(scans.c.scan_id == SCAN1)).scalar()
    with store.begin() as c:
        mark_unmasked(c, SCAN1)
    with store.engine.connect() as c:
        assert c.execute(sa.select(scans.c.unmasked).where(scans.c.scan_id == SCAN1)).scalar()


def test_case_page_tells_who_whom_what_why(rendered):
    _, _, _, out = rendered
    case = _read(out / "cases" / f"{CASE_P}.html")
    for needle in ["VIP", "本院职工",                       # whom + flags
                   "access_log.csv:2", "WS-ICU-01", "10.0.0.7",  # what, source reference
                   "不成立", "宽限：前 3 天，后 30 天",          # explanations tried, why failed
                   "住院，2025-07-01 起（尚未结束），病区 心内科一病区",   # the patient's relation
                   "宽限期（天）", ">7<",                       # thresholds with numbers
                   "（八）泄露患者隐私问题",
                   CASE_OLD, "属实",                            # earlier confirmed case
                   "重新打开", "有正当理由",                     # history and disposition
                   '<svg class="chart"', 'class="flag"']:
        assert needle in case, needle
    # the headline: the top finding's sentence in Chinese, masked, with the case's extras
    assert ("U001 在无诊疗关系、也无其他正当理由的情况下查阅重点人员（VIP）患者 P0*****67 的病历 3 次"
            "（另有 1 项发现）；严重程度由“高”升为“严重”：2 条规则同时命中") in case
    # a finding stored before messages (English summary only) reads as a Chinese sentence
    assert "非工作时间批量查阅：账号 U001，患者 P0*****67" in case
    assert "viewed records off duty" not in case
    # the English gloss of the item is for English pages only
    assert "Item 8 — leaking patient privacy" not in case
    # grouping: both detectors' findings on the one (user, patient) case, the older one
    # (from an earlier scan) shown without the "this scan" tag
    assert case.count('<div class="finding"') == 2
    assert case.count('<span class="tag">本次扫描</span>') == 1
    from emraudit.detectors.registry import get
    assert get("snoop.vip").measure_zh in case and get("snoop.vip").note_zh in case
    assert get("snoop.vip").note not in case
    account = _read(out / "cases" / f"{CASE_A}.html")
    assert "审核员" in account and "@SUM(A1) talked to him" in account


def test_ledger_csv_and_xlsx(rendered):
    """The scan folder's ledger covers every open problem (CASE_OLD is from an earlier scan)
    and gives source references for the events this scan's report loaded."""
    cfg, _, _, out = rendered
    raw = (out / "ledger.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ZH_HEADERS
    body = {r[1]: dict(zip(ZH_HEADERS, r)) for r in rows[1:]}
    assert set(body) == {CASE_P, CASE_A, CASE_OLD}
    p = body[CASE_P]
    assert p["责任部门"] == "'" + FORMULA_DEPT            # neutralized
    assert p["责任人"] == "'@owner"                       # no departments table: the fallback
    assert FORMULA_DEPT in p["涉及人员（工号/姓名/科室）"]  # inside text: harmless
    assert p["患者"] == "P0*****67"
    assert p["整改事项"] == "（八）泄露患者隐私问题；（九）电子病历系统管理不到位问题"
    assert "access_log.csv:2" in p["证据（事件及来源）"] and "查看" in p["证据（事件及来源）"]
    assert "access_log.csv" not in body[CASE_OLD]["证据（事件及来源）"]   # not loaded here
    assert p["发现时间"] == "2025-07-02 23:10"                 # the first access
    assert (body[CASE_A]["核实结论"], body[CASE_A]["整改状态"]) == ("属实", "待整改")
    assert (p["核实结论"], p["整改状态"]) == ("待核实", "待整改")
    for r in rows[1:]:
        assert all(not c[:1] in ("=", "+", "-", "@") for c in r), r
    assert "ledger-table" in _read(out / "ledger.html")

    from openpyxl import load_workbook
    ws = load_workbook(out / "ledger.xlsx").active
    head = [c.value for c in ws[1]]
    assert head == ZH_HEADERS
    cells = [c for row in ws.iter_rows(min_row=2) for c in row]
    assert all(c.data_type != "f" for c in cells)
    # every data cell wraps at the top; dates (opened, deadline) read as dates, nothing else
    assert all(c.alignment.wrap_text and c.alignment.vertical == "top" for c in cells)
    dated = {c.column for c in cells if c.number_format == "yyyy-mm-dd"}
    assert dated and all(c.is_date for c in cells if c.column in dated and c.value)
    assert all(c.number_format == "General" for c in cells if c.column not in dated)
    strings = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + FORMULA_DEPT in strings and "'@owner" in strings
    assert not any(s[:1] in ("=", "+", "-", "@") for s in strings)


def test_both_languages_render(tmp_path):
    cfg, store, lake = build(tmp_path / "en", lang="en")
    out = write_scan_reports(cfg, store, lake, SCAN1)
    index, case = _read(out / "index.html"), _read(out / "cases" / f"{CASE_P}.html")
    assert '<html lang="en">' in index and "EMR access audit" in index
    # the coverage card: each field's fill rate, the field named in the report's language
    assert '<span class="tag">workstation 90%</span>' in index
    assert '<span class="tag">IP address 40%</span>' in index
    assert "Why: findings and evidence" in case and "failed" in case
    assert "（八）泄露患者隐私问题" in case            # the official wording stays Chinese
    assert "Item 8 — leaking patient privacy" in case  # with its English gloss
    assert ("U001 opened the record of VIP patient P0*****67 3 times with no care relation or "
            "other explanation (+1 more finding)") in case
    assert "-U001 viewed records off duty." in case    # a stored English summary, as it is
    with open(out / "ledger.csv", encoding="utf-8-sig") as fh:
        assert next(csv.reader(fh))[:4] == ["No.", "Case", "Rectification item",
                                            "Problem description"]
    cfg2, store2, lake2 = build(tmp_path / "zh", lang="zh")
    out2 = write_scan_reports(cfg2, store2, lake2, SCAN1)
    index2 = _read(out2 / "index.html")
    assert '<html lang="zh-CN">' in index2 and "电子病历访问审计" in index2
    assert "EMR access audit" not in index2
    assert '<span class="tag">工作站 90%</span>' in index2
    assert '<span class="tag">IP 地址 40%</span>' in index2


def test_reports_only_read_what_the_scan_decided(tmp_path):
    """A report never groups findings again nor writes cases: findings whose case the store
    does not hold get no page, and rendering leaves findings and cases as they were."""
    from emraudit.store import cases as cases_t
    cfg, store, lake = build(tmp_path, lang="en")
    with store.begin() as c:
        c.execute(sa.delete(cases_t).where(cases_t.c.case_id == CASE_A))
    before_f = store.read_table(findings, order_by=findings.c.finding_id)
    before_c = store.read_table(cases_t, order_by=cases_t.c.case_id)
    out = write_scan_reports(cfg, store, lake, SCAN1)
    assert {p.stem for p in (out / "cases").glob("*.html")} == {CASE_P}
    pd.testing.assert_frame_equal(before_f, store.read_table(findings,
                                                             order_by=findings.c.finding_id))
    pd.testing.assert_frame_equal(before_c, store.read_table(cases_t,
                                                             order_by=cases_t.c.case_id))


def test_below_budget_cases_get_no_page_but_render_on_demand(tmp_path):
    from click.testing import CliRunner
    from emraudit.cli import main
    from emraudit.store import cases as cases_t
    cfg, store, lake = build(tmp_path, lang="zh")
    with store.begin() as c:
        c.execute(cases_t.update().where(cases_t.c.case_id == CASE_P).values(queued=False))
    out = write_scan_reports(cfg, store, lake, SCAN1)
    assert not (out / "cases" / f"{CASE_P}.html").exists()
    index = _read(out / "index.html")
    assert 'id="queue-banner"' in index
    page = tmp_path / "one.html"
    r = CliRunner().invoke(main, ["report", "case", "--config", str(cfg.path), CASE_P[:10],
                                  "--out", str(page)])
    assert r.exit_code == 0, r.output
    html = _read(page)
    assert CASE_P in html and "张*明" in html and PATIENT_NAME not in html
    assert "低于当晚审核额度" in html


def test_the_ledger_counts_below_budget_cases_and_lists_them_on_request(tmp_path):
    """An open case below the review budget is not a ledger row (nobody was given it to
    verify); the ledger's HTML and XLSX say how many such cases it leaves out, and
    `emraudit report ledger --include-below-budget` lists them. Resolved problems below the
    budget stay rows: a reviewer decided them."""
    from click.testing import CliRunner
    from openpyxl import load_workbook

    from emraudit.cli import main
    from emraudit.store import cases as cases_t
    cfg, store, lake = build(tmp_path, lang="zh")
    with store.begin() as c:
        c.execute(cases_t.update().where(cases_t.c.case_id == CASE_P).values(queued=False))
    out = write_scan_reports(cfg, store, lake, SCAN1)
    html = _read(out / "ledger.html")
    assert f'id="row-{CASE_A}"' in html and f'id="row-{CASE_P}"' not in html
    assert "另有 1 个待复核案例低于每晚复核预算" in html
    wb = load_workbook(out / "ledger.xlsx")
    assert wb.sheetnames == ["问题台账", "说明"]
    assert wb["说明"]["A1"].value.startswith("另有 1 个待复核案例")
    ids = [r[1] for r in wb["问题台账"].iter_rows(min_row=2, values_only=True)]
    assert CASE_A in ids and CASE_P not in ids
    with open(out / "ledger.csv", encoding="utf-8-sig") as fh:
        assert CASE_P not in fh.read()

    page = tmp_path / "all.html"
    r = CliRunner().invoke(main, ["report", "ledger", "--config", str(cfg.path),
                                  "--include-below-budget", "--out", str(page)])
    assert r.exit_code == 0, r.output
    html = _read(page)
    assert f'id="row-{CASE_P}"' in html and "低于每晚复核预算" not in html
    assert load_workbook(page.with_suffix(".xlsx")).sheetnames == ["问题台账"]

    # decided below the budget: a problem row again
    with store.begin() as c:
        c.execute(cases_t.update().where(cases_t.c.case_id == CASE_P).values(
            status="resolved", disposition="confirmed"))
    out = write_scan_reports(cfg, store, lake, SCAN1)
    html = _read(out / "ledger.html")
    assert f'id="row-{CASE_P}"' in html and 'id="below-budget"' not in html


def test_a_crash_leaves_no_half_report(tmp_path, monkeypatch):
    cfg, store, lake = build(tmp_path, lang="en")
    first = write_scan_reports(cfg, store, lake, SCAN1)
    before = (first / "index.html").read_bytes()
    from emraudit.reports import ledger

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ledger, "write_xlsx", boom)
    with pytest.raises(RuntimeError):
        write_scan_reports(cfg, store, lake, SCAN1)
    assert (first / "index.html").read_bytes() == before       # the earlier one intact
    assert (first / "ledger.xlsx").exists()
    assert not list(cfg.reports_dir.glob(".tmp-*"))


def test_thirty_day_chart_uses_stored_daily_features(tmp_path):
    """Days outside the findings' own days come from user_day_features (no month of raw
    events read); the findings' days are counted from the lake."""
    cfg, store, lake = build(tmp_path, lang="en")
    from emraudit.store import user_day_features
    with store.begin() as c:
        c.execute(user_day_features.insert(), [
            dict(user_id="U001", day="2025-06-20", features=json.dumps({"events": 99})),
            dict(user_id="U001", day="2025-07-02", features=json.dumps({"events": 1}))])
    out = write_scan_reports(cfg, store, lake, SCAN1)
    case = _read(out / "cases" / f"{CASE_P}.html")
    assert "<title>2025-06-20: 99</title>" in case
    assert "<title>2025-07-02: 7</title>" in case     # the lake wins on the day it read


def test_a_scan_without_findings_still_reports_the_open_queue(tmp_path):
    """A "nothing new" night still shows what waits for review (the queue is not the last
    scan's): the open queued case keeps its page and its ledger row."""
    cfg, store, lake = build(tmp_path, lang="en")
    with store.begin() as c:
        c.execute(scans.insert().values(scan_id="s-empty", started=datetime.now(timezone.utc),
                                        status="running"))
    out = write_scan_reports(cfg, store, lake, "s-empty")
    assert (out / "findings.jsonl").read_text() == ""
    index = _read(out / "index.html")
    assert "No findings in this scan." in index
    assert "1 open cases to review" in index
    assert [p.stem for p in (out / "cases").iterdir()] == [CASE_P]
    with open(out / "ledger.csv", encoding="utf-8-sig") as fh:   # the store's open problems
        assert len(list(csv.reader(fh))) == 4


def test_private_dir_tightens_our_folder_but_never_a_shared_one(tmp_path):
    import os
    from emraudit.reports.files import private_dir
    mine = tmp_path / "reports"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    private_dir(mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_case_pages_written_by_forked_workers_equal_the_serial_ones(tmp_path, monkeypatch):
    """Two processes writing the case pages give the same folder, page for page."""
    from emraudit import forking
    from emraudit.reports import render
    monkeypatch.setattr(render.Fmt, "now", lambda self: "2026-01-01 00:00")
    outs = {}
    for workers in (1, 2):
        cfg, store, lake = build(tmp_path / f"w{workers}", lang="zh")
        out = write_scan_reports(cfg, store, lake, SCAN1, workers=workers)
        outs[workers] = {p.relative_to(out).as_posix(): p.read_bytes()
                         for p in out.rglob("*") if p.is_file() and p.suffix != ".xlsx"}
    assert len([n for n in outs[2] if n.startswith("cases/")]) == 2
    assert outs[1] == outs[2]
    assert forking._JOB is None      # nothing of the run is left for a later fork


def test_time_formatting_is_remembered_per_value_and_format():
    import pandas as pd
    from emraudit.reports.page import Fmt
    f = Fmt("Asia/Shanghai")
    assert f.ts("2025-07-01T00:30:00Z") == "2025-07-01 08:30:00"
    assert f.day("2025-07-01T00:30:00Z") == "2025-07-01"            # same value, other format
    assert f.ts(pd.Timestamp("2025-07-01 00:30", tz="UTC")) == "2025-07-01 08:30:00"
    assert f.ts(None) == f.ts(pd.NaT) == f.ts("") == ""
    assert f.ts(["not", "hashable"]) == "['not', 'hashable']"      # formatted, not remembered
    assert len(f._seen) == 6


def test_local_hours_and_days_of_events_for_the_charts():
    import numpy as np
    import pandas as pd
    from emraudit.reports.render import _local_parts
    ts = pd.Series(pd.to_datetime(["2025-07-01 15:59:59.9", "2025-06-30 16:00:00.0",
                                   "2025-07-01 03:07:30.0"], utc=True)).dt.tz_convert(
        "Asia/Shanghai")
    hours, days = _local_parts(ts)
    assert days.tolist() == ["2025-07-01", "2025-07-01", "2025-07-01"]
    want = (ts.dt.hour + ts.dt.minute / 60.0 + ts.dt.second / 3600.0).to_numpy(float)
    assert np.array_equal(hours, want) and hours[0] == 23 + 59 / 60 + 59 / 3600


def test_pages_written_beside_a_parallel_findings_file_equal_the_serial_ones(tmp_path,
                                                                            monkeypatch):
    """With findings.jsonl written by forked workers, the case pages are written by a
    process of their own meanwhile, forked before the file's patients are learned: the same
    folder, file for file, as pages then file in one process."""
    from emraudit import forking
    from emraudit.reports import findings_jsonl, render
    monkeypatch.setattr(render.Fmt, "now", lambda self: "2026-01-01 00:00")
    forked = []
    real = forking.Forked.__init__

    def spy(self, fn, job, folder):
        forked.append(fn.__name__)
        real(self, fn, job, folder)

    monkeypatch.setattr(forking.Forked, "__init__", spy)
    outs = {}
    # plain: one process; beside: the pages' own process beside the file's workers;
    # pooled: the pages by a pool of workers, then the file's workers beside the ledger
    for name, minimum, workers in (("plain", 10 ** 9, None), ("beside", 1, None),
                                   ("pooled", 1, 2)):
        monkeypatch.setattr(findings_jsonl, "PARALLEL_MIN_FINDINGS", minimum)
        cfg, store, lake = build(tmp_path / name, lang="zh")
        out = write_scan_reports(cfg, store, lake, SCAN1, workers=workers)
        outs[name] = {p.relative_to(out).as_posix(): p.read_bytes()
                      for p in out.rglob("*") if p.is_file() and p.suffix != ".xlsx"}
    assert forked == ["_render_all"]
    assert len([n for n in outs["beside"] if n.startswith("cases/")]) == 2
    assert outs["plain"] == outs["beside"] == outs["pooled"]
    assert not [n for n in outs["pooled"] if ".findings-" in n or ".forked-" in n]


def test_the_file_s_workers_run_beside_the_cases_loading_and_the_ledger(tmp_path,
                                                                       monkeypatch):
    """findings.jsonl's learners fork before the cases load and its writers before the
    ledger is written; the parts are joined after it."""
    from emraudit.reports import findings_jsonl, ledger, render
    monkeypatch.setattr(findings_jsonl, "PARALLEL_MIN_FINDINGS", 1)
    steps: list[str] = []
    real_map, real_load = findings_jsonl.ForkedMap, render.load_cases
    real_ledger, real_join = ledger.write_ledger, findings_jsonl.FindingsFile._join

    def fork(fn, job, items, workers):
        steps.append(fn.__name__)
        return real_map(fn, job, items, workers)

    def load(*a, **k):
        steps.append("load_cases")
        return real_load(*a, **k)

    def write_ledger(*a, **k):
        steps.append("ledger")
        return real_ledger(*a, **k)

    def join(self):
        steps.append("join")
        return real_join(self)

    counted: list[int] = []
    real_dash = render.dashboard_model

    def dash(views, ld, *a, **k):
        counted.append(ld.n_findings)
        return real_dash(views, ld, *a, **k)
    monkeypatch.setattr(render, "dashboard_model", dash)
    monkeypatch.setattr(findings_jsonl, "ForkedMap", fork)
    monkeypatch.setattr(render, "load_cases", load)
    monkeypatch.setattr(ledger, "write_ledger", write_ledger)
    monkeypatch.setattr(findings_jsonl.FindingsFile, "_join", join)
    cfg, store, lake = build(tmp_path, lang="en")
    out = write_scan_reports(cfg, store, lake, SCAN1, workers=None)
    assert steps == ["patients_of", "load_cases", "write_part", "ledger", "join"]
    lines = (out / "findings.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == counted[0] >= 2      # the dashboard's count, before the file ended


@pytest.mark.parametrize("where", ["pages", "findings", "ledger", "join"])
def test_a_failure_anywhere_in_the_report_leaves_no_half_report(tmp_path, monkeypatch, where):
    """A failure in the pages' process is raised in the report's; one in findings.jsonl
    (after the pages' process has forked) kills that process; the ledger failing while the
    file's workers write, or the joining of their parts, ends those workers. Either way
    neither the report's folder nor a part folder is left, nor any worker."""
    import multiprocessing as mp
    from emraudit.forking import ForkedError
    from emraudit.reports import findings_jsonl, ledger, render
    monkeypatch.setattr(findings_jsonl, "PARALLEL_MIN_FINDINGS", 1)
    cfg, store, lake = build(tmp_path, lang="en")

    def boom(*a, **k):
        raise RuntimeError("disk full")
    owner, name = {"pages": (render, "_render_case_pages"),
                   "findings": (findings_jsonl.FindingsFile, "write"),
                   "ledger": (ledger, "write_ledger"),
                   "join": (findings_jsonl.FindingsFile, "_join")}[where]
    monkeypatch.setattr(owner, name, boom)
    with pytest.raises(ForkedError if where == "pages" else RuntimeError, match="disk full"):
        write_scan_reports(cfg, store, lake, SCAN1, workers=None)
    assert not list(cfg.reports_dir.glob(".tmp-*"))
    assert not list(cfg.reports_dir.rglob(".findings-*"))
    assert not (cfg.reports_dir / "latest").exists()
    assert not mp.active_children()
