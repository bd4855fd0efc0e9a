"""The explanation engine as data (issue 23, from every mutant of detectors/explain.py).

What `explain_accesses` says for given hand-made input, row by row: the frame (its rows,
columns, order and index), which explanation holds first and that only it is flagged, the
detail of each (the relation cited, the ward, the hours and days in force) and, for an
unexplained access, why every explanation failed (the user's units, the patient's last three
relations and how many more, the ward on duty, the role, the parameters in force). Each
parameter at its edge on both sides; the cascade's order; site keys; and the helpers other
modules share (`looked_up_before`, `interval_hit`, `nearest_within`, `complete`, `_us`,
`explanation_detail`, `explanation_evidence`) against direct counts and literal values.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.explain import (
    EXPLANATIONS, _FAR, _dedupe, _first, _first_code, _fmt_day, _in_modules, _jq, _obj,
    _pack, _packing, _queries, _relation_json, _us, _writes_within, complete,
    explain_accesses, explanation_detail, explanation_evidence, explanation_params,
    interval_hit, looked_up_before, nearest_within, with_details)

W = ("2025-07-01", "2025-09-01")
DOC = {"user_id": "doc", "role": "physician", "department": "心内科"}
NURSE = {"user_id": "rn", "role": "nurse", "ward": "心内科一病区"}
FLOAT = {"user_id": "float", "role": "nurse", "ward": "骨科病区"}
NO_LOOKBACK = {"lookback_days": 0.0}
FLAGS = ["x_" + n for n in EXPLANATIONS]
WHY_DEFAULT = {
    "own_relation": {"grace_after_days": 30.0, "grace_before_days": 3.0},
    "request_relation": {"grace_after_days": 14.0, "grace_before_days": 1.0},
    "prior_treatment": {"days": 30.0}, "documentation": {"hours": 24.0},
    "worked_on_ward": {"hours": 12.0}, "break_glass": {"hours": 12.0}}


def rel(patient="p1", user=None, start="2025-07-05", end="2025-07-10", kind="admission",
        department=None, ward=None):
    return {"patient_id": patient, "user_id": user, "kind": kind, "start": start, "end": end,
            "department": department, "ward": ward}


def explain(events, params=None, **kw):
    kw.setdefault("window", W)
    ctx = make_ctx(events, params={"explain": params or {}}, **kw)
    return with_details(ctx, explain_accesses(ctx))


def rows(x):
    """event id -> (explanation, the flags that are set, the detail as a dict)."""
    return {r["event_id"]: (r["explanation"], [f[2:] for f in FLAGS if r[f]],
                            explanation_detail(r))
            for r in x.to_dict("records")}


def verdicts(events, params=None, **kw):
    x = explain(events, params, **kw)
    got = dict(zip(x["event_id"], x["explanation"]))
    return [got[e["event_id"]] for e in events]


# --- the frame ------------------------------------------------------------------------------

COLUMNS = ["event_id", "user_id", "patient_id", "ts", "in_window", "explained", "explanation",
           "detail", *FLAGS]


def test_one_row_per_patient_access_in_event_order_on_the_events_index():
    events = [ev("doc", None, "2025-07-06 08:00", "login", event_id="login"),
              ev("doc", "p8", "2025-07-06 08:30", "view", event_id="nopatient"),
              ev("doc", "p1", "2025-07-06 08:40", "login", event_id="loginp"),
              ev("x", "p2", "2025-06-20 09:00", "query", event_id="old"),
              ev("doc", "p1", "2025-07-06 09:00", event_id="a"),
              ev("doc", "p1", "2025-07-06 10:00", "update", event_id="b"),
              ev("doc", "p1", "2025-07-06 11:00", "break_glass", event_id="c")]
    ctx = make_ctx(events, window=W, care_relations=[rel(user="doc")])
    # a view without a patient (validation refuses one; a feed bug must not make a row)
    ctx.events.loc[ctx.events["event_id"] == "nopatient", "patient_id"] = None
    x = explain_accesses(ctx)
    assert list(x.columns) == COLUMNS
    # sorted by time: old(0) login(1) nopatient(2) loginp(3) a(4) b(5) c(6)
    assert list(x.index) == [0, 4, 5, 6]
    assert x["event_id"].tolist() == ["old", "a", "b", "c"]
    assert x["user_id"].astype(str).tolist() == ["x", "doc", "doc", "doc"]
    assert x["patient_id"].astype(str).tolist() == ["p2", "p1", "p1", "p1"]
    assert x["ts"].tolist() == ctx.events["ts"].iloc[[0, 4, 5, 6]].tolist()
    assert x["in_window"].tolist() == [False, True, True, True]
    assert x["explained"].tolist() == [False, True, True, True]
    assert x["explanation"].tolist() == ["", "own_relation", "own_relation", "own_relation"]
    assert list(x["explanation"].cat.categories) == ["", *EXPLANATIONS]
    assert x["explained"].dtype == bool and all(x[f].dtype == bool for f in FLAGS)
    assert explain_accesses(ctx) is x and ctx.memo["explain"] is x


def test_no_patient_access_gives_the_empty_frame_with_every_column():
    for events in ([], [ev("doc", None, "2025-07-06 08:00", "login")]):
        x = explain(events, care_relations=[rel(user="doc")])
        assert list(x.columns) == COLUMNS and len(x) == 0
        assert list(x["explanation"].cat.categories) == ["", *EXPLANATIONS]
        assert x["explained"].dtype == bool
        assert x["x_own_relation"].dtype == bool
        assert x["detail"].dtype == "category" and x["explanation"].dtype == "category"


def test_events_without_in_window_are_all_in_window():
    ctx = make_ctx([ev("doc", "p1", "2025-06-06 09:00"), ev("doc", "p1", "2025-07-06 09:00")],
                   window=W)
    ctx.events = ctx.events.drop(columns=["in_window"])
    x = explain_accesses(ctx)
    assert x["in_window"].tolist() == [True, True]
    assert x["in_window"].dtype == bool


# --- each explanation, its flag and its detail ------------------------------------------------

EACH_USERS = [DOC, NURSE, FLOAT, {"user_id": "mr", "role": "medical_records"},
              {"user_id": "cons", "role": "physician", "department": "骨科"},
              {"user_id": "rt", "role": "technician"}]
EACH_RELS = [rel(user="doc", department="心内科", ward="心内科一病区"),
             rel("p2", ward="心内科一病区", start="2025-07-01 00:30", end=None),
             rel("p3", user="cons", kind="consult", start="2025-07-06 10:00",
                 end="2025-07-06 11:00"),
             rel("p4", ward="心内科一病区", start="2025-07-06", end="2025-07-07"),
             rel("p5", start="2025-07-01", end="2025-07-02")]
EACH_SHIFTS = [{"user_id": "float", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
                "kind": "duty", "ward": "心内科一病区"}]


def test_each_explanation_once_only_its_flag_set_and_its_detail():
    events = [ev("doc", "p1", "2025-07-06 09:00", event_id="own"),
              ev("rn", "p1", "2025-07-06 09:00", event_id="unit"),
              ev("float", "p2", "2025-07-06 09:00", event_id="duty"),
              ev("cons", "p3", "2025-07-06 09:00", event_id="req"),
              ev("cons", "p3", "2025-07-21 09:00", event_id="prior"),
              ev("rt", "p5", "2025-07-20 09:00", event_id="doc"),
              ev("rt", "p5", "2025-07-20 09:05", "sign", event_id="sign"),
              ev("float", "p4", "2025-07-06 20:00", event_id="ward"),
              ev("er", "p9", "2025-07-08 08:00", "break_glass", event_id="btg0"),
              ev("er", "p9", "2025-07-08 09:00", event_id="btg"),
              ev("mr", "p9", "2025-07-08 09:00", event_id="rr"),
              ev("nobody", "p9", "2025-07-08 09:00", event_id="none")]
    got = rows(explain(events, users=EACH_USERS, care_relations=EACH_RELS,
                       shifts=EACH_SHIFTS))
    own = {"kind": "admission", "start": "2025-07-05", "end": "2025-07-10",
           "department": "心内科", "ward": "心内科一病区", "user": "doc"}
    assert got["own"] == ("own_relation", ["own_relation"], {"relation": own})
    # the nurse's ward is on doc's relation (unit_match_user_rows)
    assert got["unit"] == ("unit_relation", ["unit_relation"], {"relation": own})
    # the relation starts 00:30 site time on 07-01 (16:30 UTC the day before)
    assert got["duty"] == ("duty_ward", ["duty_ward"], {
        "ward": "心内科一病区", "relation": {"kind": "admission", "start": "2025-07-01",
                                         "end": None, "ward": "心内科一病区"}})
    assert got["req"] == ("request_relation", ["request_relation"], {"relation": {
        "kind": "consult", "start": "2025-07-06", "end": "2025-07-06", "user": "cons"}})
    # 07-21 09:00: past the consult's 14 days (07-20 11:00), 15 days after the explained look
    assert got["prior"] == ("prior_treatment", ["prior_treatment"], {"days": 30.0})
    assert got["doc"] == ("documentation", ["documentation"], {"hours": 24.0})
    # the signature follows the look it explained: prior treatment is tried first
    assert got["sign"] == ("prior_treatment", ["prior_treatment"], {"days": 30.0})
    # float worked on 心内科一病区 at 09:00 (p2 lies there), p4 lies there on 07-06 20:00
    assert got["ward"] == ("worked_on_ward", ["worked_on_ward"],
                           {"ward": "心内科一病区", "hours": 12.0})
    assert got["btg0"] == ("break_glass", ["break_glass"], {"hours": 12.0})
    assert got["btg"] == ("break_glass", ["break_glass"], {"hours": 12.0})
    assert got["rr"] == ("record_role", ["record_role"], {"role": "medical_records"})
    assert got["none"][:2] == ("", [])
    assert got["none"][2]["record_role"] == {"role": None, "record_role": False}


# --- why an unexplained access failed every explanation ---------------------------------------

def test_why_not_states_the_users_units_the_patients_relations_and_the_defaults():
    rels = [rel(start=f"2025-07-0{i}", end=f"2025-07-0{i + 1}", department=f"D{i}")
            for i in (5, 1, 4, 2, 3)]                         # five, given out of order
    rels += [rel("p2", ward="W9", end=None, kind="transfer"), rel("p2", user="zz", kind="order",
                                                                  start="2025-07-03")]
    shifts = [{"user_id": "u", "start": "2025-08-20 08:00", "end": "2025-08-20 16:00",
               "kind": "duty", "ward": "W5"}]
    users = [{"user_id": "u", "role": "nurse", "department": "骨科", "ward": "W1"}]
    events = [ev("u", "p1", "2025-08-20 09:00", event_id="a"),
              ev("u", "p2", "2025-06-20 09:00", event_id="b"),
              ev("u", "p3", "2025-06-20 10:00", event_id="c")]
    got = rows(explain(events, users=users, shifts=shifts, care_relations=rels))
    # the last three relations by start, and how many more
    p1 = [{"kind": "admission", "start": f"2025-07-0{i}", "end": f"2025-07-0{i + 1}",
           "department": f"D{i}"} for i in (3, 4, 5)]
    assert got["a"] == ("", [], {
        **WHY_DEFAULT,
        "unit_relation": {"department": "骨科", "ward": "W1", "patient_relations": p1,
                          "more": 2},
        "duty_ward": {"ward": "W5"},
        "record_role": {"role": "nurse", "record_role": False}})
    p2 = [{"kind": "order", "start": "2025-07-03", "end": "2025-07-10", "user": "zz"},
          {"kind": "transfer", "start": "2025-07-05", "end": None, "ward": "W9"}]
    assert got["b"][2]["unit_relation"] == {"department": "骨科", "ward": "W1",
                                            "patient_relations": p2, "more": 0}
    assert got["b"][2]["duty_ward"] == {"ward": None}
    assert got["c"][2]["unit_relation"] == {"department": "骨科", "ward": "W1",
                                            "patient_relations": [], "more": 0}
    assert list(got["a"][2]) == list(EXPLANATIONS)


def test_why_not_states_the_parameters_in_force():
    params = {"grace_before_days": 1.5, "grace_after_days": 2.5, "kind_grace_before_days": 0.5,
              "kind_grace_after_days": 4.0, "lookback_days": 7.0,
              "documentation_window_hours": 6.0, "ward_work_hours": 3.0,
              "btg_window_hours": 2.0, "record_roles": ["nurse"]}
    users = [{"user_id": "u", "role": "nurse"}, {"user_id": "d", "role": "physician"}]
    # a Saturday: the nurse, a record role now, is outside the workdays
    events = [ev("u", "p1", "2025-07-12 10:00", event_id="a"),
              ev("d", "p1", "2025-07-12 10:00", event_id="b")]
    got = rows(explain(events, params, users=users))
    assert got["a"] == ("", [], {
        "own_relation": {"grace_after_days": 2.5, "grace_before_days": 1.5},
        "unit_relation": {"department": None, "ward": None, "patient_relations": [],
                          "more": 0},
        "duty_ward": {"ward": None},
        "request_relation": {"grace_after_days": 4.0, "grace_before_days": 0.5},
        "prior_treatment": {"days": 7.0}, "documentation": {"hours": 6.0},
        "worked_on_ward": {"hours": 3.0}, "break_glass": {"hours": 2.0},
        "record_role": {"role": "nurse", "record_role": True}})
    assert got["b"][2]["record_role"] == {"role": "physician", "record_role": False}


def test_why_not_names_the_ward_on_duty_even_the_first_unit():
    # W1 is the first unit known (code 0); rn is on duty there, p2 is not on W1
    shifts = [{"user_id": "rn", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "W1"}]
    users = [{"user_id": "rn", "role": "nurse", "ward": "W1"}]
    got = rows(explain([ev("rn", "p2", "2025-07-06 10:00", event_id="a")], NO_LOOKBACK,
                       care_relations=[rel("p1", ward="W1")], shifts=shifts, users=users))
    assert got["a"][:2] == ("", [])
    assert got["a"][2]["duty_ward"] == {"ward": "W1"}
    assert got["a"][2]["unit_relation"] == {"department": None, "ward": "W1", "more": 0,
                                            "patient_relations": []}
    # and a department that is the first unit
    users = [{"user_id": "doc", "role": "physician", "department": "D0"}]
    got = rows(explain([ev("doc", "p2", "2025-07-06 10:00", event_id="a")], NO_LOOKBACK,
                       care_relations=[rel("p1", department="D0")], users=users))
    assert got["a"][2]["unit_relation"] == {"department": "D0", "ward": None, "more": 0,
                                            "patient_relations": []}


def test_why_not_says_documentation_is_off_when_it_is():
    events = [ev("u", "p1", "2025-07-12 10:00", event_id="a"),
              ev("u", "p1", "2025-07-12 10:30", "sign", event_id="b")]
    got = rows(explain(events, {"documentation_explains": False}))
    assert got["a"][:2] == got["b"][:2] == ("", [])
    assert got["a"][2]["documentation"] == {"off": True}


def test_explained_and_unexplained_details_side_by_side_stay_apart():
    # the categories of the detail column: equal texts share one, each row keeps its own
    events = [ev("u", "p1", "2025-07-12 10:00", event_id="a"),
              ev("u", "p1", "2025-07-12 11:00", event_id="b"),
              ev("u", "p2", "2025-07-12 10:00", event_id="c"),
              ev("doc", "p1", "2025-07-06 10:00", event_id="d"),
              ev("doc", "p1", "2025-07-07 10:00", event_id="e")]
    x = explain(events, care_relations=[rel(user="doc"), rel(department="X")])
    got = rows(x)
    assert got["a"][2] == got["b"][2]
    assert got["a"][2]["unit_relation"]["patient_relations"] == [
        {"kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "user": "doc"},
        {"kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "department": "X"}]
    assert got["c"][2]["unit_relation"]["patient_relations"] == []
    assert got["d"] == got["e"] == ("own_relation", ["own_relation"], {"relation": {
        "kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "user": "doc"}})
    assert len(x["detail"].cat.categories) == 3
    assert x["detail"].cat.categories.is_unique


# --- the cascade ------------------------------------------------------------------------------

def _all_reasons(removed: int):
    """doc's look at p1 on Tuesday 07-08 10:00, with every reason to be there; the first
    `removed` reasons (in EXPLANATIONS order) taken away."""
    keep = set(EXPLANATIONS[removed:])
    rels = [rel("p1", ward="W1"), rel("p2", user="doc", ward="W1")]
    events = [ev("doc", "p1", "2025-07-08 10:00", event_id="A")]
    shifts = []
    # the window of documentation keeps the break-the-glass at 09:00 out of it
    params = {"lookback_days": 60.0, "record_roles": ["physician"],
              "documentation_window_hours": 0.75}
    if "own_relation" in keep:
        rels.append(rel(user="doc"))
    if "unit_relation" in keep:
        rels.append(rel(department="心内科"))
    if "duty_ward" in keep:
        shifts.append({"user_id": "doc", "start": "2025-07-08 08:00",
                       "end": "2025-07-08 16:00", "kind": "duty", "ward": "W1"})
    if "request_relation" in keep:
        rels.append(rel(user="doc", kind="consult"))
    if "prior_treatment" in keep:
        rels.append(rel(user="doc", start="2025-05-01", end="2025-06-01"))
    if "documentation" in keep:
        events.append(ev("doc", "p1", "2025-07-08 10:30", "sign"))
    if "worked_on_ward" in keep:
        events.append(ev("doc", "p2", "2025-07-08 12:00"))
    if "break_glass" in keep:
        events.append(ev("doc", "p1", "2025-07-08 09:00", "break_glass"))
    if "record_role" not in keep:
        params["record_roles"] = []
    return events, rels, shifts, params


@pytest.mark.parametrize("removed", range(len(EXPLANATIONS) + 1))
def test_the_first_reason_that_holds_is_the_one_recorded_and_flagged(removed):
    events, rels, shifts, params = _all_reasons(removed)
    got = rows(explain(events, params, users=[DOC], care_relations=rels, shifts=shifts))
    first = EXPLANATIONS[removed] if removed < len(EXPLANATIONS) else ""
    assert got["A"][:2] == (first, [first] if first else [])


# --- each parameter at its edge, on both sides (one user per case, one pass) -------------------

def by_user(events, params=None, **kw):
    """user -> explanation of the user's access `A…` (one per user)."""
    x = explain(events, params, **kw)
    return {str(u): e for u, e, i in zip(x["user_id"], x["explanation"], x["event_id"])
            if i.startswith("A")}


