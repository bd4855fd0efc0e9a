"""`emraudit report rights`: departments and roles, sensitive-class holders, changes since the
last report (a snapshot in the store), the rights findings as a ledger; zh and en; masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from emraudit.cli import main

USERS = """user_id,name,role,department,status,end_date
N1,张护士,护士,内科,active,
N2,李护士,护士,内科,active,
D1,王医生,医师,精神科,active,
X1,赵离职,护士,内科,terminated,2026-08-01
"""
ROLES = """role,permissions,record_class,scope,approved_by
护士,查阅;书写,,本科室,M1
医师,查阅;书写;打印,,本科室,M1
精神科组,查阅,精神,本科室,M1
进修组,查阅,传染病,全院,
"""
GRANTS = """grant_id,user_id,role,permission,record_class,granted_at,granted_by,approved_by,revoked_at
G1,D1,精神科组,,,2026-01-01,IT1,M1,
G2,N1,,导出,,2026-02-01,N1,,
G3,X1,,查阅,精神,2026-03-01,IT1,M1,
G5,N2,进修组,,,2026-04-01,IT1,M1,
"""
PATIENTS = """patient_id,name,sensitive_class
P00001234,陈病人,精神
P00005678,周病人,
"""
RELATIONS = """patient_id,user_id,department,ward,kind,start,end
P00001234,,内科,,admission,2026-09-01,
"""
EVENTS = """event_id,ts,user_id,patient_id,action
e1,2026-09-10 10:00:00,N2,P00001234,view
e2,2026-09-10 10:05:00,D1,P00001234,view
e3,2026-09-10 11:00:00,N1,P00005678,view
"""


def _site(tmp_path: Path, grants: str = GRANTS) -> Path:
    files = {"users.csv": USERS, "roles.csv": ROLES, "grants.csv": grants,
             "patients.csv": PATIENTS, "care_relations.csv": RELATIONS,
             "access_log.csv": EVENTS}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    sources = "".join(f'[sources.{n[:-4]}]\nconnector = "csv"\npath = "{n}"\n\n' for n in files)
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text(f'[site]\nname = "测试医院"\n\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
                   f'lake = "lake"\n\n{sources}[reports]\ndir = "reports"\nlang = "zh"\n'
                   # the rights detectors are what this report lists
                   '\n[detectors."anomaly.user_day"]\nenabled = false\n',
                   encoding="utf-8")
    return cfg


def _run(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r


def _report(cfg: Path, out: Path, lang: str, *extra) -> str:
    r = _run("report", "rights", "--config", str(cfg), "--out", str(out), "--lang", lang,
             *extra)
    assert r.output.split() == [str(out), str(out.with_suffix(".xlsx"))]
    return out.read_text(encoding="utf-8")


@pytest.fixture()
def site(tmp_path):
    cfg = _site(tmp_path)
    _run("scan", "--config", str(cfg))
    return cfg


def test_rights_report_in_chinese_and_english_masked(site, tmp_path):
    zh = _report(site, tmp_path / "out" / "rights.html", "zh", "--as-of", "2026-09-30")
    for text in ("科室与岗位", "敏感类别病历权限持有人", "权限问题台账", "精神类病历的查阅权限",
                 "这是第一份权限报告", "（九）电子病历系统管理不到位问题", "由持有人本人授权"):
        assert text in zh, text
    assert "P00001234" not in zh and "陈病人" not in zh            # masked
    assert "P0*****34" in zh                                        # the outside-grant case
    assert 'id="kpi-accounts">3<' in zh                             # X1 has left
    en = _report(site, tmp_path / "out" / "rights-en.html", "en", "--as-of", "2026-09-30")
    for text in ("Departments and roles", "read on psychiatric records (own department)",
                 "granted by the holder themselves", "Compared with the report"):
        assert text in en, text
    assert "科室与岗位" not in en and "P0*****34" in en
    wb = load_workbook(tmp_path / "out" / "rights-en.xlsx")
    assert wb.sheetnames == ["Departments and roles", "Sensitive-class holders",
                             "Rights problem ledger"]
    ledger = [r for r in wb["Rights problem ledger"].iter_rows(values_only=True)][1:]
    assert any("N1" in str(r[3]) and "granted by the holder" in r[2] for r in ledger)
    assert not any("P00001234" in str(c) for r in ledger for c in r)


def test_unmask_shows_the_patient_id(site, tmp_path):
    html = _report(site, tmp_path / "u.html", "en", "--as-of", "2026-09-30", "--unmask")
    assert "P00001234" in html and "NOT masked" in html


def test_changes_since_the_last_report(site, tmp_path):
    _report(site, tmp_path / "a.html", "en", "--as-of", "2026-09-30")
    grants = GRANTS.replace("G3,X1,,查阅,精神,2026-03-01,IT1,M1,",
                            "G3,X1,,查阅,精神,2026-03-01,IT1,M1,2026-09-15") + \
        "G4,N2,,查阅,精神,2026-09-20,IT1,M1,\n"
    _site(site.parent, grants)
    _run("ingest", "--config", str(site))
    html = _report(site, tmp_path / "b.html", "en", "--as-of", "2026-09-30")
    changes = html[html.index('id="changes"'):html.index('id="ledger"')]
    assert "This is the first" not in changes
    made = changes[changes.index("Grants made"):changes.index("Grants ended")]
    ended = changes[changes.index("Grants ended"):changes.index("Sensitive classes gained")]
    assert "G4" in made and "G3" in ended and "G1" not in made + ended
    gained = changes[changes.index("Sensitive classes gained"):
                     changes.index("Sensitive classes lost")]
    assert "N2 李护士" in gained
    assert "X1" in changes[changes.index("Sensitive classes lost"):]


def test_as_of_and_user_mistakes(site, tmp_path):
    early = _report(site, tmp_path / "e.html", "en", "--as-of", "2026-01-15")
    assert 'id="kpi-grants">1<' in early                  # only G1 existed then
    bad = CliRunner().invoke(main, ["report", "rights", "--config", str(site),
                                    "--as-of", "09/30/2026"])
    assert bad.exit_code == 2 and "--as-of" in bad.output
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "access_log.csv").write_text(EVENTS, encoding="utf-8")
    (bare / "emraudit.toml").write_text(
        f'[store]\nurl = "sqlite:///{bare}/s.db"\nlake = "lake"\n\n[sources.access_log]\n'
        'connector = "csv"\npath = "access_log.csv"\n', encoding="utf-8")
    _run("ingest", "--config", str(bare / "emraudit.toml"))
    r = CliRunner().invoke(main, ["report", "rights", "--config", str(bare / "emraudit.toml")])
    assert r.exit_code == 2 and "no grants or roles table" in r.output
