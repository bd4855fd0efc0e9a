"""care.no_relationship: grouping, thresholds, severity raises, exclusions, determinism."""

from __future__ import annotations

import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors.registry import all_detectors

W = ("2025-07-07", "2025-07-14")
REL = [{"patient_id": "p1", "user_id": "doc", "kind": "admission", "start": "2025-07-01",
        "end": None, "department": "心内科", "ward": "心内科一病区"}]
USERS = [{"user_id": "doc", "role": "physician", "department": "心内科"},
         {"user_id": "rn", "role": "nurse", "ward": "心内科一病区"},
         {"user_id": "snoop", "role": "nurse", "ward": "骨科病区"},
         {"user_id": "mr", "role": "medical_records"}]


def care(events, **kw):
    kw.setdefault("window", W)
    kw.setdefault("care_relations", REL)
    kw.setdefault("users", USERS)
    params = kw.pop("over", {})
    return run("care.no_relationship", make_ctx(events, **kw), **params)


def test_declaration_is_complete():
    cls = all_detectors()["care.no_relationship"]
    d = cls.declaration()
    assert d["item"] == "9" and d["name_zh"] == "无诊疗关系查阅"
    assert "care_relations" in d["needs"] and d["note"] and d["false_positives"]
    assert d["measure_zh"] and d["measure_en"]
    for p in d["params"]:
        assert p["doc"], p["name"]
    assert cls().effective_lookback_days() == 30


def test_explained_accesses_give_nothing():
    events = [ev("doc", "p1", "2025-07-08 10:00"), ev("rn", "p1", "2025-07-08 03:00"),
              ev("mr", "p1", "2025-07-08 10:00")]
    assert care(events).empty


def test_one_finding_per_user_patient_day_with_every_event():
    events = [ev("snoop", "p1", "2025-07-08 10:00"), ev("snoop", "p1", "2025-07-08 10:05"),
              ev("snoop", "p1", "2025-07-09 10:00")]
    f = care(events)
    assert len(f) == 2
    first = f.iloc[0]
    assert first["user_id"] == "snoop" and first["patient_id"] == "p1"
    assert first["event_ids"] == sorted(e["event_id"] for e in events[:2])
    assert first["rectification_item"] == "9"
    tried = first["evidence"]["explanations"]
    assert [t["explanation"] for t in tried][:2] == ["own_relation", "unit_relation"]
    assert all(t["result"] == "failed" for t in tried)
    # where the patient was instead, as facts, and in words
    assert tried[1]["detail"]["patient_relations"][0]["ward"] == "心内科一病区"
    from emraudit.reports.explanations import explanation_text
    from emraudit.reports.masking import Masker
    assert "患者的诊疗关系：住院，2025-07-01 起（尚未结束），心内科，病区 心内科一病区" in \
        explanation_text(tried[1], "zh", Masker())
    assert first["message_args"] == {"user": "snoop", "patient": "p1", "accesses": 2,
                                     "day": "2025-07-08", "tried": 9, "flags": [],
                                     "lookup": False}
    assert first["summary"] == ("snoop opened the record of patient p1 2 times on 2025-07-08 "
                                "with no care relationship (9 explanations tried, none held)")


def test_finding_ids_are_stable_across_rescans():
    events = [ev("snoop", "p1", "2025-07-08 10:00", event_id="a1")]
    assert care(events)["finding_id"].tolist() == care(events)["finding_id"].tolist()


def test_site_local_day_grouping_at_midnight_shanghai():
    # 23:50 and 00:10 local are two days in Asia/Shanghai although the same UTC day
    events = [ev("snoop", "p1", "2025-07-08T15:50:00Z"), ev("snoop", "p1", "2025-07-08T16:10:00Z")]
    f = care(events)
    assert sorted(f["evidence"].map(lambda e: e["day"])) == ["2025-07-08", "2025-07-09"]
    # and 00:10 / 07:50 local are one day although they straddle UTC midnight
    events = [ev("snoop", "p1", "2025-07-09T16:10:00Z"), ev("snoop", "p1", "2025-07-09T23:50:00Z")]
    assert len(care(events)) == 1


@pytest.mark.parametrize("n,found", [(2, False), (3, True)])
def test_min_accesses_threshold(n, found):
    events = [ev("snoop", "p1", f"2025-07-08 10:0{i}") for i in range(n)]
    assert (len(care(events, over={"min_accesses": 3})) == 1) is found


@pytest.mark.parametrize("n,severity", [(1, "low"), (2, "low"), (3, "medium"), (9, "medium"),
                                        (10, "high"), (49, "high"), (50, "critical")])
def test_severity_rises_with_accesses(n, severity):
    events = [ev("snoop", "p1", "2025-07-08 10:00") for _ in range(n)]
    f = care(events)
    assert f["severity"].tolist() == [severity]


@pytest.mark.parametrize("flag", [{"vip": True}, {"sensitive": True},
                                  {"employee_user_id": "rn"}])
def test_special_patients_raise_severity(flag):
    events = [ev("snoop", "p1", "2025-07-08 10:00")]
    f = care(events, patients=[{"patient_id": "p1", **flag}])
    assert f["severity"].tolist() == ["medium"]
    assert f["evidence"].iloc[0]["patient_flags"]


def test_deceased_only_after_death():
    pat = [{"patient_id": "p1", "deceased_date": "2025-07-08 12:00"}]
    before = care([ev("snoop", "p1", "2025-07-08 10:00")], patients=pat)
    after = care([ev("snoop", "p1", "2025-07-08 13:00")], patients=pat)
    assert before["severity"].tolist() == ["low"] and after["severity"].tolist() == ["medium"]


