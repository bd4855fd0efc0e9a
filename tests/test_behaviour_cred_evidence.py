"""cred.* findings as data (issue 23, from the sampled survivors of cred.py): the evidence
and message arguments each detector writes, pinned as literals on small hand-made frames,
and the rules those values come from (one place spelled two ways, a campus pair's travel
time, which events support a dormant account's finding, shared hosts by name)."""

from __future__ import annotations

import dataclasses

import pandas as pd

from detector_frames import ev, frame, make_ctx, run
from test_detect_cred import TEAM, USERS, W, at, cred   # workstations A1 本部, E1 东院


# --- cred.concurrent_use -------------------------------------------------------------------

def test_concurrent_use_message_and_evidence():
    events = [at("u", "2025-07-08 10:00", "A1", session_id="s1"),
              at("u", "2025-07-08 10:03", "E1", session_id="s2"),
              at("u", "2025-07-08 10:05", "A1", session_id="s1")]
    f = cred("cred.concurrent_use", events)
    assert len(f) == 1
    r = f.iloc[0]
    ids = [e["event_id"] for e in events]
    places = ["东院/骨科", "本部/心内科"]
    assert r["message_args"] == {"user": "u", "n_places": 2, "day": "2025-07-08",
                                 "places": places, "minutes": 5, "count": 1}
    assert r["score"] == 3.0                      # 1 interleaving + 2 places
    e = r["evidence"]
    assert (e["day"], e["places"], e["interleavings"]) == ("2025-07-08", places, 1)
    assert e["first_pattern"] == [
        {"place": "本部/心内科", "at": "2025-07-08T10:00:00+08:00", "workstation": "A1",
         "ip": "10.1.1.11", "session_id": "s1", "event_id": ids[0]},
        {"place": "东院/骨科", "at": "2025-07-08T10:03:00+08:00", "workstation": "E1",
         "ip": "10.2.1.11", "session_id": "s2", "event_id": ids[1]},
        {"place": "本部/心内科", "at": "2025-07-08T10:05:00+08:00", "workstation": "A1",
         "ip": "10.1.1.11", "session_id": "s1", "event_id": ids[2]}]


def test_an_event_without_a_workstation_name_is_not_a_shared_host():
    # B has only an address (E1's, so a place on the other campus); shared hosts are named
    events = [at("u", "2025-07-08 10:00", "A1"),
              ev("u", "p1", "2025-07-08 10:03", ip="10.2.1.11"),
              at("u", "2025-07-08 10:05", "A1")]
    f = cred("cred.concurrent_use", events, over={"shared_workstations": ["VDI-*"]})
    assert f["event_ids"].tolist() == [sorted(e["event_id"] for e in events)]
    assert f.iloc[0]["evidence"]["first_pattern"][1]["workstation"] is None


# --- cred.impossible_travel ----------------------------------------------------------------

def test_two_spellings_of_one_site_are_one_campus():
    events = [ev("u", "p1", "2025-07-08 10:00", facility="http://ehr.example.com/"),
              ev("u", "p1", "2025-07-08 10:05", facility="EHR.example.com"),
              ev("u", "p1", "2025-07-08 10:10", facility="东院")]
    f = cred("cred.impossible_travel", events, workstations=None)
    assert len(f) == 1
    r = f.iloc[0]
    # one hop, from the site (named by its first spelling) to the other campus
    assert [(h["from"], h["to"], h["minutes"]) for h in r["evidence"]["hops"]] == \
        [("http://ehr.example.com/", "东院", 5.0)]
    assert (r["start"], r["end"]) == ("2025-07-08T10:05:00+08:00", "2025-07-08T10:10:00+08:00")
    assert r["event_ids"] == [events[1]["event_id"], events[2]["event_id"]]
    assert r["message_args"] == {"user": "u", "from": "http://ehr.example.com/", "to": "东院",
                                 "minutes": 5.0, "day": "2025-07-08", "needed": 30.0,
                                 "hops": 0}


def test_two_accounts_on_two_campuses_are_no_hop():
    events = [at("u2", "2025-07-08 09:50", "E1"), at("u1", "2025-07-08 10:00", "A1")]
    assert cred("cred.impossible_travel", events).empty


