"""Detectors against the real explanation engine (issue 23): no stand-in for `explain`, so
care relations, rosters and break-the-glass decide what is explained, as in a scan.

What each family must do: denied accesses and failed logins are not violations; the severity
steps for special patients (long-deceased, sealed, VIP, staff) and for counts; bulk's 2x burst
rule and its explained-share rules; bulk export's unrelated-patient share; the deceased and
sealed-record rules at their edges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run

DAY = ("2025-07-22", "2025-07-23")          # a Tuesday


def mins(start: str, i: int, step: int) -> str:
    return str(pd.Timestamp(start) + pd.Timedelta(minutes=i * step))


def admission(patient, user=None, start="2025-07-20", end="2025-07-25", **kw):
    return {"patient_id": patient, "user_id": user, "kind": "admission", "start": start,
            "end": end, **kw}


# =========================================================================== care
def care(events, window=DAY, **kw):
    return run("care.no_relationship", make_ctx(events, window=window, **kw))


def test_care_unexplained_access_is_a_finding_explained_is_not():
    events = [ev("u1", "p1", "2025-07-22 10:00"), ev("u2", "p2", "2025-07-22 10:00")]
    f = care(events, care_relations=[admission("p2", "u2")])
    assert f[["user_id", "patient_id", "severity"]].values.tolist() == [["u1", "p1", "low"]]
    assert f.iloc[0]["event_ids"] == [events[0]["event_id"]]


def test_care_denied_accesses_are_not_violations():
    events = [ev("u1", "p1", "2025-07-22 10:00", outcome="failure"),
              ev("u1", "p1", "2025-07-22 10:05", outcome="failure")]
    assert care(events).empty
    # counted on request
    assert len(run("care.no_relationship", make_ctx(events, window=DAY),
                   include_failed=True)) == 1
    events.append(ev("u1", "p1", "2025-07-22 10:10", outcome="success"))
    f = care(events)
    assert len(f) == 1 and f.iloc[0]["event_ids"] == [events[2]["event_id"]]


@pytest.mark.parametrize("n,severity", [(2, "low"), (3, "medium"), (9, "medium"),
                                        (10, "high"), (49, "high"), (50, "critical")])
def test_care_severity_steps_with_the_count(n, severity):
    events = [ev("u1", "p1", mins("2025-07-22 08:00", i, 5)) for i in range(n)]
    f = care(events)
    assert f["severity"].tolist() == [severity]
    assert f.iloc[0]["evidence"]["accesses"] == n


@pytest.mark.parametrize("patient,severity", [
    ({"patient_id": "p1"}, "low"),
    ({"patient_id": "p1", "deceased_date": "2024-01-01"}, "medium"),      # long deceased
    ({"patient_id": "p1", "deceased_date": "2025-07-22 09:59"}, "medium"),
    ({"patient_id": "p1", "deceased_date": "2025-07-22 10:01"}, "low"),   # alive then
    ({"patient_id": "p1", "watch": True}, "medium"),                     # sealed
    ({"patient_id": "p1", "vip": True}, "medium"),
    ({"patient_id": "p1", "sensitive": True}, "medium"),
    ({"patient_id": "p1", "employee_user_id": "u9"}, "medium"),
])
def test_care_special_patients_raise_the_severity_one_step(patient, severity):
    f = care([ev("u1", "p1", "2025-07-22 10:00")], patients=[patient])
    assert f["severity"].tolist() == [severity]
    flags = f.iloc[0]["evidence"]["patient_flags"]
    assert bool(flags) is (severity == "medium")


def test_care_special_patient_steps_follow_the_parameter():
    ctx = make_ctx([ev("u1", "p1", "2025-07-22 10:00")], window=DAY,
                   patients=[{"patient_id": "p1", "deceased_date": "2024-01-01"}])
    assert run("care.no_relationship", ctx, special_patient_steps=2)["severity"].tolist() == \
        ["high"]
    ctx = make_ctx([ev("u1", "p1", "2025-07-22 10:00")], window=DAY,
                   patients=[{"patient_id": "p1", "deceased_date": "2024-01-01"}])
    assert run("care.no_relationship", ctx, special_patient_steps=0)["severity"].tolist() == \
        ["low"]


def test_care_lookup_before_opening_raises_the_severity():
    events = [ev("u1", "p1", "2025-07-22 09:30", "query"), ev("u1", "p1", "2025-07-22 10:00")]
    f = care(events)
    assert f["severity"].tolist() == ["medium"]
    assert f.iloc[0]["evidence"]["query_lookup"]["event_ids"] == [events[0]["event_id"]]
    events = [ev("u1", "p1", "2025-07-22 09:29:59", "query"),
              ev("u1", "p1", "2025-07-22 10:00")]
    assert care(events)["severity"].tolist() == ["low"]


def test_care_break_the_glass_after_the_access_leaves_it_unexplained():
    events = [ev("u1", "p1", "2025-07-22 10:00"),
              ev("u1", "p1", "2025-07-22 10:30", "break_glass")]
    f = care(events)
    assert f["event_ids"].tolist() == [[events[0]["event_id"]]]
    events = [ev("u1", "p1", "2025-07-22 09:30", "break_glass"),
              ev("u1", "p1", "2025-07-22 10:00")]
    assert care(events).empty


def test_care_leave_on_the_ward_is_not_duty():
    users = [{"user_id": "n1", "role": "nurse", "ward": "骨科病区"}]
    rel = [admission("p1", ward="心内科一病区")]
    for kind, found in (("duty", False), ("leave", True), ("surgery", True),
                        ("offsite", True)):
        shifts = [{"user_id": "n1", "start": "2025-07-22 08:00", "end": "2025-07-22 16:00",
                   "kind": kind, "ward": "心内科一病区"}]
        f = care([ev("n1", "p1", "2025-07-22 10:00")], users=users, shifts=shifts,
                 care_relations=rel)
        assert (len(f) == 1) is found, kind


# =========================================================================== snoop
def snoop(detector, events, patients, window=DAY, **kw):
    return run(detector, make_ctx(events, window=window, patients=patients, **kw))


@pytest.mark.parametrize("died,fires,severity", [
    ("2025-06-23 10:00", False, None),     # 29 days
    ("2025-06-22 10:00", True, "medium"),  # 30 days
    ("2024-07-23 10:00", True, "medium"),  # 364 days
    ("2024-07-22 10:00", True, "high"),    # 365 days: long deceased
    ("2020-01-01", True, "high"),
])
def test_deceased_days_and_severity_step(died, fires, severity):
    f = snoop("snoop.deceased", [ev("u1", "D1", "2025-07-22 10:00")],
              [{"patient_id": "D1", "deceased_date": died}])
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["severity"] == severity


def test_deceased_explained_or_denied_is_not_reported():
    pats = [{"patient_id": "D1", "deceased_date": "2024-01-01"}]
    e = ev("u1", "D1", "2025-07-22 10:00")
    assert snoop("snoop.deceased", [e], pats,
                 care_relations=[admission("D1", "u1", start="2025-07-21")]).empty
    assert snoop("snoop.deceased", [ev("u1", "D1", "2025-07-22 10:00", outcome="failure")],
                 pats).empty


def test_sealed_record_outsider_explained_high_unexplained_critical_team_nothing():
    pats = [{"patient_id": "S1", "watch": True, "watch_team": "u1；u2"}]
    events = [ev("u1", "S1", "2025-07-22 10:00"), ev("u3", "S1", "2025-07-22 10:05"),
              ev("u4", "S1", "2025-07-22 10:10"),
              ev("u5", "S1", "2025-07-22 10:15", outcome="failure")]
    f = snoop("snoop.watchlist", events, pats,
              care_relations=[admission("S1", "u3")]).sort_values("user_id")
    assert f[["user_id", "severity"]].values.tolist() == [["u3", "high"], ["u4", "critical"]]
    assert f.iloc[0]["evidence"]["watch_team"] == ["u1", "u2"]


def test_vip_unexplained_and_denied():
    pats = [{"patient_id": "V1", "vip": True}]
    f = snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00")], pats)
    assert f["user_id"].tolist() == ["u1"]
    assert snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00", outcome="failure")],
                 pats).empty
    assert snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00")], pats,
                 care_relations=[admission("V1", "u1")]).empty


# =========================================================================== bulk
def burst(user, n, start="2025-07-22 02:00", step=1, prefix="b", action="view"):
    return [ev(user, f"{prefix}{i}", mins(start, i, step), action) for i in range(n)]


def history(user, days=10, first=10):
    return [ev(user, p, f"2025-07-{d:02d} {h:02d}:10")
            for d in range(first, first + days) for h in (9, 11, 14, 16) for p in ("h1", "h2")]


@pytest.mark.parametrize("n,severity,item", [(10, "medium", "9"), (19, "medium", "9"),
                                             (20, "high", "8"), (40, "high", "8")])
def test_off_hours_twice_the_threshold_is_high_and_item_8(n, severity, item):
    f = run("bulk.off_hours", make_ctx(history("d1") + burst("d1", n), window=DAY))
    assert f[["severity", "rectification_item"]].values.tolist() == [[severity, item]]
    assert f.iloc[0]["evidence"]["thresholds"]["required"] == 10


def test_off_hours_a_print_in_the_burst_makes_it_item_8():
    events = history("d1") + burst("d1", 11)
    events[-6]["action"] = "print"
    f = run("bulk.off_hours", make_ctx(events, window=DAY))
    assert f[["severity", "rectification_item"]].values.tolist() == [["high", "8"]]


@pytest.mark.parametrize("explained,fires,severity", [
    (0, True, "medium"), (5, True, "medium"),
    (6, True, "low"),             # half the patients the user's own: low
    (11, True, "low"),            # 11 of 12 = 0.917 < 0.95
    (12, False, None),            # all own patients: the threshold doubles (20)
])
def test_off_hours_share_of_own_patients(explained, fires, severity):
    events = history("d1") + burst("d1", 12)
    rel = [admission(f"b{i}", "d1") for i in range(explained)]
    f = run("bulk.off_hours", make_ctx(events, window=DAY, care_relations=rel))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["severity"] == severity
        assert f.iloc[0]["evidence"]["explained_patient_share"] == round(explained / 12, 3)


def test_off_hours_own_patients_over_the_doubled_threshold():
    events = history("d1") + burst("d1", 20)
    rel = [admission(f"b{i}", "d1") for i in range(20)]
    f = run("bulk.off_hours", make_ctx(events, window=DAY, care_relations=rel))
    assert len(f) == 1
    assert f.iloc[0]["message_id"] == "bulk.off_hours.own_patients"
    assert f.iloc[0]["evidence"]["thresholds"]["explained_required"] == 20


def test_off_hours_denied_accesses_are_not_counted():
    events = history("d1") + [dict(e, outcome="failure") for e in burst("d1", 12)]
    assert run("bulk.off_hours", make_ctx(events, window=DAY)).empty


@pytest.mark.parametrize("n,severity", [(30, "medium"), (59, "medium"), (60, "high")])
def test_volume_twice_the_threshold_is_high(n, severity):
    events = burst("d1", n, start="2025-07-22 09:00")
    f = run("bulk.volume", make_ctx(events, window=DAY))
    assert f["severity"].tolist() == [severity]
    assert f.iloc[0]["evidence"]["thresholds"]["required"] == 30


@pytest.mark.parametrize("explained,fires,severity", [
    (14, True, "medium"), (15, True, "low"), (28, True, "low"), (29, False, None)])
def test_volume_share_of_own_patients(explained, fires, severity):
    events = burst("d1", 30, start="2025-07-22 09:00")
    rel = [admission(f"b{i}", "d1") for i in range(explained)]
    f = run("bulk.volume", make_ctx(events, window=DAY, care_relations=rel))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["severity"] == severity


def test_volume_denied_accesses_are_not_counted():
    events = [dict(e, outcome="failure") for e in burst("d1", 40, start="2025-07-22 09:00")]
    assert run("bulk.volume", make_ctx(events, window=DAY)).empty


# =========================================================================== copy
def prints(user, patients, each, start="2025-07-22 10:00", module="病历", **kw):
    return [ev(user, f"p{i}", mins(start, i, 5), "print", record_count=each, module=module,
               **kw) for i in range(patients)]


def views(user, patients, start="2025-07-22 09:00"):
    return [ev(user, f"p{i}", mins(start, i, 1)) for i in range(patients)]


@pytest.mark.parametrize("related,severity,share", [
    (10, "medium", 0.0),         # all the user's own patients
    (6, "medium", 0.4),
    (5, "high", 0.5),            # half unrelated: one step up
    (0, "high", 1.0),
])
def test_bulk_export_unrelated_share_raises_the_severity(related, severity, share):
    rel = [admission(f"p{i}", "u1") for i in range(related)]
    f = run("copy.bulk_export", make_ctx(views("u1", 10) + prints("u1", 10, 6), window=DAY,
                                         care_relations=rel))
    assert f["severity"].tolist() == [severity]
    assert f.iloc[0]["evidence"]["unrelated_share"] == share
    assert ("unrelated_patients" in f.iloc[0]["evidence"]["severity_raised_by"]) is \
        (share >= 0.5)


def test_bulk_export_imaging_raises_the_severity():
    rel = [admission(f"p{i}", "u1") for i in range(10)]
    f = run("copy.bulk_export", make_ctx(prints("u1", 10, 6, module="PACS影像导出"),
                                         window=DAY, care_relations=rel))
    assert f["severity"].tolist() == ["high"]
    assert f.iloc[0]["evidence"]["severity_raised_by"] == ["imaging"]


def test_bulk_export_denied_outputs_are_not_counted():
    events = prints("u1", 10, 6, outcome="failure")
    assert run("copy.bulk_export", make_ctx(events, window=DAY)).empty


@pytest.mark.parametrize("n,fires", [(2, False), (3, True)])
def test_bulk_export_needs_several_patients(n, fires):
    rel = [admission(f"p{i}", "u1") for i in range(n)]
    f = run("copy.bulk_export", make_ctx(prints("u1", n, 25), window=DAY, care_relations=rel))
    assert (len(f) == 1) is fires



def test_bulk_export_all_outputs_rule_names_itself():
    f = run("copy.bulk_export", make_ctx(views("u1", 10) + prints("u1", 10, 6), window=DAY,
                                         users=[{"user_id": "u1", "role": "nurse"}]))
    r = f.iloc[0]
    assert r["message_id"] == "copy.bulk_export"
    assert r["evidence"]["rule"] == "all_outputs"
    assert r["evidence"]["thresholds"]["floor"] == {"value": 50.0, "unit": "records_per_window"}
    assert (r["message_args"]["user"], r["message_args"]["role"]) == ("u1", "nurse")


@pytest.mark.parametrize("related,fires", [(0, True), (10, False)])
def test_bulk_export_of_unrelated_patients_has_its_own_lower_rule(related, fires):
    # 30 records: under the 50 of all outputs, over the 20 of outputs of unrelated patients
    rel = [admission(f"p{i}", "u1") for i in range(related)]
    f = run("copy.bulk_export", make_ctx(prints("u1", 10, 3), window=DAY, care_relations=rel,
                                         users=[{"user_id": "u1", "role": "nurse"}]))
    assert (len(f) == 1) is fires
    if fires:
        r = f.iloc[0]
        assert r["message_id"] == "copy.bulk_export.unrelated"
        assert r["evidence"]["rule"] == "unrelated_outputs"
        assert (r["message_args"]["user"], r["message_args"]["role"]) == ("u1", "nurse")


# =========================================================================== cred
LEAVE = [{"user_id": "u1", "start": "2025-07-22 00:00", "end": "2025-07-23 00:00",
          "kind": "leave"}]


def test_off_duty_use_counts_successes_only():
    ok = ev("u1", "p1", "2025-07-22 10:00", workstation="ws1")
    failed_login = ev("u1", None, "2025-07-22 11:00", "login_failed", workstation="ws1",
                      outcome="failure")
    denied = ev("u1", "p1", "2025-07-22 12:00", workstation="ws1", outcome="failure")
    f = run("cred.off_duty_use", make_ctx([ok, failed_login, denied], window=DAY,
                                          shifts=LEAVE))
    assert f["event_ids"].tolist() == [[ok["event_id"]]]
    assert f["severity"].tolist() == ["high"]
    assert run("cred.off_duty_use", make_ctx([failed_login, denied], window=DAY,
                                             shifts=LEAVE)).empty


def test_concurrent_use_ignores_failed_logins():
    users = [{"user_id": "u1", "role": "physician", "department": "心内科"}]
    ws = [{"workstation": "A", "department": "心内科", "campus": "本部"},
          {"workstation": "B", "department": "骨科", "campus": "东院"}]
    events = [ev("u1", "p1", "2025-07-22 10:00", workstation="A"),
              ev("u1", None, "2025-07-22 10:03", "login_failed", workstation="B",
                 outcome="failure"),
              ev("u1", "p1", "2025-07-22 10:06", workstation="A")]
    assert run("cred.concurrent_use", make_ctx(events, window=DAY, users=users,
                                               workstations=ws)).empty
    events[1] = ev("u1", "p2", "2025-07-22 10:03", workstation="B")
    f = run("cred.concurrent_use", make_ctx(events, window=DAY, users=users, workstations=ws))
    assert len(f) == 1


ICU_NURSE = [{"user_id": "d1", "role": "nurse", "department": "ICU"},
             {"user_id": "x1", "role": "physician", "department": "ICU"}]


def test_off_hours_evidence_names_the_patients_the_unit_and_the_peer_group():
    f = run("bulk.off_hours", make_ctx(history("d1") + burst("d1", 12), window=DAY,
                                       users=ICU_NURSE))
    r = f.iloc[0]
    assert r["patient_id"] == "" and r["user_id"] == "d1"
    e = r["evidence"]
    assert (e["distinct_patients"], e["events"], e["department"]) == (12, 12, "ICU")
    # ICU's nurses are fewer than peer_min_size (5): the peer group falls back to the role
    assert e["thresholds"]["floor"] == {"value": 10.0, "unit": "patients"}
    assert e["thresholds"]["peer_percentile"]["group"] == "nurse"


def test_volume_evidence_and_score():
    f = run("bulk.volume", make_ctx(burst("d1", 31, start="2025-07-22 09:00"), window=DAY,
                                    users=ICU_NURSE))
    r = f.iloc[0]
    assert r["score"] == 1.033                       # 31 patients / 30 required, 3 places
    e = r["evidence"]
    assert (e["date"], e["distinct_patients"], e["department"]) == ("2025-07-22", 31, "ICU")
    assert e["thresholds"]["floor"] == {"value": 30.0, "unit": "patients_per_day"}


def test_an_account_missing_from_the_staff_list_is_compared_with_role_other():
    f = run("bulk.volume", make_ctx(burst("zz", 31, start="2025-07-22 09:00"), window=DAY,
                                    users=ICU_NURSE))
    assert f.iloc[0]["evidence"]["thresholds"]["peer_percentile"]["group"] == "other"