def test_request_grace_follows_its_parameters():
    cases = {"in_before": "2025-07-06 22:00:00", "out_before": "2025-07-06 21:59:59",
             "in_after": "2025-07-10 10:00:00", "out_after": "2025-07-10 10:00:01"}
    rels = [rel(user=u, kind="consult", start="2025-07-07 10:00", end="2025-07-08 10:00")
            for u in cases]
    events = [ev(u, "p1", ts, event_id="A" + u) for u, ts in cases.items()]
    params = {**NO_LOOKBACK, "kind_grace_before_days": 0.5, "kind_grace_after_days": 2.0}
    assert by_user(events, params, care_relations=rels) == {
        "in_before": "request_relation", "out_before": "", "in_after": "request_relation",
        "out_after": ""}


OWN_KINDS = ("admission", "outpatient", "care_team", "transfer", "document")
REQUESTS = ("consult", "order", "appointment", "access_request")


def test_requests_have_their_own_grace_every_other_kind_the_relations():
    # 2 days before the start and 15 after the end: within 3 / 30 days, not within 1 / 14
    kinds = OWN_KINDS + REQUESTS
    rels = [rel(user=k, kind=k) for k in kinds]
    events = [ev(k, "p1", ts, event_id=f"A{k}{ts}") for k in kinds
              for ts in ("2025-07-03 00:00", "2025-07-25 00:00", "2025-07-06 00:00")]
    x = explain(events, NO_LOOKBACK, care_relations=rels)
    got = {}
    for u, e in zip(x["user_id"].astype(str), x["explanation"]):
        got.setdefault(u, []).append(e)
    assert got == {**{k: ["own_relation"] * 3 for k in OWN_KINDS},
                   **{k: ["", "request_relation", ""] for k in REQUESTS}}


