"""Cases: grouping, stable ids, reopening, repeat offenders, suppressed findings, history."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit import cases as C
from emraudit.store import Store, case_history, cases, findings as findings_t, upsert

NOW = pd.Timestamp("2025-07-03T01:00:00+08:00")


def F(fid, detector, user, patient="", start="2025-07-01T10:00:00+08:00", end=None,
      severity="medium", score=1.0, events=("e1",), suppressed_by=None, item="9"):
    return {"finding_id": fid, "detector": detector, "severity": severity, "score": score,
            "user_id": user, "patient_id": patient, "start": start, "end": end or start,
            "event_ids": list(events), "rectification_item": item,
            "summary": f"{detector} on {user}", "evidence": {},
            "suppressed_by": suppressed_by}


def frame(*rows):
    return pd.DataFrame(list(rows))


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


def scan(store, df, scan_id, now=NOW, tz=None):
    """What the pipeline does: cases, then upsert the annotated findings, one transaction."""
    with store.begin() as conn:
        touched = C.update_cases(conn, df, scan_id, now, tz=tz)
        rows = []
        for r in df.to_dict("records"):
            r = dict(r)
            r["event_ids"] = json.dumps(r["event_ids"])
            r["evidence"] = json.dumps(r["evidence"])
            r["suppressed_by"] = None if pd.isna(r.get("suppressed_by")) else int(
                r["suppressed_by"])
            r.update(first_scan=scan_id, last_scan=scan_id)
            rows.append(r)
        upsert(conn, findings_t, rows, ["finding_id"])
    return touched


def history(store):
    return store.read_table(case_history, order_by=case_history.c.id)


def case_rows(store):
    return store.read_table(cases, order_by=cases.c.case_id).set_index("case_id")


def test_patient_findings_group_per_pair_and_account_findings_per_day(store):
    df = frame(
        F("F1", "care.no_relationship", "u1", "p1", severity="medium"),
        F("F2", "snoop.vip", "u1", "p1", severity="high", events=("e2",)),
        F("F3", "care.no_relationship", "u1", "p2"),
        F("F4", "care.no_relationship", "u2", "p1"),
        F("F5", "bulk.off_hours", "u1", "", start="2025-07-01T02:00:00+08:00"),
        F("F6", "cred.two_places", "u1", "", start="2025-07-01T23:30:00+08:00"),
        F("F7", "bulk.off_hours", "u1", "", start="2025-07-02T00:30:00+08:00"),
    )
    touched = scan(store, df, "S1")
    assert len(touched) == 5
    assert set(touched["change"]) == {"opened"}
    rows = case_rows(store)
    pair = rows.loc[C.case_id_for("patient", "u1", "p1")]
    assert json.loads(pair["detectors"]) == ["care.no_relationship", "snoop.vip"]
    assert pair["n_findings"] == 2 and pair["n_events"] == 2
    # high, raised one level because two detectors agree
    assert pair["severity"] == "critical"
    day1 = rows.loc[C.case_id_for("account", "u1", "2025-07-01")]
    assert day1["n_findings"] == 2 and day1["day"] == "2025-07-01" and day1["kind"] == "account"
    assert rows.loc[C.case_id_for("account", "u1", "2025-07-02")]["n_findings"] == 1
    # every stored finding points at its case
    stored = store.read_findings().set_index("finding_id")
    assert stored.loc["F2", "case_id"] == C.case_id_for("patient", "u1", "p1")
    assert stored.loc["F7", "case_id"] == C.case_id_for("account", "u1", "2025-07-02")
    # one "opened" history row per case, naming the scan
    h = history(store)
    assert list(h["action"]) == ["opened"] * 5 and set(h["scan_id"]) == {"S1"}


def test_account_day_is_the_site_local_day(store):
    # 2025-06-30T17:30Z is 01:30 on 1 July in Shanghai
    df = frame(F("F1", "bulk.off_hours", "u1", "", start="2025-06-30T17:30:00+00:00"))
    scan(store, df, "S1", tz="Asia/Shanghai")
    assert case_rows(store).iloc[0]["day"] == "2025-07-01"


def test_single_detector_keeps_its_severity(store):
    scan(store, frame(F("F1", "a", "u1", "p1", severity="high"),
                      F("F2", "a", "u1", "p1", severity="low", events=("e9",),
                        start="2025-07-02T10:00:00+08:00")), "S1")
    assert case_rows(store).iloc[0]["severity"] == "high"


def test_rescan_of_the_same_data_changes_nothing(store):
    df = frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p1"), F("F3", "a", "u2", ""))
    scan(store, df, "S1")
    before = case_rows(store)
    n_hist = len(history(store))
    touched = scan(store, df.copy(), "S2", now=NOW + pd.Timedelta(days=1))
    assert set(touched["change"]) == {"unchanged"}
    pd.testing.assert_frame_equal(before, case_rows(store))
    assert len(history(store)) == n_hist


def test_case_ids_are_stable_and_new_findings_join_the_open_case(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    touched = scan(store, frame(F("F9", "b", "u1", "p1", events=("e5", "e6"),
                                  start="2025-07-02T09:00:00+08:00")), "S2")
    assert list(touched["case_id"]) == [cid] and touched.iloc[0]["change"] == "updated"
    row = case_rows(store).loc[cid]
    assert row["n_findings"] == 2 and row["n_events"] == 3 and row["version"] == 2
    assert row["last_seen"] == "2025-07-02T09:00:00+08:00"
    assert row["first_seen"] == "2025-07-01T10:00:00+08:00"
    h = history(store)
    upd = h[h["action"] == "updated"]
    assert set(upd["field"]) >= {"n_findings", "detectors", "severity"}
    assert set(upd["scan_id"]) == {"S2"}
    assert len(case_rows(store)) == 1


def test_resolved_case_with_new_findings_is_reopened_and_says_so(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    C.resolve_case(store, cid, "justified", "covering colleague", "officer.li")
    # rescan of the same finding: stays resolved
    scan(store, frame(F("F1", "a", "u1", "p1")), "S2")
    assert case_rows(store).loc[cid, "status"] == "resolved"
    # a new finding on the pair reopens it
    touched = scan(store, frame(F("F2", "a", "u1", "p1", events=("e7",),
                                  start="2025-07-05T10:00:00+08:00")), "S3")
    assert touched.iloc[0]["change"] == "reopened"
    row = case_rows(store).loc[cid]
    assert row["status"] == "open" and bool(row["reopened"]) is True
    assert row["disposition"] is None and row["n_findings"] == 2
    h = history(store)
    re = h[h["action"] == "reopened"].iloc[0]
    assert re["scan_id"] == "S3" and re["old"] == "resolved" and re["new"] == "open"
    assert "justified" in re["note"] and "officer.li" in re["note"]
    assert list(h["action"])[:3] == ["opened", "resolved", "reopened"]
    assert set(h["action"][3:]) <= {"updated"}


def test_repeat_offender_raises_severity_of_new_cases(store):
    scan(store, frame(F("F1", "a", "u1", "p1", severity="medium")), "S1")
    C.resolve_case(store, C.case_id_for("patient", "u1", "p1"), "confirmed", "snooping",
                   "officer")
    scan(store, frame(F("F2", "a", "u1", "p2", severity="medium"),
                      F("F3", "a", "u2", "p2", severity="medium")), "S2")
    rows = case_rows(store)
    assert rows.loc[C.case_id_for("patient", "u1", "p2"), "severity"] == "high"
    assert "repeat offender" in rows.loc[C.case_id_for("patient", "u1", "p2"), "summary"]
    assert rows.loc[C.case_id_for("patient", "u2", "p2"), "severity"] == "medium"


def test_false_positive_does_not_make_a_repeat_offender(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    C.resolve_case(store, cid, "confirmed", "first look", "officer")
    C.resolve_case(store, cid, "false_positive", "on second thought", "officer2")
    scan(store, frame(F("F2", "a", "u1", "p2")), "S2")
    assert case_rows(store).loc[C.case_id_for("patient", "u1", "p2"), "severity"] == "medium"


def test_reopened_confirmed_case_counts_its_own_confirmation(store):
    scan(store, frame(F("F1", "a", "u1", "p1", severity="low")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    C.resolve_case(store, cid, "confirmed", "yes", "officer")
    scan(store, frame(F("F2", "a", "u1", "p1", severity="low", events=("e2",))), "S2")
    row = case_rows(store).loc[cid]
    assert row["status"] == "open" and row["severity"] == "medium"


def test_suppressed_findings_are_kept_but_open_no_review_case(store):
    df = frame(F("F1", "a", "u1", "p1", suppressed_by=3),
               F("F2", "a", "u1", "p2"), F("F3", "b", "u1", "p2", suppressed_by=3,
                                            severity="critical"))
    touched = scan(store, df, "S1")
    rows = case_rows(store)
    sup = rows.loc[C.case_id_for("patient", "u1", "p1")]
    assert sup["status"] == "suppressed"
    # the suppressed critical finding does not count towards the open case
    mixed = rows.loc[C.case_id_for("patient", "u1", "p2")]
    assert mixed["status"] == "open" and mixed["severity"] == "medium"
    assert mixed["n_findings"] == 1 and json.loads(mixed["detectors"]) == ["a"]
    stored = store.read_findings().set_index("finding_id")
    assert stored.loc["F1", "suppressed_by"] == 3 and stored.loc["F1", "case_id"] == sup.name
    assert C.list_cases(store)["case_id"].tolist() == [mixed.name]
    opened = history(store).set_index("case_id").loc[sup.name]
    assert opened["new"] == "suppressed" and "#3" in opened["note"]
    assert len(touched) == 2
    # the allowlist entry expires: the same pair's next finding opens the case
    scan(store, frame(F("F4", "a", "u1", "p1", events=("e4",))), "S2")
    assert case_rows(store).loc[sup.name, "status"] == "open"


def test_resolve_history_is_append_only_and_names_reviewer(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    r = C.resolve_case(store, cid[:8], "training", "needs a refresher", "dr.wang")
    assert r["status"] == "resolved" and r["version"] == 2
    C.resolve_case(store, cid, "confirmed", "after interview", "officer.li")
    h = C.case_history_of(store, cid)
    res = h[h["action"] == "resolved"]
    assert list(res["by"]) == ["dr.wang", "officer.li"]
    assert list(res["old"].fillna("")) == ["", "training"]
    assert list(res["new"]) == ["training", "confirmed"]
    row = case_rows(store).loc[cid]
    assert row["reviewer"] == "officer.li" and row["version"] == 3


def test_resolve_rejects_bad_input_and_stale_versions(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    with pytest.raises(C.UserError, match="disposition"):
        C.resolve_case(store, cid, "fine", "x", "me")
    with pytest.raises(C.CaseNotFound):
        C.resolve_case(store, "Cnothere", "confirmed", "x", "me")
    with pytest.raises(C.CaseConflict):
        C.resolve_case(store, cid, "confirmed", "x", "me", expected_version=7)


def test_scan_retries_when_a_reviewer_changed_the_case(store, monkeypatch):
    """The scan's update is guarded by the version: a stale read is redone, not overwritten."""
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    real = C._write
    calls = {"n": 0}

    def racing_write(conn, row, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:   # a reviewer resolves between the scan's read and its write
            conn.execute(sa.update(cases).where(cases.c.case_id == cid).values(
                version=cases.c.version + 1, status="resolved", disposition="justified",
                reviewer="r"))
        return real(conn, row, *a, **k)

    monkeypatch.setattr(C, "_write", racing_write)
    scan(store, frame(F("F2", "a", "u1", "p1", events=("e2",))), "S2")
    row = case_rows(store).loc[cid]
    assert calls["n"] == 2
    # the retry saw the resolution and reopened the case instead of overwriting it
    assert row["status"] == "open" and bool(row["reopened"])


def test_count_cases_matches_grouping():
    df = frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p1"), F("F3", "a", "u1", ""),
               F("F4", "a", "u2", "p1", suppressed_by=1))
    assert C.count_cases(df) == 2


