"""The explanation engine: each explanation at its edges, cascade order, order and index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.explain import (
    EXPLANATIONS, explain_accesses, explanation_detail, explanation_evidence, with_details,
    interval_hit, nearest_within,
)
from emraudit.reports.explanations import explanation_text
from emraudit.reports.masking import Masker

W = ("2025-07-01", "2025-09-01")
DOC = {"user_id": "doc", "role": "physician", "department": "心内科"}
NURSE = {"user_id": "rn", "role": "nurse", "ward": "心内科一病区"}


def explain(events, **kw):
    kw.setdefault("window", W)
    ctx = make_ctx(events, **kw)
    return with_details(ctx, explain_accesses(ctx))


def adm(patient="p1", user=None, start="2025-07-05", end="2025-07-10", kind="admission",
        department=None, ward=None):
    return {"patient_id": patient, "user_id": user, "kind": kind, "start": start, "end": end,
            "department": department, "ward": ward}


def test_the_engine_declares_its_parameters_once():
    """[explain] is the one declaration: no detector declares one of its parameters again,
    and a context without a profile reads the declared defaults."""
    from emraudit.detectors.base import SECTIONS
    from emraudit.detectors.registry import all_detectors
    names = {p.name for p in SECTIONS["explain"].params}
    assert {"grace_after_days", "lookup_minutes", "record_roles"} <= names
    again = [(d, p.name) for d, c in all_detectors().items() for p in c.params
             if p.name in names]
    assert again == []
    ctx = make_ctx([], window=W, params={"explain": {"grace_after_days": 2.0}})
    assert ctx.section("explain")["grace_after_days"] == 2.0
    assert ctx.section("explain")["grace_before_days"] == 3.0


@pytest.mark.parametrize("ts,held", [
    ("2025-07-02 00:00:00", True),       # exactly start - 3 days
    ("2025-07-01 23:59:59", False),      # one second before the grace
    ("2025-08-09 00:00:00", True),       # exactly end + 30 days
    ("2025-08-09 00:00:01", False),
])
def test_own_relation_grace_boundaries(ts, held):
    x = explain([ev("doc", "p1", ts)], care_relations=[adm(user="doc")])
    assert bool(x["explained"].iloc[0]) is held
    assert x["explanation"].iloc[0] == ("own_relation" if held else "")


def test_ongoing_relation_and_detail_text():
    x = explain([ev("doc", "p1", "2025-08-30 10:00")],
                care_relations=[adm(user="doc", end=None, ward="心内科一病区")])
    assert x["explanation"].iloc[0] == "own_relation"
    assert explanation_detail(x.iloc[0]) == {"relation": {
        "kind": "admission", "start": "2025-07-05", "end": None, "ward": "心内科一病区",
        "user": "doc"}}
    held = explanation_evidence(x.iloc[0])[0]
    assert held["result"] == "held"
    assert explanation_text(held, "en", Masker()) == \
        "admission since 2025-07-05 (ongoing), ward 心内科一病区, staff doc"
    assert explanation_text(held, "zh", Masker()) == \
        "住院，2025-07-05 起（尚未结束），病区 心内科一病区，经治人员 doc"


def test_department_relation_matches_doctor_of_that_department_only():
    rel = [adm(department="心内科")]
    users = [DOC, {"user_id": "other", "role": "physician", "department": "骨科"}]
    x = explain([ev("doc", "p1", "2025-07-06 10:00"), ev("other", "p1", "2025-07-06 10:00")],
                care_relations=rel, users=users)
    assert x.set_index("user_id")["explanation"].to_dict() == {"doc": "unit_relation",
                                                                "other": ""}


def test_ward_relation_matches_nurse_by_ward():
    x = explain([ev("rn", "p1", "2025-07-06 03:00")],
                care_relations=[adm(user="doc", department="心内科", ward="心内科一病区")],
                users=[NURSE])
    assert x["explanation"].iloc[0] == "unit_relation"


def test_unit_match_can_exclude_rows_naming_a_user():
    ctx = make_ctx([ev("rn", "p1", "2025-07-06 03:00")], window=W,
                   care_relations=[adm(user="doc", ward="心内科一病区")], users=[NURSE],
                   params={"explain": {"unit_match_user_rows": False}})
    assert not explain_accesses(ctx)["explained"].iloc[0]


FLOAT = {"user_id": "float", "role": "nurse", "ward": "骨科病区"}


@pytest.mark.parametrize("ts,held", [
    ("2025-07-06 03:00", True),           # night shift 20:00-08:00, in the middle
    ("2025-07-06 09:00", True),           # within the 60 min slack after the shift
    ("2025-07-06 09:00:01", False),
])
def test_float_nurse_on_night_duty_on_patient_ward(ts, held):
    shifts = [{"user_id": "float", "start": "2025-07-05 20:00", "end": "2025-07-06 08:00",
               "kind": "duty", "ward": "心内科一病区"}]
    x = explain([ev("float", "p1", ts)], users=[FLOAT], shifts=shifts,
                care_relations=[adm(ward="心内科一病区")])
    assert x["explanation"].iloc[0] == ("duty_ward" if held else "")
    if held:
        d = explanation_detail(x.iloc[0])
        assert d["ward"] == "心内科一病区" and d["relation"]["kind"] == "admission"
        assert explanation_text(explanation_evidence(x.iloc[0])[2], "zh", Masker()) \
            .startswith("当时在病区 心内科一病区 当班；患者：住院")


def test_duty_on_another_ward_does_not_explain():
    shifts = [{"user_id": "float", "start": "2025-07-05 20:00", "end": "2025-07-06 08:00",
               "kind": "duty", "ward": "儿科病区"}]
    x = explain([ev("float", "p1", "2025-07-06 03:00")], users=[FLOAT], shifts=shifts,
                care_relations=[adm(ward="心内科一病区")])
    assert not x["explained"].iloc[0]
    duty = explanation_evidence(x.iloc[0])[2]
    assert duty["detail"] == {"ward": "儿科病区"}
    assert explanation_text(duty, "en", Masker()) == \
        "on duty on ward 儿科病区, but the patient was not there"


@pytest.mark.parametrize("ts,held", [
    ("2025-07-06 00:00", True),     # consult 07-07, 1 day before is inside
    ("2025-07-05 23:59", False),
    ("2025-07-22 00:00", True),     # consult ends 07-08, +14 days
    ("2025-07-22 00:01", False),
])
def test_consult_with_its_own_grace(ts, held):
    rel = [adm(user="cons", kind="consult", start="2025-07-07", end="2025-07-08")]
    x = explain([ev("cons", "p1", ts)], care_relations=rel,
                params={"explain": {"lookback_days": 0.0}})
    assert x["explanation"].iloc[0] == ("request_relation" if held else "")


def test_access_request_is_not_prior_treatment():
    rel = [adm(user="aud", kind="access_request", start="2025-07-07", end="2025-07-08")]
    x = explain([ev("aud", "p1", "2025-07-07 10:00"), ev("aud", "p1", "2025-07-24 10:00")],
                care_relations=rel)
    # the access during the request is explained, and is itself prior treatment later
    assert x["explanation"].tolist() == ["request_relation", "prior_treatment"]
    x = explain([ev("aud", "p1", "2025-07-24 10:00")], care_relations=rel)
    assert x["explanation"].tolist() == [""]


def test_prior_treatment_within_lookback():
    rel = [adm(user="doc", start="2025-07-05", end="2025-07-05 12:00")]
    over = {"explain": {"grace_after_days": 0.0}}
    # relation ended 07-05 12:00 -> +30 days is 08-04 12:00, inclusive; prior-treatment
    # explanations do not chain (08-04 12:00 does not extend the look-back)
    events = [ev("doc", "p1", "2025-07-05 10:00"), ev("doc", "p1", "2025-08-04 12:00"),
              ev("doc", "p1", "2025-08-04 12:00:01")]
    x = explain_accesses(make_ctx(events, window=W, care_relations=rel, params=over))
    assert x["explanation"].tolist() == ["own_relation", "prior_treatment", ""]


def test_prior_explained_access_within_lookback():
    # a consult explained the first access; 30 days later the access is prior treatment
    rel = [adm(user="cons", kind="consult", start="2025-07-05", end="2025-07-05")]
    over = {"explain": {"kind_grace_after_days": 0.0,
                                     "kind_grace_before_days": 0.0, "lookback_days": 30.0}}
    events = [ev("cons", "p1", "2025-07-05 00:00"), ev("cons", "p1", "2025-08-04 00:00"),
              ev("cons", "p1", "2025-08-04 00:00:01")]
    x = explain_accesses(make_ctx(events, window=W, care_relations=rel, params=over))
    assert x["explanation"].tolist() == ["request_relation", "prior_treatment", ""]


def test_prior_unexplained_access_does_not_explain_later_one():
    x = explain([ev("u", "p1", "2025-07-05 10:00"), ev("u", "p1", "2025-07-06 10:00")],
                care_relations=[adm(user="doc")])
    assert not x["explained"].any()


def test_documentation_before_or_after_explains_view():
    events = [ev("rt", "p1", "2025-07-06 09:00"), ev("rt", "p1", "2025-07-06 10:00", "update"),
              ev("rt", "p1", "2025-07-06 10:30", "update"),
              ev("rt", "p1", "2025-07-07 10:00:01", "view"),
              ev("rt", "p2", "2025-07-06 09:00")]
    x = explain(events, care_relations=[adm()])
    got = dict(zip(x["event_id"], x["explanation"]))
    # the view is explained by the notes; the notes and the next day's view by the view
    # before them (prior treatment is tried first)
    assert [got[e["event_id"]] for e in events] == ["documentation", "prior_treatment",
                                                    "prior_treatment", "prior_treatment", ""]


def test_one_note_after_a_lookup_explains_neither():
    """A note written right after an unexplained look-up is no reason to be on the record:
    both stay unexplained (and the note joins the finding's evidence)."""
    events = [ev("rt", "p1", "2025-07-06 09:00"), ev("rt", "p1", "2025-07-06 09:05", "update")]
    x = explain(events, care_relations=[adm()])
    assert x["explanation"].tolist() == ["", ""]
    # the old rule (any write explains) is one parameter away
    x = explain(events, care_relations=[adm()],
                params={"explain": {"documentation_min_writes": 1}})
    assert x["explained"].tolist() == [True, True]


@pytest.mark.parametrize("gap_h,explained", [(24, True), (24.01, False)])
def test_second_write_must_fall_within_the_window(gap_h, explained):
    t0 = pd.Timestamp("2025-07-06 09:00")
    events = [ev("rt", "p1", str(t0), "update"),
              ev("rt", "p1", str(t0 + pd.Timedelta(hours=gap_h)), "update")]
    x = explain(events, care_relations=[adm()],
                params={"explain": {"lookback_days": 0.0}})
    assert x["explained"].tolist() == [explained, explained]


def test_a_note_by_someone_with_a_reason_explains_the_earlier_lookup():
    # the nurse's ward relation starts 07-05 (3 days' grace: from 07-02); her single note on
    # 07-02 12:00 is explained by it, and so explains her look-up of 07-01 13:00
    events = [ev("rn", "p1", "2025-07-01 13:00"), ev("rn", "p1", "2025-07-02 12:00", "update")]
    x = explain(events, users=[NURSE],
                care_relations=[adm(ward="心内科一病区", start="2025-07-05")],
                params={"explain": {"lookback_days": 0.0}})
    assert x["explanation"].tolist() == ["documentation", "unit_relation"]


def test_documentation_modules_limit_what_counts():
    events = [ev("rt", "p1", "2025-07-06 09:00"),
              ev("rt", "p1", "2025-07-06 10:00", "update", module="打印记录"),
              ev("rt", "p1", "2025-07-06 10:30", "update", module="打印记录")]
    only = {"explain": {"documentation_modules": ["病程记录", "护理记录"]}}
    assert not explain(events, care_relations=[adm()], params=only)["explained"].any()
    events[1]["module"] = events[2]["module"] = "护理记录"
    assert explain(events, care_relations=[adm()], params=only)["explained"].all()


@pytest.mark.parametrize("module,explained", [
    ("flowsheet", True), ("医嘱", True), ("体温单", True),     # routine charting, an order
    ("病程记录", False), (None, False),                        # a free note, or no module
])
def test_one_charting_entry_is_a_reason_to_be_on_the_record(module, explained):
    """Real charting (a vitals entry, a dose given, an order) by someone with no relation in
    the feed explains itself and the look at the chart that came with it; one free-text note
    does not (a note to cover a look-up), and neither does a write of unknown kind."""
    events = [ev("rt", "p1", "2025-07-06 09:00"),
              ev("rt", "p1", "2025-07-06 09:02", "update", module=module)]
    x = explain(events, care_relations=[adm()], params={"explain": {"lookback_days": 0.0}})
    assert x["explanation"].tolist() == (["documentation"] * 2 if explained else ["", ""])


def test_care_record_modules_empty_turns_the_charting_rule_off():
    events = [ev("rt", "p1", "2025-07-06 09:02", "update", module="flowsheet")]
    x = explain(events, care_relations=[adm()],
                params={"explain": {"care_record_modules": [], "lookback_days": 0.0}})
    assert x["explanation"].tolist() == [""]
    # and a hospital names its own charting modules
    x = explain(events, care_relations=[adm()],
                params={"explain": {"care_record_modules": ["flowsheet"]}})
    assert x["explanation"].tolist() == ["documentation"]


def test_charting_explains_only_its_own_writer_and_patient():
    events = [ev("rt", "p1", "2025-07-06 09:00"),                          # other user
              ev("rn2", "p1", "2025-07-06 09:05", "update", module="flowsheet"),
              ev("rt", "p2", "2025-07-06 09:05", "update", module="flowsheet")]   # other patient
    x = explain(events, care_relations=[adm()], params={"explain": {"lookback_days": 0.0}})
    assert x["explanation"].tolist() == ["", "documentation", "documentation"]


def test_documentation_window_edge_and_switch_off():
    events = [ev("rt", "p1", "2025-07-06 10:00", "sign"), ev("rt", "p1", "2025-07-05 10:00")]
    x = explain(events, care_relations=[adm()])
    assert x.set_index("ts")["explanation"].iloc[0] == "documentation"   # exactly 24 h before
    ctx = make_ctx(events, window=W, care_relations=[adm()],
                   params={"explain": {"documentation_explains": False}})
    assert not explain_accesses(ctx)["explained"].any()


def test_documentation_same_encounter():
    events = [ev("rt", "p1", "2025-07-01 10:00", "sign", encounter_id="E1"),
              ev("rt", "p1", "2025-07-04 10:00", encounter_id="E1"),
              ev("rt", "p1", "2025-07-04 09:00", encounter_id="E2")]
    x = explain(events, care_relations=[adm(start="2025-06-01", end="2025-06-02")],
                params={"explain": {"lookback_days": 1.0}})
    got = dict(zip(x["event_id"], x["explanation"]))
    assert [got[e["event_id"]] for e in events] == ["documentation", "documentation", ""]


def test_break_glass_shortly_before():
    events = [ev("er", "p1", "2025-07-06 10:00", "break_glass"),
              ev("er", "p1", "2025-07-06 22:00"), ev("er", "p1", "2025-07-06 22:00:01")]
    x = explain(events, care_relations=[adm()])
    assert x["explanation"].tolist() == ["break_glass", "break_glass", ""]


@pytest.mark.parametrize("ts,held", [
    ("2025-07-08 08:00", True),   # Tuesday, office hours start
    ("2025-07-08 17:59", True),
    ("2025-07-08 18:00", False),  # end is exclusive
    ("2025-07-12 10:00", False),  # Saturday
])
def test_records_role_inside_office_hours_only(ts, held):
    users = [{"user_id": "mr", "role": "病案室"}]
    x = explain([ev("mr", "p1", ts)], users=users, care_relations=[adm()])
    assert x["explanation"].iloc[0] == ("record_role" if held else "")


def test_records_role_hours_per_role():
    users = [{"user_id": "mr", "role": "medical_records"}]
    ctx = make_ctx([ev("mr", "p1", "2025-07-08 19:00")], window=W, users=users,
                   care_relations=[adm()],
                   params={"explain": {
                       "record_role_hours": {"medical_records": [7, 20]}}})
    assert explain_accesses(ctx)["explanation"].iloc[0] == "record_role"


def test_only_patient_actions_same_order_and_index():
    events = [ev("doc", None, "2025-07-06 08:00", "login"), ev("doc", "p1", "2025-07-06 09:00"),
              ev("x", "p2", "2025-07-06 09:30"), ev("doc", "p1", "2025-07-06 10:00", "update")]
    ctx = make_ctx(events, window=W, care_relations=[adm(user="doc")])
    x = explain_accesses(ctx)
    assert list(x.index) == [1, 2, 3]
    assert x["event_id"].tolist() == ctx.events["event_id"].iloc[1:].tolist()
    assert list(x.columns[:8]) == ["event_id", "user_id", "patient_id", "ts", "in_window",
                                   "explained", "explanation", "detail"]
    assert explain_accesses(ctx) is x          # cached


def test_unexplained_detail_lists_every_explanation():
    x = explain([ev("u", "p1", "2025-07-06 09:00")], care_relations=[adm(department="骨科")])
    parts = explanation_evidence(x.iloc[0])
    assert [p["explanation"] for p in parts] == list(EXPLANATIONS)
    assert all(p["result"] == "failed" and p["detail"] for p in parts)
    assert parts[1]["detail"]["patient_relations"] == [
        {"kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "department": "骨科"}]
    # every failure reads as a sentence in both languages, with the facts in it
    for lang in ("en", "zh"):
        texts = [explanation_text(p, lang, Masker()) for p in parts]
        assert all(texts), texts
    assert "admission 2025-07-05 – 2025-07-10, 骨科" in explanation_text(parts[1], "en", Masker())
    assert "住院 2025-07-05 至 2025-07-10，骨科" in explanation_text(parts[1], "zh", Masker())
    assert explanation_text(parts[0], "zh", Masker()) == \
        "当时该用户本人无有效诊疗关系（宽限：前 3 天，后 30 天）"


def test_no_care_relations_table():
    x = explain([ev("u", "p1", "2025-07-06 09:00", "sign"),
                 ev("u", "p2", "2025-07-06 09:00", "update")])
    assert x["explanation"].tolist() == ["documentation", ""]


def test_interval_hit_many_relations_no_cross_product():
    rng = np.random.default_rng(1)
    n, m = 20000, 500
    akey = rng.integers(0, 5, n)
    at = rng.integers(0, 10**9, n)
    rkey = rng.integers(0, 5, m)
    lo = rng.integers(0, 10**9, m)
    hi = lo + rng.integers(0, 10**7, m)
    hit, which = interval_hit(akey, at, rkey, lo, hi, np.arange(m))
    brute = ((akey[:, None] == rkey[None, :]) & (lo[None, :] <= at[:, None])
             & (hi[None, :] >= at[:, None])).any(axis=1)
    assert (hit == brute).all()
    w = which[hit]
    assert (lo[w] <= at[hit]).all() and (hi[w] >= at[hit]).all()
    only = rng.random(n) < 0.5
    hit2, _ = interval_hit(akey, at, rkey, lo, hi, np.arange(m), only)
    assert (hit2 == (brute & only)).all()


def test_nearest_within_matches_brute_force():
    rng = np.random.default_rng(2)
    n = 3000
    key = rng.integers(0, 7, n)
    t = rng.integers(0, 10**6, n)
    mask = rng.random(n) < 0.2
    got = nearest_within(key, t, mask, 5000, 2000, strict_before=True)
    only = rng.random(n) < 0.5
    got2 = nearest_within(key, t, mask, 5000, 2000, strict_before=True, amask=only)
    d = t[:, None] - t[None, :]                       # access minus point
    same = (key[:, None] == key[None, :]) & mask[None, :]
    brute = (same & (((d > 0) & (d <= 5000)) | ((d <= 0) & (-d <= 2000)))).any(axis=1)
    assert (got == brute).all()
    assert (got2 == (brute & only)).all()


def test_relation_far_outside_the_access_span_is_clipped_correctly():
    rel = [adm(user="doc", start="2015-01-01", end=None)]
    x = explain([ev("doc", "p1", "2025-07-06 09:00")], care_relations=rel)
    assert x["explanation"].iloc[0] == "own_relation"


def test_empty_events():
    ctx = make_ctx([], window=W, care_relations=[adm()])
    x = explain_accesses(ctx)
    assert len(x) == 0 and "explained" in x.columns
    assert isinstance(x, pd.DataFrame)


@pytest.mark.parametrize("ts,held", [("2025-07-06 14:00", True), ("2025-07-06 14:00:01", False)])
def test_worked_on_ward_inferred_from_explained_work_there(ts, held):
    # a float nurse (no roster) signs p1's chart on 心内科一病区 at 02:00; viewing p2 on the
    # same ward within 12 h is explained, later it is not
    rel = [adm("p1", ward="心内科一病区"), adm("p2", ward="心内科一病区")]
    events = [ev("float", "p1", "2025-07-06 02:00", "sign"), ev("float", "p2", ts)]
    x = explain(events, users=[FLOAT], care_relations=rel)
    got = dict(zip(x["event_id"], x["explanation"]))
    assert got[events[1]["event_id"]] == ("worked_on_ward" if held else "")
    if held:
        d = explanation_detail(x.iloc[1])
        assert d == {"ward": "心内科一病区", "hours": 12.0}
        assert explanation_text(explanation_evidence(x.iloc[1])[6], "en", Masker()) == \
            "worked on ward 心内科一病区 within 12 h (explained accesses to other patients there)"


def test_worked_on_another_ward_does_not_explain():
    rel = [adm("p1", ward="心内科一病区"), adm("p2", ward="儿科病区")]
    events = [ev("float", "p1", "2025-07-06 02:00", "sign"),
              ev("float", "p2", "2025-07-06 03:00")]
    x = explain(events, users=[FLOAT], care_relations=rel)
    assert x["explanation"].tolist() == ["documentation", ""]