def test_duty_grace_follows_its_parameter():
    cases = {"in_before": "2025-07-06 07:30:00", "out_before": "2025-07-06 07:29:59",
             "in_after": "2025-07-06 16:30:00", "out_after": "2025-07-06 16:30:01"}
    users = [{"user_id": u, "role": "nurse", "ward": "骨科病区"} for u in cases]
    shifts = [{"user_id": u, "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "心内科一病区"} for u in cases]
    events = [ev(u, "p1", ts, event_id="A" + u) for u, ts in cases.items()]
    got = by_user(events, {**NO_LOOKBACK, "duty_grace_minutes": 30.0, "ward_work_hours": 0.0},
                  users=users, shifts=shifts, care_relations=[rel(ward="心内科一病区")])
    assert got == {"in_before": "duty_ward", "out_before": "", "in_after": "duty_ward",
                   "out_after": ""}


def test_break_the_glass_window_follows_its_parameter():
    events = [ev("in", "p1", "2025-07-06 08:00", "break_glass", event_id="Bin"),
              ev("in", "p1", "2025-07-06 10:00:00", event_id="Ain"),
              ev("out", "p1", "2025-07-06 08:00", "break_glass", event_id="Bout"),
              ev("out", "p1", "2025-07-06 10:00:01", event_id="Aout")]
    assert by_user(events, {**NO_LOOKBACK, "btg_window_hours": 2.0}) == \
        {"in": "break_glass", "out": ""}


def test_documentation_window_follows_its_parameter():
    cases = {"in_before": "2025-07-06 08:00:00", "out_before": "2025-07-06 07:59:59",
             "in_after": "2025-07-06 12:00:00", "out_after": "2025-07-06 12:00:01"}
    events = [e for u, ts in cases.items()
              for e in (ev(u, "p1", "2025-07-06 10:00", "sign"), ev(u, "p1", ts, event_id="A" + u))]
    got = by_user(events, {**NO_LOOKBACK, "documentation_window_hours": 2.0})
    assert got == {"in_before": "documentation", "out_before": "",
                   "in_after": "documentation", "out_after": ""}


def test_ward_work_window_follows_its_parameter_on_both_sides():
    cases = {"in_after": "2025-07-06 13:00:00", "out_after": "2025-07-06 13:00:01",
             "in_before": "2025-07-06 07:00:00", "out_before": "2025-07-06 06:59:59"}
    rels = [rel("p1", ward="W1"), rel("p2", ward="W1")]
    users = [{"user_id": u, "role": "nurse", "ward": "骨科病区"} for u in cases]
    events = [e for u, ts in cases.items()
              for e in (ev(u, "p1", "2025-07-06 10:00", "sign"), ev(u, "p2", ts, event_id="A" + u))]
    got = by_user(events, {**NO_LOOKBACK, "ward_work_hours": 3.0}, users=users,
                  care_relations=rels)
    assert got == {"in_after": "worked_on_ward", "out_after": "",
                   "in_before": "worked_on_ward", "out_before": ""}


@pytest.mark.parametrize("kind,treated", [("admission", True), ("consult", True),
                                         ("access_request", False)])
def test_an_ended_relation_is_prior_treatment_within_the_look_back(kind, treated):
    # an access request is a permission for a purpose, not treatment
    params = {"grace_before_days": 0.0, "grace_after_days": 0.0, "kind_grace_before_days": 0.0,
              "kind_grace_after_days": 0.0, "lookback_days": 5.0}
    cases = {"in": "2025-07-15 00:00:00", "out": "2025-07-15 00:00:01",
             "before": "2025-07-04 23:59:59"}           # before the relation began
    rels = [rel(user=u, kind=kind, end="2025-07-10") for u in cases] + [rel(ward="W1")]
    # zz and p0 come first (codes 0): no arithmetic on the codes lets one key stand for another
    events = [ev("zz", "p0", "2025-07-01 00:00"), ev("zz", "p1", "2025-07-12 00:00",
                                                     event_id="Azz")] + \
        [ev(u, "p1", ts, event_id="A" + u) for u, ts in cases.items()]
    assert by_user(events, params, care_relations=rels) == \
        {"in": "prior_treatment" if treated else "", "out": "", "before": "", "zz": ""}


def test_an_open_request_never_runs_out_of_grace():
    params = {"kind_grace_after_days": 0.0, "lookback_days": 0.0}
    got = verdicts([ev("u", "p1", "2025-08-30 10:00")], params,
                   care_relations=[rel(user="u", kind="order", end=None)])
    assert got == ["request_relation"]


def test_record_role_hours_per_role_to_the_minute_others_use_office_hours():
    users = [{"user_id": f"mr{i}", "role": "medical_records"} for i in range(4)] + \
        [{"user_id": f"ins{i}", "role": "insurance"} for i in range(3)]
    cases = {"mr0": "08:00", "mr1": "07:59", "mr2": "17:29", "mr3": "17:30",
             "ins0": "17:45", "ins1": "18:00", "ins2": "07:59"}
    events = [ev(u, "p1", "2025-07-08 " + t, event_id="A" + u) for u, t in cases.items()]
    x = explain(events, {"record_role_hours": {"medical_records": [8, 17.5]}}, users=users)
    got = {k[1:]: v for k, v in rows(x).items()}
    assert {u: v[0] for u, v in got.items()} == {
        "mr0": "record_role", "mr1": "", "mr2": "record_role", "mr3": "",
        "ins0": "record_role", "ins1": "", "ins2": ""}
    assert got["mr0"][2] == got["mr2"][2] == {"role": "medical_records"}
    assert got["ins0"][2] == {"role": "insurance"}


def test_record_role_hours_start_is_the_roles_own_not_the_offices():
    # the role's day starts an hour before the office's (8:00): 07:30 is inside for it only
    users = [{"user_id": "mr", "role": "medical_records"}, {"user_id": "ins", "role": "insurance"}]
    events = [ev("mr", "p1", "2025-07-08 07:30"), ev("ins", "p1", "2025-07-08 07:30")]
    got = verdicts(events, {"record_role_hours": {"medical_records": [7, 17.5]}}, users=users)
    assert got == ["record_role", ""]


@pytest.mark.parametrize("workdays_only,workdays,held", [
    (True, (0, 1, 2, 3, 4), False), (False, (0, 1, 2, 3, 4), True),
    (True, (0, 1, 2, 3, 4, 5), True)])
def test_record_roles_on_a_saturday_follow_the_site_workdays(workdays_only, workdays, held):
    got = verdicts([ev("mr", "p1", "2025-07-12 10:00")],
                   {"record_roles_workdays_only": workdays_only},
                   users=[{"user_id": "mr", "role": "medical_records"}], workdays=workdays)
    assert got == ["record_role" if held else ""]


def test_record_roles_without_own_hours_use_the_site_office_hours():
    cases = {"a": "07:00", "b": "06:59", "c": "19:59", "d": "20:00"}
    users = [{"user_id": u, "role": "quality_control"} for u in cases]
    events = [ev(u, "p1", "2025-07-08 " + t, event_id="A" + u) for u, t in cases.items()]
    assert by_user(events, users=users, office_hours=(7, 20)) == \
        {"a": "record_role", "b": "", "c": "record_role", "d": ""}


@pytest.mark.parametrize("roles,explained", [
    (["medical_records"], ["record_role", ""]), (["nurse"], ["", "record_role"]),
    ([], ["", ""])])
def test_record_roles_are_the_listed_roles_only(roles, explained):
    users = [{"user_id": "mr", "role": "medical_records"}, {"user_id": "rn", "role": "nurse"}]
    got = verdicts([ev("mr", "p1", "2025-07-08 10:00"), ev("rn", "p1", "2025-07-08 10:00")],
                   {"record_roles": roles}, users=users)
    assert got == explained


@pytest.mark.parametrize("min_writes,held", [(3, {"w3": True, "w2": False, "w1": False}),
                                             (2, {"w3": True, "w2": True, "w1": False}),
                                             (1, {"w3": True, "w2": True, "w1": True})])
def test_documentation_needs_min_writes_in_the_window(min_writes, held):
    events = []
    for u, writes in (("w3", 3), ("w2", 2), ("w1", 1)):
        events += [ev(u, "p1", "2025-07-06 09:00", event_id="A" + u)] + \
            [ev(u, "p1", f"2025-07-06 1{i}:00", "update") for i in range(writes)] + \
            [ev(u, "p1", "2025-07-08 12:00", "update"),       # outside 24 h
             ev(u, "p2", "2025-07-06 10:30", "update")]       # another patient
    events.append(ev("xx", "p1", "2025-07-06 10:30", "update"))    # another writer
    got = by_user(events, {**NO_LOOKBACK, "documentation_min_writes": min_writes})
    assert got == {u: "documentation" if h else "" for u, h in held.items()}


@pytest.mark.parametrize("user_rows,explained", [(True, ["unit_relation", "unit_relation"]),
                                                 (False, ["", "unit_relation"])])
def test_unit_match_user_rows_decides_whether_a_named_row_speaks_for_its_unit(user_rows,
                                                                             explained):
    rels = [rel("p1", user="colleague", ward="心内科一病区"), rel("p2", ward="心内科一病区")]
    events = [ev("rn", "p1", "2025-07-06 10:00"), ev("rn", "p2", "2025-07-06 10:00")]
    got = verdicts(events, {**NO_LOOKBACK, "unit_match_user_rows": user_rows,
                            "ward_work_hours": 0.0}, users=[NURSE], care_relations=rels)
    assert got == explained


# --- who the user is, where the patient lies ---------------------------------------------------

def test_the_users_last_row_in_the_staff_master_counts_and_unknown_users_have_no_unit():
    from detector_frames import frame
    # validation keeps one row per user; a staff master put together from two loads may not
    users = pd.concat([frame("users", [{"user_id": "rn", "role": "nurse", "ward": "骨科病区"}]),
                       frame("users", [{"user_id": "other", "role": "nurse", "ward": "W3"},
                                       {"user_id": "rn", "role": "nurse",
                                        "ward": "心内科一病区"}])], ignore_index=True)
    events = [ev("rn", "p1", "2025-07-06 10:00", event_id="a"),
              ev("ghost", "p1", "2025-07-06 10:00", event_id="b")]
    ctx = make_ctx(events, window=W, care_relations=[rel(ward="心内科一病区")],
                   params={"explain": NO_LOOKBACK})
    ctx.users = users
    got = rows(with_details(ctx, explain_accesses(ctx)))
    assert got["a"][0] == "unit_relation"
    assert got["b"][0] == ""
    assert got["b"][2]["unit_relation"]["department"] is None
    assert got["b"][2]["unit_relation"]["ward"] is None
    assert got["b"][2]["record_role"] == {"role": None, "record_role": False}


def test_a_department_and_a_ward_are_both_tried_for_one_user():
    users = [{"user_id": "u1", "role": "nurse", "department": "心内科", "ward": "骨科病区"},
             {"user_id": "u2", "role": "nurse", "department": "骨科", "ward": "心内科一病区"}]
    events = [ev("u1", "p1", "2025-07-06 10:00", event_id="a"),
              ev("u2", "p1", "2025-07-06 10:00", event_id="b"),
              ev("u1", "p2", "2025-07-06 10:00", event_id="c")]
    rels = [rel("p1", department="心内科", ward="心内科一病区", kind="transfer"),
            rel("p2", department="骨科")]
    got = rows(explain(events, {**NO_LOOKBACK, "ward_work_hours": 0.0}, users=users,
                       care_relations=rels))
    cited = {"relation": {"kind": "transfer", "start": "2025-07-05", "end": "2025-07-10",
                          "department": "心内科", "ward": "心内科一病区"}}
    assert got["a"] == ("unit_relation", ["unit_relation"], cited)
    assert got["b"] == ("unit_relation", ["unit_relation"], cited)
    assert got["c"][0] == ""


def test_a_unit_relation_cites_the_relation_that_reaches_furthest():
    rels = [rel(ward="W1", start="2025-07-01", end="2025-07-20", kind="admission"),
            rel(ward="W1", start="2025-07-04", end="2025-07-08", kind="transfer"),
            rel(ward="W2", start="2025-07-05", end=None, kind="care_team")]
    users = [{"user_id": "a", "role": "nurse", "ward": "W1"},
             {"user_id": "b", "role": "nurse", "ward": "W2"}]
    got = rows(explain([ev("a", "p1", "2025-07-06 10:00", event_id="a"),
                        ev("b", "p1", "2025-07-06 10:00", event_id="b")], NO_LOOKBACK,
                       users=users, care_relations=rels))
    assert got["a"][2] == {"relation": {"kind": "admission", "start": "2025-07-01",
                                        "end": "2025-07-20", "ward": "W1"}}
    assert got["b"][2] == {"relation": {"kind": "care_team", "start": "2025-07-05",
                                        "end": None, "ward": "W2"}}


def test_duty_needs_a_duty_block_with_a_ward_where_the_patient_lies():
    users = [{"user_id": u, "role": "nurse", "ward": "骨科病区"}
             for u in ("a", "b", "c", "d", "e")]
    shifts = [{"user_id": "a", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "W1"},
              {"user_id": "b", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": None},
              {"user_id": "c", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "W2"},
              {"user_id": "d", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "leave", "ward": "W1"},
              {"user_id": "e", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "W2"}]
    # p1 lies on W1 through a relation that names a doctor: it still says where p1 is
    rels = [rel(user="doc", ward="W1", department="心内科"),
            rel("p2", ward="W2", kind="transfer", end=None)]
    # p1 is not the first patient of the events (its code is not 0)
    events = [ev("zz", "p0", "2025-07-06 09:00", event_id="z")] + \
        [ev(u, "p1", "2025-07-06 10:00", event_id=u) for u in ("a", "b", "c", "d")] + \
        [ev("e", "p2", "2025-07-06 10:00", event_id="e")]
    got = rows(explain(events, NO_LOOKBACK, users=users, shifts=shifts, care_relations=rels))
    assert got["a"] == ("duty_ward", ["duty_ward"], {"ward": "W1", "relation": {
        "kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "department": "心内科",
        "ward": "W1", "user": "doc"}})
    assert got["b"][:2] == ("", []) and got["b"][2]["duty_ward"] == {"ward": None}
    assert got["c"][:2] == ("", []) and got["c"][2]["duty_ward"] == {"ward": "W2"}
    assert got["d"][:2] == ("", []) and got["d"][2]["duty_ward"] == {"ward": None}
    assert got["e"] == ("duty_ward", ["duty_ward"], {"ward": "W2", "relation": {
        "kind": "transfer", "start": "2025-07-05", "end": None, "ward": "W2"}})


@pytest.mark.parametrize("rels,cited", [
    # units WB 0, D1 1, D2 2, W0x 3, WA 4: pA lies on WA (relation 1), pB on WB (relation 2)
    ([rel("pX", department="WB", ward="W0x"), rel("pA", department="D1", ward="WA"),
      rel("pB", department="D2", ward="WB")], (1, 2)),
    # units WA 0, WB 1: pA lies on WA (relation 1), pB on WB (relation 0)
    ([rel("pB", department="WA", ward="WB"), rel("pA", ward="WA")], (1, 0))])
def test_duty_on_two_wards_cites_each_access_its_own_ward_and_relation(rels, cited):
    shifts = [{"user_id": u, "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": w} for u, w in (("f", "WA"), ("g", "WB"))]
    events = [ev("f", "pA", "2025-07-06 10:00", event_id="a"),
              ev("g", "pB", "2025-07-06 10:00", event_id="b")]
    x = explain(events, NO_LOOKBACK, shifts=shifts, care_relations=rels)
    got = rows(x)
    # the detail's categories are the details in use, no more
    assert sorted(x["detail"].cat.categories) == sorted(set(x["detail"]))
    desc = [{"kind": "admission", "start": "2025-07-05", "end": "2025-07-10",
             **({"department": r["department"]} if r["department"] else {}),
             "ward": r["ward"]} for r in rels]
    assert got["a"] == ("duty_ward", ["duty_ward"], {"ward": "WA", "relation": desc[cited[0]]})
    assert got["b"] == ("duty_ward", ["duty_ward"], {"ward": "WB", "relation": desc[cited[1]]})


def test_worked_on_ward_needs_the_patient_on_that_ward_at_that_moment():
    # p2 left W1 on 07-06 12:00 (no grace for where a patient lies)
    rels = [rel("p1", ward="W1"), rel("p2", ward="W1", start="2025-07-01",
                                      end="2025-07-06 12:00")]
    users = [{"user_id": u, "role": "nurse"} for u in ("a", "b")]
    events = [ev("a", "p1", "2025-07-06 10:00", "sign"),
              ev("a", "p2", "2025-07-06 12:00", event_id="Aa"),
              ev("b", "p1", "2025-07-06 10:00", "sign"),
              ev("b", "p2", "2025-07-06 12:00:01", event_id="Ab")]
    x = explain(events, {**NO_LOOKBACK, "ward_work_hours": 5.0}, users=users,
                care_relations=rels)
    got = rows(x)
    assert got["Aa"] == ("worked_on_ward", ["worked_on_ward"], {"ward": "W1", "hours": 5.0})
    assert got["Ab"][0] == ""


def test_worked_on_ward_follows_the_patient_from_ward_to_ward():
    # p2 moves from W1 to W2 at 12:00; a worked on W2 (p3) at 10:00, b on W1 (p1) at 10:00;
    # p5 lies on no ward. a and p2's first relation come first (codes 0), W1 is unit 0, W2 1.
    rels = [rel("p2", ward="W1", start="2025-07-01", end="2025-07-06 12:00"),
            rel("p3", ward="W2"), rel("p1", ward="W1"),
            rel("p2", ward="W2", start="2025-07-06 12:00", end="2025-07-20", kind="transfer")]
    events = [ev("a", "p3", "2025-07-06 10:00", "sign"), ev("b", "p1", "2025-07-06 10:00", "sign"),
              ev("a", "p2", "2025-07-06 11:00", event_id="a_w1"),
              ev("a", "p2", "2025-07-06 13:00", event_id="a_w2"),
              ev("a", "p5", "2025-07-06 11:00", event_id="a_none"),
              ev("b", "p2", "2025-07-06 11:00", event_id="b_w1"),
              ev("b", "p2", "2025-07-06 13:00", event_id="b_w2"),
              ev("b", "p5", "2025-07-06 11:00", event_id="b_none"),
              # c and d come next (codes 2 and 3); d has done no work anywhere
              ev("c", "p9", "2025-07-06 10:30", event_id="c0"),
              ev("d", "p1", "2025-07-06 10:31", event_id="d_w1")]
    got = rows(explain(events, NO_LOOKBACK, care_relations=rels))
    assert got["d_w1"][:2] == ("", [])
    assert got["a_w2"] == ("worked_on_ward", ["worked_on_ward"], {"ward": "W2", "hours": 12.0})
    assert got["b_w1"] == ("worked_on_ward", ["worked_on_ward"], {"ward": "W1", "hours": 12.0})
    assert {k: got[k][0] for k in ("a_w1", "b_w2", "a_none", "b_none")} == \
        {"a_w1": "", "b_w2": "", "a_none": "", "b_none": ""}


def test_worked_on_ward_is_not_lost_to_a_longer_relation_without_a_ward():
    # p2 lies on W1 (07-05 to 07-10) under a department relation that lasts longer
    rels = [rel("p1", ward="W1"), rel("p2", ward="W1"),
            rel("p2", department="D1", start="2025-07-01", end="2025-07-20")]
    events = [ev("a", "p1", "2025-07-06 10:00", "sign"),
              ev("a", "p2", "2025-07-06 11:00", event_id="A")]
    got = rows(explain(events, NO_LOOKBACK, care_relations=rels))
    assert got["A"] == ("worked_on_ward", ["worked_on_ward"], {"ward": "W1", "hours": 12.0})


def test_worked_on_ward_counts_only_the_users_own_explained_work_there():
    rels = [rel("p1", ward="W1"), rel("p2", ward="W1"), rel("p3", ward="W2")]
    events = [ev("other", "p1", "2025-07-06 10:00", "sign"),       # someone else's work
              ev("a", "p3", "2025-07-06 10:00", "sign"),           # a's work, on W2
              ev("a", "p1", "2025-07-06 10:30", event_id="Aa1"),   # a's unexplained look
              ev("a", "p2", "2025-07-06 11:00", event_id="Aa2")]
    got = rows(explain(events, NO_LOOKBACK, care_relations=rels))
    assert (got["Aa1"][0], got["Aa2"][0]) == ("", "")


def test_reasons_of_other_users_and_patients_explain_nothing_whatever_their_codes():
    # a is the first user and p0 the first patient (codes 0): no arithmetic on the codes may
    # let x's relations with p0, or p9's, stand for a's or b's accesses
    events = [ev("a", "p0", "2025-07-06 09:00", event_id="a0"),
              ev("a", "p1", "2025-07-06 10:00", event_id="a1"),
              ev("b", "p0", "2025-07-06 10:00", event_id="b0"),
              ev("b", "p1", "2025-07-06 10:00", event_id="b1")]
    rels = [rel("p0", user="x", kind="admission", ward="W1"), rel("p0", user="x", kind="consult"),
            rel("p0", department="D0"), rel("p9", user="a", ward="W1"),
            rel("p9", user="b", kind="order"),
            rel("p0", user="b", kind="order", start="2025-06-01", end="2025-06-02")]
    users = [{"user_id": "a", "role": "nurse"}, {"user_id": "b", "role": "nurse",
                                                 "department": "D9"}]
    got = rows(explain(events, users=users, care_relations=rels))
    assert {k: v[:2] for k, v in got.items()} == {k: ("", []) for k in ("a0", "a1", "b0", "b1")}


def test_a_relation_without_a_ward_puts_the_patient_on_no_ward():
    # units: D0 (from the relation), then W9 (the duty's ward)
    shifts = [{"user_id": "float", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "W9"}]
    got = rows(explain([ev("float", "p0", "2025-07-06 10:00", event_id="a")], NO_LOOKBACK,
                       care_relations=[rel("p0", department="D0")], shifts=shifts))
    assert got["a"][:2] == ("", [])
    assert got["a"][2]["duty_ward"] == {"ward": "W9"}


def test_a_relation_at_another_site_explains_nothing():
    events = [ev("doc", "p1", "2025-07-06 10:00", site_id="A", event_id="a"),
              ev("doc", "p1", "2025-07-06 10:00", site_id="B", event_id="b"),
              ev("rn", "p1", "2025-07-06 10:00", site_id="B", event_id="c")]
    rels = [{**rel(user="doc", ward="心内科一病区"), "site_id": "A"}]
    users = [{**NURSE, "site_id": "B"}]
    got = rows(explain(events, {**NO_LOOKBACK, "ward_work_hours": 0.0}, care_relations=rels,
                       users=users))
    assert got["a"][0] == "own_relation"
    assert (got["b"][0], got["c"][0]) == ("", "")
    # the site's own relations are those of p1 at A: none at B
    assert got["b"][2]["unit_relation"]["patient_relations"] == []


@pytest.mark.parametrize("table", ["care_relations", "users", "shifts"])
def test_a_reference_row_of_another_site_is_no_reason_at_this_one(table):
    # the events carry no site (the scan's own); one reference row names another site
    # (a relation where p1 lies, rn's duty there, rn's own ward elsewhere)
    rels = [rel(ward="心内科一病区")]
    shifts = [{"user_id": "rn", "start": "2025-07-06 08:00", "end": "2025-07-06 16:00",
               "kind": "duty", "ward": "心内科一病区"}]
    users = [{**NURSE, "ward": "骨科病区"}]
    tables = {"care_relations": rels, "users": users, "shifts": shifts}
    if table == "users":           # rn's own ward is p1's, no duty
        tables["users"] = [{**NURSE, "site_id": "B"}]
        tables["shifts"] = []
    else:
        tables[table] = [{**r, "site_id": "B"} for r in tables[table]]
    got = verdicts([ev("rn", "p1", "2025-07-06 10:00")], NO_LOOKBACK, **tables)
    assert got == [""]
    # at its own site the same row is the reason
    tables[table] = [{**r, "site_id": "default"} for r in tables[table]]
    assert verdicts([ev("rn", "p1", "2025-07-06 10:00")], NO_LOOKBACK, **tables) == \
        [{"care_relations": "duty_ward", "users": "unit_relation", "shifts": "duty_ward"}[table]]


# --- documentation -------------------------------------------------------------------------

def test_documentation_in_the_same_encounter_is_the_writers_and_the_encounters_only():
    events = [ev("rt", "p1", "2025-07-01 10:00", "sign", encounter_id="E1"),
              ev("rt", "p1", "2025-07-20 10:00", encounter_id="E1", event_id="same"),
              ev("rt", "p1", "2025-07-20 10:00", encounter_id="E2", event_id="other_enc"),
              ev("rt", "p1", "2025-07-20 10:00", event_id="no_enc"),
              ev("rt", "p1", "2025-07-01 11:00", event_id="near"),        # 1 h after the sign
              ev("xx", "p1", "2025-07-20 10:00", encounter_id="E1", event_id="other_user"),
              ev("yy", "p1", "2025-07-01 10:00", "update", encounter_id="E3"),
              ev("yy", "p1", "2025-07-20 10:00", encounter_id="E3", event_id="one_note")]
    got = rows(explain(events, NO_LOOKBACK))
    assert {k: v[0] for k, v in got.items() if not k.startswith("e")} == {
        "same": "documentation", "other_enc": "", "no_enc": "", "near": "documentation",
        "other_user": "", "one_note": ""}


def test_an_encounter_of_one_patient_explains_nothing_on_another():
    # patients p0..p3 and encounters E1, E2 get codes in order of appearance; the signature
    # is on p0 in E2, the look at p3 is in E1
    events = [ev("rt", "p0", "2025-07-01 08:00", encounter_id="E1"),
              ev("rt", "p1", "2025-07-01 08:01"), ev("rt", "p2", "2025-07-01 08:02"),
              ev("rt", "p3", "2025-07-01 08:03", encounter_id="E1", event_id="p3_e1"),
              ev("rt", "p0", "2025-07-01 08:04", "sign", encounter_id="E2")]
    got = rows(explain(events, NO_LOOKBACK))
    assert got["p3_e1"][:2] == ("", [])


def test_documentation_modules_limit_the_charting_rule_too():
    events = [ev("a", "p1", "2025-07-06 09:00", event_id="Aa"),
              ev("a", "p1", "2025-07-06 09:05", "update", module="flowsheet"),
              ev("b", "p1", "2025-07-06 09:00", event_id="Ab"),
              ev("b", "p1", "2025-07-06 09:05", "update", module="病程记录"),
              ev("c", "p1", "2025-07-06 09:00", event_id="Ac"),
              ev("c", "p1", "2025-07-06 09:05", "sign", module="病程记录")]
    params = {**NO_LOOKBACK, "documentation_modules": ["病程记录"],
              "care_record_modules": ["flowsheet", "病程记录"]}
    assert by_user(events, params) == {"a": "", "b": "documentation", "c": "documentation"}
    # without documentation modules, a flowsheet write counts; a note in 病程记录 is only a
    # charting module when named
    params = {**NO_LOOKBACK, "care_record_modules": ["flowsheet"]}
    assert by_user(events, params) == {"a": "documentation", "b": "", "c": "documentation"}
    # no charting modules at all: only the signature is reason enough
    params = {**NO_LOOKBACK, "care_record_modules": []}
    assert by_user(events, params) == {"a": "", "b": "", "c": "documentation"}


def test_an_explained_twin_at_the_same_instant_is_not_prior_treatment():
    # two looks at p1 at the same instant: the one in encounter E1 is documentation (the
    # signature in E1 weeks before); its twin outside the encounter is not explained by it
    events = [ev("rt", "p1", "2025-07-01 10:00", "sign", encounter_id="E1"),
              ev("rt", "p1", "2025-07-20 10:00", encounter_id="E1", event_id="in_e1"),
              ev("rt", "p1", "2025-07-20 10:00", event_id="twin"),
              ev("rt", "p1", "2025-07-20 10:01", event_id="after")]
    got = rows(explain(events, {"lookback_days": 5.0}))
    assert (got["in_e1"][0], got["twin"][0], got["after"][0]) == \
        ("documentation", "", "prior_treatment")


def test_record_role_hours_are_site_hours_whatever_the_timezone_of_the_times():
    ctx = make_ctx([ev("mr", "p1", "2025-07-08 08:00"), ev("mr", "p1", "2025-07-08 17:59"),
                    ev("mr", "p1", "2025-07-08 18:00")], window=W,
                   users=[{"user_id": "mr", "role": "medical_records"}])
    ctx.events["ts"] = ctx.events["ts"].dt.tz_convert("UTC")
    assert explain_accesses(ctx)["explanation"].tolist() == ["record_role", "record_role", ""]


def test_a_view_is_not_documentation_and_a_write_by_a_user_with_a_reason_explains():
    # the view inside the relation is no write: it explains nothing 20 h later
    events = [ev("doc", "p1", "2025-07-10 00:00", event_id="v"),
              ev("doc", "p1", "2025-07-10 20:00", event_id="A1"),
              ev("rn", "p1", "2025-07-10 00:00", "update"),
              ev("rn", "p1", "2025-07-10 20:00", event_id="A2")]
    params = {**NO_LOOKBACK, "grace_after_days": 0.0, "ward_work_hours": 0.0}
    got = rows(explain(events, params, care_relations=[rel(user="doc"), rel(user="rn")]))
    assert (got["v"][0], got["A1"][0], got["A2"][0]) == ("own_relation", "", "documentation")


# --- the helpers other modules share ----------------------------------------------------------

TZ = "Asia/Shanghai"


def _t(s):
    return pd.Timestamp(s, tz=TZ)


def test_looked_up_before_finds_the_latest_lookup_of_the_same_keys_within_the_minutes():
    opens = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u3"],
                          "patient_id": ["p1", "p1", "p2", "p1", "p1"],
                          "ts": [_t("2025-07-06 10:00"), _t("2025-07-06 11:00"),
                                 _t("2025-07-06 10:00"), _t("2025-07-06 10:00"),
                                 _t("2025-07-06 10:00")]}, index=[10, 20, 30, 40, 50])
    queries = pd.DataFrame({
        "event_id": ["q1", "q2", "q3", "q4", "q5", "q6", "q7"],
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u1", "u3"],
        "patient_id": ["p1", "p1", "p2", "p1", "p1", "p3", "p1"],
        "ts": [_t("2025-07-06 09:30"), _t("2025-07-06 09:40"), _t("2025-07-06 10:00"),
               _t("2025-07-06 09:29:59"), _t("2025-07-06 10:00:01"), _t("2025-07-06 09:59"),
               _t("2025-07-06 09:30")]})
    out = looked_up_before(opens, queries, 30.0, ["user_id", "patient_id"])
    assert list(out.index) == [10, 20, 30, 40, 50]
    assert list(out.columns) == ["lookup", "lookup_event"]
    assert out["lookup_event"].tolist() == ["q2", pd.NA, "q3", pd.NA, "q7"]
    assert out["lookup"].tolist() == [_t("2025-07-06 09:40"), pd.NaT, _t("2025-07-06 10:00"),
                                      pd.NaT, _t("2025-07-06 09:30")]
    assert out["lookup"].dtype == opens["ts"].dtype
    assert out["lookup_event"].dtype == "string"
    # by the user only: u1's look-up of p3 at 09:59 is the latest before p1's opening
    out = looked_up_before(opens, queries, 30.0, ["user_id"])
    assert out["lookup_event"].tolist() == ["q3", pd.NA, "q3", pd.NA, "q7"]


@pytest.mark.parametrize("minutes,n_opens,n_queries", [(0.0, 1, 1), (-5.0, 1, 1),
                                                       (30.0, 0, 1), (30.0, 1, 0)])
def test_looked_up_before_finds_none_without_minutes_opens_or_queries(minutes, n_opens,
                                                                      n_queries):
    opens = pd.DataFrame({"user_id": ["u1"], "ts": [_t("2025-07-06 10:00")]},
                         index=[7]).iloc[:n_opens]
    queries = pd.DataFrame({"event_id": ["q1"], "user_id": ["u1"],
                            "ts": [_t("2025-07-06 10:00")]}).iloc[:n_queries]
    out = looked_up_before(opens, queries, minutes, ["user_id"])
    assert list(out.columns) == ["lookup", "lookup_event"]
    assert list(out.index) == [7][:n_opens]
    assert out["lookup"].isna().all() and out["lookup_event"].isna().all()
    assert out["lookup"].dtype == opens["ts"].dtype and out["lookup_event"].dtype == "string"


def test_looked_up_before_without_any_lookup_rows_needs_no_column_types():
    # no look-ups at all, as a bare frame of the named columns: none found, nothing joined
    opens = pd.DataFrame({"user_id": ["u1"], "ts": [_t("2025-07-06 10:00")]}, index=[7])
    out = looked_up_before(opens, pd.DataFrame(columns=["event_id", "user_id", "ts"]), 30.0,
                           ["user_id"])
    assert list(out.index) == [7]
    assert out["lookup"].isna().all() and out["lookup_event"].isna().all()


def test_looked_up_before_within_half_a_minute():
    opens = pd.DataFrame({"user_id": ["u1", "u2"], "ts": [_t("2025-07-06 10:00:30")] * 2})
    queries = pd.DataFrame({"event_id": ["q1", "q2"], "user_id": ["u1", "u2"],
                            "ts": [_t("2025-07-06 10:00:00"), _t("2025-07-06 09:59:59")]})
    out = looked_up_before(opens, queries, 0.5, ["user_id"])
    assert out["lookup_event"].tolist() == ["q1", pd.NA]


def test_us_is_utc_microseconds_and_nat_never_ends():
    aware = pd.Series([_t("2025-07-01 08:00"), pd.NaT], dtype=f"datetime64[ns, {TZ}]")
    assert _us(aware).tolist() == [1_751_328_000_000_000, _FAR]
    naive = pd.Series(pd.to_datetime(["1970-01-01 00:00:01.5", None]))
    assert _us(naive).tolist() == [1_500_000, _FAR]
    assert _us(aware).dtype == np.int64
    assert _FAR == 2 ** 52


def test_complete_adds_the_missing_columns_empty_with_their_dtypes():
    assert complete(None, "users", TZ) is None
    users = pd.DataFrame({"user_id": pd.Series(["u1"], dtype="string"),
                          "role": pd.Series(["nurse"], dtype="string")})
    out = complete(users, "users", "Europe/Berlin")
    assert list(out.columns[:2]) == ["user_id", "role"]
    assert sorted(out.columns) == sorted(["user_id", "name", "role", "department", "ward",
                                          "status", "start_date", "end_date", "access_until",
                                          "supervisor_id", "patient_id", "address", "phone",
                                          "site_id"])
    assert out["ward"].dtype == "string" and out["ward"].isna().all()
    assert out["end_date"].dtype == "datetime64[ns, Europe/Berlin]"
    assert out["end_date"].isna().all()
    assert list(users.columns) == ["user_id", "role"]           # the input is not changed
    patients = pd.DataFrame({"patient_id": pd.Series(["p1", "p2"], dtype="string")})
    out = complete(patients, "patients", TZ)
    assert out["vip"].tolist() == [False, False] and out["vip"].dtype == bool
    assert out["name"].isna().all() and out["name"].dtype == "string"
    whole = complete(out, "patients", TZ)
    assert whole is out


def test_interval_hit_cites_the_started_interval_reaching_furthest():
    akey = np.array([0, 0, 1, 2, -1, 0, 3, 0, 0, 3])
    at = np.array([5, 15, 5, 5, 5, 25, 5, -3, 2, 3])
    rkey = np.array([0, 0, 1, -1, 3, 3, 2, 3])
    lo = np.array([0, 4, 6, 0, 0, 0, 9, 2])
    hi = np.array([10, 20, 9, 100, 10, 10, 12, 5])
    rid = np.array([100, 101, 102, 103, 104, 105, 106, 107])
    hit, which = interval_hit(akey, at, rkey, lo, hi, rid)
    assert hit.tolist() == [True, True, False, False, False, False, True, False, True, True]
    # ended by 25 but started: still cited; ties of start and end: the later row; at 2 only
    # the first interval has started; at 3 on key 3, [2, 5] reaches less far than [0, 10]
    assert which.tolist() == [101, 101, -1, -1, -1, 101, 105, -1, 100, 105]
    only = np.array([True, False, True, True, True, True, False, True, False, False])
    hit, which = interval_hit(akey, at, rkey, lo, hi, rid, only)
    assert hit.tolist() == [True, False, False, False, False, False, False, False, False, False]
    assert which.tolist() == [101, -1, -1, -1, -1, 101, -1, -1, -1, -1]
    hit, which = interval_hit(akey, at, np.full(8, -1), lo, hi, rid)
    assert not hit.any() and which.tolist() == [-1] * 10


def test_interval_hit_on_exact_edges_and_far_times():
    at = np.array([0, 10, 11, -1, 2 ** 52 - 1, 10 ** 15])
    akey = np.zeros(len(at), dtype=np.int64)
    hit, which = interval_hit(akey, at, np.array([0]), np.array([0]), np.array([10]),
                              np.array([7]))
    assert hit.tolist() == [True, True, False, False, False, False]
    assert which.tolist() == [7, 7, 7, -1, 7, 7]
    hit, _ = interval_hit(akey, at, np.array([0]), np.array([-10 ** 15]), np.array([2 ** 52]),
                          np.array([7]))
    assert hit.all()


def test_interval_hit_compares_exact_starts_when_times_do_not_fit_in_microseconds():
    # accesses 2**62 µs apart: times are packed as ranks. An interval starting 1 µs after
    # an access (same millisecond) has not started for it, and one starting 1 µs later does
    # not hide an earlier one that covers the access
    at = np.array([500, 1500, 2 ** 62 - 10 ** 7])
    akey = np.zeros(3, dtype=np.int64)
    hit, which = interval_hit(akey, at, np.array([0]), np.array([501]), np.array([10 ** 6]),
                              np.array([7]))
    assert hit.tolist() == [False, True, False] and which.tolist() == [-1, 7, 7]
    hit, which = interval_hit(akey, at, np.array([0, 0]), np.array([0, 1501]),
                              np.array([10 ** 6, 10 ** 6]), np.array([7, 8]))
    assert hit.tolist() == [True, True, False] and which.tolist() == [7, 7, 8]


def test_nearest_within_is_exact_to_the_microsecond_when_times_do_not_fit():
    far = 2 ** 62 - 10 ** 7
    at = np.array([1000, 1001, 1002, 1999, far])
    key = np.zeros(5, dtype=np.int64)
    points = np.array([True, False, False, False, False])
    # the point at 1000 lies 1 µs before 1001 and 2 µs before 1002, all in one millisecond
    assert nearest_within(key, at, points, 1, 0).tolist() == [True, True, False, False, False]
    assert nearest_within(key, at, points, 1, 0, strict_before=True).tolist() == \
        [False, True, False, False, False]
    points = np.array([False, False, True, False, False])
    assert nearest_within(key, at, points, 0, 1).tolist() == [False, True, True, False, False]
    assert nearest_within(key, at, points, 0, 0).tolist() == [False, False, True, False, False]


def test_writes_within_counts_to_the_microsecond_when_times_do_not_fit():
    far = 2 ** 62 - 10 ** 7
    at = np.array([1000, 1001, 1003, far])
    key = np.zeros(4, dtype=np.int64)
    got = _writes_within(key, at, np.ones(4, dtype=bool), 1)
    assert got.tolist() == [2, 2, 1, 1]


def test_nearest_within_edges_before_after_and_strict():
    at = np.array([4, 5, 10, 20, 21, 10, 10])
    key = np.array([0, 0, 0, 0, 0, 1, -1])
    points = np.array([False, False, True, False, False, False, False])
    got = nearest_within(key, at, points, 10, 5)
    assert got.tolist() == [False, True, True, True, False, False, False]
    assert nearest_within(key, at, points, 10, 0).tolist() == \
        [False, False, True, True, False, False, False]
    assert nearest_within(key, at, points, 10, 0, strict_before=True).tolist() == \
        [False, False, False, True, False, False, False]
    assert nearest_within(key, at, points, 10, 5, strict_before=True).tolist() == \
        [False, True, True, True, False, False, False]
    only = np.array([True, True, False, True, True, True, True])
    assert nearest_within(key, at, points, 10, 5, amask=only).tolist() == \
        [False, True, False, True, False, False, False]
    assert not nearest_within(key, at, np.zeros(7, dtype=bool), 10, 5).any()
    assert not nearest_within(key, at, points, 10, 5, amask=np.zeros(7, dtype=bool)).any()
    # one microsecond on either side
    at, key, points = np.array([9, 10, 11]), np.zeros(3, dtype=np.int64), \
        np.array([False, True, False])
    assert nearest_within(key, at, points, 0, 1).tolist() == [True, True, False]
    assert nearest_within(key, at, points, 1, 0, strict_before=True).tolist() == \
        [False, False, True]


def test_nearest_within_finds_the_nearest_point_among_many_of_several_keys():
    at = np.array([0, 100, 200, 300, 0, 100, 150, 290])
    key = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    points = np.array([True, False, True, False, True, False, False, False])
    # key 0 points at 0 and 200, key 1 at 0; 50 before, 20 after
    assert nearest_within(key, at, points, 50, 20).tolist() == \
        [True, False, True, False, True, False, False, False]
    assert nearest_within(key, at, points, 100, 100).tolist() == \
        [True, True, True, True, True, True, False, True]
    # key 0's point at 200 is 50 after key 1's access at 150: it does not count for it
    assert nearest_within(key, at, points, 50, 60).tolist() == \
        [True, False, True, False, True, False, False, False]


def test_writes_within_counts_the_writes_of_the_same_key_around_each_write():
    key = np.array([0, 0, 0, 1, -1, 0, 1])
    at = np.array([0, 10, 21, 10, 10, 11, 30])
    writes = np.array([True, True, True, True, True, False, True])
    counts = _writes_within(key, at, writes, 10)
    assert counts.tolist() == [2, 2, 1, 1, 0, 0, 1] and counts.dtype == np.int64
    assert _writes_within(key, at, writes, 11).tolist() == [2, 3, 2, 1, 0, 0, 1]
    assert _writes_within(key, at, np.zeros(7, dtype=bool), 10).tolist() == [0] * 7


def test_in_modules():
    acc = pd.DataFrame({"module": pd.Series(["a", None, "b"], dtype="string")})
    assert _in_modules(acc, ["a", "c"]).tolist() == [True, False, False]
    assert _in_modules(acc, []).tolist() == [True, True, True]
    assert _in_modules(acc.drop(columns="module"), ["a"]).tolist() == [False, False, False]


def test_fmt_day_is_the_site_day_and_empty_when_open():
    us = np.array([1_751_387_400_000_000, 1_751_385_600_000_000 - 1, _FAR])   # 16:30, 15:59:59 UTC
    assert _fmt_day(us, TZ).tolist() == ["2025-07-02", "2025-07-01", ""]
    assert _fmt_day(us, "UTC").tolist() == ["2025-07-01", "2025-07-01", ""]


def test_packing_is_in_microseconds_while_they_fit_and_ranks_beyond():
    none = np.array([], dtype=np.int64)
    assert _packing(np.array([0, 10]), 3, none) == (0, 14, 4, None)
    assert _packing(np.array([110, 100, 105]), 3, none) == (100, 14, 4, None)
    assert _packing(none, 1, none) == (0, 4, 3, None)
    span = 2 ** 60 + 4                        # 61 bits of µs and 1 bit of keys: just fits
    assert _packing(np.array([5, 2 ** 60 + 5]), 1, none) == (5, span, 61, None)
    base, span, tbits, ranks = _packing(np.array([5, 2 ** 60 + 5]), 2, np.array([9, 3, 9]))
    assert (base, span, tbits, ranks.tolist()) == (0, 8, 4, [3, 9])


def test_packing_as_ranks_refuses_only_beyond_62_bits_of_key_and_rank():
    # 3 distinct point times: ranks need span 2 * 3 + 4 = 10, 4 bits; with 2**57 keys
    # (58 bits) that makes 62 bits: still packed; with 2**58 keys (59 bits) it does not fit
    t, points = np.array([0, 100]), np.array([1, 5, 9])
    base, span, tbits, ranks = _packing(t, 2 ** 57, points)
    assert (base, span, tbits, ranks.tolist()) == (0, 10, 4, [1, 5, 9])
    for nkeys in (2 ** 58, 2 ** 59, 2 ** 62):
        with pytest.raises(ValueError) as e:
            _packing(t, nkeys, points)
        assert str(e.value) == "too many keys for a packed sort"


def test_search_of_many_queries_gives_integer_positions():
    from emraudit.detectors.explain import _search
    pp = np.arange(0, 1_000_000, 2, dtype=np.int64)                  # 500,000 points
    qp = np.arange(-1, 1_000_000, 10, dtype=np.int64)[::-1].copy()  # 100,000 queries
    for side in ("left", "right"):
        got = _search(pp, qp, side)
        assert got.dtype == np.int64
        assert np.array_equal(got, np.searchsorted(pp, qp, side=side))
    assert _search(pp, qp, "left")[-3:].tolist() == [10, 5, 0]        # queries 19, 9, -1


def test_pack_puts_the_key_above_the_clipped_time_offset():
    packing = (100, 14, 4, None)            # times 100..110
    got = _pack(np.array([0, 1, 1, 2, 2]), np.array([100, 105, 50, 200, 98]), packing)
    assert got.tolist() == [2, 16 + 7, 16 + 0, 32 + 13, 32 + 0]


def test_pack_as_ranks_keeps_every_comparison_with_the_points():
    packing = (0, 8, 4, np.array([3, 9]))   # distinct point times 3 and 9
    got = _pack(np.array([0, 0, 0, 0, 0, 1]), np.array([2, 3, 4, 9, 10, 3]), packing)
    assert got.tolist() == [1, 2, 3, 4, 5, 16 + 2]


def test_queries_keeps_the_accesses_whose_key_has_points():
    akey = np.array([2, -1, 5, 2, 7])
    keys = np.array([2, 5])
    pos, code = _queries(akey, None, keys)
    assert (pos.tolist(), code.tolist()) == ([0, 2, 3], [0, 1, 0])
    pos, code = _queries(akey, np.array([False, True, True, True, True]), keys)
    assert (pos.tolist(), code.tolist()) == ([2, 3], [1, 0])
    pos, code = _queries(akey, None, np.array([], dtype=np.int64))
    assert (pos.tolist(), code.tolist()) == ([], [])
    pos, code = _queries(np.array([-1, -1]), None, keys)
    assert (pos.tolist(), code.tolist()) == ([], [])


def test_json_pieces():
    assert _jq(["a", None, "", "心", "a"]).tolist() == ['"a"', "null", "null", '"心"', '"a"']
    assert _jq([]).tolist() == []
    assert _obj(b=1, a="心") == '{"a": "心", "b": 1}'
    codes = np.array([0, 1, 2, 2, 1])
    assert _dedupe(["x", "y", "x"], codes).tolist() == ["x", "y"]
    assert codes.tolist() == [0, 1, 0, 0, 1]
    codes = np.array([1, 0])
    assert _dedupe(["x", "y"], codes).tolist() == ["x", "y"] and codes.tolist() == [1, 0]


def test_first_explanation_is_the_earliest_in_the_cascade():
    flags = {n: np.zeros(4, dtype=bool) for n in EXPLANATIONS}
    flags["record_role"][[0, 1]] = True
    flags["own_relation"][1] = True
    flags["break_glass"][[1, 2]] = True
    assert _first_code(flags).tolist() == [9, 1, 8, 0]
    assert _first_code(flags).dtype == np.int8
    names = _first(flags)
    assert names.tolist() == ["record_role", "own_relation", "break_glass", ""]
    assert names.dtype == object


def test_relation_json_writes_the_set_fields_only():
    rels = pd.DataFrame({
        "kind": pd.Series(["admission", "consult"], dtype="string"),
        "start": pd.Series([_t("2025-07-05 00:30"), _t("2025-07-06 23:59")]),
        "end": pd.Series([pd.NaT, _t("2025-07-08 00:00")], dtype=f"datetime64[ns, {TZ}]"),
        "department": pd.Series([None, "心内科"], dtype="string"),
        "ward": pd.Series(["W1", None], dtype="string"),
        "user_id": pd.Series([None, "doc"], dtype="string")})
    assert _relation_json(rels, TZ).tolist() == [
        '{"kind":"admission","start":"2025-07-05","end":null,"ward":"W1"}',
        '{"kind":"consult","start":"2025-07-06","end":"2025-07-08","department":"心内科",'
        '"user":"doc"}']
    assert _relation_json(rels.iloc[:0], TZ).tolist() == []
    assert _relation_json(rels.iloc[:0], TZ).dtype == object     # texts, also when none


@pytest.mark.parametrize("detail,parsed", [
    ('{"a": 1}', {"a": 1}), ("", {}), (None, {}), (float("nan"), {}), ("not json", {}),
    ("[1, 2]", {}), ('"text"', {})])
def test_explanation_detail_is_a_dict_or_empty(detail, parsed):
    assert explanation_detail({"detail": detail}) == parsed
    assert explanation_detail(pd.Series({"detail": detail})) == parsed
    assert explanation_detail({}) == {}


def test_explanation_evidence_of_an_explained_row_details_the_first_only():
    row = {"explanation": "unit_relation", "x_unit_relation": True,
           "detail": '{"relation": {"kind": "admission"}}'}
    got = explanation_evidence(row)
    assert [g["explanation"] for g in got] == list(EXPLANATIONS)
    assert got[1] == {"explanation": "unit_relation", "result": "held",
                      "detail": {"relation": {"kind": "admission"}}}
    assert all(g["result"] == "failed" and g["detail"] == {} for i, g in enumerate(got)
               if i != 1)


def test_explanation_evidence_of_an_unexplained_row_gives_each_its_own_facts():
    detail = json.dumps({"own_relation": {"grace_after_days": 30.0}, "duty_ward": "W1",
                         "break_glass": {"hours": 12.0}})
    for explanation in ("", None):
        got = explanation_evidence({"explanation": explanation, "detail": detail})
        assert [(g["explanation"], g["result"], g["detail"]) for g in got] == [
            ("own_relation", "failed", {"grace_after_days": 30.0}),
            ("unit_relation", "failed", {}), ("duty_ward", "failed", {}),
            ("request_relation", "failed", {}), ("prior_treatment", "failed", {}),
            ("documentation", "failed", {}), ("worked_on_ward", "failed", {}),
            ("break_glass", "failed", {"hours": 12.0}), ("record_role", "failed", {})]
    assert [g["result"] for g in explanation_evidence({})] == ["failed"] * 9
    # a row that names no explanation at all is read as unexplained: each its own facts
    got = explanation_evidence({"detail": detail, "x_break_glass": True})
    assert [(g["explanation"], g["result"], g["detail"]) for g in got][7] == \
        ("break_glass", "held", {"hours": 12.0})
    assert got[0]["detail"] == {"grace_after_days": 30.0}


def test_explanation_params_are_the_sections_defaults_and_overrides():
    ctx = make_ctx([], window=W, params={"explain": {"lookback_days": 3.0}})
    p = explanation_params(ctx)
    assert p["lookback_days"] == 3.0 and p["grace_before_days"] == 3.0
    assert p["documentation_min_writes"] == 2 and p["record_role_hours"] == {}
    assert p["record_roles"] == ["medical_records", "quality_control", "insurance", "admin"]


def _role_hours():
    from emraudit.detectors.explain import EXPLAIN
    (param,) = [p for p in EXPLAIN.params if p.name == "record_role_hours"]
    return param


@pytest.mark.parametrize("value,ok", [
    ({"medical_records": [0, 24]}, True), ({"admin": [0.5, 1]}, True), ({}, True),
    ({"admin": [8, 8]}, False), ({"admin": (8, 17)}, False), ({"admin": [8, 24.5]}, False),
    ({"admin": [-0.5, 8]}, False), ({"admin": [8, None]}, False),
    ({"admin": [8, 17], "nobody": [8, 17]}, False)])
def test_record_role_hours_edges(value, ok):
    if ok:
        assert _role_hours().check(value) == value
    else:
        with pytest.raises(ValueError):
            _role_hours().check(value)


def test_record_role_hours_errors_name_the_role_and_the_choices():
    with pytest.raises(ValueError) as e:
        _role_hours().check({"nobody": [8, 17]})
    assert str(e.value) == ("unknown role 'nobody' (expected one of physician, nurse, "
                            "technician, pharmacist, trainee, medical_records, quality_control, "
                            "insurance, admin, it, other)")
    with pytest.raises(ValueError) as e:
        _role_hours().check({"admin": [9, 8]})
    assert str(e.value) == ("admin: expected [start_hour, end_hour] with 0 <= start < end <= "
                            "24, got [9, 8]")
    with pytest.raises(ValueError, match="expected a table"):
        _role_hours().check([8, 17])


def test_a_reason_a_microsecond_after_the_access_is_no_reason_for_it():
    # a break-the-glass and an explained look one microsecond after the access come after
    # it: look first, reason later is not a reason
    events = [ev("er", "p1", "2025-07-06 10:00:00", event_id="A_btg"),
              ev("er", "p1", "2025-07-06 10:00:00.000001", "break_glass"),
              ev("rt", "p2", "2025-07-06 10:00:00", event_id="A_prior"),
              ev("rt", "p2", "2025-07-06 10:00:00.000001", "sign")]
    got = rows(explain(events, {"ward_work_hours": 0.0}))
    assert got["A_btg"][:2] == ("", [])
    assert got["A_prior"][0] == "documentation"          # the signature, not prior treatment


# --- the patient's relations, filled in for the rows a finding shows (with_details) ---------
def test_unexplained_details_leave_the_patients_relations_to_with_details():
    # 40 patients opened without a reason by one user: the engine's detail column holds one
    # text for all of them (the user's units, role and duty), not one per patient
    events = [ev("u", f"p{i}", "2025-07-12 10:00", event_id=f"e{i}") for i in range(40)]
    rels = [rel(patient=f"p{i}", user="doc", start=f"2025-07-0{1 + k}")
            for i in range(40) for k in range(i % 5)]
    ctx = make_ctx(events, window=W, care_relations=rels)
    x = explain_accesses(ctx)
    assert not x["explained"].any()
    assert len(x["detail"].cat.categories) == 1
    # three rows completed: each gets its own patient's last three relations and the count
    pick = [int(np.flatnonzero(x["event_id"].to_numpy() == e)[0]) for e in ("e4", "e3", "e0")]
    part = with_details(ctx, x.iloc[pick])
    assert list(part.index) == list(x.index[pick])
    got = [explanation_detail(r)["unit_relation"] for r in part.to_dict("records")]
    assert [(len(g["patient_relations"]), g["more"]) for g in got] == [(3, 1), (3, 0), (0, 0)]
    # the last three by start, oldest first
    assert [r["start"] for r in got[0]["patient_relations"]] == [
        "2025-07-02", "2025-07-03", "2025-07-04"]
    # completing every row gives what completing any subset gives for its rows
    whole = rows(with_details(ctx, x))
    assert {k: whole[k] for k in ("e4", "e3", "e0")} == rows(part)
    # rows with nothing pending come back as they are
    done = with_details(ctx, part)
    assert done["detail"].astype(str).tolist() == part["detail"].astype(str).tolist()


def test_with_details_names_only_the_relations_of_the_accesss_own_site():
    events = [ev("u", "p1", "2025-07-12 10:00", site_id="A", event_id="a"),
              ev("u", "p1", "2025-07-12 10:00", site_id="B", event_id="b")]
    rels = [{**rel(user="doc", department="X"), "site_id": "A"}]
    ctx = make_ctx(events, window=W, care_relations=rels)
    x = explain_accesses(ctx)
    assert not x["explained"].any()
    got = rows(with_details(ctx, x.iloc[::-1]))
    assert got["a"][2]["unit_relation"]["patient_relations"] == [
        {"kind": "admission", "start": "2025-07-05", "end": "2025-07-10", "user": "doc",
         "department": "X"}]
    assert got["b"][2]["unit_relation"]["patient_relations"] == []
