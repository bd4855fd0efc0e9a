"""care.no_relationship findings as data (issue 23, from every mutant of detectors/care.py):
what a finding says for given input (severity and its steps, event ids, evidence and message
arguments, the thresholds in force, the look-up before opening), how accesses group into
findings, and the feed check: its figures from one context or from the partitions of a scan
(population pass), the source and site of each access, and the feed-gap hold."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors.care import NoRelationship

W = ("2025-07-07", "2025-07-14")            # Monday to Monday
DET = "care.no_relationship"
USERS = [{"user_id": "snoop", "role": "nurse", "department": "骨科", "ward": "骨科病区"},
         {"user_id": "u2", "role": "physician"}]
ALL_FLAGS = {"vip": True, "sensitive": True, "watch": True, "employee_user_id": "x",
             "deceased_date": "2025-01-01"}


def care(events, over=None, **kw):
    kw.setdefault("window", W)
    kw.setdefault("users", USERS)
    return run(DET, make_ctx(events, **kw), **(over or {}))


def by_key(f):
    return {(r["user_id"], r["patient_id"], r["evidence"]["day"]): r
            for r in f.to_dict("records")}


# --- one finding, every field --------------------------------------------------------------

def test_a_finding_states_its_accesses_flags_lookup_and_thresholds():
    events = [ev("snoop", "p1", "2025-07-08 09:55", "query", event_id="q1"),
              ev("snoop", "p1", "2025-07-08 10:00", event_id="a1"),
              ev("snoop", "p1", "2025-07-08 10:20", "print", event_id="a2"),
              ev("snoop", "p2", "2025-07-08 11:00", event_id="b1"),
              ev("u2", "p1", "2025-07-09 11:00", event_id="c1")]
    f = by_key(care(events, patients=[{"patient_id": "p1", **ALL_FLAGS}]))
    assert sorted(f) == [("snoop", "p1", "2025-07-08"), ("snoop", "p2", "2025-07-08"),
                         ("u2", "p1", "2025-07-09")]
    flags = ["vip", "sensitive", "watch", "employee", "deceased"]
    thresholds = {"min_accesses": 1, "medium_accesses": 3, "high_accesses": 10,
                  "critical_accesses": 50, "grace_before_days": 3.0,
                  "grace_after_days": 30.0, "lookback_days": 30.0}

    r = f[("snoop", "p1", "2025-07-08")]
    # 2 accesses: low, one step for the flagged patient, one for the look-up
    assert r["severity"] == "high"
    assert r["score"] == pytest.approx(math.log2(3) + 2.0)
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-08T10:20:00+08:00")
    assert r["event_ids"] == ["a1", "a2", "q1"]
    assert r["message_id"] == DET
    assert r["message_args"] == {"user": "snoop", "patient": "p1", "accesses": 2,
                                 "day": "2025-07-08", "tried": 9, "flags": flags,
                                 "lookup": True}
    e = r["evidence"]
    assert (e["day"], e["accesses"], e["actions"]) == ("2025-07-08", 2, {"print": 1, "view": 1})
    assert e["patient_flags"] == flags
    assert e["user"] == {"role": "nurse", "department": "骨科", "ward": "骨科病区"}
    assert e["thresholds"] == thresholds
    assert e["query_lookup"] == {"at": "2025-07-08T09:55:00+08:00", "event_ids": ["q1"],
                                 "window_minutes": 30.0}
    assert len(e["explanations"]) == 9 and "class_grants" not in e
    assert r["summary"].endswith("; patient flagged: VIP, sensitive, sealed record, employee, "
                                 "deceased; looked the patient up by name just before")

    r = f[("snoop", "p2", "2025-07-08")]
    assert (r["severity"], r["score"], r["event_ids"]) == ("low", 1.0, ["b1"])
    assert r["message_args"] == {"user": "snoop", "patient": "p2", "accesses": 1,
                                 "day": "2025-07-08", "tried": 9, "flags": [],
                                 "lookup": False}
    assert r["evidence"]["query_lookup"] is None and r["evidence"]["patient_flags"] == []
    assert r["start"] == r["end"] == "2025-07-08T11:00:00+08:00"

    r = f[("u2", "p1", "2025-07-09")]
    assert (r["severity"], r["score"], r["event_ids"]) == ("medium", 2.0, ["c1"])
    assert r["message_args"]["flags"] == flags and r["message_args"]["lookup"] is False
    assert r["evidence"]["user"] == {"role": "physician", "department": None, "ward": None}
    assert r["evidence"]["query_lookup"] is None


def test_a_findings_identity_is_its_user_patient_and_site_local_day():
    # case ids and suppressions rest on it: the same user, patient and day give the same id
    # in every scan and every version
    from emraudit.detectors.base import finding_id
    f = care([ev("snoop", "p1", "2025-07-08 10:00"), ev("snoop", "p1", "2025-07-09 00:30")])
    assert f["finding_id"].tolist() == [finding_id(DET, "snoop|p1|2025-07-08"),
                                        finding_id(DET, "snoop|p1|2025-07-09")]


def test_thresholds_in_the_evidence_follow_the_parameters_and_the_explain_section():
    events = [ev("snoop", "p1", "2025-07-08 10:00"), ev("snoop", "p1", "2025-07-08 10:01")]
    f = care(events, over={"min_accesses": 2, "medium_accesses": 4, "high_accesses": 5,
                           "critical_accesses": 6},
             params={"explain": {"grace_before_days": 1.0, "grace_after_days": 2.0,
                                 "lookback_days": 7.0, "lookup_minutes": 5.0}})
    (e,) = f["evidence"].tolist()
    assert e["thresholds"] == {"min_accesses": 2, "medium_accesses": 4, "high_accesses": 5,
                               "critical_accesses": 6, "grace_before_days": 1.0,
                               "grace_after_days": 2.0, "lookback_days": 7.0}


@pytest.mark.parametrize("n,severity", [(1, "low"), (2, "medium"), (3, "medium"),
                                        (4, "high"), (5, "high"), (6, "critical"),
                                        (7, "critical")])
def test_severity_edges_follow_the_parameters(n, severity):
    events = [ev("snoop", "p1", f"2025-07-08 10:{i:02d}") for i in range(n)]
    f = care(events, over={"medium_accesses": 2, "high_accesses": 4, "critical_accesses": 6})
    assert f["severity"].tolist() == [severity]
    assert f["evidence"].iloc[0]["accesses"] == n
    assert f["score"].iloc[0] == pytest.approx(math.log2(1 + n))


@pytest.mark.parametrize("n,found", [(3, False), (4, True), (5, True)])
def test_min_accesses_counts_one_user_patient_day_only(n, found):
    # n accesses of p1 on the 8th; accesses to another patient, on another day or by
    # another user do not add to the group
    events = [ev("snoop", "p1", f"2025-07-08 10:{i:02d}") for i in range(n)] + \
        [ev("snoop", "p2", "2025-07-08 11:00"), ev("snoop", "p1", "2025-07-09 10:00"),
         ev("u2", "p1", "2025-07-08 12:00")]
    f = care(events, over={"min_accesses": 4})
    assert [(r["user_id"], r["patient_id"]) for r in f.to_dict("records")] == \
        ([("snoop", "p1")] if found else [])
    if found:
        assert f["evidence"].iloc[0]["accesses"] == n


@pytest.mark.parametrize("steps,severity", [(0, "low"), (1, "medium"), (2, "high"),
                                            (3, "critical")])
def test_lookup_steps_follow_the_parameter(steps, severity):
    events = [ev("snoop", "p1", "2025-07-08 09:59", "query"),
              ev("snoop", "p1", "2025-07-08 10:00")]
    f = care(events, over={"query_lookup_steps": steps})
    assert f["severity"].tolist() == [severity]
    # the score counts the look-up whatever the steps
    assert f["score"].iloc[0] == pytest.approx(2.0)


def test_special_patient_and_lookup_steps_add_up_and_stop_at_critical():
    events = [ev("snoop", "p1", "2025-07-08 09:59", "query")] + \
        [ev("snoop", "p1", f"2025-07-08 10:{i:02d}") for i in range(10)]
    f = care(events, patients=[{"patient_id": "p1", "vip": True}])
    assert f["severity"].tolist() == ["critical"]       # high + 1 + 1, capped
    assert f["score"].iloc[0] == pytest.approx(math.log2(11) + 2.0)
    f = care(events[:3], patients=[{"patient_id": "p1", "vip": True}],
             over={"special_patient_steps": 2, "query_lookup_steps": 0})
    assert f["severity"].tolist() == ["high"]           # low + 2


# --- grouping -------------------------------------------------------------------------------

def test_interleaved_accesses_group_by_user_patient_and_day():
    # one key changes at a time between neighbours once sorted
    plan = [("snoop", "p1", "2025-07-08 10:00"), ("u2", "p1", "2025-07-08 10:01"),
            ("snoop", "p2", "2025-07-08 10:02"), ("snoop", "p1", "2025-07-09 10:03"),
            ("snoop", "p1", "2025-07-08 10:04"), ("u2", "p1", "2025-07-08 10:05"),
            ("snoop", "p2", "2025-07-08 10:06"), ("snoop", "p1", "2025-07-09 10:07"),
            ("snoop", "p1", "2025-07-08 10:08")]
    events = [ev(u, p, t, event_id=f"x{i}") for i, (u, p, t) in enumerate(plan)]
    f = by_key(care(events))
    assert {k: r["event_ids"] for k, r in f.items()} == {
        ("snoop", "p1", "2025-07-08"): ["x0", "x4", "x8"],
        ("snoop", "p1", "2025-07-09"): ["x3", "x7"],
        ("snoop", "p2", "2025-07-08"): ["x2", "x6"],
        ("u2", "p1", "2025-07-08"): ["x1", "x5"]}
    assert {k: (r["start"], r["end"]) for k, r in f.items()} == {
        ("snoop", "p1", "2025-07-08"): ("2025-07-08T10:00:00+08:00", "2025-07-08T10:08:00+08:00"),
        ("snoop", "p1", "2025-07-09"): ("2025-07-09T10:03:00+08:00", "2025-07-09T10:07:00+08:00"),
        ("snoop", "p2", "2025-07-08"): ("2025-07-08T10:02:00+08:00", "2025-07-08T10:06:00+08:00"),
        ("u2", "p1", "2025-07-08"): ("2025-07-08T10:01:00+08:00", "2025-07-08T10:05:00+08:00")}
    assert {k: r["evidence"]["accesses"] for k, r in f.items()} == {
        ("snoop", "p1", "2025-07-08"): 3, ("snoop", "p1", "2025-07-09"): 2,
        ("snoop", "p2", "2025-07-08"): 2, ("u2", "p1", "2025-07-08"): 2}


def test_actions_are_counted_per_finding_most_frequent_first_ties_by_name():
    events = [ev("snoop", "p1", "2025-07-08 10:00", "view"),
              ev("snoop", "p1", "2025-07-08 10:01", "print"),
              ev("snoop", "p1", "2025-07-08 10:02", "export"),
              ev("snoop", "p1", "2025-07-08 10:03", "print"),
              ev("snoop", "p2", "2025-07-08 10:04", "view"),
              ev("snoop", "p2", "2025-07-08 10:05", "export"),
              ev("snoop", "p3", "2025-07-08 10:06", "view")]
    f = by_key(care(events))
    acts = {k[1]: list(r["evidence"]["actions"].items()) for k, r in f.items()}
    assert acts == {"p1": [("print", 2), ("export", 1), ("view", 1)],
                    "p2": [("export", 1), ("view", 1)],
                    "p3": [("view", 1)]}


def test_lookups_per_finding_distinct_sorted_and_the_earliest_is_shown():
    events = [ev("snoop", "p1", "2025-07-08 09:50", "query", event_id="q2"),
              ev("snoop", "p1", "2025-07-08 10:00", event_id="a1"),
              ev("snoop", "p1", "2025-07-08 10:01", event_id="a2"),    # q2 again: once
              ev("snoop", "p1", "2025-07-08 10:10", "query", event_id="q1"),
              ev("snoop", "p1", "2025-07-08 10:15", event_id="a3"),
              ev("snoop", "p2", "2025-07-08 10:20", "query", event_id="q3"),
              ev("snoop", "p2", "2025-07-08 10:21", event_id="b1"),
              ev("snoop", "p3", "2025-07-08 10:22", event_id="c1")]          # no look-up
    f = by_key(care(events))
    p1 = f[("snoop", "p1", "2025-07-08")]
    assert p1["evidence"]["query_lookup"] == {"at": "2025-07-08T09:50:00+08:00",
                                              "event_ids": ["q1", "q2"],
                                              "window_minutes": 30.0}
    assert p1["event_ids"] == ["a1", "a2", "a3", "q1", "q2"]
    p2 = f[("snoop", "p2", "2025-07-08")]
    assert p2["evidence"]["query_lookup"]["event_ids"] == ["q3"]
    assert p2["event_ids"] == ["b1", "q3"]
    p3 = f[("snoop", "p3", "2025-07-08")]
    assert p3["evidence"]["query_lookup"] is None and p3["event_ids"] == ["c1"]
    assert p3["message_args"]["lookup"] is False


@pytest.mark.parametrize("minutes,raised", [(10.0, True), (9.0, False)])
def test_the_lookup_window_is_the_explain_sections(minutes, raised):
    events = [ev("snoop", "p1", "2025-07-08 09:50", "query"),
              ev("snoop", "p1", "2025-07-08 10:00")]
    f = care(events, params={"explain": {"lookup_minutes": minutes}})
    assert f["severity"].tolist() == ["medium" if raised else "low"]
    look = f["evidence"].iloc[0]["query_lookup"]
    assert (look["window_minutes"] if raised else look) == (minutes if raised else None)


def test_an_explained_lookup_does_not_raise_an_unexplained_opening():
    # the look-up at 09:50 falls in snoop's own relation with p1 (ended 09:55, no grace,
    # no look-back): explained; the opening at 10:10 is not, and nothing raises it
    rel = [{"patient_id": "p1", "user_id": "snoop", "kind": "admission",
            "start": "2025-07-08 09:00", "end": "2025-07-08 09:55"}]
    events = [ev("snoop", "p1", "2025-07-08 09:50", "query", event_id="q1"),
              ev("snoop", "p1", "2025-07-08 10:10", event_id="a1")]
    strict = {"explain": {"grace_after_days": 0.0, "grace_before_days": 0.0,
                          "lookback_days": 0.0}}
    f = care(events, care_relations=rel, params=strict)
    assert (f["event_ids"].tolist(), f["severity"].tolist()) == ([["a1"]], ["low"])
    assert f["evidence"].iloc[0]["query_lookup"] is None
    # without the relation the same look-up raises it
    f = care(events, params=strict)
    assert (f["event_ids"].tolist(), f["severity"].tolist()) == ([["a1", "q1"]], ["medium"])


def test_counted_queries_are_accesses_but_not_their_own_lookup():
    """count_queries: a look-up is counted as an access; it still raises the opening after
    it, but it is no look-up before itself, and a finding lists each event once (a bug
    found here: a counted query looked itself up, so a lone search was raised and its id
    listed twice)."""
    q = [ev("snoop", "p1", "2025-07-08 10:00", "query", event_id="q1")]
    f = care(q, over={"count_queries": True})
    assert (f["severity"].tolist(), f["event_ids"].tolist()) == (["low"], [["q1"]])
    assert f["evidence"].iloc[0]["query_lookup"] is None
    assert f["message_args"].iloc[0]["lookup"] is False
    assert f["score"].iloc[0] == pytest.approx(1.0)
    events = q + [ev("snoop", "p1", "2025-07-08 10:05", event_id="a1")]
    f = care(events, over={"count_queries": True})
    assert f["event_ids"].tolist() == [["a1", "q1"]]
    (e,) = f["evidence"].tolist()
    assert (e["accesses"], e["actions"]) == (2, {"query": 1, "view": 1})
    assert e["query_lookup"]["event_ids"] == ["q1"]
    assert f["severity"].tolist() == ["medium"]          # low, raised by the look-up


def test_failed_accesses_are_counted_only_on_request():
    events = [ev("snoop", "p1", "2025-07-08 10:00", outcome="failure", event_id="f1"),
              ev("snoop", "p1", "2025-07-08 10:05", event_id="a1")]
    assert care(events)["event_ids"].tolist() == [["a1"]]
    assert care(events, over={"include_failed": True})["event_ids"].tolist() == [["a1", "f1"]]


def test_only_in_window_accesses_are_findings():
    events = [ev("snoop", "p1", "2025-07-06 23:59", event_id="before"),
              ev("snoop", "p1", "2025-07-07 00:00", event_id="first"),
              ev("snoop", "p1", "2025-07-13 23:59", event_id="last"),
              ev("snoop", "p1", "2025-07-14 00:00", event_id="after")]
    f = care(events)
    assert sorted(i for ids in f["event_ids"] for i in ids) == ["first", "last"]


# --- the user and the patient -----------------------------------------------------------------

def test_user_evidence_is_the_staff_masters_row_of_that_user():
    users = [{"user_id": "snoop", "role": "nurse", "ward": "骨科病区"},
             {"user_id": "u2", "role": "physician", "department": "心内科"}]
    f = by_key(care([ev("snoop", "p1", "2025-07-08 10:00"), ev("u2", "p1", "2025-07-08 10:00"),
                     ev("ghost", "p1", "2025-07-08 10:00")], users=users))
    assert f[("snoop", "p1", "2025-07-08")]["evidence"]["user"] == \
        {"role": "nurse", "department": None, "ward": "骨科病区"}
    assert f[("u2", "p1", "2025-07-08")]["evidence"]["user"] == \
        {"role": "physician", "department": "心内科", "ward": None}
    assert f[("ghost", "p1", "2025-07-08")]["evidence"]["user"] == {}


def test_without_a_staff_master_the_user_evidence_is_empty():
    (e,) = care([ev("snoop", "p1", "2025-07-08 10:00")], users=None)["evidence"].tolist()
    assert e["user"] == {}


@pytest.mark.parametrize("patient,flags", [
    ({"vip": True}, ["vip"]), ({"sensitive": True}, ["sensitive"]), ({"watch": True}, ["watch"]),
    ({"employee_user_id": "x"}, ["employee"]),
    ({"deceased_date": "2025-07-08 10:00"}, ["deceased"]),    # at the access: deceased
    ({"deceased_date": "2025-07-08 10:01"}, []),
    ({"vip": False, "sensitive": False, "watch": False}, []),
    ({"vip": True, "deceased_date": "2025-07-01"}, ["vip", "deceased"]),
])
def test_patient_flags_one_by_one(patient, flags):
    f = care([ev("snoop", "p1", "2025-07-08 10:00")],
             patients=[{"patient_id": "p1", **patient}, {"patient_id": "p2", **ALL_FLAGS}])
    assert f["evidence"].iloc[0]["patient_flags"] == flags
    assert f["message_args"].iloc[0]["flags"] == flags
    assert f["severity"].tolist() == ["medium" if flags else "low"]


def test_a_patient_missing_from_the_patients_table_has_no_flag():
    f = care([ev("snoop", "p9", "2025-07-08 10:00")],
             patients=[{"patient_id": "p1", **ALL_FLAGS}])
    assert f["evidence"].iloc[0]["patient_flags"] == [] and f["severity"].tolist() == ["low"]


def test_deceased_is_judged_at_the_findings_first_access():
    events = [ev("snoop", "p1", "2025-07-08 09:00"), ev("snoop", "p1", "2025-07-08 11:00")]
    f = care(events, patients=[{"patient_id": "p1", "deceased_date": "2025-07-08 10:00"}])
    assert f["evidence"].iloc[0]["patient_flags"] == []


def test_class_grants_are_the_evidence_of_a_sensitive_class():
    events = [ev("snoop", "p1", "2025-07-08 10:00"), ev("snoop", "p2", "2025-07-08 10:00")]
    grants = [{"grant_id": "G1", "user_id": "other", "permission": "read",
               "record_class": "psychiatric", "scope": "all", "granted_at": "2025-01-01"}]
    f = by_key(care(events, grants=grants,
                    patients=[{"patient_id": "p1", "sensitive_class": "psychiatric"},
                              {"patient_id": "p2"}]))
    assert f[("snoop", "p1", "2025-07-08")]["evidence"]["class_grants"] == \
        {"classes": ["psychiatric"], "granted": [], "missing": ["psychiatric"]}
    assert "class_grants" not in f[("snoop", "p2", "2025-07-08")]["evidence"]


# --- the feed check ---------------------------------------------------------------------------

def hospital(n_cardio_explained=3, cardio_day="2025-07-01", surgery_day="2025-07-01",
             surgery_hour=10):
    """Two departments of 3 nurses; 心内科's 30 accesses explained only `n_cardio_explained`
    times, 普外科's 30 all (as in test_feeds), and one look-back access before the window."""
    users = [{"user_id": f"c{i}", "role": "nurse", "department": "心内科"} for i in range(3)] + \
        [{"user_id": f"s{i}", "role": "nurse", "department": "普外科"} for i in range(3)]
    patients = [{"patient_id": f"P{i:03d}"} for i in range(60)]
    rel, events = [], []
    for i in range(30):
        events.append(ev(f"c{i % 3}", f"P{i:03d}", f"{cardio_day} 09:{i:02d}",
                         event_id=f"C{i:02d}"))
        if i < n_cardio_explained:
            rel.append({"patient_id": f"P{i:03d}", "department": "心内科", "kind": "admission",
                        "start": "2025-06-20 08:00"})
    for i in range(30, 60):
        events.append(ev(f"s{i % 3}", f"P{i:03d}", f"{surgery_day} {surgery_hour:02d}:{i - 30:02d}",
                         event_id=f"S{i:02d}"))
        rel.append({"patient_id": f"P{i:03d}", "department": "普外科", "kind": "admission",
                    "start": "2025-06-20 08:00"})
    events.append(ev("c0", "P059", "2025-06-25 10:00", event_id="OLD"))     # look-back
    return {"events": events, "users": users, "patients": patients, "care_relations": rel,
            "window": ("2025-07-01", "2025-07-03")}


