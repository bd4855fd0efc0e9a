"""snoop.* findings as data (issue 23, from every mutant of detectors/snoop.py): for small
hand-made input, each detector's whole finding (severity and its steps, event ids, message
arguments, evidence keys and numbers, the thresholds in force), the edges of its rules on both
sides, how accesses group into findings (user, patient, site-local day, the window, the look-up
by name before opening), and the helpers other code shares (normalizers, `specific`,
`employee_links`, `household_pairs`, `family_mask`, `_accesses`, `_for_pairs`) checked against
counts made by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors import snoop as S

DAY = ("2025-07-22", "2025-07-23")
STAFF = [
    {"user_id": "u1", "name": "王伟", "role": "nurse", "department": "ICU",
     "address": "北京市朝阳区建国路 1号 2-301", "phone": "138-0000-0001"},
    {"user_id": "u2", "name": "欧阳明", "role": "physician", "department": "ICU",
     "address": "北京市海淀区中关村大街5号101", "phone": "13900000002", "patient_id": "P_SELF"},
    {"user_id": "u3", "name": "李娜", "role": "physician", "department": "ER"},
    {"user_id": "u9", "name": "赵磊", "role": "nurse", "department": "ER"},
]
ADDR1 = "北京市朝阳区建国路1号2-301"        # u1's address, written another way
NOTHING_HOLDS = [("own_relation", "failed"), ("unit_relation", "failed"),
                 ("duty_ward", "failed"), ("request_relation", "failed"),
                 ("prior_treatment", "failed"), ("documentation", "failed"),
                 ("worked_on_ward", "failed"), ("break_glass", "failed"),
                 ("record_role", "failed")]
# no grace, no look-back: a relation explains only the accesses inside it
STRICT = {"explain": {"grace_after_days": 0.0, "grace_before_days": 0.0, "lookback_days": 0.0}}


def snoop(detector, events, patients=None, over=None, **kw):
    kw.setdefault("users", STAFF)
    kw.setdefault("window", DAY)
    return run(detector, make_ctx(events, patients=patients, **kw), **(over or {}))


def rows(f):
    return sorted(f.to_dict("records"), key=lambda r: (r["user_id"], r["patient_id"],
                                                       r["start"]))


def verdicts(r):
    return [(x["explanation"], x["result"]) for x in r["evidence"]["explanations"]]


def relation(pid, uid, start="2025-07-22 09:00", end="2025-07-22 09:55"):
    return {"patient_id": pid, "user_id": uid, "kind": "admission", "start": start, "end": end}


VIP = [{"patient_id": "V1", "vip": True}]


# =========================================================================== one whole finding
def test_a_vip_finding_states_every_field():
    events = [ev("u1", "V1", "2025-07-22 09:55", "query", event_id="q1"),
              ev("u1", "V1", "2025-07-22 10:00", event_id="a1"),
              ev("u1", "V1", "2025-07-22 10:20", "print", event_id="a2")]
    (r,) = rows(snoop("snoop.vip", events, VIP))
    assert (r["detector"], r["user_id"], r["patient_id"]) == ("snoop.vip", "u1", "V1")
    assert r["severity"] == "critical"                 # high, one step for the look-up
    assert r["score"] == 4.0                           # 3 + 1 for the look-up
    assert r["event_ids"] == ["a1", "a2", "q1"]
    assert (r["start"], r["end"]) == ("2025-07-22T09:55:00+08:00", "2025-07-22T10:20:00+08:00")
    assert r["rectification_item"] == "8"
    assert r["message_id"] == "snoop.vip"
    assert r["message_args"] == {"user": "u1", "patient": "V1", "accesses": 3, "lookup": True}
    e = dict(r["evidence"])
    e.pop("explanations")
    assert e == {"date": "2025-07-22", "accesses": 3, "actions": ["print", "query", "view"],
                 "explained": False, "explained_by": [], "name_lookup_then_open": True,
                 "vip": True, "score": 3.0}
    assert verdicts(r) == NOTHING_HOLDS
    assert r["summary"] == ("u1 opened the record of VIP patient V1 3 times with no care "
                            "relation or other explanation; the record was opened right after "
                            "a look-up by name")


def test_a_findings_identity_is_its_user_patient_and_site_local_day():
    from emraudit.detectors.base import finding_id
    f = snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00")], VIP)
    assert f["finding_id"].tolist() == [finding_id("snoop.vip", "u1|V1|2025-07-22")]


def test_event_ids_are_listed_sorted_start_and_end_are_the_first_and_last_access():
    events = [ev("u1", "V1", "2025-07-22 10:20", event_id="a"),
              ev("u1", "V1", "2025-07-22 10:00", event_id="b"),
              ev("u1", "V1", "2025-07-22 10:10", event_id="c")]
    f = snoop("snoop.vip", events, VIP)
    assert f["event_ids"].tolist() == [["a", "b", "c"]]
    assert (f["start"].iloc[0], f["end"].iloc[0]) == ("2025-07-22T10:00:00+08:00",
                                                      "2025-07-22T10:20:00+08:00")


# =========================================================================== grouping
def test_accesses_group_by_user_patient_and_site_local_day():
    pats = [{"patient_id": "V1", "vip": True}, {"patient_id": "V2", "vip": True}]
    events = [ev("u1", "V1", "2025-07-22 07:30", event_id="a"),   # 23:30 UTC the day before
              ev("u1", "V1", "2025-07-22 08:30", event_id="b"),   # 00:30 UTC
              ev("u1", "V1", "2025-07-22 23:30", event_id="c"),
              ev("u1", "V1", "2025-07-23 00:30", event_id="d"),
              ev("u3", "V1", "2025-07-22 10:00", event_id="e"),
              ev("u1", "V2", "2025-07-22 10:00", event_id="f")]
    f = snoop("snoop.vip", events, pats, window=("2025-07-22", "2025-07-24"))
    got = {(r["user_id"], r["patient_id"], r["evidence"]["date"]): r["event_ids"]
           for r in rows(f)}
    assert got == {("u1", "V1", "2025-07-22"): ["a", "b", "c"],
                   ("u1", "V1", "2025-07-23"): ["d"],
                   ("u3", "V1", "2025-07-22"): ["e"],
                   ("u1", "V2", "2025-07-22"): ["f"]}
    assert {(r["user_id"], r["patient_id"], r["evidence"]["date"]): r["message_args"]["accesses"]
            for r in rows(f)} == {("u1", "V1", "2025-07-22"): 3, ("u1", "V1", "2025-07-23"): 1,
                                  ("u3", "V1", "2025-07-22"): 1, ("u1", "V2", "2025-07-22"): 1}


def test_only_days_with_an_in_window_access_are_findings_and_they_keep_the_whole_day():
    # window from noon: the morning's access is look-back, yet the same local day; the day
    # before only look-back: no finding
    events = [ev("u1", "V1", "2025-07-21 15:00", event_id="before"),
              ev("u1", "V1", "2025-07-22 11:59", event_id="morning"),
              ev("u1", "V1", "2025-07-22 12:00", event_id="first"),
              ev("u1", "V1", "2025-07-23 12:00", event_id="after")]
    f = snoop("snoop.vip", events, VIP, window=("2025-07-22 12:00", "2025-07-23 12:00"))
    assert f["event_ids"].tolist() == [["first", "morning"]]
    assert f["evidence"].iloc[0]["accesses"] == 2


def test_window_edges_last_instant_in_end_out():
    events = [ev("u1", "V1", "2025-07-22 23:59", event_id="last"),
              ev("u1", "V1", "2025-07-23 00:00", event_id="end")]
    f = snoop("snoop.vip", events, VIP)
    assert f["event_ids"].tolist() == [["last"]]
    assert snoop("snoop.vip", [ev("u1", "V1", "2025-07-21 23:59")], VIP).empty


def test_denied_accesses_are_not_counted():
    events = [ev("u1", "V1", "2025-07-22 10:00", outcome="failure", event_id="no"),
              ev("u1", "V1", "2025-07-22 10:05", event_id="yes")]
    f = snoop("snoop.vip", events, VIP)
    assert f["event_ids"].tolist() == [["yes"]] and f["evidence"].iloc[0]["accesses"] == 1
    assert snoop("snoop.vip", events[:1], VIP).empty


def test_explained_accesses_leave_the_rest_of_the_day_unexplained():
    rel = [relation("V1", "u1")]
    events = [ev("u1", "V1", "2025-07-22 09:30", event_id="in"),
              ev("u1", "V1", "2025-07-22 10:30", event_id="out")]
    f = snoop("snoop.vip", events, VIP, care_relations=rel, params=STRICT)
    assert f["event_ids"].tolist() == [["out"]]
    r = f.iloc[0]
    assert (r["evidence"]["explained"], r["evidence"]["explained_by"]) == (False, [])
    assert snoop("snoop.vip", events[:1], VIP, care_relations=rel, params=STRICT).empty


# =========================================================================== look-up by name
@pytest.mark.parametrize("query_at,raised", [("09:30", True), ("09:29", False),
                                             ("10:00", True), ("10:01", False)])
def test_lookup_window_edges(query_at, raised):
    events = [ev("u1", "V1", f"2025-07-22 {query_at}", "query", event_id="q"),
              ev("u1", "V1", "2025-07-22 10:00", event_id="o")]
    (r,) = rows(snoop("snoop.vip", events, VIP))
    assert r["severity"] == ("critical" if raised else "high")
    assert r["score"] == (4.0 if raised else 3.0)
    assert r["evidence"]["name_lookup_then_open"] is raised
    assert r["message_args"]["lookup"] is raised


@pytest.mark.parametrize("minutes,raised", [(10.0, True), (9.0, False), (0.0, False)])
def test_the_lookup_window_is_the_explain_sections(minutes, raised):
    events = [ev("u1", "V1", "2025-07-22 09:50", "query"), ev("u1", "V1", "2025-07-22 10:00")]
    f = snoop("snoop.vip", events, VIP, params={"explain": {"lookup_minutes": minutes}})
    assert f["severity"].tolist() == ["critical" if raised else "high"]


def test_a_lookup_counts_only_by_the_same_user_for_the_same_patient_the_same_day():
    pats = [{"patient_id": "V1", "vip": True}, {"patient_id": "V2", "vip": True}]
    events = [ev("u3", "V1", "2025-07-22 09:58", "query"),       # another user
              ev("u1", "V2", "2025-07-22 09:59", "query"),       # another patient
              ev("u1", "V1", "2025-07-22 10:00", event_id="o")]
    f = snoop("snoop.vip", events, pats)
    by = {(r["user_id"], r["patient_id"]): r["severity"] for r in rows(f)}
    assert by == {("u1", "V1"): "high", ("u1", "V2"): "high", ("u3", "V1"): "high"}
    # a look-up late the evening before, the record opened just after midnight: another day
    events = [ev("u1", "V1", "2025-07-21 23:55", "query"),
              ev("u1", "V1", "2025-07-22 00:05", event_id="o")]
    f = snoop("snoop.vip", events, VIP)
    assert (f["severity"].tolist(), f["event_ids"].tolist()) == (["high"], [["o"]])


def test_a_lone_lookup_is_a_finding_but_no_lookup_before_itself():
    (r,) = rows(snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00", "query", event_id="q")],
                      VIP))
    assert (r["severity"], r["score"], r["event_ids"]) == ("high", 3.0, ["q"])
    assert r["evidence"]["name_lookup_then_open"] is False
    assert r["evidence"]["actions"] == ["query"]


def test_an_explained_lookup_does_not_raise_an_unexplained_opening():
    rel = [relation("V1", "u1")]
    events = [ev("u1", "V1", "2025-07-22 09:50", "query", event_id="q1"),
              ev("u1", "V1", "2025-07-22 10:10", event_id="a1")]
    f = snoop("snoop.vip", events, VIP, care_relations=rel, params=STRICT)
    assert (f["event_ids"].tolist(), f["severity"].tolist()) == ([["a1"]], ["high"])
    f = snoop("snoop.vip", events, VIP, params=STRICT)
    assert f["severity"].tolist() == ["critical"]


# =========================================================================== snoop.vip
@pytest.mark.parametrize("flag,found", [(True, True), (False, False), (None, False)])
def test_vip_flag(flag, found):
    pats = [{"patient_id": "V1", "vip": flag}, {"patient_id": "N1"}]
    f = snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00"),
                            ev("u1", "N1", "2025-07-22 10:00")], pats)
    assert f["patient_id"].tolist() == (["V1"] if found else [])


def test_vip_one_access_one_row_input():
    (r,) = rows(snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00", event_id="x")], VIP))
    assert (r["severity"], r["score"], r["event_ids"]) == ("high", 3.0, ["x"])
    assert r["summary"] == ("u1 opened the record of VIP patient V1 1 time with no care "
                            "relation or other explanation")


def test_vip_without_patient_accesses_or_without_accesses_to_vips_is_quiet():
    assert snoop("snoop.vip", [ev("u1", None, "2025-07-22 10:00", "login")], VIP).empty
    assert snoop("snoop.vip", [], VIP).empty
    assert snoop("snoop.vip", [ev("u1", "N1", "2025-07-22 10:00")], VIP).empty


# =========================================================================== employee_links
def test_employee_links_come_from_both_masters_without_gaps_or_repeats():
    ctx = make_ctx([], window=DAY,
                   users=[{"user_id": "u1", "patient_id": "P1"}, {"user_id": "u2"},
                          {"user_id": "u3", "patient_id": "P3"}],
                   patients=[{"patient_id": "P1", "employee_user_id": "u1"},
                             {"patient_id": "P2", "employee_user_id": "u2"},
                             {"patient_id": "P4"}])
    links = S.employee_links(ctx)
    assert sorted(map(tuple, links[["patient_id", "employee_user_id"]].values.tolist())) == \
        [("P1", "u1"), ("P2", "u2"), ("P3", "u3")]
    assert list(links.columns) == ["patient_id", "employee_user_id"]


def test_employee_links_take_the_first_row_of_a_user_or_patient_listed_twice():
    # validation keeps one row per id; a master handed over with an id twice (no validation)
    # counts its first row
    ctx = make_ctx([], window=DAY, users=[{"user_id": "u1", "patient_id": "P1"}],
                   patients=[{"patient_id": "P3", "employee_user_id": "u3"}])
    ctx.users = pd.concat([ctx.users, ctx.users.assign(patient_id="P2")], ignore_index=True)
    ctx.patients = pd.concat([ctx.patients, ctx.patients.assign(employee_user_id="u4")],
                             ignore_index=True)
    links = S.employee_links(ctx)
    assert sorted(map(tuple, links.values.tolist())) == [("P1", "u1"), ("P3", "u3")]


def test_employee_links_from_one_master_or_none():
    ctx = make_ctx([], window=DAY, users=[{"user_id": "u1", "patient_id": "P1"}])
    assert S.employee_links(ctx).values.tolist() == [["P1", "u1"]]
    ctx = make_ctx([], window=DAY, patients=[{"patient_id": "P2", "employee_user_id": "u2"}])
    assert S.employee_links(ctx).values.tolist() == [["P2", "u2"]]
    links = S.employee_links(make_ctx([], window=DAY))
    assert links.empty and list(links.columns) == ["patient_id", "employee_user_id"]
    links = S.employee_links(make_ctx([], window=DAY, users=[{"user_id": "u1"}],
                                      patients=[{"patient_id": "P1"}]))
    assert links.empty


# =========================================================================== snoop.coworker
def test_a_coworker_finding_states_every_field():
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    events = [ev("u1", "P9", "2025-07-22 10:00", event_id="o1"),
              ev("u3", "P9", "2025-07-22 10:05", event_id="s1"),
              ev("u3", "P9", "2025-07-22 10:06", event_id="s2")]
    other, same = rows(snoop("snoop.coworker", events, pats))
    assert (other["user_id"], other["severity"], other["score"], other["event_ids"]) == \
        ("u1", "medium", 2.0, ["o1"])
    assert other["message_args"] == {"user": "u1", "patient": "P9", "accesses": 1,
                                     "coworker": "u9", "same_department": False,
                                     "lookup": False}
    assert {k: other["evidence"][k] for k in ("employee_user_id", "same_department",
                                               "score")} == \
        {"employee_user_id": "u9", "same_department": False, "score": 2.0}
    assert other["summary"] == ("u1 opened the record of coworker u9 (patient P9) with no care "
                                "relation or other explanation")
    assert (same["user_id"], same["severity"], same["score"], same["event_ids"]) == \
        ("u3", "high", 3.0, ["s1", "s2"])
    assert same["message_args"] == {"user": "u3", "patient": "P9", "accesses": 2,
                                    "coworker": "u9", "same_department": True,
                                    "lookup": False}
    assert (same["evidence"]["same_department"], same["evidence"]["score"]) == (True, 3.0)
    assert same["summary"].endswith("; both work in the same department")


def test_a_coworker_lookup_raises_and_adds_to_the_score():
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    events = [ev("u3", "P9", "2025-07-22 09:58", "query"), ev("u3", "P9", "2025-07-22 10:00")]
    (r,) = rows(snoop("snoop.coworker", events, pats))
    assert (r["severity"], r["score"]) == ("critical", 4.0)
    events = [ev("u1", "P9", "2025-07-22 09:58", "query"), ev("u1", "P9", "2025-07-22 10:00")]
    (r,) = rows(snoop("snoop.coworker", events, pats))
    assert (r["severity"], r["score"]) == ("high", 3.0)


@pytest.mark.parametrize("dept_a,dept_b,same", [("ICU", "ICU", True), ("ICU", "ER", False),
                                                (None, None, False), ("ICU", None, False)])
def test_same_department_needs_a_department_on_both(dept_a, dept_b, same):
    users = [{"user_id": "a", "department": dept_a}, {"user_id": "b", "department": dept_b}]
    pats = [{"patient_id": "PB", "employee_user_id": "b"}]
    (r,) = rows(snoop("snoop.coworker", [ev("a", "PB", "2025-07-22 10:00")], pats, users=users))
    assert r["evidence"]["same_department"] is same
    assert r["severity"] == ("high" if same else "medium")


def test_coworker_unknown_to_the_staff_master_is_another_department():
    pats = [{"patient_id": "PX", "employee_user_id": "ghost"}]
    (r,) = rows(snoop("snoop.coworker", [ev("u1", "PX", "2025-07-22 10:00")], pats))
    assert (r["severity"], r["message_args"]["coworker"]) == ("medium", "ghost")


def test_coworker_own_record_under_any_link_is_not_a_coworker():
    # P9 is u9's (patients master) and u8's (users master): neither is a coworker of
    # themself; u1 is, and the coworker named is the first link (the patients master)
    users = STAFF + [{"user_id": "u8", "department": "ER", "patient_id": "P9"}]
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    events = [ev("u9", "P9", "2025-07-22 10:00"), ev("u8", "P9", "2025-07-22 10:01"),
              ev("u1", "P9", "2025-07-22 10:02", event_id="x")]
    f = snoop("snoop.coworker", events, pats, users=users)
    assert f["user_id"].tolist() == ["u1"]
    assert f["event_ids"].tolist() == [["x"]]       # listed once, not once per link
    assert f["message_args"].iloc[0]["coworker"] == "u9"
    assert f["evidence"].iloc[0]["accesses"] == 1


def test_coworker_from_the_users_master_alone():
    users = STAFF + [{"user_id": "u8", "department": "ICU", "patient_id": "P8"}]
    f = snoop("snoop.coworker", [ev("u1", "P8", "2025-07-22 10:00")], None, users=users)
    assert (f["user_id"].tolist(), f["severity"].tolist()) == (["u1"], ["high"])
    assert f["message_args"].iloc[0]["coworker"] == "u8"


def test_coworker_from_the_patients_master_alone():
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    f = snoop("snoop.coworker", [ev("u1", "P9", "2025-07-22 10:00")], pats, users=None)
    assert (f["user_id"].tolist(), f["severity"].tolist()) == (["u1"], ["medium"])
    assert f["message_args"].iloc[0]["coworker"] == "u9"
    assert f["evidence"].iloc[0]["same_department"] is False


def test_coworker_without_masters_or_links_is_quiet():
    events = [ev("u1", "P9", "2025-07-22 10:00")]
    assert snoop("snoop.coworker", events, None, users=None).empty
    assert snoop("snoop.coworker", events, [{"patient_id": "P9"}], users=None).empty


def test_coworker_explained_is_not_reported():
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    rel = [relation("P9", "u1", "2025-07-22 09:00", "2025-07-22 11:00")]
    assert snoop("snoop.coworker", [ev("u1", "P9", "2025-07-22 10:00")], pats,
                 care_relations=rel, params=STRICT).empty


# =========================================================================== snoop.self
def test_an_own_record_finding_states_every_field():
    events = [ev("u2", "P_SELF", "2025-07-22 10:00", event_id="a"),
              ev("u2", "P_SELF", "2025-07-22 10:05", "print", event_id="b")]
    (r,) = rows(snoop("snoop.self", events, [{"patient_id": "P_SELF"}]))
    assert (r["user_id"], r["patient_id"], r["severity"], r["score"], r["event_ids"]) == \
        ("u2", "P_SELF", "medium", 1.0, ["a", "b"])
    assert r["message_args"] == {"user": "u2", "patient": "P_SELF", "accesses": 2,
                                 "edited": False, "lookup": False}
    e = dict(r["evidence"])
    e.pop("explanations")
    assert e == {"date": "2025-07-22", "accesses": 2, "actions": ["print", "view"],
                 "explained": False, "explained_by": [], "name_lookup_then_open": False,
                 "own_record": True, "edited": False, "score": 1.0}
    assert r["summary"] == "u2 opened their own patient record P_SELF (2 accesses)"


@pytest.mark.parametrize("action,edited", [("update", True), ("delete", True), ("create", True),
                                           ("sign", True), ("view", False), ("print", False),
                                           ("export", False)])
def test_own_record_edits_are_high(action, edited):
    events = [ev("u2", "P_SELF", "2025-07-22 10:00"),
              ev("u2", "P_SELF", "2025-07-22 10:05", action)]
    (r,) = rows(snoop("snoop.self", events, [{"patient_id": "P_SELF"}]))
    assert r["severity"] == ("high" if edited else "medium")
    assert r["message_args"]["edited"] is edited and r["evidence"]["edited"] is edited


def test_own_record_lookup_raises_an_edit_to_critical():
    events = [ev("u2", "P_SELF", "2025-07-22 09:58", "query"),
              ev("u2", "P_SELF", "2025-07-22 10:00", "update")]
    (r,) = rows(snoop("snoop.self", events, [{"patient_id": "P_SELF"}]))
    assert (r["severity"], r["score"]) == ("critical", 2.0)
    assert r["summary"] == ("u2 opened their own patient record P_SELF (2 accesses); the record "
                            "was also edited; the record was opened right after a look-up by "
                            "name")


def test_own_record_fires_when_explained_and_shows_the_first_unexplained_verdicts():
    rel = [relation("P_SELF", "u2")]
    events = [ev("u2", "P_SELF", "2025-07-22 09:30", event_id="in"),
              ev("u2", "P_SELF", "2025-07-22 10:30", event_id="out")]
    (r,) = rows(snoop("snoop.self", events, [{"patient_id": "P_SELF"}], care_relations=rel,
                      params=STRICT))
    assert r["event_ids"] == ["in", "out"]
    assert (r["evidence"]["explained"], r["evidence"]["explained_by"]) == (True,
                                                                           ["own_relation"])
    assert verdicts(r)[0] == ("own_relation", "failed")       # the verdicts of "out"
    (r,) = rows(snoop("snoop.self", events[:1], [{"patient_id": "P_SELF"}], care_relations=rel,
                      params=STRICT))
    assert (r["evidence"]["explained"], r["evidence"]["explained_by"]) == (True,
                                                                           ["own_relation"])
    assert verdicts(r)[0] == ("own_relation", "held")         # all explained: the first


def test_own_record_is_only_the_users_own():
    pats = [{"patient_id": "P_SELF"}, {"patient_id": "P9", "employee_user_id": "u9"}]
    events = [ev("u1", "P_SELF", "2025-07-22 10:00"), ev("u9", "P9", "2025-07-22 10:01"),
              ev("u2", "P9", "2025-07-22 10:02"), ev("u2", "P_SELF", "2025-07-22 10:03")]
    f = snoop("snoop.self", events, pats)
    assert sorted(zip(f["user_id"], f["patient_id"])) == [("u2", "P_SELF"), ("u9", "P9")]


def test_own_record_without_links_is_quiet():
    assert snoop("snoop.self", [ev("u1", "P1", "2025-07-22 10:00")], [{"patient_id": "P1"}],
                 users=[{"user_id": "u1"}]).empty


# =========================================================================== normalizers
@pytest.mark.parametrize("raw,norm", [
    ("+86 13800000001", "13800000001"), ("0086-138-0000-0001", "13800000001"),
    ("8613800000001", "13800000001"), ("86 12345678", "8612345678"),
    ("010-12345678", "01012345678"), ("861380000000", "861380000000"),
    ("1234567", "1234567"), ("123456", None), ("12-34-56", None), ("", None), (None, None),
    ("0086 1380000000", "00861380000000"),
])
def test_phone_digits_country_code_and_short_numbers(raw, norm):
    out = S.normalize_phone(pd.Series([raw], dtype="string"))
    assert (None if pd.isna(out.iloc[0]) else out.iloc[0]) == norm


def test_address_normalizing_joins_spacing_punctuation_width_and_case():
    s = pd.Series(["北京市 朝阳区 1号", "北京市朝阳区1号", "ＡＢ-12 #3", "ab123", " ,. ", None],
                  index=[5, 6, 7, 8, 9, 10], dtype="string")
    out = S.normalize_address(s)
    assert out.index.tolist() == [5, 6, 7, 8, 9, 10]
    assert [None if pd.isna(v) else v for v in out] == \
        ["北京市朝阳区1号", "北京市朝阳区1号", "ab123", "ab123", None, None]


def test_nfkc_changes_only_what_nfkc_changes():
    s = pd.Series(["abc", "王伟", "ＡＢＣ", "①", None], index=[3, 4, 5, 6, 7], dtype="string")
    out = S.nfkc(s)
    assert out.index.tolist() == [3, 4, 5, 6, 7]
    assert out.tolist()[:4] == ["abc", "王伟", "ABC", "1"]
    assert pd.isna(out.iloc[4])
    same = pd.Series(["abc", "王伟"], dtype="string")
    assert S.nfkc(same).tolist() == ["abc", "王伟"]


def test_names_normalized_once_per_name_missing_is_blank():
    s = pd.Series(["Ｍａｒｙ  Smith", None, "王 伟", "Ｍａｒｙ  Smith"], index=[9, 8, 7, 6])
    out = S.normalize_names(s)
    assert out.index.tolist() == [9, 8, 7, 6]
    assert out.tolist() == ["mary smith", "", "王 伟", "mary smith"]
    assert str(out.dtype) == "string"


@pytest.mark.parametrize("max_share,expected", [
    (1, [False, False, False, True, False]),
    (2, [True, True, False, True, False]),
    (3, [True, True, True, True, False]),
])
def test_specific_keys_edges(max_share, expected):
    # a: 2 holders, b: 3 holders... counted by hand below
    keys = pd.Series(["a", "a", "b", "c", None], dtype="string")
    keys3 = pd.Series(["a", "a", "b", "b", "b", "c", None], dtype="string")
    assert S.specific(keys3, max_share).tolist() == \
        {1: [False, False, False, False, False, True, False],
         2: [True, True, False, False, False, True, False],
         3: [True, True, True, True, True, True, False]}[max_share]
    assert S.specific(keys, max_share).tolist()[3:] == expected[3:]


def test_specific_keeps_the_index_of_its_keys():
    # callers align it with their own (gapped) index
    keys = pd.Series(["a", "b", "a"], index=[7, 3, 9], dtype="string")
    out = S.specific(keys, 1)
    assert (out.index.tolist(), out.tolist()) == ([7, 3, 9], [False, True, False])


def test_specific_of_no_keys():
    assert S.specific(pd.Series([], dtype="string"), 5).tolist() == []
    assert S.specific(pd.Series([None, None], dtype="string"), 5).tolist() == [False, False]


# =========================================================================== household pairs
HOUSE_USERS = [
    {"user_id": "u1", "name": "王伟", "address": "北京市朝阳区建国路 1号 2-301",
     "phone": "138-0000-0001"},
    {"user_id": "u2", "name": "欧阳明", "address": "上海市徐汇区2号", "phone": "13900000002",
     "patient_id": "P_U2"},
    {"user_id": "u3", "name": "李娜"},
]


def pairs_of(patients, contacts=None, max_share=5, users=HOUSE_USERS):
    ctx = make_ctx([], window=DAY, users=users, patients=patients, patient_contacts=contacts)
    return S.household_pairs(ctx, max_share)


def as_rows(pairs):
    return sorted(tuple(r) for r in pairs.astype(object).values.tolist())


def test_household_pairs_by_address_phone_surname_and_declared_contact():
    pats = [{"patient_id": "A", "name": "王芳", "address": ADDR1},          # address + surname
            {"patient_id": "B", "name": "赵敏", "phone": "+86 13800000001"},  # phone only
            {"patient_id": "C", "name": "王强", "address": ADDR1,
             "phone": "13800000001"},                                       # both
            {"patient_id": "D", "name": "张三"},                             # declared
            {"patient_id": "P_U2", "name": "欧阳明", "address": "上海市徐汇区2号"},  # u2's own
            {"patient_id": "E", "name": "欧阳丽", "address": "上海市 徐汇区 2号"}]
    contacts = [{"patient_id": "D", "name": "李娜", "relation": "spouse",
                 "phone": "13800000001"},          # name matches u3 but u3 has no phone
                {"patient_id": "D", "name": "王伟", "relation": "子女",
                 "address": "北京市朝阳区建国路1号2-301"},
                {"patient_id": "D", "name": "王伟", "relation": "",
                 "phone": "13800000001"}]
    p = pairs_of(pats, contacts)
    assert list(p.columns) == ["user_id", "patient_id", "same_address", "same_phone",
                               "same_surname", "surname", "declared", "relation"]
    assert as_rows(p) == [
        ("u1", "A", True, False, True, "王", False, ""),
        ("u1", "B", False, True, False, "", False, ""),
        ("u1", "C", True, True, True, "王", False, ""),
        ("u1", "D", False, False, False, "", True, "子女"),
        ("u2", "E", True, False, True, "欧阳", False, ""),
    ]


def test_the_masters_first_row_of_a_user_or_patient_is_the_one_that_counts():
    users = [{"user_id": "u1", "name": "王伟", "address": ADDR1},
             {"user_id": "u1", "name": "王伟", "address": "广州市1号"}]
    pats = [{"patient_id": "A", "name": "赵敏", "address": ADDR1},
            {"patient_id": "B", "name": "赵敏", "address": "上海市9号"},
            {"patient_id": "B", "name": "赵敏", "address": "广州市1号"}]
    assert as_rows(pairs_of(pats, users=users)) == [("u1", "A", True, False, False, "", False,
                                                     "")]
    # validation keeps the first row of an id; handed over twice without it, the user's
    # second row's address is not theirs either: no neighbour there
    ctx = make_ctx([], window=DAY, users=users[:1],
                   patients=pats + [{"patient_id": "C", "name": "赵敏", "address": "广州市1号"}])
    ctx.users = pd.concat([ctx.users, ctx.users.assign(address="广州市1号")], ignore_index=True)
    assert as_rows(S.household_pairs(ctx, 5)) == [("u1", "A", True, False, False, "", False,
                                                   "")]
    # a patient listed twice is one holder of the address, not two
    pats = [{"patient_id": "A", "name": "赵敏", "address": ADDR1},
            {"patient_id": "A", "name": "赵敏", "address": ADDR1}]
    assert as_rows(pairs_of(pats, max_share=1)) == [("u1", "A", True, False, False, "", False,
                                                     "")]


def test_household_pairs_are_cached_per_max_share():
    ctx = make_ctx([], window=DAY, users=HOUSE_USERS,
                   patients=[{"patient_id": "A", "name": "王芳", "address": ADDR1}])
    first = S.household_pairs(ctx, 5)
    assert S.household_pairs(ctx, 5) is first
    assert "household_pairs:5" in ctx.memo and "household_pairs:2" not in ctx.memo
    S.household_pairs(ctx, 2)
    assert "household_pairs:2" in ctx.memo


def test_household_pairs_in_force_are_those_of_family_and_neighbour():
    pats = [{"patient_id": "A", "name": "王芳", "address": ADDR1}]
    ctx = make_ctx([], window=DAY, users=HOUSE_USERS, patients=pats,
                   params={"snoop.family": {"max_shared_by": 3},
                           "snoop.neighbor": {"max_shared_by": 7}})
    S.household_pairs_in_force(ctx)
    assert sorted(k for k in ctx.memo if k.startswith("household_pairs")) == \
        ["household_pairs:3", "household_pairs:7"]
    ctx = make_ctx([], window=DAY, users=HOUSE_USERS, patients=pats)
    S.household_pairs_in_force(ctx)
    assert sorted(k for k in ctx.memo if k.startswith("household_pairs")) == \
        ["household_pairs:5"]


@pytest.mark.parametrize("holders,found", [(2, True), (3, False)])
def test_household_key_shared_by_more_than_max_share_patients_is_no_evidence(holders, found):
    pats = [{"patient_id": f"X{i}", "name": "赵敏", "address": ADDR1} for i in range(holders)]
    p = pairs_of(pats, max_share=2)
    assert sorted(p["patient_id"]) == ([f"X{i}" for i in range(holders)] if found else [])
    pats = [{"patient_id": f"X{i}", "name": "赵敏", "phone": "13800000001"}
            for i in range(holders)]
    p = pairs_of(pats, max_share=2)
    assert sorted(p["patient_id"]) == ([f"X{i}" for i in range(holders)] if found else [])


def test_household_pairs_without_a_master_or_a_match_are_empty():
    cols = ["user_id", "patient_id", "same_address", "same_phone", "same_surname", "surname",
            "declared", "relation"]
    ctx = make_ctx([], window=DAY, users=HOUSE_USERS)
    p = S.household_pairs(ctx, 5)
    assert p.empty and list(p.columns) == cols
    p = pairs_of([{"patient_id": "Z", "name": "王芳", "address": "广州市1号"}])
    assert p.empty and list(p.columns) == cols


def test_a_declared_contact_needs_the_name_and_a_phone_or_address():
    pats = [{"patient_id": "D", "name": "张三"}]
    for contact, found in (({"name": "王伟", "phone": "13800000001"}, True),
                           ({"name": "王伟", "address": ADDR1}, True),
                           ({"name": "王伟"}, False),
                           ({"name": "王伟", "phone": "13800000009"}, False),
                           ({"name": "王芳", "phone": "13800000001"}, False),
                           ({"phone": "13800000001"}, False)):
        p = pairs_of(pats, [{"patient_id": "D", **contact}])
        assert (p["user_id"].tolist() == ["u1"]) is found, contact
        if found:
            assert p[["declared", "relation"]].values.tolist() == [[True, ""]]


def test_declared_relations_are_joined_distinct_sorted():
    pats = [{"patient_id": "D", "name": "张三"}]
    contacts = [{"patient_id": "D", "name": "王伟", "relation": r, "phone": "13800000001"}
                for r in ("spouse", "", "child", "spouse")]
    p = pairs_of(pats, contacts)
    assert p[["user_id", "declared", "relation"]].values.tolist() == [["u1", True,
                                                                       "child;spouse"]]


def test_a_staff_members_own_record_is_no_household_pair():
    pats = [{"patient_id": "OWN", "name": "王伟", "address": ADDR1, "employee_user_id": "u1"},
            {"patient_id": "P_U2", "name": "欧阳明", "phone": "13900000002"}]
    assert pairs_of(pats).empty


def test_unnamed_patient_and_staff_share_no_surname():
    users = [{"user_id": "x", "address": ADDR1}]
    p = pairs_of([{"patient_id": "A", "address": ADDR1}], users=users)
    assert as_rows(p) == [("x", "A", True, False, False, "", False, "")]


def test_a_declared_contacts_address_must_be_the_staff_members():
    # the contact's address is another one, or the namesake on the staff has none on file
    pats = [{"patient_id": "D", "name": "张三"}]
    assert pairs_of(pats, [{"patient_id": "D", "name": "王伟", "address": "广州市1号"}]).empty
    assert pairs_of(pats, [{"patient_id": "D", "name": "李娜", "address": ADDR1}]).empty
    assert pairs_of(pats, [{"patient_id": "D", "name": "李娜", "address": ADDR1,
                            "phone": "13800000001"}]).empty
    # the same contact row, matched by address, is declared
    p = pairs_of(pats, [{"patient_id": "D", "name": "王伟", "address": ADDR1,
                         "phone": "13900000009"}])
    assert as_rows(p) == [("u1", "D", False, False, False, "", True, "")]


@pytest.mark.parametrize("name", ["王伟", "Xxxx", "Ann XXXX"])
def test_a_patient_master_without_names_shares_no_surname_whatever_the_staff_name(name):
    users = [{"user_id": "x", "name": name, "address": ADDR1}]
    p = pairs_of([{"patient_id": "A", "address": ADDR1}], users=users)
    assert as_rows(p) == [("x", "A", True, False, False, "", False, "")]


def test_user_and_patient_ids_spelled_alike_are_no_own_record():
    # the two masters' ids are separate: only employee_user_id / users.patient_id link them,
    # so staff member "XXXX" and patient "XXXX" at one address are neighbours
    users = [{"user_id": "XXXX", "name": "赵磊", "address": ADDR1}]
    p = pairs_of([{"patient_id": "XXXX", "name": "李娜", "address": ADDR1}], users=users)
    assert as_rows(p) == [("XXXX", "XXXX", True, False, False, "", False, "")]
    # linked through either master, it is their own record: no pair
    for u, pat in (({"patient_id": "XXXX"}, {}), ({}, {"employee_user_id": "XXXX"})):
        p = pairs_of([{"patient_id": "XXXX", "name": "李娜", "address": ADDR1, **pat}],
                     users=[{**users[0], **u}])
        assert p.empty

@pytest.mark.parametrize("declared,same_surname,addr,phone,family", [
    (True, False, False, False, True), (False, True, True, False, True),
    (False, True, False, True, True), (False, True, False, False, False),
    (False, False, True, True, False), (False, False, False, False, False)])
def test_family_mask(declared, same_surname, addr, phone, family):
    pairs = pd.DataFrame({"declared": [declared], "same_surname": [same_surname],
                          "same_address": [addr], "same_phone": [phone]})
    assert S.family_mask(pairs).tolist() == [family]


# =========================================================================== snoop.family
def family_row(patients, contacts=None, events=None, **kw):
    events = events or [ev("u1", patients[0]["patient_id"], "2025-07-22 10:00")]
    return rows(snoop("snoop.family", events, patients, patient_contacts=contacts, **kw))


FAMILY_KEYS = ("family_basis", "declared_relation", "surname", "surname_share_percent",
               "surname_common", "surname_bits", "score")


def test_family_common_surname_and_address_is_medium():
    (r,) = family_row([{"patient_id": "F1", "name": "王芳", "address": ADDR1}])
    assert (r["severity"], r["score"]) == ("medium", 1.96)
    assert {k: r["evidence"][k] for k in FAMILY_KEYS} == {
        "family_basis": ["same_surname", "same_address"], "declared_relation": "",
        "surname": "王", "surname_share_percent": 7.1, "surname_common": True,
        "surname_bits": 3.82, "score": 1.96}
    assert r["message_args"] == {"user": "u1", "patient": "F1", "accesses": 1,
                                 "family": ["same_surname", "same_address"], "relation": "",
                                 "lookup": False}


def test_family_rare_surname_and_address_is_high():
    pats = [{"patient_id": "F2", "name": "欧阳娟", "address": "北京市海淀区 中关村大街 5号 101"}]
    (r,) = family_row(pats, events=[ev("u2", "F2", "2025-07-22 10:00")])
    assert (r["severity"], r["score"]) == ("high", 3.74)
    assert {k: r["evidence"][k] for k in FAMILY_KEYS} == {
        "family_basis": ["same_surname", "same_address"], "declared_relation": "",
        "surname": "欧阳", "surname_share_percent": 0.05, "surname_common": False,
        "surname_bits": 10.97, "score": 3.74}


def test_family_surname_at_the_common_share_is_common_just_under_is_not():
    # 何 1.0 % (= COMMON_SHARE): common, medium; 郑 0.8 %: not, high
    users = [{"user_id": "h", "name": "何伟", "address": ADDR1},
             {"user_id": "z", "name": "郑伟", "address": "上海市1号"}]
    pats = [{"patient_id": "H", "name": "何芳", "address": ADDR1},
            {"patient_id": "Z", "name": "郑芳", "address": "上海市1号"}]
    events = [ev("h", "H", "2025-07-22 10:00"), ev("z", "Z", "2025-07-22 10:00")]
    got = {r["user_id"]: (r["severity"], r["evidence"]["surname_common"],
                          r["evidence"]["surname_share_percent"], r["evidence"]["surname_bits"],
                          r["score"])
           for r in rows(snoop("snoop.family", events, pats, users=users))}
    assert got == {"h": ("medium", True, 1.0, 6.64, 2.66),
                   "z": ("high", False, 0.8, 6.97, 2.74)}


def test_family_common_surname_and_phone_is_high():
    (r,) = family_row([{"patient_id": "F1", "name": "王芳", "phone": "13800000001"}])
    assert (r["severity"], r["score"]) == ("high", 2.96)
    assert r["evidence"]["family_basis"] == ["same_surname", "same_phone"]


def test_family_declared_contact_states_every_field():
    pats = [{"patient_id": "C1", "name": "赵敏", "address": ADDR1, "phone": "13800000001"}]
    contacts = [{"patient_id": "C1", "name": "王伟", "relation": "spouse",
                 "phone": "13800000001"}]
    (r,) = family_row(pats, contacts)
    assert (r["severity"], r["score"]) == ("high", 6.0)
    assert {k: r["evidence"][k] for k in FAMILY_KEYS} == {
        "family_basis": ["declared_contact", "same_address", "same_phone"],
        "declared_relation": "spouse", "surname": "", "surname_share_percent": None,
        "surname_common": False, "surname_bits": 0.0, "score": 6.0}
    assert r["message_args"] == {"user": "u1", "patient": "C1", "accesses": 1,
                                 "family": ["declared_contact", "same_address", "same_phone"],
                                 "relation": "spouse", "lookup": False}
    assert r["summary"] == ("u1 opened the record of patient C1, family by declared contact, "
                            "same address, same phone, with no care relation or other "
                            "explanation; declared as the user's spouse") or \
        r["summary"].startswith("u1 opened the record of patient C1, family by ")


def test_family_declared_contact_alone_with_a_common_surname_is_high():
    pats = [{"patient_id": "C1", "name": "王芳"}]
    contacts = [{"patient_id": "C1", "name": "王伟", "relation": "", "phone": "13800000001"}]
    (r,) = family_row(pats, contacts)
    assert (r["severity"], r["score"]) == ("high", 3.96)
    assert r["evidence"]["family_basis"] == ["declared_contact", "same_surname"]
    assert (r["evidence"]["declared_relation"], r["message_args"]["relation"]) == ("", "")


def test_family_lookup_raises_medium_to_high():
    pats = [{"patient_id": "F1", "name": "王芳", "address": ADDR1}]
    events = [ev("u1", "F1", "2025-07-22 09:58", "query"), ev("u1", "F1", "2025-07-22 10:00")]
    (r,) = family_row(pats, events=events)
    assert (r["severity"], r["score"]) == ("high", 2.96)


def test_family_max_shared_by_is_the_parameter():
    pats = [{"patient_id": f"F{i}", "name": "王芳", "address": ADDR1} for i in range(3)]
    events = [ev("u1", "F0", "2025-07-22 10:00")]
    assert len(snoop("snoop.family", events, pats, over={"max_shared_by": 3})) == 1
    assert snoop("snoop.family", events, pats, over={"max_shared_by": 2}).empty


def test_family_not_family_or_explained_is_quiet():
    pats = [{"patient_id": "F1", "name": "王芳", "address": "广州市1号"},
            {"patient_id": "N1", "name": "赵敏", "address": ADDR1}]
    assert snoop("snoop.family", [ev("u1", "F1", "2025-07-22 10:00"),
                                  ev("u1", "N1", "2025-07-22 10:00")], pats).empty
    pats = [{"patient_id": "F1", "name": "王芳", "address": ADDR1}]
    rel = [relation("F1", "u1", "2025-07-22 09:00", "2025-07-22 11:00")]
    assert snoop("snoop.family", [ev("u1", "F1", "2025-07-22 10:00")], pats,
                 care_relations=rel, params=STRICT).empty
    # another staff member opening the same record: not their family
    assert snoop("snoop.family", [ev("u3", "F1", "2025-07-22 10:00")], pats).empty


# =========================================================================== snoop.neighbor
def test_a_neighbour_finding_states_every_field():
    pats = [{"patient_id": "N1", "name": "赵敏", "address": ADDR1}]
    events = [ev("u1", "N1", "2025-07-22 10:00", event_id="a"),
              ev("u1", "N1", "2025-07-22 10:01", event_id="b")]
    (r,) = rows(snoop("snoop.neighbor", events, pats))
    assert (r["severity"], r["score"], r["event_ids"]) == ("medium", 2.0, ["a", "b"])
    assert r["message_args"] == {"user": "u1", "patient": "N1", "accesses": 2, "lookup": False}
    assert (r["evidence"]["family_basis"], r["evidence"]["score"]) == (["same_address"], 2.0)
    assert r["summary"] == ("u1 opened the record of patient N1, who lives at the user's "
                            "address, with no care relation or other explanation")


def test_neighbour_needs_the_address_and_no_family():
    pats = [{"patient_id": "F1", "name": "王芳", "address": ADDR1},          # family
            {"patient_id": "T1", "name": "赵敏", "phone": "13800000001"},    # phone only
            {"patient_id": "N1", "name": "赵敏", "address": ADDR1}]
    events = [ev("u1", p["patient_id"], "2025-07-22 10:00") for p in pats]
    f = snoop("snoop.neighbor", events, pats)
    assert f["patient_id"].tolist() == ["N1"]
    contacts = [{"patient_id": "N1", "name": "王伟", "phone": "13800000001"}]
    assert snoop("snoop.neighbor", events, pats, patient_contacts=contacts).empty


def test_neighbour_lookup_raises_and_max_shared_by_applies():
    pats = [{"patient_id": f"N{i}", "name": "赵敏", "address": ADDR1} for i in range(2)]
    events = [ev("u1", "N0", "2025-07-22 09:58", "query"), ev("u1", "N0", "2025-07-22 10:00")]
    (r,) = rows(snoop("snoop.neighbor", events, pats))
    assert (r["severity"], r["score"]) == ("high", 3.0)
    assert snoop("snoop.neighbor", events, pats, over={"max_shared_by": 1}).empty


# =========================================================================== snoop.deceased
def dead(ts, died, over=None, **kw):
    return rows(snoop("snoop.deceased", [ev("u1", "D1", ts, event_id="x")],
                      [{"patient_id": "D1", "deceased_date": died}], over=over, **kw))


def test_a_deceased_finding_states_every_field():
    (r,) = dead("2025-07-22 10:00", "2025-06-22 10:00")
    assert (r["severity"], r["score"], r["event_ids"]) == ("medium", pytest.approx(1 + 30 / 365),
                                                           ["x"])
    assert r["message_args"] == {"user": "u1", "patient": "D1", "accesses": 1, "days": 30,
                                 "lookup": False}
    assert {k: r["evidence"][k] for k in ("deceased_date", "days_after_death",
                                          "threshold_days")} == {
        "deceased_date": "2025-06-22", "days_after_death": 30, "threshold_days": 30}
    assert r["evidence"]["score"] == pytest.approx(1.0821917808219178)
    assert r["summary"] == ("u1 opened the record of patient D1 30 days after their death with "
                            "no explanation")


@pytest.mark.parametrize("days,ts,found", [
    (30, "2025-07-22 09:59", False), (30, "2025-07-22 10:00", True),
    (10, "2025-07-02 09:59", False), (10, "2025-07-02 10:00", True),
    (0, "2025-06-22 09:59", False), (0, "2025-06-22 10:00", True)])
def test_days_after_death_edges_follow_the_parameter(days, ts, found):
    f = dead(ts, "2025-06-22 10:00", over={"days_after_death": days},
             window=("2025-06-22", "2025-07-23"))
    assert len(f) == (1 if found else 0)
    if found:
        assert f[0]["evidence"]["days_after_death"] == days
        assert f[0]["evidence"]["threshold_days"] == days
        assert f[0]["message_args"]["days"] == days


@pytest.mark.parametrize("died,days,severity,score", [
    ("2024-07-23 10:01", 363, "medium", 1 + 363 / 365),
    ("2024-07-23 10:00", 364, "medium", 1 + 364 / 365),
    ("2024-07-22 10:00", 365, "high", 2.0),
    ("2023-07-23 10:00", 730, "high", 3.0),
    ("2015-07-25 10:00", 3650, "high", 11.0),
    ("2010-01-01", 5681, "high", 11.0)])
def test_deceased_long_ago_is_high_and_the_score_stops_at_ten_years(died, days, severity,
                                                                     score):
    (r,) = dead("2025-07-22 10:00", died)
    assert (r["severity"], r["evidence"]["days_after_death"]) == (severity, days)
    assert r["score"] == pytest.approx(score)


def test_deceased_a_patient_listed_twice_counts_once_by_the_first_row():
    pats = [{"patient_id": "D1", "deceased_date": "2024-07-22 10:00"},
            {"patient_id": "D1", "deceased_date": "2020-01-01"}]
    (r,) = rows(snoop("snoop.deceased", [ev("u1", "D1", "2025-07-22 10:00", event_id="x")],
                      pats))
    assert (r["event_ids"], r["evidence"]["accesses"], r["message_args"]["days"]) == \
        (["x"], 1, 365)
    assert r["evidence"]["deceased_date"] == "2024-07-22"


def test_deceased_counts_only_late_accesses_and_reports_the_latest():
    pats = [{"patient_id": "D1", "deceased_date": "2025-06-22 12:00"}]
    events = [ev("u1", "D1", "2025-07-22 10:00", event_id="early"),   # 29 days 22 h
              ev("u1", "D1", "2025-07-22 13:00", event_id="late"),
              ev("u1", "D1", "2025-07-22 14:00", event_id="later")]
    (r,) = rows(snoop("snoop.deceased", events, pats))
    assert r["event_ids"] == ["late", "later"]
    assert r["message_args"]["days"] == 30 and r["evidence"]["accesses"] == 2


def test_deceased_lookup_raises_and_adds_to_the_score():
    pats = [{"patient_id": "D1", "deceased_date": "2024-07-22 10:00"}]
    events = [ev("u1", "D1", "2025-07-22 10:00", "query"), ev("u1", "D1", "2025-07-22 10:05")]
    (r,) = rows(snoop("snoop.deceased", events, pats))
    assert (r["severity"], r["score"]) == ("critical", 3.0)


def test_deceased_quiet_cases():
    e = [ev("u1", "D1", "2025-07-22 10:00")]
    assert snoop("snoop.deceased", e, [{"patient_id": "D1"}]).empty          # no column
    assert snoop("snoop.deceased", e, [{"patient_id": "D1", "deceased_date": None},
                                       {"patient_id": "D2", "vip": True}]).empty
    # dead patients nobody opened, others opened
    assert snoop("snoop.deceased", e, [{"patient_id": "D9", "deceased_date": "2020-01-01"}]
                 ).empty
    assert snoop("snoop.deceased", [], [{"patient_id": "D1", "deceased_date": "2020-01-01"}]
                 ).empty
    rel = [relation("D1", "u1", "2025-07-22 09:00", "2025-07-22 11:00")]
    assert snoop("snoop.deceased", e, [{"patient_id": "D1", "deceased_date": "2020-01-01"}],
                 care_relations=rel, params=STRICT).empty


# =========================================================================== snoop.watchlist
def sealed(events, team="u1;u2", **kw):
    pats = [{"patient_id": "S1", "watch": True, "watch_team": team}]
    return rows(snoop("snoop.watchlist", events, pats, **kw))


def test_a_sealed_record_finding_states_every_field():
    events = [ev("u3", "S1", "2025-07-22 10:00", event_id="a"),
              ev("u3", "S1", "2025-07-22 10:05", "print", event_id="b")]
    (r,) = sealed(events)
    assert (r["severity"], r["score"], r["event_ids"]) == ("critical", 4.0, ["a", "b"])
    assert r["message_args"] == {"user": "u3", "patient": "S1", "accesses": 2,
                                 "unexplained": True, "lookup": False}
    e = dict(r["evidence"])
    e.pop("explanations")
    assert e == {"date": "2025-07-22", "accesses": 2, "actions": ["print", "view"],
                 "explained": False, "explained_by": [], "name_lookup_then_open": False,
                 "sealed": True, "watch_team": ["u1", "u2"], "score": 4.0}
    assert r["summary"] == ("u3 opened the sealed record of patient S1 without being on its "
                            "team and with no care relation")


def test_sealed_explained_is_high_partly_explained_critical():
    rel = [relation("S1", "u3")]
    events = [ev("u3", "S1", "2025-07-22 09:30", event_id="in"),
              ev("u3", "S1", "2025-07-22 10:30", event_id="out")]
    (r,) = sealed(events[:1], care_relations=rel, params=STRICT)
    assert (r["severity"], r["score"], r["message_args"]["unexplained"]) == ("high", 3.0, False)
    assert (r["evidence"]["explained"], r["evidence"]["explained_by"],
            r["evidence"]["score"]) == (True, ["own_relation"], 3.0)
    assert r["summary"] == "u3 opened the sealed record of patient S1 without being on its team"
    (r,) = sealed(events, care_relations=rel, params=STRICT)
    assert (r["severity"], r["score"], r["message_args"]["unexplained"]) == ("critical", 4.0,
                                                                             True)
    assert r["event_ids"] == ["in", "out"]


def test_sealed_lookup_raises_explained_to_critical_and_adds_to_the_score():
    events = [ev("u3", "S1", "2025-07-22 09:58", "query"), ev("u3", "S1", "2025-07-22 10:00")]
    (r,) = sealed(events)
    assert (r["severity"], r["score"]) == ("critical", 5.0)


@pytest.mark.parametrize("team,members", [
    ("u1;u2", ["u1", "u2"]), ("u1,u2", ["u1", "u2"]), ("u1；u2", ["u1", "u2"]),
    ("u1，u2", ["u1", "u2"]), ("u1 u2", ["u1", "u2"]), (" u1 ;; u2; ", ["u1", "u2"]),
    ("u2", ["u2"]), ("", []), (None, []), ("a;u2", ["a", "u2"])])
def test_the_team_is_split_on_any_separator_and_stays_quiet(team, members):
    # a one-letter user id is a member like any other
    events = [ev(u, "S1", "2025-07-22 10:00") for u in ("a", "u1", "u2", "u3")]
    f = sealed(events, team=team)
    assert [r["user_id"] for r in f] == [u for u in ("a", "u1", "u2", "u3") if u not in members]
    assert all(r["evidence"]["watch_team"] == members for r in f)


def test_a_team_member_of_one_sealed_record_is_an_outsider_of_another():
    pats = [{"patient_id": "S1", "watch": True, "watch_team": "u1"},
            {"patient_id": "S2", "watch": True, "watch_team": "u3"}]
    events = [ev("u1", "S1", "2025-07-22 10:00"), ev("u1", "S2", "2025-07-22 10:00"),
              ev("u3", "S2", "2025-07-22 10:00"), ev("u3", "S1", "2025-07-22 10:00")]
    f = rows(snoop("snoop.watchlist", events, pats))
    assert [(r["user_id"], r["patient_id"], r["evidence"]["watch_team"]) for r in f] == \
        [("u1", "S2", ["u3"]), ("u3", "S1", ["u1"])]


def test_sealed_without_a_team_column_everyone_is_outside():
    pats = [{"patient_id": "S1", "watch": True}]
    f = rows(snoop("snoop.watchlist", [ev("u1", "S1", "2025-07-22 10:00")], pats))
    assert [(r["user_id"], r["evidence"]["watch_team"]) for r in f] == [("u1", [])]
    pats = [{"patient_id": "S0"}, {"patient_id": "S1", "watch": True},
            {"patient_id": "S2", "watch": True}]
    f = rows(snoop("snoop.watchlist", [ev("u1", "S1", "2025-07-22 10:00"),
                                       ev("u1", "S2", "2025-07-22 10:00")], pats))
    assert [(r["patient_id"], r["evidence"]["watch_team"]) for r in f] == [("S1", []),
                                                                           ("S2", [])]


@pytest.mark.parametrize("watch,found", [(True, True), (False, False), (None, False)])
def test_only_sealed_records(watch, found):
    pats = [{"patient_id": "S1", "watch": watch, "watch_team": "u9"}]
    f = snoop("snoop.watchlist", [ev("u1", "S1", "2025-07-22 10:00")], pats)
    assert len(f) == (1 if found else 0)


def test_sealed_quiet_without_a_watch_column_or_accesses():
    assert snoop("snoop.watchlist", [ev("u1", "S1", "2025-07-22 10:00")],
                 [{"patient_id": "S1"}]).empty
    assert snoop("snoop.watchlist", [ev("u1", "X", "2025-07-22 10:00")],
                 [{"patient_id": "S1", "watch": True}]).empty
    assert snoop("snoop.watchlist", [ev("u1", "S1", "2025-07-22 10:00", outcome="failure")],
                 [{"patient_id": "S1", "watch": True}]).empty


# =========================================================================== shared engine
def test_accesses_of_the_patients_at_stake_with_verdict_action_and_denial():
    events = [ev("u1", "P1", "2025-07-22 10:00", event_id="a"),
              ev("u1", "P2", "2025-07-22 10:01", "print", event_id="b", outcome="failure"),
              ev("u1", "P3", "2025-07-22 10:02", event_id="c"),
              ev("u1", None, "2025-07-22 10:03", "login", event_id="d")]
    ctx = make_ctx(events, window=DAY, users=STAFF)
    acc = S._accesses(ctx, ["P1", "P2", None, "P1"])
    assert acc["event_id"].tolist() == ["a", "b"]
    assert acc["action"].tolist() == ["view", "print"]
    assert acc["failed"].tolist() == [False, True]
    assert acc["user_id"].tolist() == ["u1", "u1"] and acc["patient_id"].tolist() == ["P1", "P2"]
    assert str(acc["user_id"].dtype) == "string" and str(acc["patient_id"].dtype) == "string"
    assert acc.index.tolist() == [0, 1]
    assert {"explained", "explanation", "in_window", "ts", "detail",
            "x_own_relation", "x_record_role"} <= set(acc.columns)
    assert S._accesses(ctx, []).empty


def test_accesses_without_an_outcome_column_none_failed():
    events = [ev("u1", "P1", "2025-07-22 10:00")]
    ctx = make_ctx(events, window=DAY, users=STAFF)
    ctx.events = ctx.events.drop(columns="outcome")
    assert S._accesses(ctx, ["P1"])["failed"].tolist() == [False]


def test_accesses_with_no_patient_access_at_all():
    ctx = make_ctx([ev("u1", None, "2025-07-22 10:00", "login")], window=DAY, users=STAFF)
    acc = S._accesses(ctx, ["P1"])
    assert acc.empty
    assert list(acc.columns) == ["event_id", "user_id", "patient_id", "ts", "in_window",
                                 "explained", "explanation", "action", "failed"]


def test_accesses_of_a_one_row_log():
    ctx = make_ctx([ev("u1", "P1", "2025-07-22 10:00", event_id="a")], window=DAY)
    assert S._accesses(ctx, ["P1"])["event_id"].tolist() == ["a"]


def test_an_engine_without_details_gives_no_explanations_evidence():
    ctx = make_ctx([ev("u1", "V1", "2025-07-22 10:00", event_id="a")], window=DAY,
                   users=STAFF, patients=VIP)
    e = ctx.events
    ctx.memo["explain"] = pd.DataFrame({
        "event_id": e["event_id"], "user_id": e["user_id"], "patient_id": e["patient_id"],
        "ts": e["ts"], "in_window": e["in_window"], "explained": np.zeros(len(e), bool),
        "explanation": ""})
    (r,) = rows(run("snoop.vip", ctx))
    assert "explanations" not in r["evidence"] and r["event_ids"] == ["a"]


def test_accesses_for_pairs_carry_the_pairs_columns():
    acc = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "patient_id": ["P1", "P2", "P1"],
                        "event_id": ["a", "b", "c"]}, index=[10, 11, 12]).astype(
        {"user_id": "string", "patient_id": "string"})
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "patient_id": ["P1", "P1", "P9"],
                          "relation": ["x", "y", "z"]})
    m = S._for_pairs(acc, pairs)
    assert m.index.tolist() == [10]
    assert m[["event_id", "relation"]].values.tolist() == [["a", "x"]]
    none = S._for_pairs(acc, pairs.iloc[0:0])
    assert none.empty and "relation" in none.columns
    # no pair: the accesses' own columns keep their types
    assert none[["user_id", "patient_id"]].dtypes.astype(str).tolist() == ["string", "string"]
    none = S._for_pairs(acc.iloc[0:0], pairs)
    assert none.empty and "relation" in none.columns and "user_id" in none.columns


def test_group_findings_with_nothing_in_the_window_is_empty():
    pats = VIP
    assert snoop("snoop.vip", [ev("u1", "V1", "2025-07-21 10:00")], pats).empty
    assert snoop("snoop.self", [ev("u2", "P_SELF", "2025-07-21 10:00")],
                 [{"patient_id": "P_SELF"}]).empty
