"""Cases: grouping, stable ids, reopening, repeat offenders, suppressed findings, history."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit import cases as C
from emraudit.results import save_scan_results
from emraudit.store import Store, case_history, cases, findings as findings_t

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


@pytest.fixture(autouse=True, params=["chunk-default", "chunk-2"])
def case_chunk(request, monkeypatch):
    """Every test here runs twice: cases recomputed in the default chunks, and two at a
    time (update_cases chunks a night's cases; the answers must not depend on it)."""
    if request.param == "chunk-2":
        monkeypatch.setattr(C, "CASE_CHUNK", 2)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


WS = pd.Timestamp("2025-06-01", tz="Asia/Shanghai")
WE = pd.Timestamp("2025-08-01", tz="Asia/Shanghai")


def scan(store, df, scan_id, now=NOW, tz=None, quota=100, ran=()):
    """What the pipeline does (emraudit.results): findings with their case ids in one write,
    then the cases, then the queue, in one transaction."""
    with store.begin() as conn:
        saved = save_scan_results(conn, df, scan_id, ran=list(ran), window_start=WS,
                                  window_end=WE, days=None, tz=tz, quota=quota, now=now)
    return saved.cases


def inc(user, day="2025-07-01"):
    """The id of `user`'s incident case of `day`, pinned once as a literal in
    test_case_ids_are_pinned."""
    return C.case_id_for("incident", user, day)


def history(store):
    return store.read_table(case_history, order_by=case_history.c.id)


def case_rows(store):
    return store.read_table(cases, order_by=cases.c.case_id).set_index("case_id")


def test_one_incident_per_user_and_site_local_day_whatever_the_detectors(store):
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
    assert len(touched) == 3
    assert set(touched["change"]) == {"opened"}
    rows = case_rows(store)
    night = rows.loc[inc("u1")]
    assert json.loads(night["detectors"]) == ["bulk.off_hours", "care.no_relationship",
                                              "cred.two_places", "snoop.vip"]
    assert json.loads(night["patients"]) == ["p1", "p2"]
    assert pd.isna(night["patient_id"])                # several patients
    assert night["n_findings"] == 5 and night["n_events"] == 2
    assert night["kind"] == "incident" and night["day"] == "2025-07-01"
    # high, raised one level because several detectors agree
    assert night["severity"] == "critical" and night["severity_base"] == "high"
    assert json.loads(night["severity_reasons"]) == [{"reason": "detectors_agree", "n": 4}]
    assert night["top_finding"] == "F2"
    assert rows.loc[inc("u2"), "patient_id"] == "p1"   # one patient: named
    assert rows.loc[inc("u1", "2025-07-02"), "n_findings"] == 1
    # every stored finding points at its case, written with it
    stored = store.read_findings().set_index("finding_id")
    assert stored.loc["F2", "case_id"] == inc("u1")
    assert stored.loc["F7", "case_id"] == inc("u1", "2025-07-02")
    assert json.loads(stored.loc["F2", "risk_flags"]) == ["special"]
    # one "opened" history row per case, naming the scan
    h = history(store)
    assert list(h["action"]) == ["opened"] * 3 and set(h["scan_id"]) == {"S1"}


def test_case_ids_are_pinned():
    """Ids are a stable digest of kind, user and day: pinned here as literals, so a change
    of the digest (or Python's salted hash() instead of it) fails."""
    assert C.case_id_for("incident", "u1", "2025-07-01") == "C7ae8897c6e76271"
    assert C.case_id_for("incident", "U0139", "2026-09-07") == "C2ac22bb5cb88fe3"
    assert C.feed_gap_case_id("department", "心内科") == "C56a7562a352172a"


def test_incident_day_is_the_site_local_day(store):
    # 2025-06-30T17:30Z is 01:30 on 1 July in Shanghai; 15:59Z is 23:59 on 30 June
    df = frame(F("F1", "bulk.off_hours", "u1", "", start="2025-06-30T17:30:00+00:00"),
               F("F2", "bulk.off_hours", "u1", "", start="2025-06-30T15:59:00+00:00"))
    scan(store, df, "S1", tz="Asia/Shanghai")
    assert sorted(case_rows(store)["day"]) == ["2025-06-30", "2025-07-01"]


def test_single_detector_keeps_its_severity(store):
    scan(store, frame(F("F1", "a", "u1", "p1", severity="high"),
                      F("F2", "a", "u1", "p3", severity="low", events=("e9",),
                        start="2025-07-01T18:00:00+08:00")), "S1")
    row = case_rows(store).iloc[0]
    assert row["severity"] == "high" and json.loads(row["severity_reasons"]) == []


def test_rescan_of_the_same_data_changes_nothing(store):
    df = frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p1"), F("F3", "a", "u2", ""))
    scan(store, df, "S1")
    before = case_rows(store)
    n_hist = len(history(store))
    touched = scan(store, df.copy(), "S2", now=NOW + pd.Timedelta(days=1))
    assert set(touched["change"]) == {"unchanged"}
    pd.testing.assert_frame_equal(before, case_rows(store))
    assert len(history(store)) == n_hist


def test_case_ids_are_stable_and_late_findings_join_the_open_incident(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = inc("u1")
    touched = scan(store, frame(F("F9", "b", "u1", "p2", events=("e5", "e6"),
                                  start="2025-07-01T21:00:00+08:00")), "S2")
    assert list(touched["case_id"]) == [cid] and touched.iloc[0]["change"] == "updated"
    row = case_rows(store).loc[cid]
    assert row["n_findings"] == 2 and row["n_events"] == 3 and row["version"] == 2
    assert row["last_seen"] == "2025-07-01T21:00:00+08:00"
    assert row["first_seen"] == "2025-07-01T10:00:00+08:00"
    assert json.loads(row["patients"]) == ["p1", "p2"]
    h = history(store)
    upd = h[h["action"] == "updated"]
    assert set(upd["field"]) >= {"n_findings", "detectors", "severity"}
    assert set(upd["scan_id"]) == {"S2"}
    assert len(case_rows(store)) == 1


def test_resolved_case_with_new_findings_is_reopened_and_says_so(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = inc("u1")
    C.resolve_case(store, cid, "justified", "covering colleague", "officer.li")
    # rescan of the same finding: stays resolved
    scan(store, frame(F("F1", "a", "u1", "p1")), "S2")
    assert case_rows(store).loc[cid, "status"] == "resolved"
    # a new finding of the same night (a late-arriving log) reopens it
    touched = scan(store, frame(F("F2", "a", "u1", "p1", events=("e7",),
                                  start="2025-07-01T22:00:00+08:00")), "S3")
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
    C.resolve_case(store, inc("u1"), "confirmed", "snooping", "officer")
    later = "2025-07-05T10:00:00+08:00"
    scan(store, frame(F("F2", "a", "u1", "p2", severity="medium", start=later),
                      F("F3", "a", "u2", "p2", severity="medium", start=later)), "S2")
    rows = case_rows(store)
    assert rows.loc[inc("u1", "2025-07-05"), "severity"] == "high"
    assert "repeat offender" in rows.loc[inc("u1", "2025-07-05"), "summary"]
    assert json.loads(rows.loc[inc("u1", "2025-07-05"), "risk_factors"])["history"] == 5.0
    assert rows.loc[inc("u2", "2025-07-05"), "severity"] == "medium"


def test_false_positive_does_not_make_a_repeat_offender(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = inc("u1")
    C.resolve_case(store, cid, "confirmed", "first look", "officer")
    C.resolve_case(store, cid, "false_positive", "on second thought", "officer2")
    scan(store, frame(F("F2", "a", "u1", "p2", start="2025-07-05T10:00:00+08:00")), "S2")
    assert case_rows(store).loc[inc("u1", "2025-07-05"), "severity"] == "medium"


def test_reopened_confirmed_case_counts_its_own_confirmation(store):
    scan(store, frame(F("F1", "a", "u1", "p1", severity="low")), "S1")
    cid = inc("u1")
    C.resolve_case(store, cid, "confirmed", "yes", "officer")
    scan(store, frame(F("F2", "a", "u1", "p1", severity="low", events=("e2",))), "S2")
    row = case_rows(store).loc[cid]
    assert row["status"] == "open" and row["severity"] == "medium"


def test_suppressed_findings_are_kept_but_open_no_review_case(store):
    d2 = "2025-07-02T10:00:00+08:00"
    df = frame(F("F1", "a", "u1", "p1", suppressed_by=3),
               F("F2", "a", "u1", "p2", start=d2), F("F3", "b", "u1", "p2", start=d2,
                                                     suppressed_by=3, severity="critical"))
    touched = scan(store, df, "S1")
    rows = case_rows(store)
    sup = rows.loc[inc("u1")]
    assert sup["status"] == "suppressed"
    # the suppressed critical finding does not count towards the open case
    mixed = rows.loc[inc("u1", "2025-07-02")]
    assert mixed["status"] == "open" and mixed["severity"] == "medium"
    assert mixed["n_findings"] == 1 and json.loads(mixed["detectors"]) == ["a"]
    stored = store.read_findings().set_index("finding_id")
    assert stored.loc["F1", "suppressed_by"] == 3 and stored.loc["F1", "case_id"] == sup.name
    assert C.list_cases(store)["case_id"].tolist() == [mixed.name]
    opened = history(store).set_index("case_id").loc[sup.name]
    assert opened["new"] == "suppressed" and "#3" in opened["note"]
    assert len(touched) == 2
    assert not bool(sup["queued"]) and bool(mixed["queued"])
    # the allowlist entry expires: the same night's next finding opens the case
    scan(store, frame(F("F4", "a", "u1", "p1", events=("e4",))), "S2")
    assert case_rows(store).loc[sup.name, "status"] == "open"


def test_the_queue_admits_the_budget_highest_risk_first(store):
    """Four incidents, a budget of two: the two riskiest are queued; the others stay open,
    counted below the budget, and a later scan does not queue them without new findings."""
    df = frame(
        F("F1", "a", "u1", "p1", severity="low"),
        F("F2", "snoop.vip", "u2", "p1", severity="high"),              # special patient
        F("F3", "copy.bulk_export", "u3", "p1", severity="medium", item="8"),   # output
        F("F4", "a", "u4", "p1", severity="medium"),
    )
    with store.begin() as conn:
        saved = save_scan_results(conn, df, "S1", ran=[], window_start=WS, window_end=WE,
                                  days=None, tz=None, quota=2, now=NOW)
    assert (saved.admitted, saved.below_budget) == (2, 2)
    rows = case_rows(store)
    assert bool(rows.loc[inc("u2"), "queued"]) and rows.loc[inc("u2"), "queue_rank"] == 1
    assert bool(rows.loc[inc("u3"), "queued"]) and rows.loc[inc("u3"), "queue_rank"] == 2
    assert not bool(rows.loc[inc("u1"), "queued"]) and not bool(rows.loc[inc("u4"), "queued"])
    assert C.review_queue(store) == [inc("u2"), inc("u3")]
    assert C.queue_counts(store) == {"queued": 2, "below_budget": 2, "feed_gaps": 0}
    # rescanning the same findings admits nothing new
    scan(store, df, "S2", quota=2)
    assert C.queue_counts(store) == {"queued": 2, "below_budget": 2, "feed_gaps": 0}
    # a new finding raises u4's incident and brings it in
    scan(store, frame(F("F5", "snoop.vip", "u4", "p2", severity="high", events=("e5",))),
         "S3", quota=1)
    assert bool(case_rows(store).loc[inc("u4"), "queued"])
    below = C.list_cases(store, below_budget=True)
    assert below["case_id"].tolist() == [inc("u1")]


def test_risk_counts_what_a_reviewer_can_check():
    from emraudit.risk import case_risk
    risk, parts = case_risk("high", special=True, lookup=True, output=False, n_patients=4,
                            n_events=7, n_detectors=3, prior_confirmed=5)
    assert parts == {"severity": 20.0, "special_patient": 6.0, "lookup": 4.0,
                     "breadth": 4.0, "volume": 3.0, "detectors": 8.0, "history": 15.0}
    assert risk == 60.0
    low, parts = case_risk("low", special=False, lookup=False, output=False, n_patients=1,
                           n_events=0, n_detectors=1, prior_confirmed=0)
    assert (low, parts) == (0.0, {})


def test_feed_gap_cases_hold_a_unit_and_reopen_only_for_later_accesses(store):
    held = pd.DataFrame([{"dimension": "department", "value": "心内科", "held": 1200,
                          "users": 40, "patients": 300,
                          "start": pd.Timestamp("2025-07-01T08:00:00+08:00"),
                          "end": pd.Timestamp("2025-07-01T20:00:00+08:00"),
                          "top_users": [["u7", 90], ["u8", 80]]}])
    shares = pd.DataFrame([{"dimension": "department", "value": "心内科", "share": 0.41,
                            "others_share": 0.97}])
    with store.begin() as conn:
        C.update_feed_gap_cases(conn, held, shares, "S1", NOW)
    cid = C.feed_gap_case_id("department", "心内科")
    row = case_rows(store).loc[cid]
    assert row["kind"] == "feed_gap" and row["status"] == "open" and bool(row["queued"])
    assert row["n_events"] == 1200 and row["department"] == "心内科"
    assert "41%" in row["summary"] and "97%" in row["summary"]
    assert C.review_queue(store)[0] == cid
    C.resolve_case(store, cid, "justified", "ADT codes mapped", "it.zhang", now=NOW)
    with store.begin() as conn:      # the same days again: stays resolved
        C.update_feed_gap_cases(conn, held, shares, "S2", NOW)
    assert case_rows(store).loc[cid, "status"] == "resolved"
    later = held.assign(end=pd.Timestamp("2025-07-09T20:00:00+08:00"))
    with store.begin() as conn:
        C.update_feed_gap_cases(conn, later, shares, "S3", pd.Timestamp("2025-07-10"))
    assert case_rows(store).loc[cid, "status"] == "open"
    # findings never move a feed-gap case
    scan(store, frame(F("F1", "a", "u7", "p1")), "S4")
    assert case_rows(store).loc[cid, "n_events"] == 1200


def test_resolve_history_is_append_only_and_names_reviewer(store):
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = inc("u1")
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
    cid = inc("u1")
    with pytest.raises(C.UserError, match="disposition"):
        C.resolve_case(store, cid, "fine", "x", "me")
    with pytest.raises(C.CaseNotFound):
        C.resolve_case(store, "Cnothere", "confirmed", "x", "me")
    with pytest.raises(C.CaseConflict):
        C.resolve_case(store, cid, "confirmed", "x", "me", expected_version=7)


def test_scan_retries_when_a_reviewer_changed_the_case(store, monkeypatch):
    """The scan's update is guarded by the version: a stale read is redone, not overwritten."""
    scan(store, frame(F("F1", "a", "u1", "p1")), "S1")
    cid = inc("u1")
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
    df = frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p2"), F("F3", "a", "u1", ""),
               F("F4", "a", "u2", "p1", suppressed_by=1),
               F("F5", "a", "u1", "p1", start="2025-07-02T10:00:00+08:00"))
    assert C.count_cases(df) == 2


def test_retracted_findings_leave_their_case(store):
    scan(store, frame(F("F1", "a", "u1", "p1"), F("F2", "b", "u1", "p1", events=("e2",))), "S1")
    cid = inc("u1")
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
                   f'{"true" if mask else "false"}\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    vip = dict(F("F2", "snoop.vip", "u1", "P0012345", events=("e2",)),
               message_id="snoop.vip",
               message_args={"user": "u1", "patient": "P0012345", "accesses": 2})
    scan(store, frame(F("F1", "care.no_relationship", "u1", "P0012345", severity="high"), vip,
                      F("F3", "bulk.off_hours", "u2", "", severity="low")), "S1")
    return str(cfg), store


def test_cli_list_show_resolve(tmp_path):
    from click.testing import CliRunner
    from emraudit.cli import main
    cfg, store = _cli_store(tmp_path)
    cid = inc("u1")
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
    # the case's sentence, from its top finding, in English and the reports' language
    assert data[0]["summary"].startswith("care.no_relationship on u1 (+1 more finding)")
    assert data[0]["summary_zh"].startswith("无诊疗关系查阅：账号 u1，患者 P0012345（另有 1 项发现）")
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
    # the findings' sentences, in the reports' language (zh by default), patients masked
    assert "u1 在无诊疗关系、也无其他正当理由的情况下查阅重点人员（VIP）患者 P0****45 的病历 2 次" \
        in r.output
    assert "summary: 无诊疗关系查阅：账号 u1，患者 P0****45（另有 1 项发现）" in r.output
    r = run.invoke(main, ["cases", "show", "--config", cfg, cid, "--format", "json"])
    data = json.loads(r.output)
    assert [h["action"] for h in data["history"]] == ["opened", "resolved"]
    assert data["history"][1]["by"] == "officer.li" and data["version"] == 2
    assert len(data["findings"]) == 2
    vip = next(f for f in data["findings"] if f["detector"] == "snoop.vip")
    assert vip["summary"] == ("u1 opened the record of VIP patient P0****45 2 times with no care "
                              "relation or other explanation")
    assert vip["summary_zh"].startswith("u1 在无诊疗关系")
    assert "P0012345" not in r.output


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
    """The scan writes findings with their case ids once (results.store_findings) and then
    the cases, in one transaction: case ids stick, retracted findings leave, new ones
    reopen."""
    ws = pd.Timestamp("2025-07-01", tz="Asia/Shanghai")
    we = ws + pd.Timedelta(days=1)

    def run(df, scan_id):
        with store.begin() as conn:
            save_scan_results(conn, df, scan_id, ran=["a"], window_start=ws, window_end=we,
                              days=["2025-07-01"], tz="Asia/Shanghai", quota=10, now=NOW)

    run(frame(F("F1", "a", "u1", "p1"), F("F2", "a", "u2", "p2", events=("e2",))), "S1")
    c1, c2 = inc("u1"), inc("u2")
    C.resolve_case(store, c1, "justified", "on the care team", "officer")
    run(frame(F("F1", "a", "u1", "p1"), F("F2", "a", "u2", "p2", events=("e2",))), "S2")
    assert len(history(store)) == 3                     # 2 opened + 1 resolved: no noise
    run(frame(F("F1", "a", "u1", "p1"), F("F3", "a", "u1", "p1", events=("e3",),
                                          start="2025-07-01T11:00:00+08:00")), "S3")
    rows = case_rows(store)
    assert rows.loc[c1, "status"] == "open" and bool(rows.loc[c1, "reopened"])
    assert rows.loc[c1, "n_findings"] == 2
    assert rows.loc[c2, "status"] == "retracted" and rows.loc[c2, "n_findings"] == 0
    stored = store.read_findings(include_retracted=True).set_index("finding_id")
    assert stored.loc["F3", "case_id"] == c1 and stored.loc["F2", "retracted_scan"] == "S3"


def test_a_case_counts_each_event_its_findings_cite_once():
    """n_events: distinct event ids over a case's findings (stored JSON text or lists, ids
    compared as text), 0 for a case whose findings cite none."""
    from emraudit.cases import _distinct_events
    cids = pd.Series(["C1", "C1", "C2", "C3"])
    ids = pd.Series(['["e1", "e2"]', ["e2", "e3", 7], "[]", ["7", 7]])
    got = _distinct_events(cids, ids, pd.Index(["C1", "C2", "C3", "C4"]))
    assert got == {"C1": 4, "C2": 0, "C3": 1, "C4": 0}
