"""Each explanation's window at both edges (issue 23): just inside holds, just outside does not,
on the side before the access and on the side after it. A break-the-glass after the access
does not explain it (look first, break the glass later); leave, surgery and off-site roster
blocks are not duty; unit relations have the same grace as the user's own.
"""

from __future__ import annotations

import re

import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.explain import (explain_accesses, explanation_evidence,
                                        explanations_tried, with_details)

W = ("2025-07-01", "2025-09-01")
DOC = {"user_id": "doc", "role": "physician", "department": "心内科"}
NURSE = {"user_id": "rn", "role": "nurse", "ward": "心内科一病区"}
FLOAT = {"user_id": "float", "role": "nurse", "ward": "骨科病区"}
NO_LOOKBACK = {"explain": {"lookback_days": 0.0}}


def verdicts(events, **kw):
    kw.setdefault("window", W)
    x = explain_accesses(make_ctx(events, **kw))
    got = dict(zip(x["event_id"], x["explanation"]))
    return [got[e["event_id"]] for e in events]


def rel(patient="p1", user=None, start="2025-07-05", end="2025-07-10", kind="admission",
        department=None, ward=None):
    return {"patient_id": patient, "user_id": user, "kind": kind, "start": start, "end": end,
            "department": department, "ward": ward}


# ----------------------------------------------------------------------- break the glass
@pytest.mark.parametrize("btg_at,explains", [
    ("2025-07-20 10:00:00", True),     # at the same instant
    ("2025-07-20 09:59:59", True),
    ("2025-07-19 22:00:00", True),     # exactly 12 h before
    ("2025-07-19 21:59:59", False),    # 12 h and a second before
    ("2025-07-20 10:00:01", False),    # a second after: look first, break the glass later
    ("2025-07-20 12:00:00", False),
    ("2025-07-20 21:59:00", False),
])
def test_break_the_glass_explains_only_what_follows_it(btg_at, explains):
    look = ev("er", "p1", "2025-07-20 10:00:00")
    btg = ev("er", "p1", btg_at, "break_glass")
    got = verdicts([look, btg], care_relations=[rel()], params=NO_LOOKBACK)
    assert got[0] == ("break_glass" if explains else "")


def test_break_the_glass_on_another_patient_or_by_someone_else_explains_nothing():
    events = [ev("er", "p2", "2025-07-20 09:00", "break_glass"),
              ev("er2", "p1", "2025-07-20 09:00", "break_glass"),
              ev("er", "p1", "2025-07-20 10:00")]
    assert verdicts(events, care_relations=[rel()], params=NO_LOOKBACK)[2] == ""


# ----------------------------------------------------------------------- roster blocks
@pytest.mark.parametrize("kind,explains", [("duty", True), ("leave", False),
                                           ("surgery", False), ("offsite", False)])
