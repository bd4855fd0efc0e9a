"""cred.* detectors at their edges: interleaving windows, shared hosts, travel times, roster
blocks, end dates, dormancy, acting persons, expired access."""

from __future__ import annotations

import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors.registry import all_detectors

W = ("2025-07-07", "2025-07-14")
WS = [{"workstation": "A1", "ip": "10.1.1.11", "department": "心内科", "campus": "本部",
       "location": "心内科一病区护士站"},
      {"workstation": "A2", "ip": "10.1.1.12", "department": "心内科", "campus": "本部",
       "location": "心内科医生办"},
      {"workstation": "B1", "ip": "10.1.2.11", "department": "骨科", "campus": "本部",
       "location": "骨科病区护士站"},
      {"workstation": "E1", "ip": "10.2.1.11", "department": "骨科", "campus": "东院",
       "location": "东院骨科"},
      {"workstation": "OR1", "ip": "10.1.9.11", "department": "手术室", "campus": "本部",
       "location": "手术室3"},
      {"workstation": "VDI-01", "ip": "10.9.0.5", "department": "信息科", "campus": "本部",
       "location": "机房"}]


def at(user, ts, ws, action="view", patient="p1", **kw):
    ip = next(w["ip"] for w in WS if w["workstation"] == ws)
    return ev(user, patient if action not in ("login", "logout") else None, ts, action,
              workstation=ws, ip=ip, **kw)


def cred(det, events, **kw):
    kw.setdefault("window", W)
    kw.setdefault("workstations", WS)
    over = kw.pop("over", {})
    return run(det, make_ctx(events, **kw), **over)


def test_declarations_are_complete():
    for det_id, cls in all_detectors().items():
        if not det_id.startswith("cred."):
            continue
        d = cls.declaration()
        assert d["item"] == "9" and d["name_zh"] and d["note"] and d["false_positives"]
        assert d["measure_zh"] and d["measure_en"] and d["description"]
        assert all(p["doc"] for p in d["params"]), det_id
    assert {"cred.concurrent_use", "cred.impossible_travel", "cred.off_duty_use",
            "cred.inactive_account", "cred.acting_mismatch",
            "cred.expired_access"} <= set(all_detectors())


# --- concurrent use ------------------------------------------------------------------------

@pytest.mark.parametrize("back,found", [("10:10", True), ("10:10:01", False)])
def test_concurrent_use_across_campuses_within_window(back, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:03", "E1"),
              at("u", f"2025-07-08 {back}", "A1")]
    f = cred("cred.concurrent_use", events)
    assert (len(f) == 1) is found
    if found:
        assert sorted(f["evidence"].iloc[0]["places"]) == ["东院/骨科", "本部/心内科"]
        assert f["event_ids"].iloc[0] == sorted(e["event_id"] for e in events)


@pytest.mark.parametrize("b,back,found", [("10:02", "10:04", True),      # both switches 2 min
                                          ("10:02:01", "10:04", False),  # walkable
                                          ("10:02", "10:04:01", False)])
def test_concurrent_use_same_campus_needs_fast_switches(b, back, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", f"2025-07-08 {b}", "B1"),
              at("u", f"2025-07-08 {back}", "A1")]
    f = cred("cred.concurrent_use", events)
    assert (len(f) == 1) is found
    if found:
        assert sorted(f["evidence"].iloc[0]["places"]) == ["本部/心内科", "本部/骨科"]


def test_two_terminals_of_the_same_department_are_one_place():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "A2"),
              at("u", "2025-07-08 10:02", "A1")]
    assert cred("cred.concurrent_use", events).empty
    f = cred("cred.concurrent_use", events, over={"place_level": "location"})
    assert len(f) == 1


def test_moving_once_is_not_concurrent():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:02", "B1"),
              at("u", "2025-07-08 10:04", "B1")]
    assert cred("cred.concurrent_use", events).empty


def test_shared_vdi_host_excluded():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "VDI-01"),
              at("u", "2025-07-08 10:02", "A1")]
    assert len(cred("cred.concurrent_use", events)) == 1
    assert cred("cred.concurrent_use", events,
                over={"shared_ip_ranges": ["10.9.0.0/24"]}).empty
    assert cred("cred.concurrent_use", events, over={"shared_workstations": ["VDI-*"]}).empty


def test_timed_out_logout_is_not_presence():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "B1"),
              at("u", "2025-07-08 10:02", "A1", "logout")]
    assert cred("cred.concurrent_use", events).empty