def hctx(h, who=None):
    events = h["events"] if who is None else [e for e in h["events"] if e["user_id"][0] in who]
    return make_ctx(events, **{k: v for k, v in h.items() if k != "events"})


FEED = {"feed_min_accesses": 20, "feed_floor": 0.3}


def test_feed_health_figures_of_one_context():
    h = hospital(cardio_day="2025-07-01", surgery_day="2025-07-02")
    ctx = hctx(h)
    found = NoRelationship(**FEED).run(ctx)
    assert found.empty                                  # 心内科's 27 are held
    health = ctx.outputs["feed_health"]
    assert (health["first_day"].unique().tolist(), health["last_day"].unique().tolist()) == \
        (["2025-07-01"], ["2025-07-02"])
    hh = health.set_index(["dimension", "value"])
    assert (hh.loc[("department", "心内科"), "accesses"],
            hh.loc[("department", "心内科"), "explained"]) == (30, 3)
    assert bool(hh.loc[("department", "心内科"), "gap"])
    assert hh.loc[("site", "default"), "accesses"] == 60
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == 27
    assert sorted(ctx.outputs["feed_gap_events"]["event_id"]) == \
        [f"C{i:02d}" for i in range(3, 30)]


def test_feed_parameters_decide_the_gap():
    # 心内科 is 10% explained against 100%: a gap at the default floor and margin, but its
    # 30 accesses are fewer than the 200 a unit needs by default
    # (a finding per patient, not one for the night: spread_patients=0)
    assert len(NoRelationship(feed_floor=0.3, spread_patients=0).run(hctx(hospital()))) == 27
    # by default each of 心内科's three nurses, who opened 9 patients' records without a
    # reason that day, has one finding for the night naming all 9
    night = NoRelationship(feed_floor=0.3).run(hctx(hospital()))
    assert sorted(night["user_id"]) == ["c0", "c1", "c2"]
    assert [len(v) for v in night["patient_ids"]] == [9, 9, 9]
    assert sum(len(v) for v in night["event_ids"]) == 27
    # a floor of 5% and a margin of 100%: not a gap
    assert len(NoRelationship(feed_min_accesses=20, feed_floor=0.05, feed_margin=1.0,
                              spread_patients=0).run(hctx(hospital()))) == 27
    # a margin of 80% alone makes it one (90 points below the rest)
    assert NoRelationship(feed_min_accesses=20, feed_floor=0.05, feed_margin=0.8) \
        .run(hctx(hospital())).empty


