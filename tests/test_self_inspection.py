"""The self-inspection report (issue 19 point 3): the DOCX is opened and its headings,
figures and numbers checked against the store; the HTML page carries the same; Chinese
renders in the charts when a CJK font is installed (CI installs fonts-noto-cjk)."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from docx import Document

from emraudit.cli import main
from emraudit.rectification import rectify_case
from emraudit.reports import figures
from emraudit.store import cases, coverage, scans
from test_report_fixture import CASE_A, CASE_OLD, CASE_P, TZ, _utc, build

NOW = datetime(2025, 7, 10, 2, tzinfo=timezone.utc)
ZH_SECTIONS = ["一、自查范围", "二、发现问题概况", "三、变化趋势", "四、典型案例", "五、原因分析",
               "六、整改措施及落实情况", "七、多次涉及案件的人员", "八、尚未完成的整改及下一步工作"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("si")
    cfg, store, lake = build(tmp / "site", lang="zh")
    rectify_case(store, CASE_A, "done", by="科主任", measure="约谈当事人；收紧查阅权限",
                 day="2025-07-08", tz=TZ, now=NOW)
    with store.begin() as c:          # a committed scan over the period
        c.execute(scans.update().where(scans.c.scan_id == "s20250701T000000aaaa").values(
            window_start=_utc("2025-07-01"), window_end=_utc("2025-07-04")))
    res = CliRunner().invoke(main, ["report", "self-inspection", "--config", str(cfg.path),
                                    "--from", "2025-06-01", "--to", "2025-07-31", "--out",
                                    str(tmp / "out" / "自查报告.docx")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    docx_path, html_path = res.output.split()
    return cfg, store, lake, docx_path, html_path


def _store_counts(store):
    """What the report must say, computed here from the stored cases alone."""
    rows = store.read_table(cases).to_dict("records")
    rows = [r for r in rows if "2025-06-01" <= r["first_seen"][:10] <= "2025-07-31"
            and r["status"] not in ("suppressed", "retracted")]
    items = {}
    for r in rows:
        for i in json.loads(r["items"]):
            items[i] = items.get(i, 0) + 1
    problems = [r for r in rows if r["status"] == "resolved"
                and r["disposition"] in ("confirmed", "training")]
    return {"cases": len(rows), "items": items, "confirmed": len(problems),
            "rectified": sum(1 for r in problems if r["rectification_status"] == "done"),
            "to_verify": sum(1 for r in rows if r["status"] == "open"),
            "people": len({r["user_id"] for r in rows})}


def _table_after(doc, heading):
    """The first table after the paragraph with this text."""
    from docx.table import Table
    seen = False
    for block in doc.iter_inner_content():
        if isinstance(block, Table):
            if seen:
                return block
        elif block.text.strip() == heading:
            seen = True
    raise AssertionError(f"no table after {heading!r}")


def test_docx_headings_and_numbers_match_the_store(report):
    cfg, store, _, docx_path, _ = report
    want = _store_counts(store)
    doc = Document(docx_path)
    assert doc.paragraphs[0].style.name == "Title"
    assert "电子病历系统访问自查整改报告" in doc.paragraphs[0].text
    h1 = [p.text for p in doc.paragraphs if p.style.name == "Heading 1"]
    assert h1 == ZH_SECTIONS
    text = "\n".join(p.text for p in doc.paragraphs)
    assert f"共发现案件 {want['cases']} 件，涉及工作人员 {want['people']} 人" in text
    assert f"尚待核实 {want['to_verify']} 件" in text
    assert f"核实属实的问题 {want['confirmed']} 件，已整改 {want['rectified']} 件，整改完成率 " \
           f"{100 * want['rectified'] / want['confirmed']:.1f}%" in text
    t = _table_after(doc, "按整改事项")
    got = {r.cells[0].text: int(r.cells[1].text) for r in t.rows[1:]}
    assert got == {"（八）泄露患者隐私问题": want["items"]["8"],
                   "（九）电子病历系统管理不到位问题": want["items"]["9"]}
    t = _table_after(doc, "按岗位")
    roles = {r.cells[0].text: int(r.cells[1].text) for r in t.rows[1:]}
    assert roles == {"护士": 2, "医师": 1}                 # U001 nurse (2 cases), U002
    # scope: days, events from the coverage table, the scan over the period
    with store.engine.connect() as c:
        events = c.execute(sa.select(sa.func.sum(coverage.c.events))).scalar()
    assert f"自查覆盖 61 天，其中 3 天有访问日志；共 1 个数据源、{events:,} 条访问记录；" \
           "开展夜间自动审计 1 次" in text
    # typical case: the confirmed one, masked, with its measure
    assert "案例 1（Caccountcase0001" in text
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    assert "已整改: 约谈当事人；收紧查阅权限" in cells
    assert "P00012367" not in text and "P00012367" not in " ".join(cells)


def test_docx_has_the_three_charts_and_chinese_fonts(report):
    _, _, _, docx_path, _ = report
    doc = Document(docx_path)
    assert len(doc.inline_shapes) == 3
    captions = [p.text for p in doc.paragraphs if p.text.startswith("图 ")]
    assert [c[:3] for c in captions] == ["图 1", "图 2", "图 3"]
    with zipfile.ZipFile(docx_path) as z:
        styles = z.read("word/styles.xml").decode("utf-8")
        pngs = [n for n in z.namelist() if n.endswith(".png")]
    assert 'w:eastAsia="宋体"' in styles and 'w:eastAsia="黑体"' in styles
    assert len(pngs) == 3


def test_html_page_has_the_same_figures(report):
    cfg, store, _, docx_path, html_path = report
    want = _store_counts(store)
    html = open(html_path, encoding="utf-8").read()
    assert f'id="kpi-cases">{want["cases"]}<' in html
    assert f'id="kpi-confirmed">{want["confirmed"]}<' in html
    assert html.count('src="data:image/png;base64,') == 3
    for s in ZH_SECTIONS:
        assert s in html
    assert "P00012367" not in html and "张三明" not in html
    assert os.stat(html_path).st_mode & 0o077 == 0 and os.stat(docx_path).st_mode & 0o077 == 0


NOTO_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


@pytest.mark.skipif(not os.path.exists(NOTO_CJK) and os.environ.get("CI", "") != "true",
                    reason="fonts-noto-cjk not installed (CI installs it)")
def test_charts_draw_chinese_with_a_cjk_font():
    assert figures.cjk_font() is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # matplotlib warns for every missing glyph
        png = figures.stacked_bars(["09-07", "09-14"], {"（八）泄露患者隐私问题": [1, 2],
                                                        "（九）电子病历系统管理不到位问题": [3, 0]},
                                   title="每周案件数（按整改事项）", ylabel="案件")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_cjk_font_charts_fall_back_to_english(tmp_path, monkeypatch):
    from emraudit.reports.i18n import Lang
    from emraudit.reports.masking import Masker
    from emraudit.reports.self_inspection import build_self_inspection
    monkeypatch.setattr(figures, "cjk_font", lambda: None)
    cfg, store, lake = build(tmp_path, lang="zh")
    m = build_self_inspection(cfg, store, lake, "2025-06-01", "2025-07-31", Lang("zh"),
                              Masker(), today=date(2025, 7, 10))
    assert all("fonts-noto-cjk" in c["caption"] for c in m["charts"])
    assert m["open"]["to_verify"] == 1 and m["open"]["pending"] == 2


def test_period_is_iso_and_bounded(report, tmp_path):
    cfg = report[0]
    res = CliRunner().invoke(main, ["report", "self-inspection", "--config", str(cfg.path),
                                    "--from", "2025/06/01", "--to", "2025-07-31"])
    assert res.exit_code == 2 and "--from: expected a date" in res.output
    res = CliRunner().invoke(main, ["report", "self-inspection", "--config", str(cfg.path),
                                    "--from", "2025-08-01", "--to", "2025-07-31"])
    assert res.exit_code == 2 and "is before --from" in res.output