def test_without_workstations_table_ip_networks_are_places():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "B1"),
              at("u", "2025-07-08 10:02", "A1")]
    f = cred("cred.concurrent_use", events, workstations=None)
    assert f["evidence"].iloc[0]["places"] == ["net 10.1.1", "net 10.1.2"]


def test_bad_ip_range_is_rejected():
    with pytest.raises(ValueError, match="not an IP range"):
        all_detectors()["cred.concurrent_use"](shared_ip_ranges=["10.9.0.x"])


# --- impossible travel ---------------------------------------------------------------------

@pytest.mark.parametrize("minutes,found", [(29, True), (30, False)])
def test_impossible_travel_threshold(minutes, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", f"2025-07-08 10:{minutes:02d}", "E1")]
    f = cred("cred.impossible_travel", events)
    assert (len(f) == 1) is found
    if found:
        hop = f["evidence"].iloc[0]["hops"][0]
        assert hop["from"] == "本部" and hop["to"] == "东院" and hop["minutes"] == minutes


def test_campus_pair_travel_time():
    events = [at("u", "2025-07-08 10:00", "E1"), at("u", "2025-07-08 10:40", "A1")]
    assert cred("cred.impossible_travel", events).empty
    f = cred("cred.impossible_travel", events, over={"campus_travel_minutes": {"本部|东院": 45}})
    assert len(f) == 1


def test_travel_uses_facility_without_workstations():
    events = [ev("u", "p1", "2025-07-08 10:00", facility="本部"),
              ev("u", "p1", "2025-07-08 10:05", facility="东院")]
    assert len(cred("cred.impossible_travel", events, workstations=None)) == 1


# --- off-duty use --------------------------------------------------------------------------

SURGERY = [{"user_id": "surg", "start": "2025-07-08 09:00", "end": "2025-07-08 12:00",
            "kind": "surgery", "location": "手术室3"}]


def test_surgeon_account_at_ward_during_operation():
    events = [at("surg", "2025-07-08 10:00", "A1"), at("surg", "2025-07-08 10:30", "OR1")]
    f = cred("cred.off_duty_use", events, shifts=SURGERY)
    assert len(f) == 1
    assert f["event_ids"].iloc[0] == [events[0]["event_id"]]
    assert f["evidence"].iloc[0]["block"]["kind"] == "surgery"


@pytest.mark.parametrize("ts,found", [("09:15", True), ("09:14:59", False), ("11:45", True),
                                      ("11:45:01", False)])
def test_block_edges(ts, found):
    f = cred("cred.off_duty_use", [at("surg", f"2025-07-08 {ts}", "A1")], shifts=SURGERY)
    assert (len(f) == 1) is found


def test_leave_any_use_and_duty_is_fine():
    shifts = [{"user_id": "rn", "start": "2025-07-08", "end": "2025-07-11", "kind": "leave"},
              {"user_id": "rn", "start": "2025-07-11 08:00", "end": "2025-07-11 16:00",
               "kind": "duty"}]
    events = [at("rn", "2025-07-09 03:00", "OR1"), at("rn", "2025-07-11 09:00", "A1")]
    f = cred("cred.off_duty_use", events, shifts=shifts)
    assert len(f) == 1 and f["severity"].iloc[0] == "high"
    assert f["event_ids"].iloc[0] == [events[0]["event_id"]]


def test_off_duty_needs_shifts():
    assert "shifts" in all_detectors()["cred.off_duty_use"].needs


# --- inactive account ----------------------------------------------------------------------

USERS = [{"user_id": "gone", "role": "nurse", "status": "terminated",
          "end_date": "2025-07-08"},
         {"user_id": "term", "role": "nurse", "status": "离职"},
         {"user_id": "ok", "role": "nurse", "start_date": "2020-01-01"},
         {"user_id": "new", "role": "nurse", "start_date": "2025-07-07"}]


@pytest.mark.parametrize("ts,found", [("2025-07-09 00:00", False), ("2025-07-09 00:00:01", True)])
def test_activity_after_end_date(ts, found):
    f = cred("cred.inactive_account", [ev("gone", "p1", ts)], users=USERS)
    assert (len(f) == 1) is found


def test_terminated_without_end_date():
    f = cred("cred.inactive_account", [ev("term", "p1", "2025-07-08 10:00")], users=USERS)
    assert len(f) == 1 and f["evidence"].iloc[0]["reason"] == "departed"


def test_dormant_account_resumes_only_with_history_long_enough():
    window = ("2025-07-07", "2025-07-14")
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00"),
              ev("new", "p1", "2025-07-08 10:00"), ev("other", "p2", "2025-03-01 10:00")]
    f = cred("cred.inactive_account", events, users=USERS, window=window)
    assert f["user_id"].tolist() == ["ok"]
    assert f["severity"].tolist() == ["medium"]
    # 89 days of silence is not dormant
    events[0] = ev("ok", "p1", "2025-04-10 10:00:01")
    assert cred("cred.inactive_account", events, users=USERS, window=window).empty