def test_feed_counts_of_a_context():
    # 07:xx on the 2nd in Shanghai is still the 1st in UTC: the days are site-local
    ctx = hctx(hospital(cardio_day="2025-07-01", surgery_day="2025-07-02", surgery_hour=7))
    part = NoRelationship(**FEED).feed_counts(ctx)
    assert part["days"] == ("2025-07-01", "2025-07-02")  # judged accesses only: not the 25th
    assert (part["total"], part["total_x"]) == (60, 33)
    # a context with no judged access has none
    only_old = make_ctx([ev("c0", "P059", "2025-06-25 10:00")], window=("2025-07-01", "2025-07-03"))
    assert NoRelationship(**FEED).feed_counts(only_old) is None
    assert NoRelationship(**FEED).population_part(only_old) == {f"feed_counts:{DET}": []}
    assert NoRelationship(**FEED).feed_counts(make_ctx([], window=("2025-07-01", "2025-07-03"))) \
        is None


def test_a_partitioned_scan_judges_feeds_from_every_partition():
    """The population pass: each partition's counts, the shares from all of them, then each
    partition judged against those shares, as if all accesses were in one context."""
    h = hospital(cardio_day="2025-07-01", surgery_day="2025-07-02")
    whole = hctx(h)
    det = NoRelationship(**FEED)
    found_whole = det.run(whole)

    key = f"feed_counts:{DET}"
    parts = [hctx(h, "c"), hctx(h, "s")]
    counts = [det.population_part(p) for p in parts]
    assert all(list(c) == [key] and len(c[key]) == 1 for c in counts)
    assert [c[key][0]["days"] for c in counts] == [("2025-07-01", "2025-07-01"),
                                                   ("2025-07-02", "2025-07-02")]
    scan = make_ctx([], window=h["window"])
    scan.population[key] = counts[0][key] + counts[1][key]
    NoRelationship(**FEED).population_finish(scan)
    shares = scan.population[f"feed:{DET}"]
    assert scan.outputs["feed_health"] is shares
    cols = ["dimension", "value", "accesses", "explained", "gap", "first_day", "last_day"]
    pd.testing.assert_frame_equal(shares[cols].reset_index(drop=True),
                                  whole.outputs["feed_health"][cols].reset_index(drop=True))
    assert shares["first_day"].iloc[0] == "2025-07-01" and shares["last_day"].iloc[0] == \
        "2025-07-02"

    held = []
    for p in parts:
        p.population[f"feed:{DET}"] = shares
        assert det.run(p).empty == found_whole.empty
        assert "feed_health" not in p.outputs          # stored once, by the scan
        if "feed_gap_events" in p.outputs:
            held += p.outputs["feed_gap_events"]["event_id"].tolist()
    assert sorted(held) == sorted(whole.outputs["feed_gap_events"]["event_id"])
    assert len(held) == 27
    # a partition alone would judge 心内科 against nobody: the shares of the scan are used
    alone = hctx(h, "c")
    det.run(alone)
    assert len(alone.outputs["feed_health"]) != len(shares)