def test_a_campus_pair_travel_time_applies_to_that_pair_only():
    events = [ev("w", "p1", "2025-07-08 10:00", facility="本部"),
              ev("w", "p1", "2025-07-08 10:40", facility="东院"),
              ev("x", "p2", "2025-07-08 10:00", facility="西院"),
              ev("x", "p2", "2025-07-08 10:40", facility="东院"),
              ev("y", "p3", "2025-07-08 10:00", facility="东院"),
              ev("y", "p3", "2025-07-08 10:40", facility="西院")]
    f = cred("cred.impossible_travel", events, workstations=None,
             over={"campus_travel_minutes": {"本部|东院": 45}})
    # 本部 -> 东院 needs 45 min; 西院 <-> 东院 keeps the default 30, and 40 min is enough
    assert f["user_id"].tolist() == ["w"]
    hop = f.iloc[0]["evidence"]["hops"][0]
    assert (hop["from"], hop["to"], hop["minutes"], hop["needed_minutes"]) == \
        ("本部", "东院", 40.0, 45.0)


# --- cred.off_duty_use ---------------------------------------------------------------------

def test_off_duty_use_message_names_the_block_and_the_places():
    shifts = [{"user_id": "u1", "start": "2025-07-08 00:00", "end": "2025-07-09 00:00",
               "kind": "leave"}]
    events = [at("u1", "2025-07-08 10:00", "A1"), at("u1", "2025-07-08 11:00", "A1")]
    f = cred("cred.off_duty_use", events, shifts=shifts)
    r = f.iloc[0]
    assert (r["message_id"], r["patient_id"], r["severity"]) == \
        ("cred.off_duty_use.leave", "p1", "high")
    assert r["message_args"] == {"user": "u1", "count": 2,
                                 "start": "2025-07-08T00:00:00+08:00",
                                 "end": "2025-07-09T00:00:00+08:00",
                                 "places": ["A1", "心内科一病区护士站"]}
    assert r["evidence"]["block"] == {"kind": "leave", "start": "2025-07-08T00:00:00+08:00",
                                      "end": "2025-07-09T00:00:00+08:00", "location": None}


# --- cred.inactive_account -----------------------------------------------------------------

# USERS (test_detect_cred): "gone" ended 2025-07-08, "ok" started in 2020


def test_denied_events_of_a_departed_account_are_not_use():
    denied = ev("gone", "p1", "2025-07-10 10:00", outcome="failure")
    assert cred("cred.inactive_account", [denied], users=USERS).empty
    used = ev("gone", "p1", "2025-07-10 11:00")
    f = cred("cred.inactive_account", [denied, used], users=USERS)
    assert f["event_ids"].tolist() == [[used["event_id"]]]
    assert f.iloc[0]["message_args"] == {"user": "gone", "count": 1, "day": "2025-07-10",
                                         "end_date": "2025-07-08T00:00:00+08:00"}


def test_dormant_account_finding_is_its_first_local_day_of_renewed_use():
    last = ev("ok", "p1", "2025-04-01 10:00")
    back = ev("ok", "p1", "2025-07-08 07:00")          # 23:00 UTC the day before
    same_day = ev("ok", "p2", "2025-07-08 20:00")
    next_day = ev("ok", "p2", "2025-07-09 08:00")      # 25 h after: not that day's
    other = ev("other", "p9", "2025-03-01 10:00")      # the history reaches back far enough
    f = cred("cred.inactive_account", [last, back, same_day, next_day, other], users=USERS)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["event_ids"] == sorted([back["event_id"], same_day["event_id"]])
    assert r["patient_id"] == ""                     # two patients
    assert (r["message_id"], r["severity"]) == ("cred.inactive_account.dormant", "medium")
    assert r["message_args"] == {"user": "ok", "day": "2025-07-08", "days": 98}
    assert r["score"] == 1.0 + 97.875 / 100           # 97 days 21 hours idle
    assert r["evidence"] == {"day": "2025-07-08", "reason": "dormant", "idle_days": 97.9,
                             "last_activity_before": "2025-04-01T10:00:00+08:00",
                             "thresholds": {"dormant_days": 90.0}}