def test_dormancy_explained_by_rostered_leave():
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00"),
              ev("other", "p2", "2025-03-01 10:00")]
    shifts = [{"user_id": "ok", "start": "2025-04-15", "end": "2025-07-07", "kind": "leave"}]
    assert cred("cred.inactive_account", events, users=USERS, shifts=shifts).empty


def test_inactive_lookback_follows_dormant_days():
    cls = all_detectors()["cred.inactive_account"]
    assert cls().effective_lookback_days() == 91
    assert cls(dormant_days=0.0).effective_lookback_days() == 0


# --- acting mismatch -----------------------------------------------------------------------

TEAM = [{"user_id": "teacher", "role": "physician"},
        {"user_id": "intern", "role": "trainee", "supervisor_id": "teacher"}]


def test_trainee_acting_under_supervisor_account_is_reported():
    events = [ev("teacher", "p1", "2025-07-08 10:00", "sign", acting_user_id="intern"),
              ev("teacher", "p1", "2025-07-08 10:05", "update", acting_user_id="teacher")]
    f = cred("cred.acting_mismatch", events, users=TEAM)
    assert len(f) == 1 and f["evidence"].iloc[0]["trainee_under_supervisor_account"]
    assert f["event_ids"].iloc[0] == [events[0]["event_id"]]


def test_supervisor_countersigning_in_trainee_session_is_allowed_by_default():
    events = [ev("intern", "p1", "2025-07-08 10:00", "sign", acting_user_id="teacher")]
    assert cred("cred.acting_mismatch", events, users=TEAM).empty
    f = cred("cred.acting_mismatch", events, users=TEAM,
             over={"allow_supervisor_in_trainee_session": False})
    assert len(f) == 1


def test_acting_mismatch_without_users_table():
    events = [ev("a", "p1", "2025-07-08 10:00", "sign", acting_user_id="b")]
    assert len(cred("cred.acting_mismatch", events)) == 1


# --- expired access ------------------------------------------------------------------------

@pytest.mark.parametrize("ts,found", [("2025-07-09 00:00", False), ("2025-07-09 00:00:01", True)])
def test_expired_access_edge(ts, found):
    users = [{"user_id": "v", "role": "vendor", "access_until": "2025-07-08"}]
    f = cred("cred.expired_access", [ev("v", "p1", ts)], users=users)
    assert (len(f) == 1) is found


def test_expired_access_role_filter_and_window():
    users = [{"user_id": "t", "role": "实习生", "access_until": "2025-06-01"}]
    events = [ev("t", "p1", "2025-06-20 10:00"), ev("t", "p1", "2025-07-08 10:00")]
    f = cred("cred.expired_access", events, users=users)
    assert len(f) == 1 and f["severity"].iloc[0] == "high"     # 37 days after
    assert cred("cred.expired_access", events, users=users, over={"roles": ["it"]}).empty


@pytest.mark.parametrize("coded", [True, False])
def test_acting_user_differs_on_coded_and_plain_columns(coded):
    from emraudit.detectors.cred import _acting_differs
    user = pd.Series(["u1", "u1", None, "u2", "u3"], dtype="string")
    acting = pd.Series(["u1", "u2", "u9", None, "u9"], dtype="string")
    if coded:
        user = user.astype("category")
    assert _acting_differs(acting, user).tolist() == [False, True, False, False, True]


@pytest.mark.parametrize("ts,severity", [("2025-07-08 00:00", "medium"),     # 30 days after
                                         ("2025-07-08 00:00:01", "high"),
                                         ("2025-07-08 23:00", "high")])
def test_expired_access_a_month_after_is_high(ts, severity):
    users = [{"user_id": "t", "role": "实习生", "access_until": "2025-06-08"}]
    f = cred("cred.expired_access", [ev("t", "p1", ts)], users=users)
    assert f["severity"].tolist() == [severity]
    assert f["message_args"].iloc[0]["day"] == ts[:10]