def test_retracted_findings_leave_their_case(store):
    scan(store, frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p1", events=("e2",))), "S1")
    cid = C.case_id_for("patient", "u1", "p1")
    # the rescan S2 produced only F1: the pipeline marks F2 retracted, then calls update_cases
    with store.begin() as conn:
        conn.execute(findings_t.update().where(findings_t.c.finding_id == "F2")
                     .values(retracted_scan="S2"))
    scan(store, frame(F("F1", "a", "u1", "p1")), "S2")
    row = case_rows(store).loc[cid]
    assert row["n_findings"] == 1 and json.loads(row["detectors"]) == ["a"]
    assert row["severity"] == "medium"
    # nothing at all produced any more: the case leaves the queue
    with store.begin() as conn:
        conn.execute(findings_t.update().where(findings_t.c.finding_id == "F1")
                     .values(retracted_scan="S3"))
    with store.begin() as conn:
        C.update_cases(conn, frame(F("F0", "a", "u9", "p9")).iloc[0:0], "S3", NOW)
    assert case_rows(store).loc[cid, "status"] == "retracted"


# -- CLI ------------------------------------------------------------------------------------
def _cli_store(tmp_path, mask=True):
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[store]\nurl = "sqlite:///cli.db"\n[reports]\nmask_patients = '
                   f'{"true" if mask else "false"}\n', encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    scan(store, frame(F("F1", "care.no_relationship", "u1", "P0012345", severity="high"),
                      F("F2", "snoop.vip", "u1", "P0012345", events=("e2",)),
                      F("F3", "bulk.off_hours", "u2", "", severity="low")), "S1")
    return str(cfg), store


def test_cli_list_show_resolve(tmp_path):
    from click.testing import CliRunner
    from emraudit.cli import main
    cfg, store = _cli_store(tmp_path)
    cid = C.case_id_for("patient", "u1", "P0012345")
    run = CliRunner()
    r = run.invoke(main, ["cases", "list", "--config", cfg])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert cid in lines[2] and "critical" in lines[2]       # most severe first
    assert "P0****45" in r.output and "P0012345" not in r.output
    assert "2 cases" in r.output
    r = run.invoke(main, ["cases", "list", "--config", cfg, "--detector", "snoop.vip",
                          "--format", "json", "--unmask"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [d["case_id"] for d in data] == [cid] and data[0]["patient_id"] == "P0012345"
    r = run.invoke(main, ["cases", "resolve", "--config", cfg, cid[:9], "--disposition",
                          "confirmed", "--note", "interviewed; no clinical reason",
                          "--by", "officer.li"])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["cases", "list", "--config", cfg, "--user", "u1"])
    assert "no cases (open)" in r.output
    r = run.invoke(main, ["cases", "list", "--config", cfg, "--status", "resolved"])
    assert cid in r.output and "confirmed" in r.output
    r = run.invoke(main, ["cases", "show", "--config", cfg, cid])
    assert r.exit_code == 0, r.output
    assert "confirmed by officer.li" in r.output
    assert "resolved" in r.output and "opened" in r.output and "(scan S1)" in r.output
    assert "snoop.vip" in r.output and "P0012345" not in r.output
    r = run.invoke(main, ["cases", "show", "--config", cfg, cid, "--format", "json"])
    data = json.loads(r.output)
    assert [h["action"] for h in data["history"]] == ["opened", "resolved"]
    assert data["history"][1]["by"] == "officer.li" and data["version"] == 2
    assert len(data["findings"]) == 2


def test_cli_resolve_errors_exit_2(tmp_path):
    from click.testing import CliRunner
    from emraudit.cli import main
    cfg, _ = _cli_store(tmp_path)
    r = CliRunner().invoke(main, ["cases", "resolve", "--config", cfg, "Cnope1234",
                                  "--disposition", "confirmed", "--note", "x", "--by", "y"])
    assert r.exit_code == 2 and "no case 'Cnope1234'" in r.output
    r = CliRunner().invoke(main, ["cases", "list", "--config", cfg, "--since", "July"])
    assert r.exit_code == 2 and "--since" in r.output


def test_with_the_pipelines_own_findings_upsert(store):
    """The scan upserts findings first (scan.store_findings), then calls update_cases in the
    same transaction: case ids stick, retracted findings leave, new ones reopen."""
    scan_mod = pytest.importorskip("emraudit.scan")
    ws = pd.Timestamp("2025-07-01", tz="Asia/Shanghai")
    we = ws + pd.Timedelta(days=1)

    def run(df, scan_id):
        with store.begin() as conn:
            scan_mod.store_findings(conn, df, scan_id, ["a"], ws, we, ["2025-07-01"])
            C.update_cases(conn, df, scan_id, NOW)

    run(frame(F("F1", "a", "u1", "p1"), F("F2", "a", "u1", "p2", events=("e2",))), "S1")
    p1, p2 = C.case_id_for("patient", "u1", "p1"), C.case_id_for("patient", "u1", "p2")
    C.resolve_case(store, p1, "justified", "on the care team", "officer")
    run(frame(F("F1", "a", "u1", "p1"), F("F2", "a", "u1", "p2", events=("e2",))), "S2")
    assert len(history(store)) == 3                     # 2 opened + 1 resolved: no noise
    run(frame(F("F1", "a", "u1", "p1"), F("F3", "a", "u1", "p1", events=("e3",),
                                          start="2025-07-01T11:00:00+08:00")), "S3")
    rows = case_rows(store)
    assert rows.loc[p1, "status"] == "open" and bool(rows.loc[p1, "reopened"])
    assert rows.loc[p1, "n_findings"] == 2
    assert rows.loc[p2, "status"] == "retracted" and rows.loc[p2, "n_findings"] == 0
    stored = store.read_findings(include_retracted=True).set_index("finding_id")
    assert stored.loc["F3", "case_id"] == p1 and stored.loc["F2", "retracted_scan"] == "S3"