# --- cred.acting_mismatch ------------------------------------------------------------------

# TEAM (test_detect_cred): "intern" is a trainee supervised by "teacher"
def test_acting_mismatch_message_and_evidence():
    events = [ev("teacher", "p1", "2025-07-08 10:00", "sign", acting_user_id="intern"),
              ev("teacher", "p2", "2025-07-08 10:05", "view", acting_user_id="intern")]
    f = cred("cred.acting_mismatch", events, users=TEAM)
    r = f.iloc[0]
    assert r["patient_id"] == "" and r["score"] == 3.0      # 2 events + trainee
    assert r["message_args"] == {"acting": "intern", "count": 2, "user": "teacher",
                                 "day": "2025-07-08", "trainee": True}
    assert r["evidence"] == {
        "day": "2025-07-08", "account": "teacher", "acting": "intern", "events": 2,
        "patients": 2, "actions": {"sign": 1, "view": 1},
        "trainee_under_supervisor_account": True,
        "thresholds": {"min_events": 1, "allow_supervisor_in_trainee_session": True}}


# --- cred.expired_access -------------------------------------------------------------------

def test_expired_access_names_one_patient_or_none():
    users = [{"user_id": "v", "role": "vendor", "access_until": "2025-07-01"}]
    one = cred("cred.expired_access", [ev("v", "p1", "2025-07-08 10:00")], users=users)
    assert one["patient_id"].tolist() == ["p1"]
    two = cred("cred.expired_access", [ev("v", "p1", "2025-07-08 10:00"),
                                       ev("v", "p2", "2025-07-08 10:05")], users=users)
    assert two["patient_id"].tolist() == [""]
    # the staff list's "vendor" is the canonical role "it"
    assert two.iloc[0]["message_args"] == {"role": "it", "user": "v", "count": 2,
                                           "day": "2025-07-08",
                                           "until": "2025-07-01T00:00:00+08:00"}


# --- cred.external_access ------------------------------------------------------------------

NETS = ("10.0.0.0/8", "fd00::/8")
ROSTER = [{"user_id": "u1", "start": "2025-07-08 08:00", "end": "2025-07-08 18:00",
           "kind": "duty", "ward": "W1"}]


def external(events, **params):
    ctx = make_ctx(events, window=W, shifts=ROSTER,
                   users=[{"user_id": "u1", "role": "nurse"}, {"user_id": "v1", "role": "it"}])
    return run("cred.external_access", dataclasses.replace(ctx, networks=NETS), **params)


def test_external_access_evidence_counts_outputs():
    events = [ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8"),
              ev("u1", "p1", "2025-07-08 10:05", "print", ip="8.8.8.8")]
    f = external(events)
    r = f.iloc[0]
    assert (r["severity"], r["rectification_item"]) == ("high", "8")
    assert r["evidence"] == {
        "day": "2025-07-08", "addresses": {"8.8.8.8": 2}, "patient_events": 2, "patients": 1,
        "night_events": 0, "off_duty_events": 0, "duty_basis": "roster", "output_events": 1,
        "networks": list(NETS),
        "thresholds": {"min_patient_events": 1, "night_hours": [22, 6]}}


def test_external_access_ignored_roles_come_from_the_staff_list():
    events = [ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8"),
              ev("v1", "p2", "2025-07-08 10:00", ip="8.8.8.8")]
    assert sorted(external(events)["user_id"]) == ["u1", "v1"]
    assert external(events, ignore_roles=["it"])["user_id"].tolist() == ["u1"]


# --- the per-account order -----------------------------------------------------------------

def test_events_are_ordered_by_account_then_time_even_out_of_time_order():
    from emraudit.detectors.cred import _sorted_by_user
    evs = frame("access_log", [ev("u", "p1", "2025-07-08 09:00"),
                               ev("u", "p1", "2025-07-08 11:00"),
                               ev("u", "p1", "2025-07-08 10:00")])
    idx, _, t = _sorted_by_user(evs, pd.Series(True, index=evs.index).to_numpy())
    assert idx.tolist() == [0, 2, 1]
    assert (t[1:] >= t[:-1]).all()