def test_population_finish_without_counts_leaves_nothing():
    scan = make_ctx([], window=("2025-07-01", "2025-07-03"))
    NoRelationship().population_finish(scan)
    scan.population[f"feed_counts:{DET}"] = []
    NoRelationship().population_finish(scan)
    assert "feed_health" not in scan.outputs and f"feed:{DET}" not in scan.population


def _with_sources(ctx, old):
    """Each event's source: `old` for the given event ids, `adt` for the rest."""
    ctx.events["_source"] = pd.Categorical(
        ["old" if e in old else "adt" for e in ctx.events["event_id"]])
    return ctx


def test_a_source_with_an_incomplete_feed_is_held_by_source():
    """One department, one role; the accesses read from source `old` are explained 10% of
    the time, those from `adt` always: the source is the gap, and its accesses are held."""
    users = [{"user_id": f"n{i}", "role": "nurse", "department": "心内科"} for i in range(3)]
    rel, events = [], []
    for i in range(60):
        events.append(ev(f"n{i % 3}", f"P{i:03d}", f"2025-07-01 {8 + i // 30:02d}:{i % 30:02d}",
                         event_id=f"E{i:02d}"))
        if i < 33:                  # adt's 30 and 3 of old's
            rel.append({"patient_id": f"P{i:03d}", "department": "心内科", "kind": "admission",
                        "start": "2025-06-20 08:00"})
    old = {f"E{i:02d}" for i in range(30, 60)}
    ctx = _with_sources(make_ctx(events, window=("2025-07-01", "2025-07-02"), users=users,
                                 care_relations=rel), old)
    found = NoRelationship(**FEED).run(ctx)
    assert found.empty
    health = ctx.outputs["feed_health"].set_index(["dimension", "value"])
    assert (health.loc[("source", "old"), "accesses"], health.loc[("source", "old"), "explained"]) \
        == (30, 3)
    assert bool(health.loc[("source", "old"), "gap"])
    assert not bool(health.loc[("department", "心内科"), "gap"])
    gaps = ctx.outputs["feed_gaps"]
    assert (gaps.iloc[0]["dimension"], gaps.iloc[0]["value"], gaps.iloc[0]["held"]) == \
        ("source", "old", 27)
    # without the source column the same accesses are judged one by one
    ctx = make_ctx(events, window=("2025-07-01", "2025-07-02"), users=users,
                   care_relations=rel)
    assert len(NoRelationship(**FEED, spread_patients=0).run(ctx)) == 27
    assert "feed_gaps" not in ctx.outputs


