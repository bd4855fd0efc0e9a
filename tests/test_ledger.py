"""The problem ledger with 四个明确 (issue 19 point 2): the departments table and 责任人,
deadlines by severity, 发现时间 = the first access, verification apart from rectification
(`cases rectify`), all open problems whatever scan found them, the summary's completion
rate."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timezone

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cases import CaseConflict, case_history_of, resolve_case
from emraudit.cli import main
from emraudit.config import load_config
from emraudit.errors import ConfigError, UserError
from emraudit.model import validate
from emraudit.rectification import rectify_case, status_of
from emraudit.reports.departments import Departments
from emraudit.reports.ledger import write_ledger
from emraudit.store import cases
from test_report_fixture import CASE_A, CASE_OLD, CASE_P, FORMULA_DEPT, TZ, build

TODAY = date(2025, 7, 10)
NOW = datetime(2025, 7, 10, 2, tzinfo=timezone.utc)


def _departments(lake, rows):
    lake.write_snapshot("departments", validate("departments", pd.DataFrame(rows), TZ,
                                                "departments").accepted, "r1")


def _ledger(cfg, store, lake, tmp_path, **kw):
    paths = write_ledger(cfg, store, lake, tmp_path, today=TODAY, **kw)
    rows = list(csv.reader(paths[1].read_text("utf-8-sig").splitlines()))
    return {r[1]: dict(zip(rows[0], r)) for r in rows[1:]}, paths


def _cfg(cfg, **ledger):
    return cfg.model_copy(update={"ledger": cfg.ledger.model_copy(update=ledger)})


@pytest.fixture
def site(tmp_path):
    cfg, store, lake = build(tmp_path / "site", lang="zh")
    _departments(lake, [
        dict(department="骨科", parent="外科", head_user_id="U009", head_name="赵主任"),
        dict(department="外科", head_user_id="U010", head_name="钱主任"),
        dict(department=FORMULA_DEPT, parent="护理部"),            # the head post is vacant
        dict(department="护理部", head_user_id="U011", head_name="孙主任")])
    return cfg, store, lake


# -- 责任人 -------------------------------------------------------------------------------
def test_responsible_is_the_department_head_then_configured_then_up_the_tree(site):
    cfg, _, lake = site
    from emraudit.reports.data import snapshot
    deps = snapshot(lake, {"r1"}, "departments")
    d = Departments(deps, _cfg(cfg, responsible={FORMULA_DEPT: "护士长 周某"}))
    assert d.responsible("骨科").person == "赵主任 (U009)"
    assert d.responsible("骨科").source == "head"
    assert d.responsible(FORMULA_DEPT).person == "护士长 周某"          # configured
    no_conf = Departments(deps, _cfg(cfg, responsible={}))
    up = no_conf.responsible(FORMULA_DEPT)
    assert (up.person, up.source, up.department) == ("孙主任 (U011)", "parent", "护理部")
    # the head's own case goes to the head above
    assert d.responsible("骨科", not_user="U009").person == "钱主任 (U010)"
    # nobody named anywhere: the configured default, else nobody
    assert no_conf.responsible("药剂科").person == "@owner"            # [reports] responsible
    bare = cfg.model_copy(update={"reports": cfg.reports.model_copy(
        update={"responsible": None})})
    assert Departments(None, bare).responsible("骨科").source == "none"
    loop = pd.DataFrame([dict(department="A", parent="B"), dict(department="B", parent="A")])
    assert Departments(loop, bare).responsible("A").source == "none"     # no endless loop


def test_ledger_names_the_head_and_deadlines_follow_severity(site, tmp_path):
    cfg, store, lake = site
    body, _ = _ledger(cfg, store, lake, tmp_path)
    assert set(body) == {CASE_P, CASE_A, CASE_OLD}           # every open problem
    assert body[CASE_A]["责任人"] == "赵主任 (U009)" and body[CASE_A]["责任部门"] == "骨科"
    assert body[CASE_P]["责任人"] == "孙主任 (U011)"       # vacant head: the department above
    # opened 2025-07-04 (site time): critical +7, high +15
    assert body[CASE_A]["立案日期"] == "2025-07-04"
    assert body[CASE_A]["整改时限"] == "2025-07-11" and body[CASE_A]["风险等级"] == "严重"
    assert body[CASE_OLD]["整改时限"] == "2025-07-19" and body[CASE_OLD]["风险等级"] == "高"
    assert body[CASE_A]["是否逾期"] == "否"
    later = write_ledger(cfg, store, lake, tmp_path, stem="later", today=date(2025, 7, 12))
    rows = list(csv.reader(later[1].read_text("utf-8-sig").splitlines()))
    late = {r[1]: r[-1] for r in rows[1:]}
    assert late[CASE_A] == "是" and late[CASE_OLD] == "否"
    custom = _cfg(cfg, deadline_days=cfg.ledger.deadline_days.model_copy(
        update={"critical": 3}))
    body, _ = _ledger(custom, store, lake, tmp_path)
    assert body[CASE_A]["整改时限"] == "2025-07-07"
    # the older single [reports] deadline_days still applies when [ledger] sets none
    old = cfg.model_copy(update={"reports": cfg.reports.model_copy(
        update={"deadline_days": 10})})
    body, _ = _ledger(old, store, lake, tmp_path)
    assert body[CASE_A]["整改时限"] == body[CASE_OLD]["整改时限"] == "2025-07-14"


def test_found_is_the_first_access_not_the_scan(site, tmp_path):
    cfg, store, lake = site
    body, _ = _ledger(cfg, store, lake, tmp_path)
    assert body[CASE_P]["发现时间"] == "2025-07-02 23:10"
    assert body[CASE_OLD]["发现时间"] == "2025-06-01 10:00"
    assert body[CASE_A]["证据（事件及来源）"].startswith("40 条事件 (2025-07-03 02:00")


# -- verification apart from rectification ---------------------------------------------
def test_confirming_is_not_rectifying(site, tmp_path):
    cfg, store, lake = site
    body, _ = _ledger(cfg, store, lake, tmp_path)
    assert (body[CASE_A]["核实结论"], body[CASE_A]["整改状态"]) == ("属实", "待整改")
    rectify_case(store, CASE_A, "整改中", by="科主任", measure="约谈当事人", day="2025-07-05",
                 tz=TZ, now=NOW)
    body, _ = _ledger(cfg, store, lake, tmp_path)
    assert body[CASE_A]["整改状态"] == "整改中" and body[CASE_A]["已采取的整改措施"] == "约谈当事人"
    row = rectify_case(store, CASE_A, "done", by="科主任", day="2025-07-08", tz=TZ, now=NOW,
                       measure="约谈当事人；收紧查阅权限；全科培训")
    assert row["rectification_status"] == "done" and row["rectification_date"] == "2025-07-08"
    body, paths = _ledger(cfg, store, lake, tmp_path)
    assert CASE_A not in body                                   # rectified: off the ledger
    body, _ = _ledger(cfg, store, lake, tmp_path, include_rectified=True)
    assert body[CASE_A]["整改状态"] == "已整改" and body[CASE_A]["整改完成日期"] == "2025-07-08"
    hist = case_history_of(store, CASE_A)
    rect = hist[hist["action"] == "rectified"]
    assert list(zip(rect["old"], rect["new"])) == [("pending", "in_progress"),
                                                   ("in_progress", "done")]
    assert "收紧查阅权限" in rect["note"].iloc[-1] and rect["by"].iloc[-1] == "科主任"


def test_rectify_rules(site):
    cfg, store, _ = site
    with pytest.raises(UserError, match="not verified yet"):
        rectify_case(store, CASE_P, "in_progress", by="x", tz=TZ, now=NOW)
    with pytest.raises(UserError, match="--measure is required"):
        rectify_case(store, CASE_A, "done", by="x", tz=TZ, now=NOW)
    with pytest.raises(UserError, match="in the future"):
        rectify_case(store, CASE_A, "in_progress", by="x", day="2025-07-11", tz=TZ, now=NOW)
    with pytest.raises(UserError, match="unknown rectification status 'finished'"):
        rectify_case(store, CASE_A, "finished", by="x", tz=TZ, now=NOW)
    with pytest.raises(UserError, match="--date: expected a date"):
        rectify_case(store, CASE_A, "in_progress", by="x", day="07/05/2025", tz=TZ, now=NOW)
    resolve_case(store, CASE_P, "justified", "on call", "审核员", now=NOW)
    with pytest.raises(UserError, match="verified as justified"):
        rectify_case(store, CASE_P, "in_progress", by="x", tz=TZ, now=NOW)
    v = store.read_table(cases, cases.c.case_id == CASE_A)["version"].iloc[0]
    with pytest.raises(CaseConflict, match="changed since you read it"):
        rectify_case(store, CASE_A, "in_progress", by="x", tz=TZ, now=NOW,
                     expected_version=int(v) - 1)


def test_verifying_again_after_new_findings_starts_rectification_over(site):
    cfg, store, _ = site
    rectify_case(store, CASE_A, "done", by="x", measure="talked to him", tz=TZ, now=NOW)
    with store.begin() as c:     # what a scan does when new findings reopen the case
        c.execute(cases.update().where(cases.c.case_id == CASE_A).values(
            status="open", reopened=True, disposition=None))
    assert status_of(store.read_table(cases, cases.c.case_id == CASE_A).iloc[0]
                     .to_dict()) is None
    row = resolve_case(store, CASE_A, "confirmed", "again", "审核员", now=NOW)
    assert row["rectification_status"] == "pending"
    hist = case_history_of(store, CASE_A)
    assert hist["note"].iloc[-1].startswith("verified again after new findings")


def test_cli_rectify_and_report_ledger(site, tmp_path):
    cfg, store, _ = site
    conf = str(cfg.path)
    run = CliRunner()
    r = run.invoke(main, ["cases", "rectify", "--config", conf, CASE_A[:8], "--status",
                          "in_progress", "--measure", "权限已收紧", "--by", "张科长",
                          "--date", "2025-07-05"])
    assert r.exit_code == 0, r.output
    assert f"case {CASE_A} rectification: in_progress (2025-07-05)" in r.output
    r = run.invoke(main, ["cases", "rectify", "--config", conf, CASE_P, "--status", "done",
                          "--measure", "m", "--by", "b"])
    assert r.exit_code == 2 and "not verified yet" in r.output
    r = run.invoke(main, ["cases", "rectify", "--config", conf, CASE_A, "--status", "done",
                          "--measure", "m", "--by", "b", "--expect-version", "1"])
    assert r.exit_code == 4 and "changed since you read it" in r.output
    r = run.invoke(main, ["cases", "show", "--config", conf, CASE_A])
    assert "rectification: in_progress (2025-07-05, by 张科长): 权限已收紧" in r.output
    assert "rectified" in r.output and "in_progress" in r.output     # the history line
    r = run.invoke(main, ["cases", "list", "--config", conf, "--status", "resolved"])
    assert "confirmed, rectification in_progress" in r.output
    out = tmp_path / "out" / "台账.html"
    r = run.invoke(main, ["report", "ledger", "--config", conf, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert [p.rsplit("/", 1)[-1] for p in r.output.split()] == ["台账.xlsx", "台账.csv",
                                                                 "台账.html"]
    page = out.read_text("utf-8")
    assert 'id="n-total">3<' in page and 'id="n-progress">1<' in page
    assert 'id="n-verify">1<' in page and "P0*****67" in page and "P00012367" not in page
    assert "<script>alert(1)</script>" not in page                 # escaped


def test_summary_completion_rate_counts_rectified_only(site):
    from emraudit.reports.i18n import Lang
    from emraudit.reports.summary import build_summary
    cfg, store, lake = site
    s = build_summary(cfg, store, lake, "2025-06-01", "2025-07-31", Lang("zh"))
    assert (s["kpi"]["confirmed"], s["kpi"]["rectified"], s["kpi"]["rate"]) == (2, 0, 0.0)
    rectify_case(store, CASE_A, "done", by="x", measure="m", tz=TZ, now=NOW)
    s = build_summary(cfg, store, lake, "2025-06-01", "2025-07-31", Lang("zh"))
    assert (s["kpi"]["confirmed"], s["kpi"]["rectified"], s["kpi"]["rate"]) == (2, 1, 50.0)
    assert {r["label"]: r["n"] for r in s["rectification"]} == {"待整改": 1, "整改中": 0,
                                                                 "已整改": 1}


# -- the departments source and its configuration -------------------------------------------
def test_departments_source_through_a_profile(tmp_path):
    from emraudit.ingest import ingest
    from emraudit.lake import Lake
    from emraudit.reports.data import snapshot
    from emraudit.store import Store
    (tmp_path / "dept.csv").write_text(
        "科室名称,上级科室,科主任工号,科主任\n心内科,内科,U0001,徐主任\n内科,无,U0001,徐主任\n"
        "生殖医学科,内科,,\n", encoding="gb18030")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.departments]\npath = "dept.csv"\nprofile = "his-zh"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    [res] = ingest(cfg, store, lake)
    assert (res.read, res.accepted, res.quarantined) == (3, 3, 0), res
    df = snapshot(lake, store.committed_runs(), "departments")
    got = {r["department"]: (r["parent"], r["head_user_id"]) for r in df.to_dict("records")}
    assert got["心内科"] == ("内科", "U0001") and pd.isna(got["内科"][0])
    assert pd.isna(got["生殖医学科"][1])


@pytest.mark.parametrize("toml, key", [
    ('[ledger.deadline_days]\ncritical = "7"\n', "ledger.deadline_days.critical"),
    ('[ledger.deadline_days]\ncritical = 0\n', "ledger.deadline_days.critical"),
    ('[ledger.deadline_days]\nurgent = 3\n', "ledger.deadline_days.urgent"),
    ('[ledger]\nresponsible = "x"\n', "ledger.responsible"),
    ('[ledger.responsible]\n"骨科" = 5\n', "ledger.responsible.骨科"),
])
def test_ledger_configuration_is_strict(tmp_path, toml, key):
    (tmp_path / "emraudit.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "emraudit.toml")
    assert err.value.key == key


def test_sample_hospital_has_departments_with_heads():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "sample_logs"
    deps = pd.read_csv(root / "departments.csv", dtype=str)
    users = pd.read_csv(root / "users.csv", dtype=str)
    assert set(users["department"]) <= set(deps["department"])
    heads = deps.dropna(subset=["head_user_id"])
    assert set(heads["head_user_id"]) <= set(users["user_id"])
    named = dict(zip(users["user_id"], users["name"]))
    assert all(named[u] == n for u, n in zip(heads["head_user_id"], heads["head_name"]))
    assert deps.loc[deps["department"] == "生殖医学科", "head_user_id"].isna().all()
    cfg = load_config(root / "emraudit.toml")
    assert cfg.ledger.responsible["生殖医学科"] and "departments" in cfg.sources
    assert json.dumps(cfg.ledger.deadline_days.model_dump()) == \
        '{"critical": 7, "high": 15, "medium": 30, "low": 60}'


def test_ledger_in_english(tmp_path):
    cfg, store, lake = build(tmp_path / "en", lang="en")
    body, _ = _ledger(cfg, store, lake, tmp_path)
    assert body[CASE_A]["Verification"] == "confirmed"
    assert body[CASE_A]["Rectification status"] == "to rectify"
    assert body[CASE_P]["Verification"] == "to verify"
    assert body[CASE_OLD]["Deadline"] == "2025-07-19"
