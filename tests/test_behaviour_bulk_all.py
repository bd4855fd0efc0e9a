"""bulk.off_hours and bulk.volume findings as data, and the helpers other detectors share
(issue 23, from every surviving mutant of bulk.py).

What a finding must say for small hand-made frames: its message arguments and evidence
(thresholds to two places, the explained share to three, the role, the department, outputs),
the message of a day or burst of the user's own patients and its raised threshold at the
explained share's edge, the severity at twice the threshold, which events a burst holds (not
another user's, not events after it or exactly one window before it, a look again exactly
one window later), two bursts of a user kept apart and one long burst kept whole, the counted
actions, the duty basis (roster, inferred, office hours), own baselines with days at work
without patients, peer groups of role + department (and of a role without a department), the
population's daily measures and days at work, and a user-day or burst skipped without hiding
the next. The shared helpers: distinct patients at each event and at each window end against
a direct count, the episodes' empty shape, an event assigned to an episode, patient events
per action set, in-window from the times, explanation flags, per-user patient-days, days of
activity, user information.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from test_detect_bulk import burst, stub_explain

from emraudit.detectors.bulk import (assign_episodes, distinct_at_events, episodes,
                                     explained_flags, in_window, patient_days, patient_events,
                                     sliding_distinct, user_day_activity, user_info)
from emraudit.detectors.registry import all_detectors

DAY = ("2025-07-22", "2025-07-23")            # a Tuesday, Asia/Shanghai
D22 = (date(2025, 7, 22) - date(1970, 1, 1)).days   # its local day code
D21 = D22 - 1
MIN = 60 * 10**9


def ids(rows):
    return [r["event_id"] for r in rows]


def volume(rows, explained=(), window=DAY, **kw):
    params = kw.pop("params", {})
    ctx = stub_explain(make_ctx(rows, window=window, **kw), explained=explained)
    return run("bulk.volume", ctx, **params)


def off_hours(rows, explained=(), window=DAY, **kw):
    params = kw.pop("params", {})
    ctx = stub_explain(make_ctx(rows, window=window, **kw), explained=explained)
    return run("bulk.off_hours", ctx, **params)


NURSES = [{"user_id": "u1", "role": "nurse", "department": "ICU"},
          {"user_id": "p1", "role": "nurse", "department": "ICU"}]


def own_and_peer_history():
    """u1: 3..12 patients a day on 10 days; p1 (a peer): 7 and 9 patients on two days."""
    rows = []
    for d, n in zip(range(12, 22), range(3, 13)):
        rows += burst("u1", n, start=f"2025-07-{d:02d} 09:00", step_min=5, prefix=f"h{d}_")
    rows += burst("p1", 7, start="2025-07-15 09:00", prefix="q")
    rows += burst("p1", 9, start="2025-07-16 09:00", prefix="r")
    return rows


# --- bulk.volume: what a finding says --------------------------------------------------------

def test_volume_finding_says_what_was_opened_and_against_which_thresholds():
    today = burst("u1", 31, start="2025-07-22 09:00", step_min=5)
    today[5]["action"] = "print"
    again = ev("u1", "b0", "2025-07-22 12:00")               # a second look: one more event
    rows = own_and_peer_history() + today + [again]
    f = volume(rows, explained=ids(today[:3]), users=NURSES)
    assert len(f) == 1
    r = f.iloc[0]
    assert (r["user_id"], r["patient_id"], r["severity"]) == ("u1", "", "medium")
    assert r["event_ids"] == sorted(ids(today + [again]))
    assert (r["start"], r["end"]) == ("2025-07-22T09:00:00+08:00", "2025-07-22T12:00:00+08:00")
    assert r["message_id"] == "bulk.volume"
    assert r["score"] == 1.033                                # 31 / 30
    # own usual: the 0.95 quantile of 3..12 = 11.55; peers: the 0.99 quantile of 7, 9 = 8.98
    assert r["message_args"] == {"user": "u1", "role": "nurse", "patients": 31,
                                 "day": "2025-07-22", "required": 30, "own": 12, "peer": 9,
                                 "outputs": True}
    assert r["evidence"] == {
        "date": "2025-07-22", "distinct_patients": 31, "events": 32,
        "thresholds": {
            "floor": {"value": 30.0, "unit": "patients_per_day"},
            "own_baseline": {"value": 11.55, "days": 10, "required": 24.0},
            "peer_percentile": {"group": "nurse", "value": 8.98, "required": 14.0},
            "required": 30.0},
        "explained_patient_share": 0.097,                     # 3 / 31, three places
        "outputs": True, "department": "ICU"}


def test_volume_without_outputs_or_staff_list_says_so():
    f = volume(burst("u1", 30, start="2025-07-22 09:00"))
    r = f.iloc[0]
    assert r["message_args"]["outputs"] is False and r["evidence"]["outputs"] is False
    assert r["message_args"]["role"] is None                 # no staff list: no role
    assert r["evidence"]["department"] == ""
    assert r["evidence"]["thresholds"]["peer_percentile"]["group"] == "all"


def test_volume_baselines_are_rounded_to_two_places():
    # quantiles 0.901: own 3 + 0.109 x 1 (10 days 3..12) -> 11.109; peers 7 + 0.901 x 2 = 8.802
    f = volume(own_and_peer_history() + burst("u1", 31, start="2025-07-22 09:00"),
               users=NURSES, params={"own_quantile": 0.901, "peer_quantile": 0.901})
    th = f.iloc[0]["evidence"]["thresholds"]
    assert th["own_baseline"]["value"] == 11.11
    assert th["peer_percentile"]["value"] == 8.8
    assert f.iloc[0]["message_args"]["own"] == 11 and f.iloc[0]["message_args"]["peer"] == 9


def test_volume_day_of_own_patients_at_the_explained_share_names_the_raised_threshold():
    # 57 of 60 patients explained: exactly the default share 0.95, so the threshold doubles
    # to 60, which 60 patients meet: twice the floor is high even for own patients
    rows = burst("u1", 60, start="2025-07-22 08:00", step_min=3)
    f = volume(rows, explained=ids(rows[:57]), users=NURSES)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["message_id"] == "bulk.volume.own_patients"
    assert r["severity"] == "high" and r["score"] == 2.0
    assert r["message_args"]["required"] == 60
    assert r["evidence"]["thresholds"]["explained_required"] == 60.0
    assert r["evidence"]["explained_patient_share"] == 0.95


@pytest.mark.parametrize("n,severity", [(59, "low"), (60, "high")])
def test_volume_half_own_patients_is_low_below_twice_the_threshold_only(n, severity):
    rows = burst("u1", n, start="2025-07-22 08:00", step_min=3)
    f = volume(rows, explained=ids(rows[:30]))
    assert f["severity"].tolist() == [severity]
    assert f.iloc[0]["message_id"] == "bulk.volume"


def test_volume_counts_only_the_configured_actions():
    rows = burst("u1", 20, start="2025-07-22 09:00") + \
        burst("u1", 12, start="2025-07-22 10:00", prefix="c", action="print")
    assert len(volume(rows)) == 1                             # 32 patients in all
    assert volume(rows, params={"actions": ["print"]}).empty  # 12 printed
    f = volume(rows, params={"actions": ["view"], "min_patients": 20})
    assert f.iloc[0]["evidence"]["distinct_patients"] == 20
    assert f.iloc[0]["event_ids"] == sorted(ids(rows[:20]))


def test_volume_peers_of_a_role_and_department_group_set_the_threshold():
    # four ICU nurses and u1: five active users, the fewest for a group of its own
    users = [{"user_id": f"p{i}", "role": "nurse", "department": "ICU"} for i in range(4)]
    users.append({"user_id": "u1", "role": "nurse", "department": "ICU"})
    users.append({"user_id": "x1", "role": "nurse", "department": "ER"})
    rows = []
    for i in range(4):
        rows += burst(f"p{i}", 25, start="2025-07-15 09:00", prefix=f"q{i}_")
    rows += burst("x1", 60, start="2025-07-16 09:00", prefix="x")   # another department
    rows += burst("u1", 38, start="2025-07-22 09:00")
    f = volume(rows, users=users)
    assert len(f) == 1
    peer = f.iloc[0]["evidence"]["thresholds"]["peer_percentile"]
    assert peer == {"group": "nurse|ICU", "value": 25.0, "required": 38.0}
    rows[-1]["patient_id"] = "b0"                            # 37 patients: under 1.5 x 25 + 1
    assert volume(rows, users=users).empty
    # one ICU nurse fewer: u1 is compared with every nurse, the ER nurse's 60 included
    rows[-1]["patient_id"] = "b37"
    f = volume([r for r in rows if r["user_id"] != "p3"], users=users)
    assert f.empty


def test_volume_users_of_a_role_without_a_department_are_a_group_when_enough():
    users = [{"user_id": f"n{i}", "role": "nurse"} for i in range(4)]
    users += [{"user_id": "u1", "role": "nurse"},
              {"user_id": "x1", "role": "nurse", "department": "ICU"}]
    rows = []
    for i in range(4):
        rows += burst(f"n{i}", 25, start="2025-07-15 09:00", prefix=f"q{i}_")
    rows += burst("x1", 60, start="2025-07-16 09:00", prefix="x")   # not one of them
    rows += burst("u1", 38, start="2025-07-22 09:00")
    f = volume(rows, users=users)
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["thresholds"]["peer_percentile"] == {
        "group": "nurse|", "value": 25.0, "required": 38.0}


def test_volume_peers_daily_measures_from_the_population_set_the_threshold():
    rows = burst("u1", 40, start="2025-07-22 09:00")
    ctx = stub_explain(make_ctx(rows, window=DAY))
    assert len(run("bulk.volume", ctx)) == 1
    # in a partitioned scan another partition's user opened 100 patients on one day
    ctx = stub_explain(make_ctx(rows, window=DAY))
    ctx.population["daily:bulk.volume"] = pd.DataFrame(
        {"user_id": ["u9"], "day": [D21], "value": [100.0]})
    ctx.population["user_day_activity"] = pd.DataFrame(
        {"user_id": ["u1", "u9"], "day": [D22, D21]})
    assert run("bulk.volume", ctx).empty                      # 40 < 1.5 x 100 + 1


# two accounts who are not each other's peers
TWO_ROLES = [{"user_id": "a1", "role": "nurse"}, {"user_id": "b1", "role": "physician"}]


def test_volume_day_skipped_for_own_patients_does_not_hide_the_next_user():
    a = burst("a1", 30, start="2025-07-22 09:00", prefix="a")   # all own patients: skipped
    b = burst("b1", 30, start="2025-07-22 09:00", prefix="b")
    f = volume(a + b, explained=ids(a), users=TWO_ROLES)
    assert f["user_id"].tolist() == ["b1"]


def test_volume_user_day_wholly_in_the_look_back_does_not_hide_the_next_user():
    # the window starts at noon: a1's morning is look-back, b1's afternoon is in the window
    a = burst("a1", 30, start="2025-07-22 09:00", prefix="a")
    b = burst("b1", 30, start="2025-07-22 13:00", prefix="b")
    f = volume(a + b, window=("2025-07-22 12:00", "2025-07-23"), users=TWO_ROLES)
    assert f["user_id"].tolist() == ["b1"]


def test_volume_user_active_only_the_day_before_does_not_break_the_count():
    # the second account's only day is the first of the two: the day table is not full
    rows = burst("u1", 5, start="2025-07-21 09:00", prefix="y") + \
        burst("u2", 3, start="2025-07-21 10:00", prefix="z") + \
        burst("u1", 30, start="2025-07-22 09:00")
    f = volume(rows)
    assert f["user_id"].tolist() == ["u1"]
    assert f.iloc[0]["evidence"]["distinct_patients"] == 30


def test_volume_own_baseline_counts_days_at_work_without_patients_as_zero():
    # 15 days with only a login, 5 days of 40 patients: the median day is 0, not 40
    rows = [ev("u1", None, f"2025-07-{d:02d} 08:00", "login") for d in range(2, 22)]
    for d in range(17, 22):
        rows += burst("u1", 40, start=f"2025-07-{d:02d} 09:00", prefix=f"h{d}_")
    rows += burst("u1", 45, start="2025-07-22 09:00")
    f = volume(rows, params={"own_quantile": 0.5})
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["thresholds"]["own_baseline"] == {"value": 0.0, "days": 20,
                                                                   "required": 1.0}


def test_volume_peers_days_at_work_from_the_population_count_as_zero():
    # another partition's u9 opened 40 patients on one of 20 days at work: the median is 0
    rows = burst("u1", 40, start="2025-07-22 09:00")
    ctx = stub_explain(make_ctx(rows, window=DAY))
    ctx.population["daily:bulk.volume"] = pd.DataFrame(
        {"user_id": ["u1", "u9"], "day": [D22, D21], "value": [40.0, 40.0]})
    ctx.population["user_day_activity"] = pd.DataFrame(
        {"user_id": ["u1"] + ["u9"] * 20, "day": [D22] + list(range(D21 - 19, D21 + 1))})
    f = run("bulk.volume", ctx, peer_quantile=0.5)
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["thresholds"]["peer_percentile"] == {
        "group": "all", "value": 0.0, "required": 1.0}


def test_user_day_activity_is_each_users_days_with_any_event():
    rows = [ev("u1", "p1", "2025-07-21 09:00"), ev("u2", None, "2025-07-21 23:59", "login"),
            ev("u1", "p2", "2025-07-22 00:30"), ev("u1", "p3", "2025-07-22 10:00"),
            ev("u3", "p1", "2025-07-22 11:00", outcome="failure")]
    act = user_day_activity(make_ctx(rows, window=DAY))
    assert sorted(map(tuple, act[["user_id", "day"]].values.tolist())) == [
        ("u1", D21), ("u1", D22), ("u2", D21), ("u3", D22)]
    act = user_day_activity(make_ctx(rows[:1], window=DAY))
    assert act[["user_id", "day"]].values.tolist() == [["u1", D21]]
    act = user_day_activity(make_ctx([], window=DAY))
    assert act.empty and list(act.columns) == ["user_id", "day"]


# --- bulk.volume's population part and patient-days ------------------------------------------

def test_volume_population_part_is_each_user_days_distinct_patients():
    rows = burst("u1", 5, start="2025-07-21 23:00", step_min=20) + \
        burst("u2", 2, start="2025-07-22 09:00", prefix="z", action="print") + \
        [ev("u3", None, "2025-07-22 09:00", "login")]
    ctx = make_ctx(rows, window=DAY)
    part = all_detectors()["bulk.volume"]().population_part(ctx)
    assert list(part) == ["daily:bulk.volume"]
    daily = part["daily:bulk.volume"]
    assert daily[["user_id", "day", "value"]].values.tolist() == [
        ["u1", D21, 3.0], ["u1", D22, 2.0], ["u2", D22, 2.0]]
    # with only prints counted
    det = all_detectors()["bulk.volume"](actions=["print"])
    daily = det.population_part(make_ctx(rows, window=DAY))["daily:bulk.volume"]
    assert daily[["user_id", "day", "value"]].values.tolist() == [["u2", D22, 2.0]]


def test_off_hours_population_part_of_a_single_off_duty_look():
    ctx = make_ctx([ev("u1", "p1", "2025-07-22 03:00"), ev("u1", "p2", "2025-07-22 10:00")],
                   window=DAY)
    daily = all_detectors()["bulk.off_hours"]().population_part(ctx)["daily:bulk.off_hours"]
    assert daily[["user_id", "day", "value"]].values.tolist() == [["u1", D22, 1]]


def test_population_parts_without_patient_accesses_are_empty():
    ctx = make_ctx([ev("u3", None, "2025-07-22 03:00", "login")], window=DAY)
    for det_id in ("bulk.volume", "bulk.off_hours"):
        daily = all_detectors()[det_id]().population_part(ctx)[f"daily:{det_id}"]
        assert daily.empty
    pdays = patient_days(ctx)
    assert pdays["daily"].empty and pdays["per_user"].empty


def test_patient_days_per_user_and_per_action_set():
    rows = [ev("u1", "p1", "2025-07-21 09:00"), ev("u1", "p1", "2025-07-21 10:00"),
            ev("u1", "p2", "2025-07-21 11:00", "print"), ev("u1", "p1", "2025-07-22 09:00"),
            ev("u2", "p1", "2025-07-22 09:00", "print")]
    ctx = make_ctx(rows, window=DAY)
    every = patient_days(ctx)
    assert every["per_user"].to_dict() == {"u1": 3, "u2": 1}   # (p1, p2) on 21, p1 on 22
    prints = patient_days(ctx, ("print",))
    assert prints["per_user"].to_dict() == {"u1": 1, "u2": 1}
    # asked again, each action set gets its own answer
    assert patient_days(ctx)["per_user"].to_dict() == {"u1": 3, "u2": 1}
    assert patient_days(ctx, ("print",))["daily"]["value"].tolist() == [1.0, 1.0]


# --- bulk.off_hours: what a finding says -----------------------------------------------------

def test_off_hours_population_part_is_each_user_days_largest_off_duty_window():
    rows = burst("u1", 4, start="2025-07-21 02:00") + burst("u1", 3, start="2025-07-22 03:00",
                                                            prefix="c") + \
        [ev("u1", "d0", "2025-07-22 10:00")]                 # office hours: on duty
    ctx = make_ctx(rows, window=DAY)
    part = all_detectors()["bulk.off_hours"]().population_part(ctx)
    assert list(part) == ["daily:bulk.off_hours"]
    daily = part["daily:bulk.off_hours"]
    assert daily[["user_id", "day", "value"]].values.tolist() == [["u1", D21, 4],
                                                                   ["u1", D22, 3]]


def test_off_hours_finding_says_what_was_opened_when_and_on_what_duty_basis():
    users = [{"user_id": "d1", "role": "nurse", "department": "ICU"}]
    hist = [ev("d1", p, f"2025-07-{d:02d} {h:02d}:10") for d in range(10, 20)
            for h in (9, 11, 14, 16) for p in ("h1", "h2")]
    b = burst("d1", 12, start="2025-07-22 02:00", step_min=2)   # peak 12 at 02:22
    b[3]["action"] = "print"
    late = ev("d1", "c0", "2025-07-22 03:03")   # (02:03, 03:03] still holds 11 patients
    f = off_hours(hist + b + [late], explained=ids(b[:2]), users=users,
                  params={"min_patients": 11})
    assert len(f) == 1
    r = f.iloc[0]
    assert (r["user_id"], r["patient_id"], r["severity"], r["rectification_item"]) == \
        ("d1", "", "high", "8")                               # a print: item 8
    assert r["event_ids"] == sorted(ids(b + [late]))
    assert (r["start"], r["end"]) == ("2025-07-22T02:00:00+08:00", "2025-07-22T03:03:00+08:00")
    assert r["message_id"] == "bulk.off_hours"
    assert r["score"] == 1.091                                # 12 / 11, three places
    assert r["message_args"] == {"user": "d1", "role": "nurse", "peak": 12, "minutes": 60,
                                 "basis": "inferred", "patients": 13, "required": 11,
                                 "outputs": True}
    assert r["evidence"] == {
        "window_minutes": 60, "peak_distinct_patients": 12,
        "peak_window_end": "2025-07-22T02:22:00+08:00",
        "distinct_patients": 13, "events": 13,
        "duty": {"basis": "inferred",
                 "inferred": {"active_days": 11, "duty_hours": list(range(8, 18))}},
        "thresholds": {
            "floor": {"value": 11.0, "unit": "patients"},
            "own_baseline": {"value": 0.0, "days": 10, "required": 1.0},
            "peer_percentile": {"group": "nurse", "value": 0.0, "required": 1.0},
            "required": 11.0},
        "explained_patient_share": 0.154,                     # 2 / 13, three places
        "outputs": True, "department": "ICU"}


def test_off_hours_without_history_names_the_office_hours_and_no_role():
    login = ev("d1", None, "2025-07-22 01:55", "login")     # not a patient access
    f = off_hours([login] + burst("d1", 12, start="2025-07-22 02:00", step_min=2))
    r = f.iloc[0]
    assert (r["severity"], r["rectification_item"]) == ("medium", "9")
    assert r["message_args"]["role"] is None and r["message_args"]["outputs"] is False
    assert r["message_args"]["basis"] == "office_hours"
    e = r["evidence"]
    assert e["duty"] == {"basis": "office_hours", "office_hours": [8, 18],
                         "workdays": [0, 1, 2, 3, 4]}
    assert (e["outputs"], e["department"], e["explained_patient_share"]) == (False, "", 0.0)
    # a new user: no other day for an own baseline; no peers
    assert e["thresholds"]["own_baseline"] == {"value": 0.0, "days": 0, "required": 1.0}
    assert e["thresholds"]["peer_percentile"] == {"group": "all", "value": 0.0,
                                                  "required": 1.0}


def test_off_hours_rostered_user_names_the_roster_only():
    shifts = [{"user_id": "d1", "start": "2025-07-22 08:00", "end": "2025-07-22 17:00"}]
    f = off_hours(burst("d1", 12, start="2025-07-22 02:00", step_min=2), shifts=shifts)
    assert f.iloc[0]["evidence"]["duty"] == {"basis": "roster"}
    assert f.iloc[0]["message_args"]["basis"] == "roster"


def test_off_hours_burst_of_own_patients_at_the_explained_share_names_the_raised_threshold():
    # 19 of 20 patients explained: exactly the default share 0.95, no roster: the threshold
    # doubles to 20, which 20 patients meet; twice the floor is high and item 8
    b = burst("d1", 20, start="2025-07-22 02:00", step_min=2)
    f = off_hours(b, explained=ids(b[:19]))
    assert len(f) == 1
    r = f.iloc[0]
    assert r["message_id"] == "bulk.off_hours.own_patients"
    assert (r["severity"], r["rectification_item"]) == ("high", "8")
    assert r["message_args"]["required"] == 20
    assert r["evidence"]["thresholds"]["explained_required"] == 20.0
    # one patient fewer explained: the usual threshold and message
    f = off_hours(b, explained=ids(b[:18]))
    assert f.iloc[0]["message_id"] == "bulk.off_hours"
    assert f.iloc[0]["message_args"]["required"] == 10


def test_off_hours_counts_only_the_configured_actions():
    b = burst("d1", 12, start="2025-07-22 02:00", step_min=2)
    assert len(off_hours(b)) == 1
    assert off_hours(b, params={"actions": ["print", "export"]}).empty
    for e in b[:10]:
        e["action"] = "print"
    f = off_hours(b, params={"actions": ["print", "export"]})
    assert f.iloc[0]["event_ids"] == sorted(ids(b[:10]))


def test_off_hours_patients_seen_again_count_once():
    # 6 patients each opened twice within the hour: 12 looks, 6 patients, under the floor
    b = burst("d1", 6, start="2025-07-22 02:00", step_min=2)
    again = burst("d1", 6, start="2025-07-22 02:30", step_min=2)
    assert off_hours(b + again).empty
    # 10 patients, 9 of them opened again before the last: the peak is 10, 19 looks
    b = burst("d1", 10, start="2025-07-22 02:00", step_min=2)
    again = burst("d1", 9, start="2025-07-22 02:01", step_min=2)
    f = off_hours(b + again)
    assert f.iloc[0]["evidence"]["peak_distinct_patients"] == 10
    assert f.iloc[0]["evidence"]["events"] == 19
    assert f.iloc[0]["event_ids"] == sorted(ids(b + again))


def test_off_hours_peers_daily_maxima_from_the_population_set_the_threshold():
    b = burst("d1", 12, start="2025-07-22 02:00", step_min=2)
    assert len(off_hours(b)) == 1
    ctx = stub_explain(make_ctx(b, window=DAY))
    ctx.population["daily:bulk.off_hours"] = pd.DataFrame(
        {"user_id": ["d1", "u9"], "day": [D22, D21], "value": [12, 40]})
    ctx.population["user_day_activity"] = pd.DataFrame({"user_id": ["d1", "u9"],
                                                         "day": [D22, D21]})
    assert run("bulk.off_hours", ctx).empty                   # 12 < 40 + 1


@pytest.mark.parametrize("roster,printed,severity", [
    (False, False, "low"),      # half own patients, no roster: maybe unrostered work
    (True, False, "medium"),    # a roster says off duty: not lowered
    (False, True, "high"),      # a print: item 8 and high all the same
])
def test_off_hours_half_own_patients_lowers_only_an_unrostered_burst_without_outputs(
        roster, printed, severity):
    b = burst("d1", 12, start="2025-07-22 02:00", step_min=2)
    if printed:
        b[7]["action"] = "print"
    shifts = ([{"user_id": "d1", "start": "2025-07-22 08:00", "end": "2025-07-22 17:00"}]
              if roster else None)
    f = off_hours(b, explained=ids(b[:6]), shifts=shifts)
    assert f["severity"].tolist() == [severity]
    assert f.iloc[0]["evidence"]["explained_patient_share"] == 0.5


def test_off_hours_burst_judged_partly_by_the_roster_names_the_roster():
    # the roster (one shift the next day) covers from 08:00 today: the burst's first events
    # are judged by office hours, its last by the roster; the roster is named
    shifts = [{"user_id": "d1", "start": "2025-07-23 08:00", "end": "2025-07-23 17:00"}]
    b = burst("d1", 12, start="2025-07-22 07:38", step_min=2)
    f = off_hours(b, shifts=shifts)
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["duty"] == {"basis": "roster"}


# --- bulk.off_hours: which events a burst holds ----------------------------------------------

def test_a_burst_longer_than_the_window_is_one_finding_with_all_its_events():
    # 30 patients 4 minutes apart: 15 in every hour from 00:56 to 03:56
    b = burst("d1", 30, start="2025-07-22 02:00", step_min=4)
    f = off_hours(b)
    assert len(f) == 1
    assert f.iloc[0]["event_ids"] == sorted(ids(b))
    assert f.iloc[0]["evidence"]["peak_distinct_patients"] == 15
    # the same when another account's short burst comes first
    a = burst("d0", 12, start="2025-07-22 01:00", step_min=2, prefix="a")
    f = off_hours(a + b, users=[{"user_id": "d0", "role": "clerk"},
                                {"user_id": "d1", "role": "nurse"}])
    assert f["event_ids"].tolist() == [sorted(ids(a)), sorted(ids(b))]


def test_two_bursts_of_a_user_hours_apart_are_two_findings():
    a = burst("d1", 12, start="2025-07-22 01:00", step_min=2, prefix="a")
    b = burst("d1", 12, start="2025-07-22 04:00", step_min=2, prefix="b")
    f = off_hours(a + b)
    assert [len(e) for e in f["event_ids"]] == [12, 12]
    assert f["event_ids"].tolist() == [sorted(ids(a)), sorted(ids(b))]
    # the first of own patients only (under the raised threshold) does not hide the second
    f = off_hours(a + b, explained=ids(a))
    assert f["event_ids"].tolist() == [sorted(ids(b))]
    # nor does the first in the look-back
    f = off_hours(a + b, window=("2025-07-22 03:00", "2025-07-23"))
    assert f["event_ids"].tolist() == [sorted(ids(b))]


@pytest.mark.parametrize("second,findings", [("2025-07-22 02:00:00", [20]),
                                              ("2025-07-22 02:00:01", [10, 10])])
def test_bursts_whose_windows_touch_are_one_incident(second, findings):
    # windows (00:00, 01:00] and (01:00, 02:00] share no event but touch: one incident; a
    # second later they are two (the episodes' chaining is "at most a window apart")
    a = burst("d1", 10, start="2025-07-22 01:00", step_min=0, prefix="a")
    b = burst("d1", 10, start=second, step_min=0, prefix="b")
    f = off_hours(a + b, params={"window_minutes": 60})
    assert [len(e) for e in f["event_ids"]] == findings


def test_a_burst_under_one_users_baseline_does_not_hide_anothers():
    # d1 opens 10 patients every night: own usual 10, so 12 is under 3 x 10 + 1
    hist = []
    for d in range(17, 22):
        hist += burst("d1", 10, start=f"2025-07-{d:02d} 02:00", step_min=2, prefix=f"h{d}_")
    a = burst("d1", 12, start="2025-07-22 02:00", step_min=2, prefix="a")
    b = burst("d2", 12, start="2025-07-22 02:05", step_min=2, prefix="b")
    f = off_hours(hist + a + b, users=TWO_NURSES)
    assert f["event_ids"].tolist() == [sorted(ids(b))]


def test_two_users_bursts_at_the_same_time_are_theirs_alone():
    a = burst("d1", 12, start="2025-07-22 02:00", step_min=2, prefix="a")
    b = burst("d2", 15, start="2025-07-22 02:01", step_min=2, prefix="b")
    small = burst("d3", 3, start="2025-07-22 02:05", prefix="c")   # not a burst
    f = off_hours(a + b + small, users=TWO_NURSES)
    assert f["user_id"].tolist() == ["d1", "d2"]
    assert f["event_ids"].tolist() == [sorted(ids(a)), sorted(ids(b))]
    assert [e["peak_distinct_patients"] for e in f["evidence"]] == [12, 15]


# d1 and d2 are not each other's peers: each burst is judged on the floor alone
TWO_NURSES = [{"user_id": "d1", "role": "nurse"}, {"user_id": "d2", "role": "physician"},
              {"user_id": "d3", "role": "clerk"}]


def test_an_event_after_the_burst_is_not_part_of_it():
    b = burst("d1", 12, start="2025-07-22 02:00", step_min=2)
    later = ev("d1", "z0", "2025-07-22 03:30")        # over an hour after the last window
    f = off_hours(b + [later])
    assert f["event_ids"].tolist() == [sorted(ids(b))]


def test_an_event_exactly_one_window_before_the_first_flagged_window_is_not_part_of_it():
    # ten patients at 02:00 flag the window (01:00, 02:00]; the look at 01:00 is outside it
    before = ev("d1", "x", "2025-07-22 01:00")
    b = burst("d1", 10, start="2025-07-22 02:00", step_min=0)
    f = off_hours([before] + b)
    assert f["event_ids"].tolist() == [sorted(ids(b))]
    # a second earlier it is inside, and makes the window hold 11
    before = ev("d1", "x", "2025-07-22 01:00:01")
    f = off_hours([before] + b)
    assert f["event_ids"].tolist() == [sorted(ids([before] + b))]
    assert f.iloc[0]["evidence"]["peak_distinct_patients"] == 11


# --- the shared helpers ----------------------------------------------------------------------

def direct_distinct(u, p, t, w):
    return np.array([len({p[j] for j in range(len(u)) if u[j] == u[i] and
                          t[i] - w < t[j] <= t[i]}) for i in range(len(u))])


@pytest.mark.parametrize("case", [
    # one user, one patient seen again inside, exactly at and beyond the window
    ([0, 0, 0, 0], [5, 5, 5, 5], [0, 4, 14, 30]),
    # interleaved patients and users, out of time order, simultaneous events
    ([0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1], [5, 5, 6, 5, 7, 5, 5, 6, 8, 5, 7],
     [0, 10, 3, 20, 12, 25, 30, 13, 31, 29, 31]),
    # a user's runs of one patient followed by others; the last run a single event
    ([2, 1, 2, 1, 2, 2, 1], [1, 1, 1, 2, 3, 1, 9], [0, 1, 2, 3, 8, 9, 40]),
    # a patient seen three times who is not the first patient
    ([0, 0, 0, 0], [1, 2, 2, 2], [0, 1, 3, 5]),
])
def test_distinct_patients_at_each_event_equal_a_direct_count(case):
    u, p, t = (np.array(x, dtype=np.int64) for x in case)
    got = distinct_at_events(u, p, t, 10)
    assert got.tolist() == direct_distinct(u, p, t, 10).tolist()
    assert np.issubdtype(got.dtype, np.integer)


@pytest.mark.parametrize("case", [
    ([0, 0, 0, 0], [5, 5, 5, 5], [0, 4, 14, 30]),
    ([0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1], [5, 5, 6, 5, 7, 5, 5, 6, 8, 5, 7],
     [0, 10, 3, 20, 12, 25, 30, 13, 31, 29, 31]),
    ([2, 1, 2, 1, 2, 2, 1], [1, 1, 1, 2, 3, 1, 9], [0, 1, 2, 3, 8, 9, 40]),
])
def test_window_ends_hold_the_distinct_patients_of_a_direct_count(case):
    u, p, t = (np.array(x, dtype=np.int64) for x in case)
    pts = sliding_distinct(u, p, t, 10)
    assert np.issubdtype(pts["n"].dtype, np.integer)
    # the largest count at each window end is the direct count there ...
    got = pts.groupby(["u", "t"])["n"].max()
    for (uu, tt), n in got.items():
        assert n == len({p[j] for j in range(len(u)) if u[j] == uu and tt - 10 < t[j] <= tt})
    # ... and every user's busiest window is found
    direct = direct_distinct(u, p, t, 10)
    for uu in set(u.tolist()):
        assert pts.loc[pts["u"] == uu, "n"].max() == direct[u == uu].max()


def test_distinct_patients_of_no_events_is_no_counts():
    none = np.array([], dtype=np.int64)
    got = distinct_at_events(none, none, none, 10)
    assert len(got) == 0 and np.issubdtype(got.dtype, np.integer)


def test_no_flagged_windows_make_no_episodes():
    eps = episodes(pd.DataFrame({"u": [], "t": [], "n": []}), 10)
    assert eps.empty and list(eps.columns) == ["u", "lo", "hi", "peak", "peak_t"]
    assert assign_episodes(np.array([0]), np.array([5]), eps).tolist() == [-1]


def test_a_single_event_inside_an_episode_is_assigned_to_it():
    eps = episodes(pd.DataFrame({"u": [3], "t": [100], "n": [1]}), 10)
    assert eps.values.tolist() == [[3, 90, 100, 1, 100]]
    assert assign_episodes(np.array([3]), np.array([95]), eps).tolist() == [0]
    assert assign_episodes(np.array([3]), np.array([90]), eps).tolist() == [-1]   # lo excluded
    assert assign_episodes(np.array([4]), np.array([95]), eps).tolist() == [-1]   # another user


def test_user_info_gives_each_users_role_department_ward_and_name():
    users = [{"user_id": "u1", "role": "nurse", "department": "ICU", "ward": "W3",
              "name": "张三"}]
    ctx = make_ctx([ev("u1", "p1", "2025-07-22 10:00")], window=DAY, users=users)
    info = user_info(ctx, ["u1", "u2", None, "u1"])
    assert info.index.tolist() == ["u1", "u2"]
    assert info.loc["u1"].to_dict() == {"role": "nurse", "department": "ICU", "ward": "W3",
                                        "name": "张三"}
    assert info.loc["u2"].to_dict() == {"role": "", "department": "", "ward": "", "name": ""}
    # without a staff list every field is blank
    ctx = make_ctx([ev("u1", "p1", "2025-07-22 10:00")], window=DAY)
    assert user_info(ctx, ["u1"]).loc["u1"].to_dict() == {"role": "", "department": "",
                                                          "ward": "", "name": ""}


def test_explained_flags_are_the_engines_verdicts_on_the_events_asked_about():
    rows = [ev("u1", f"p{i}", f"2025-07-22 10:0{i}") for i in range(4)]
    rows.append(ev("u1", None, "2025-07-22 10:05", "login"))   # no verdict: not a patient's
    ctx = stub_explain(make_ctx(rows, window=DAY), explained=[rows[1]["event_id"]])
    some = ctx.events.iloc[[1, 3, 4]]
    flag, why = explained_flags(ctx, some)
    assert flag.index.tolist() == why.index.tolist() == [1, 3, 4]
    assert flag.tolist() == [True, False, False]
    assert why.tolist() == ["own_relation", "", ""]
    # nothing explained at all (an engine without rows): not explained, no reason
    ctx.memo["explain"] = ctx.memo["explain"].iloc[0:0]
    flag, why = explained_flags(ctx, some)
    assert flag.index.tolist() == why.index.tolist() == [1, 3, 4]
    assert flag.tolist() == [False] * 3 and why.tolist() == [""] * 3
    # a single access, explained
    ctx = stub_explain(make_ctx(rows[:1], window=DAY), explained=[rows[0]["event_id"]])
    flag, why = explained_flags(ctx, ctx.events)
    assert flag.tolist() == [True] and why.tolist() == ["own_relation"]


def test_patient_events_are_the_counted_actions_on_a_patient_by_a_user():
    rows = [ev("u1", "p1", "2025-07-22 10:00"),
            ev("u1", "p1", "2025-07-22 10:01", "print"),
            ev("u1", None, "2025-07-22 10:02", "login"),
            ev("u1", "p2", "2025-07-22 10:03", outcome="failure"),
            ev("u1", "p3", "2025-07-22 10:04", "print", outcome="failure")]
    ctx = make_ctx(rows, window=DAY)
    assert patient_events(ctx)["event_id"].tolist() == ids(rows[:2])
    assert patient_events(ctx, ("print",))["event_id"].tolist() == ids(rows[1:2])
    # failures on request, for each action set on its own
    assert patient_events(ctx, ("print",), successful=False)["event_id"].tolist() == \
        [rows[1]["event_id"], rows[4]["event_id"]]
    assert patient_events(ctx, successful=False)["event_id"].tolist() == \
        ids(rows[:2]) + ids(rows[3:])
    assert patient_events(ctx)["event_id"].tolist() == ids(rows[:2])


def test_in_window_from_the_times_when_events_do_not_say():
    rows = [ev("u1", "p1", "2025-07-21 23:59:59"), ev("u1", "p1", "2025-07-22 00:00"),
            ev("u1", "p1", "2025-07-22 23:59:59"), ev("u1", "p1", "2025-07-23 00:00")]
    ctx = make_ctx(rows, window=DAY)
    assert in_window(ctx, ctx.events).tolist() == [False, True, True, False]
    bare = ctx.events.drop(columns=["in_window"])
    assert in_window(ctx, bare).tolist() == [False, True, True, False]


def test_a_patient_opened_again_exactly_one_window_later_ends_a_window_of_the_burst():
    # x at 02:00, ten others 02:01-02:10, x again at 03:00: the window (02:00, 03:00] holds
    # eleven patients, so the second look at x is part of the burst
    x1 = ev("d1", "x", "2025-07-22 02:00")
    b = burst("d1", 10, start="2025-07-22 02:01", step_min=1)
    x2 = ev("d1", "x", "2025-07-22 03:00")
    f = off_hours([x1] + b + [x2])
    assert f["event_ids"].tolist() == [sorted(ids([x1] + b + [x2]))]
    assert f.iloc[0]["end"] == "2025-07-22T03:00:00+08:00"