def test_feed_health_counts_each_access_at_its_site():
    events = [ev("c0", f"P{i}", f"2025-07-01 09:{i:02d}", site_id=("east" if i < 4 else None))
              for i in range(10)]
    ctx = make_ctx(events, window=("2025-07-01", "2025-07-02"))
    NoRelationship().run(ctx)
    site = ctx.outputs["feed_health"].set_index(["dimension", "value"])
    assert site.loc[("site", "east"), "accesses"] == 4
    assert site.loc[("site", "default"), "accesses"] == 6


def test_held_accesses_are_not_findings_but_the_rest_are():
    h = hospital()
    h["patients"] = h["patients"] + [{"patient_id": "PV", "vip": True}]
    h["events"] = h["events"] + [ev("c1", "PV", "2025-07-01 11:00", event_id="V1"),
                                 ev("c1", "P007", "2025-07-01 08:50", "query", event_id="Q7")]
    ctx = hctx(h)
    found = NoRelationship(**FEED).run(ctx)
    # c1 opened P007 at 09:07, 17 minutes after looking it up: never held
    assert sorted(map(tuple, found[["user_id", "patient_id"]].values.tolist())) == \
        [("c1", "P007"), ("c1", "PV")]
    held = ctx.outputs["feed_gap_accesses"]
    assert sorted(held["event_id"]) == sorted(f"C{i:02d}" for i in range(3, 30) if i != 7)
    assert held.columns.tolist()[:4] == ["event_id", "user_id", "patient_id", "ts"]
    assert set(held["gap"]) == {"department\x1f心内科"}
    # everything held: no finding at all, the summary still made
    h2 = hospital()
    ctx = hctx(h2)
    assert NoRelationship(**FEED).run(ctx).empty
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == 27