@pytest.mark.parametrize("gap,raised", [("10:00", True), ("09:30", True), ("09:29:59", False)])
def test_name_lookup_shortly_before_raises(gap, raised):
    events = [ev("snoop", "p1", f"2025-07-08 {gap}", "query"),
              ev("snoop", "p1", "2025-07-08 10:00")]
    f = care(events)
    assert len(f) == 1
    assert f["severity"].iloc[0] == ("medium" if raised else "low")
    lookup = f["evidence"].iloc[0]["query_lookup"]
    assert (lookup is not None) is raised
    if raised:
        assert events[0]["event_id"] in f["event_ids"].iloc[0]
        assert "looked the patient up" in f["summary"].iloc[0]


def test_a_lookup_alone_is_not_an_opened_record():
    assert care([ev("snoop", "p1", "2025-07-08 10:00", "query")]).empty
    assert len(care([ev("snoop", "p1", "2025-07-08 10:00", "query")],
                    over={"count_queries": True})) == 1


def test_records_staff_inside_vs_outside_office_hours():
    assert care([ev("mr", "p1", "2025-07-08 10:00")]).empty          # Tuesday
    f = care([ev("mr", "p1", "2025-07-08 21:00")])
    assert len(f) == 1
    tried = {t["explanation"]: t for t in f["evidence"].iloc[0]["explanations"]}
    assert tried["record_role"]["detail"] == {"role": "medical_records", "record_role": True}
    from emraudit.reports.explanations import explanation_text
    from emraudit.reports.masking import Masker
    assert explanation_text(tried["record_role"], "en", Masker()) == \
        "medical records, but outside its office hours"
    assert explanation_text(tried["record_role"], "zh", Masker()) == "病案室，但不在该岗位工作时间内"


def test_only_window_events_make_findings_but_lookback_explains():
    # the look-back access (before the window) is explained by a relation that ended; the
    # in-window access is prior treatment; an unexplained look-back access makes no finding
    rel = [{"patient_id": "p2", "user_id": "snoop", "kind": "admission",
            "start": "2025-06-20", "end": "2025-06-21"}]
    events = [ev("snoop", "p2", "2025-06-20 10:00"), ev("snoop", "p2", "2025-07-08 10:00"),
              ev("snoop", "p1", "2025-07-01 10:00")]
    assert care(events, care_relations=REL + rel,
                params={"explain": {"grace_after_days": 0.0}}).empty


def test_break_glass_rows_and_failures_are_not_counted():
    events = [ev("snoop", "p1", "2025-07-08 10:00", "break_glass"),
              ev("snoop", "p1", "2025-07-09 10:00", outcome="failure")]
    assert care(events).empty


def test_consult_and_float_nurse_are_explained():
    rel = REL + [{"patient_id": "p1", "user_id": "cons", "kind": "consult",
                  "start": "2025-07-08", "end": "2025-07-08"}]
    shifts = [{"user_id": "snoop", "start": "2025-07-08 20:00", "end": "2025-07-09 08:00",
               "ward": "心内科一病区"}]
    events = [ev("cons", "p1", "2025-07-09 10:00"), ev("snoop", "p1", "2025-07-09 02:00")]
    assert care(events, care_relations=rel, shifts=shifts).empty


def test_protected_patients_when_no_access_matches_the_patients_table():
    """Accesses only to patients missing from the patients table: nothing is protected (a
    map() with no match gave a null-typed Arrow column that fillna(False) rejected)."""
    from emraudit.detectors.care import _protected
    ctx = make_ctx([ev("u1", "p9", "2025-07-01 10:00")], window=("2025-07-01", "2025-07-02"),
                   patients=[{"patient_id": "p1", "vip": True, "employee_user_id": "u7"}])
    pid = ctx.events["patient_id"].astype("string")
    assert _protected(ctx, pid, ctx.events["ts"]).tolist() == [False]
    ctx = make_ctx([ev("u1", "p1", "2025-07-01 10:00"), ev("u1", "p9", "2025-07-01 11:00")],
                   window=("2025-07-01", "2025-07-02"),
                   patients=[{"patient_id": "p1", "vip": True}])
    pid = ctx.events["patient_id"].astype("string")
    assert _protected(ctx, pid, ctx.events["ts"]).tolist() == [True, False]


# ---------------------------------------------------------------- the finding's evidence (issue 23)
def test_evidence_names_the_user_the_actions_by_count_and_the_lookup_window():
    events = [ev("snoop", "p1", "2025-07-08 09:55", "query"),
              ev("snoop", "p1", "2025-07-08 10:00"), ev("snoop", "p1", "2025-07-08 10:01"),
              ev("snoop", "p1", "2025-07-08 10:02", "print"),
              ev("snoop", "p1", "2025-07-08 10:03", "export"),
              ev("snoop", "p1", "2025-07-08 10:04", "export"),
              ev("snoop", "p1", "2025-07-08 10:05", "export")]
    (e,) = care(events)["evidence"].tolist()
    assert e["user"] == {"role": "nurse", "department": None, "ward": "骨科病区"}
    assert list(e["actions"].items()) == [("export", 3), ("view", 2), ("print", 1)]
    assert e["query_lookup"]["window_minutes"] == 30.0
    assert e["query_lookup"]["event_ids"] == [events[0]["event_id"]]


def test_an_account_missing_from_the_staff_list_has_empty_user_evidence():
    (e,) = care([ev("ghost", "p1", "2025-07-08 10:00")])["evidence"].tolist()
    assert e["user"] == {}


def test_a_lookup_adds_one_to_the_score():
    plain = care([ev("snoop", "p1", "2025-07-08 10:00")])
    looked = care([ev("snoop", "p1", "2025-07-08 09:59", "query"),
                   ev("snoop", "p1", "2025-07-08 10:00")])
    assert looked["score"].iloc[0] == pytest.approx(plain["score"].iloc[0] + 1.0)
