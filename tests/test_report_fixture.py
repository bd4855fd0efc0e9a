"""A small hand-made store + lake for the report tests (and a check that it loads).

Two scans; three cases: an incident of one VIP patient (two detectors, one finding from an
earlier scan, open in the review queue; the VIP finding carries its sentence as a message, the
other only an English summary, as findings stored before messages existed), an incident of
bulk viewing of many patients (resolved as confirmed), and an earlier confirmed case of the
same user outside this scan. Log values carry HTML/script
payloads and spreadsheet formulas so the escaping and neutralization tests have teeth.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from emraudit.config import default_config
from emraudit.detectors.base import findings_frame
from emraudit.lake import Lake
from emraudit.model import validate
from emraudit.store import Store, case_history, cases, findings, ingest_runs, scans, coverage

TZ = "Asia/Shanghai"
XSS_USER = "<script>alert(1)</script>"
XSS_MODULE = "<img src=x onerror=alert(3)>病历"
XSS_EVIDENCE = "</script><script>alert(4)</script>"
XSS_PATIENT = "<b>王</b>小明"
FORMULA_DEPT = "=HYPERLINK(\"http://x\",\"y\")"
PATIENT = "P00012367"
PATIENT_NAME = "张三明"
SCAN0, SCAN1 = "s20250701T000000aaaa", "s20250703T000000bbbb"
CASE_P, CASE_A, CASE_OLD = "Cpatientcase0001", "Caccountcase0001", "Coldcase00000001"


def _utc(s: str) -> datetime:
    return pd.Timestamp(s, tz=TZ).tz_convert("UTC").to_pydatetime()


def _rows(table, rows: list[dict]) -> list[dict]:
    """Same keys in every row (executemany needs it)."""
    keys = [c.name for c in table.columns if any(c.name in r for r in rows)]
    return [{k: r.get(k) for k in keys} for r in rows]


def build(tmp: Path, *, lang: str = "en", mask: bool = True):
    """(config, store, lake) for a tiny hospital with findings, cases and history."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "emraudit.toml").write_text(
        f'[reports]\nlang = "{lang}"\nmask_patients = {str(mask).lower()}\n'
        'responsible = "@owner"\n' + '[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    cfg = default_config(tmp)
    cfg = cfg.model_copy(update={"reports": cfg.reports.model_copy(
        update={"lang": lang, "mask_patients": mask, "responsible": "@owner"})})
    store = Store(cfg.store_url)
    lake = Lake(cfg.lake_dir, TZ)
    run = "r1"
    ev = []
    # U001 views the VIP patient three times at night on 07-02, and works normally by day
    for i, t in enumerate(["2025-07-02 23:10:00", "2025-07-02 23:12:30", "2025-07-02 23:40:00"]):
        ev.append(dict(event_id=f"e{i}", ts=t, user_id="U001", patient_id=PATIENT,
                       action="view", module=XSS_MODULE if i == 0 else "+SUM(1,2)",
                       workstation="WS-ICU-01", ip="10.0.0.7"))
    for d in range(1, 4):
        for h in (9, 10, 11, 14):
            ev.append(dict(event_id=f"n{d}{h}", ts=f"2025-07-0{d} {h:02d}:05:00",
                           user_id="U001", patient_id=f"P9{d}{h}", action="view", module="医嘱",
                           workstation="WS-1", ip="10.0.0.8"))
    # U002, the attending, views the VIP patient: explained by the admission
    ev.append(dict(event_id="ok1", ts="2025-07-01 10:00:00", user_id="U002", patient_id=PATIENT,
                   action="view", module="病历", workstation="WS-2", ip="10.0.0.9"))
    # U002 opens 40 patients in 20 minutes on 07-03
    for k in range(40):
        ev.append(dict(event_id=f"b{k:02d}", ts=f"2025-07-03 02:{k // 2:02d}:{(k % 2) * 30:02d}",
                       user_id="U002", patient_id=f"P5{k:04d}", action="view", module="病历",
                       workstation="WS-2", ip="10.0.0.9"))
    df = pd.DataFrame(ev)
    df["_source_ref"] = [f"access_log.csv:{i + 2}" for i in range(len(df))]
    df["_source"] = "access_log"
    v = validate("access_log", df, TZ, "access_log")
    assert len(v.accepted) == len(df), v.quarantine
    lake.write_events(v.accepted, run)
    users = validate("users", pd.DataFrame([
        dict(user_id="U001", name=XSS_USER, role="nurse", department=FORMULA_DEPT, ward="ICU"),
        dict(user_id="U002", name="李四", role="physician", department="骨科"),
    ]), TZ, "users").accepted
    patients = validate("patients", pd.DataFrame([
        dict(patient_id=PATIENT, name=PATIENT_NAME, vip="1", employee_user_id="U777"),
        dict(patient_id="P50001", name=XSS_PATIENT, sensitive="1"),
    ]), TZ, "patients").accepted
    rel = validate("care_relations", pd.DataFrame([
        dict(patient_id=PATIENT, user_id="U002", department="骨科", kind="admission",
             start="2025-06-30 08:00:00"),
    ]), TZ, "care_relations").accepted
    lake.write_snapshot("care_relations", rel, run)
    lake.write_snapshot("users", users, run)
    lake.write_snapshot("patients", patients, run)
    now = datetime(2025, 7, 3, 20, tzinfo=timezone.utc)
    with store.begin() as c:
        c.execute(ingest_runs.insert().values(run_id=run, source="access_log",
                                              table_name="access_log", started=now,
                                              finished=now, status="committed",
                                              days=json.dumps(["2025-07-01", "2025-07-02",
                                                               "2025-07-03"])))
        c.execute(scans.insert().values(scan_id=SCAN0, started=now.replace(day=1),
                                        finished=now.replace(day=1), status="committed",
                                        summary=json.dumps({"findings": 1, "cases": 1,
                                                            "days": ["2025-07-01"]})))
        c.execute(scans.insert().values(scan_id=SCAN1, started=now, status="running",
                                        window_start=_utc("2025-07-02"),
                                        window_end=_utc("2025-07-04")))
        c.execute(coverage.insert(), [
            dict(source="access_log", day=d, events=n,
                 fields=json.dumps({"module": 1.0, "workstation": 0.9, "ip": 0.4}))
            for d, n in (("2025-07-01", 4), ("2025-07-02", 7), ("2025-07-03", 40))])

    fs = []
    fs.append(findings_frame("snoop.vip", [dict(
        key="U001|P|0702", user_id="U001", patient_id=PATIENT, event_ids=["e0", "e1", "e2"],
        start=pd.Timestamp("2025-07-02 23:10", tz=TZ), end=pd.Timestamp("2025-07-02 23:40", tz=TZ),
        severity="high", score=3.5, message_id="snoop.vip",
        message_args={"user": "U001", "patient": PATIENT, "accesses": 3, "lookup": False},
        evidence={"explanations": [
            {"explanation": "own_relation", "result": "failed",
             "detail": {"grace_before_days": 3.0, "grace_after_days": 30.0}},
            {"explanation": "unit_relation", "result": "failed",
             "detail": {"department": XSS_EVIDENCE, "ward": None, "more": 0,
                        "patient_relations": [{"kind": "admission", "start": "2025-07-01",
                                               "end": None, "ward": "心内科一病区"}]}}],
            "thresholds": {"grace_days": 7, "median": 0.25}, "patient_name": PATIENT_NAME},
    )], default_item="8", default_severity="high"))
    fs.append(findings_frame("bulk.off_hours", [dict(
        key="U001|0702", user_id="U001", patient_id=PATIENT, event_ids=["e0", "e1"],
        start=pd.Timestamp("2025-07-02 23:10", tz=TZ), end=pd.Timestamp("2025-07-02 23:12:30", tz=TZ),
        severity="medium", score=1.2, summary="-U001 viewed records off duty.",
        evidence={"duty": "office_hours", "thresholds": {"required": 2.0}},
    )], default_item="9", default_severity="medium"))
    fs.append(findings_frame("bulk.volume", [dict(
        key="U002|0703", user_id="U002", patient_id="", event_ids=[f"b{k:02d}" for k in range(40)],
        start=pd.Timestamp("2025-07-03 02:00", tz=TZ), end=pd.Timestamp("2025-07-03 02:19:30", tz=TZ),
        severity="critical", score=8.0,
        summary="U002 opened 40 distinct patients in 20 minutes; the threshold was 15.",
        evidence={"peak_distinct_patients": 40, "thresholds": {"required": 15.0}},
    )], default_item="8", default_severity="critical"))
    f = pd.concat(fs, ignore_index=True)
    rows = []
    for r, cid, last in zip(f.to_dict("records"), [CASE_P, CASE_P, CASE_A],
                            [SCAN1, SCAN0, SCAN1]):
        rows.append(dict(r, event_ids=json.dumps(r["event_ids"]),
                         evidence=json.dumps(r["evidence"], ensure_ascii=False),
                         message_args=(json.dumps(r["message_args"])
                                       if isinstance(r["message_args"], dict) else None),
                         case_id=cid, first_scan=last, last_scan=last, created=now, updated=now))
    with store.begin() as c:
        c.execute(findings.insert(), _rows(findings, rows))
        c.execute(cases.insert(), _rows(cases, [
            dict(case_id=CASE_P, kind="incident", user_id="U001", patient_id=PATIENT,
                 patients=json.dumps([PATIENT]), day="2025-07-02", queued=True, risk=50.0,
                 risk_factors=json.dumps({"severity": 30.0, "special_patient": 6.0}),
                 severity="critical", score=3.5, detectors=json.dumps(["bulk.off_hours",
                                                                        "snoop.vip"]),
                 items=json.dumps(["8", "9"]), first_seen=f.loc[0, "start"],
                 last_seen=f.loc[0, "end"], n_findings=2, n_events=3,
                 summary=f"U001 opened the record of VIP patient {PATIENT_NAME} ({PATIENT}) "
                         "3 times at night with no care relation. (+1 more finding)",
                 status="open", reopened=True, version=3, created=now, updated=now),
            dict(case_id=CASE_A, kind="incident", user_id="U002", patient_id="", day="2025-07-03",
                 patients="[]", queued=True, risk=45.0,
                 severity="critical", score=8.0, detectors=json.dumps(["bulk.volume"]),
                 items=json.dumps(["8"]), first_seen=f.loc[2, "start"], last_seen=f.loc[2, "end"],
                 n_findings=1, n_events=40, summary=f.loc[2, "summary"], status="resolved",
                 disposition="confirmed", reviewer="审核员<i>x</i>", note="@SUM(A1) talked to him",
                 resolved_at=now, version=2, created=now, updated=now),
            dict(case_id=CASE_OLD, kind="patient", user_id="U001", patient_id="P0000999",
                 severity="high", score=2.0, detectors=json.dumps(["snoop.coworker"]),
                 items=json.dumps(["8"]), first_seen="2025-06-01T10:00:00+08:00",
                 last_seen="2025-06-01T10:05:00+08:00", n_findings=1, n_events=1,
                 summary="old", status="resolved", disposition="confirmed", reviewer="王审核",
                 note="warned", resolved_at=now, version=2, created=now, updated=now),
        ]))
        c.execute(case_history.insert(), _rows(case_history, [
            dict(case_id=CASE_P, at=now.replace(day=1), by="scan", action="opened",
                 scan_id=SCAN0),
            dict(case_id=CASE_P, at=now.replace(day=2), by="王审核", action="resolved",
                 field="disposition", old=None, new="justified", note="on call"),
            dict(case_id=CASE_P, at=now, by="scan", action="reopened", field="status",
                 old="resolved", new="open", scan_id=SCAN1),
            dict(case_id=CASE_A, at=now, by="李审核", action="resolved", field="disposition",
                 new="confirmed", note="=1+1"),
        ]))
    return cfg, store, lake


@pytest.fixture
def report_env(tmp_path, monkeypatch):
    return build(tmp_path)


def test_fixture_loads_the_scan(report_env):
    from emraudit.reports import data
    cfg, store, lake = report_env
    f = data.scan_findings(store, SCAN1)
    assert sorted(f["case_id"]) == sorted([CASE_P, CASE_A])
    ev = data.read_lake(lake, store.committed_runs(), ["2025-07-02"], None,
                        [("event_id", "in", ["e0", "e2"])])
    assert list(ev["event_id"]) == ["e0", "e2"]
    assert ev["_source_ref"].str.startswith("access_log.csv:").all()