def test_only_duty_blocks_on_the_patients_ward_are_duty(kind, explains):
    shifts = [{"user_id": "float", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": kind, "ward": "心内科一病区"}]
    got = verdicts([ev("float", "p1", "2025-07-06 10:00")], users=[FLOAT], shifts=shifts,
                   care_relations=[rel(ward="心内科一病区")], params=NO_LOOKBACK)
    assert got == ["duty_ward" if explains else ""]


@pytest.mark.parametrize("ts,explains", [
    ("2025-07-06 07:00:00", True),     # 60 min before the shift
    ("2025-07-06 06:59:59", False),
    ("2025-07-06 17:00:00", True),     # 60 min after
    ("2025-07-06 17:00:01", False),
])
def test_duty_grace_on_both_sides(ts, explains):
    shifts = [{"user_id": "float", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "心内科一病区"}]
    got = verdicts([ev("float", "p1", ts)], users=[FLOAT], shifts=shifts,
                   care_relations=[rel(ward="心内科一病区")], params=NO_LOOKBACK)
    assert got == ["duty_ward" if explains else ""]


def test_duty_on_the_ward_before_the_patient_came_does_not_explain():
    # the patient's ward relation starts 07-20 (grace from 07-17); the duty is on 07-06
    shifts = [{"user_id": "float", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "心内科一病区"}]
    got = verdicts([ev("float", "p1", "2025-07-06 10:00")], users=[FLOAT], shifts=shifts,
                   care_relations=[rel(ward="心内科一病区", start="2025-07-20",
                                       end="2025-07-25")], params=NO_LOOKBACK)
    assert got == [""]


# ----------------------------------------------------------------------- unit relations
@pytest.mark.parametrize("ts,explains", [
    ("2025-07-02 00:00:00", True),     # start - 3 days
    ("2025-07-01 23:59:59", False),
    ("2025-08-09 00:00:00", True),     # end + 30 days
    ("2025-08-09 00:00:01", False),
])
@pytest.mark.parametrize("who,unit", [("doc", {"department": "心内科"}),
                                      ("rn", {"ward": "心内科一病区"})])
def test_unit_relation_grace_on_both_sides(ts, explains, who, unit):
    got = verdicts([ev(who, "p1", ts)], users=[DOC, NURSE], care_relations=[rel(**unit)],
                   params=NO_LOOKBACK)
    assert got == ["unit_relation" if explains else ""]


def test_unit_relation_grace_follows_its_parameters():
    over = {"explain": {"lookback_days": 0.0, "grace_before_days": 1.0,
                                     "grace_after_days": 2.0}}
    events = [ev("doc", "p1", "2025-07-04 00:00"), ev("doc", "p1", "2025-07-03 23:59"),
              ev("doc", "p2", "2025-07-12 00:00"), ev("doc", "p2", "2025-07-12 00:01")]
    got = verdicts(events, users=[DOC], params=over,
                   care_relations=[rel(department="心内科"),
                                   rel("p2", department="心内科")])
    assert got == ["unit_relation", "", "unit_relation", ""]


def test_unit_relation_of_another_unit_or_patient_does_not_explain():
    got = verdicts([ev("doc", "p1", "2025-07-06 10:00"), ev("rn", "p1", "2025-07-06 10:00"),
                    ev("doc", "p2", "2025-07-06 10:00")], users=[DOC, NURSE],
                   care_relations=[rel(department="骨科", ward="骨科病区"),
                                   rel("p3", department="心内科", ward="心内科一病区")],
                   params=NO_LOOKBACK)
    assert got == ["", "", ""]


def test_an_ongoing_unit_relation_explains_long_after_its_start():
    got = verdicts([ev("rn", "p1", "2025-08-30 10:00")], users=[NURSE],
                   care_relations=[rel(ward="心内科一病区", end=None)], params=NO_LOOKBACK)
    assert got == ["unit_relation"]


# ----------------------------------------------------------------------- own relations
@pytest.mark.parametrize("ts,explains", [
    ("2025-07-04 00:00:00", True), ("2025-07-03 23:59:59", False),
    ("2025-07-12 00:00:00", True), ("2025-07-12 00:00:01", False),
])
def test_own_relation_grace_follows_its_parameters(ts, explains):
    over = {"explain": {"lookback_days": 0.0, "grace_before_days": 1.0,
                                     "grace_after_days": 2.0}}
    got = verdicts([ev("doc", "p1", ts)], care_relations=[rel(user="doc")], params=over)
    assert got == ["own_relation" if explains else ""]


def test_someone_elses_relation_or_another_patients_does_not_explain():
    got = verdicts([ev("doc", "p1", "2025-07-06"), ev("doc", "p2", "2025-07-06")],
                   care_relations=[rel(user="other"), rel("p3", user="doc")],
                   params=NO_LOOKBACK)
    assert got == ["", ""]


# ----------------------------------------------------------------------- prior treatment
def test_a_later_explained_access_is_not_prior_treatment_of_an_earlier_one():
    events = [ev("doc", "p1", "2025-08-20 10:00"), ev("doc", "p1", "2025-08-25 10:00")]
    # the relation holds on 08-25 (starts 08-25, grace 0): the 08-20 access has no reason
    over = {"explain": {"grace_before_days": 0.0}}
    got = verdicts(events, care_relations=[rel(user="doc", start="2025-08-25",
                                               end="2025-08-26")], params=over)
    assert got == ["", "own_relation"]


@pytest.mark.parametrize("days,explains", [(30, True), (30.0001, False)])
def test_prior_treatment_look_back_edge(days, explains):
    import pandas as pd
    t1 = pd.Timestamp("2025-07-05 10:00")
    t2 = t1 + pd.Timedelta(days=days)
    events = [ev("cons", "p1", str(t1)), ev("cons", "p1", str(t2))]
    over = {"explain": {"kind_grace_after_days": 0.0,
                                     "kind_grace_before_days": 0.0, "lookback_days": 30.0}}
    got = verdicts(events, care_relations=[rel(user="cons", kind="consult", start=str(t1),
                                               end=str(t1))], params=over)
    assert got == ["request_relation", "prior_treatment" if explains else ""]


# ----------------------------------------------------------------------- documentation
@pytest.mark.parametrize("sign_at,explains", [
    ("2025-07-21 10:00:00", True),     # signed 24 h after the look
    ("2025-07-21 10:00:01", False),
    ("2025-07-19 10:00:00", True),     # 24 h before
    ("2025-07-19 09:59:59", False),
])
def test_documentation_window_on_both_sides(sign_at, explains):
    look = ev("rt", "p1", "2025-07-20 10:00:00")
    sign = ev("rt", "p1", sign_at, "sign")
    got = verdicts([look, sign], care_relations=[rel()], params=NO_LOOKBACK)
    assert got[0] == ("documentation" if explains else "")


# ----------------------------------------------------------------------- what was tried
def test_an_unexplained_access_says_why_each_explanation_failed():
    ctx = make_ctx([ev("er", "p1", "2025-07-20 10:00"),
                    ev("er", "p1", "2025-07-20 10:01", "break_glass")],
                   window=W, care_relations=[rel()], params=NO_LOOKBACK)
    x = explain_accesses(ctx)
    with pytest.raises(ValueError, match="with_details"):    # the relations are pending
        explanation_evidence(x.iloc[0])
    x = with_details(ctx, x)
    tried = explanation_evidence(x.iloc[0])
    assert [t["explanation"] for t in tried] == [
        "own_relation", "unit_relation", "duty_ward", "request_relation", "prior_treatment",
        "documentation", "worked_on_ward", "break_glass", "record_role"]
    assert all(t["result"] == "failed" for t in tried)


def test_explanations_of_many_rows_are_those_of_each_row():
    # explanations_tried (column lists, details completed once) gives what
    # explanation_evidence gives row by row after with_details, explained rows and not
    ctx = make_ctx([ev("er", "p1", "2025-07-20 10:00"), ev("doc", "p1", "2025-07-06 10:00"),
                    ev("er", "p2", "2025-07-20 10:05"), ev("er", "p1", "2025-07-21 10:00")],
                   window=W, care_relations=[rel(user="doc"), rel("p2", start="2025-06-01")],
                   params=NO_LOOKBACK)
    x = explain_accesses(ctx)
    assert set(x["explanation"]) == {"", "own_relation"}
    done = with_details(ctx, x)
    assert explanations_tried(ctx, x) == [explanation_evidence(done.iloc[i])
                                          for i in range(len(done))]
    assert explanations_tried(ctx, x.iloc[:0]) == []


# ----------------------------------------------------------------------- work on the ward
FLOATER = {"user_id": "float", "role": "nurse", "ward": "骨科病区"}


@pytest.mark.parametrize("hours,expected", [(12.0, "worked_on_ward"), (0.0, "")])
def test_ward_work_hours_zero_turns_worked_on_ward_off(hours, expected):
    # the float nurse signs p1's chart on 心内科一病区 and opens p2 there at the same instant:
    # worked on the ward, unless ward_work_hours = 0 ("0 turns it off", not "same instant")
    rels = [rel("p1", ward="心内科一病区"), rel("p2", ward="心内科一病区")]
    events = [ev("float", "p1", "2025-07-06 02:00", "sign"),
              ev("float", "p2", "2025-07-06 02:00")]
    over = {"explain": {"lookback_days": 0.0, "ward_work_hours": hours}}
    got = verdicts(events, users=[FLOATER], care_relations=rels, params=over)
    assert got == ["documentation", expected]


# ----------------------------------------------------------------------- later points
def test_a_later_break_the_glass_does_not_hide_an_earlier_one():
    # er breaks the glass on p1 at 09:00 and looks at 10:00 (explained by it); a second
    # break-the-glass at 15:00 falls in an own relation (15:00-16:00) so it is no longer a
    # question itself. The later point must not stand in front of the earlier one.
    events = [ev("er", "p1", "2025-07-20 09:00", "break_glass"),
              ev("er", "p1", "2025-07-20 10:00"),
              ev("er", "p1", "2025-07-20 15:00", "break_glass")]
    over = {"explain": {"lookback_days": 0.0, "grace_before_days": 0.0,
                        "grace_after_days": 0.0}}
    got = verdicts(events, care_relations=[rel(user="er", start="2025-07-20 15:00",
                                               end="2025-07-20 16:00")], params=over)
    assert got == ["break_glass", "break_glass", "own_relation"]


def test_binary_search_of_many_queries_in_order_equals_searchsorted():
    # the cache-friendly path (>= 500,000 points and >= 100,000 queries) answers exactly as
    # np.searchsorted, on both sides
    import numpy as np

    from emraudit.detectors.explain import _search
    rng = np.random.default_rng(23)
    pp = np.sort(rng.integers(0, 2_000_000, 500_000))
    qp = rng.integers(-10, 2_000_010, 100_000)
    for side in ("left", "right"):
        assert np.array_equal(_search(pp, qp, side), np.searchsorted(pp, qp, side=side))


# ----------------------------------------------------------------------- record role hours
def _role_hours():
    from emraudit.detectors.explain import EXPLAIN
    (param,) = [p for p in EXPLAIN.params if p.name == "record_role_hours"]
    return param


def test_record_role_hours_accepts_a_valid_table():
    value = {"medical_records": [8, 17.5], "insurance": [0, 24]}
    assert _role_hours().check(value) == value


@pytest.mark.parametrize("value,says", [
    ({"janitor": [8, 17]}, "unknown role 'janitor'"),
    ({"medical_records": [8]}, "medical_records: expected [start_hour, end_hour]"),
    ({"medical_records": [8, 17, 18]}, "medical_records: expected"),
    ({"medical_records": ["8", 17]}, "medical_records: expected"),
    ({"medical_records": [True, 17]}, "medical_records: expected"),
    ({"medical_records": [17, 8]}, "medical_records: expected"),
    ({"medical_records": [8, 25]}, "medical_records: expected"),
    ({"medical_records": [-1, 8]}, "medical_records: expected"),
])
def test_record_role_hours_rejects_a_bad_table(value, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        _role_hours().check(value)


def test_prior_treatment_says_its_look_back():
    from emraudit.detectors.explain import explanation_detail
    events = [ev("cons", "p1", "2025-07-05 10:00"), ev("cons", "p1", "2025-07-25 10:00")]
    over = {"explain": {"kind_grace_after_days": 0.0, "kind_grace_before_days": 0.0,
                        "lookback_days": 21.0}}
    x = explain_accesses(make_ctx(events, window=W, params=over, care_relations=[
        rel(user="cons", kind="consult", start="2025-07-05 10:00", end="2025-07-05 10:00")]))
    assert x["explanation"].tolist() == ["request_relation", "prior_treatment"]
    assert explanation_detail(x.iloc[1]) == {"days": 21.0}