def test_break_the_glass_rows_are_not_judged_nor_counted_in_the_feed():
    events = [ev("snoop", "p1", "2025-07-08 10:00", event_id="a1"),
              ev("snoop", "p1", "2025-07-08 10:30", "break_glass", event_id="g1"),
              ev("snoop", "p2", "2025-07-08 11:00", event_id="b1")]
    ctx = make_ctx(events, window=W, users=USERS)
    f = NoRelationship().run(ctx)
    assert sorted(f["event_ids"].tolist()) == [["a1"], ["b1"]]
    site = ctx.outputs["feed_health"].set_index(["dimension", "value"]).loc[("site", "default")]
    assert (site["accesses"], site["explained"]) == (2, 0)


def _protected_hospital(patients):
    h = hospital()
    h["patients"] = h["patients"] + patients
    h["events"] = h["events"] + [ev("c1", p["patient_id"], "2025-07-01 11:00",
                                    event_id=f"X{p['patient_id']}") for p in patients]
    return h


def test_each_kind_of_protected_patient_is_judged_whatever_else_the_table_holds():
    # the patients table has every flag column; each patient below has one kind only
    patients = [{"patient_id": "PV", "vip": True},
                {"patient_id": "PE", "employee_user_id": "s1"},
                {"patient_id": "PD", "deceased_date": "2025-07-01 11:00"},   # at the access
                {"patient_id": "PL", "deceased_date": "2025-07-01 11:01"},   # alive then
                {"patient_id": "PN"}]
    ctx = hctx(_protected_hospital(patients))
    found = NoRelationship(**FEED).run(ctx)
    assert sorted(found["patient_id"]) == ["PD", "PE", "PV"]
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == 27 + 2      # PL and PN held


def test_the_hold_works_without_a_patients_table():
    h = hospital()
    h["patients"] = None
    ctx = hctx(h)
    assert NoRelationship(**FEED).run(ctx).empty
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == 27
