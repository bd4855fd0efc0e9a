"""Notices (issue 19 point 4): a printable 告知书 for a confirmed case, to the user with a copy
to the department head, recorded in the case's history."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from click.testing import CliRunner
from docx import Document

from emraudit.cases import case_history_of
from emraudit.cli import main
from emraudit.errors import UserError
from emraudit.model import validate
from emraudit.reports.notice import write_notice
from test_report_fixture import CASE_A, CASE_P, TZ, build

TODAY = date(2025, 7, 10)


@pytest.fixture
def site(tmp_path):
    cfg, store, lake = build(tmp_path / "site", lang="zh")
    lake.write_snapshot("departments", validate("departments", pd.DataFrame([
        dict(department="骨科", parent="外科", head_user_id="U009", head_name="赵主任")]), TZ,
        "departments").accepted, "r1")
    return cfg, store, lake


def test_notice_says_what_was_seen_the_rule_what_is_expected_and_how_to_explain(site, tmp_path):
    cfg, store, lake = site
    out = write_notice(cfg, store, lake, CASE_A, by="医务处 王某", out=tmp_path / "n.html",
                       today=TODAY)
    html = out.read_text("utf-8")
    assert "电子病历访问情况告知书" in html and f"编号：{CASE_A}-20250710" in html
    assert "致：李四 (U002)（骨科）" in html
    assert "抄送：赵主任 (U009)（骨科负责人）" in html
    # what was seen: the 40 accesses, masked patients, times, the rule that fired
    assert "于 2025-07-03 02:00 至 2025-07-03 02:19 期间共有 40 次访问，涉及患者 40 人（查看 40 次）" in html
    assert html.count('<td class="code">P5**') == 40 and "P50000" not in html
    assert "检出情形为：批量查阅" in html
    # the rule and what is expected
    assert "（八）泄露患者隐私问题" in html and "《医疗机构病历管理规定》第六条" in html
    assert "不得超出诊疗需要留存、拍摄、复制、打印、导出或传播患者病历及影像" in html
    # how to explain: by when (today + [ledger] notice_reply_days) and to whom
    assert "请于 2025-07-15 前向 赵主任 (U009) 提交书面说明" in html
    assert "被告知人签收" in html and "告知人：医务处 王某" in html
    hist = case_history_of(store, CASE_A)
    last = hist.iloc[-1]
    assert (last["action"], last["by"]) == ("notice", "医务处 王某")
    assert last["note"] == f"李四 (U002); 赵主任 (U009); {out}"


def test_only_a_confirmed_case_gets_a_notice(site, tmp_path):
    cfg, store, lake = site
    before = len(case_history_of(store, CASE_P))
    with pytest.raises(UserError, match="not verified yet"):
        write_notice(cfg, store, lake, CASE_P, by="x", out=tmp_path / "p.html")
    assert not (tmp_path / "p.html").exists()
    assert len(case_history_of(store, CASE_P)) == before
    with pytest.raises(UserError, match="--by is required"):
        write_notice(cfg, store, lake, CASE_A, by=" ")


def test_notice_as_docx_and_through_the_cli(site, tmp_path):
    cfg, store, lake = site
    out = tmp_path / "告知书.docx"
    res = CliRunner().invoke(main, ["notice", "--config", str(cfg.path), CASE_A[:8], "--by",
                                    "质控科", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    doc = Document(out)
    text = [p.text for p in doc.paragraphs]
    assert text[0] == "电子病历访问情况告知书"
    assert ["一、查见情况", "二、违反的规定", "三、对您的要求", "四、如何说明"] == \
        [p.text for p in doc.paragraphs if p.style.name == "Heading 2"]
    assert len(doc.tables[0].rows) == 41                      # header and 40 accesses
    res = CliRunner().invoke(main, ["notice", "--config", str(cfg.path), CASE_P, "--by", "x"])
    assert res.exit_code == 2 and "not verified yet" in res.output
    res = CliRunner().invoke(main, ["notice", "--config", str(cfg.path), "C", "--by", "x"])
    assert res.exit_code == 2 and "ambiguous" in res.output


def test_unmasked_on_request_and_english(tmp_path):
    cfg, store, lake = build(tmp_path / "en", lang="en")
    out = write_notice(cfg, store, lake, CASE_A, by="officer", out=tmp_path / "n.html",
                       unmask=True, today=TODAY)
    html = out.read_text("utf-8")
    assert "Notice on access to electronic medical records" in html
    assert "P50000" in html and "view 40 times" in html
    assert "Copy to: @owner" in html and "head of" not in html    # no head: the fallback
