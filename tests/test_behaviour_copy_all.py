"""copy.bulk_export findings as data (issue 23, from every surviving mutant of copy.py).

What a finding must say for small hand-made outputs: its message arguments and evidence
under each rule (all outputs, and outputs of unrelated patients alone), the score, which
events an episode holds (the windows that reached a threshold, not small outputs hours
before), the window's edge, zero and one-record outputs, outputs without a module, imaging
matched whatever the case, peers' thresholds (a role + department group, the population's
daily maxima in a partitioned scan), two users never added together, an episode in the
look-back not hiding a later one, and the daily maxima a partitioned scan collects.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from test_detect_copy import stub_explain

from emraudit.detectors.copy import window_sums

DAY = ("2025-07-22", "2025-07-23")            # a Tuesday, Asia/Shanghai
D22 = (date(2025, 7, 22) - date(1970, 1, 1)).days   # its local day code
D21 = D22 - 1


def out(user, patient, ts, records, action="print", **kw):
    return ev(user, patient, ts, action, record_count=records, **kw)


def ids(rows):
    return [r["event_id"] for r in rows]


def copy(rows, explained=(), **kw):
    params = kw.pop("params", {})
    ctx = stub_explain(make_ctx(rows, window=DAY, **kw), explained=explained)
    return run("copy.bulk_export", ctx, **params)


# --- the all-outputs rule: message arguments and evidence -----------------------------------

def test_all_outputs_finding_says_what_was_output_and_against_which_thresholds():
    view = ev("u1", "p0", "2025-07-22 09:00")                 # a view is not an output
    outs = [out("u1", "p0", "2025-07-22 10:00", 20, module="病历"),
            out("u1", "p1", "2025-07-22 10:05", 15, "export", module="医嘱"),
            out("u1", "p2", "2025-07-22 10:10", 26)]          # no module; p2 unrelated
    f = copy([view] + outs, explained=ids(outs[:2]) + [view["event_id"]],
             users=[{"user_id": "u1", "role": "nurse", "department": "ICU"}],
             params={"min_records": 30})
    assert len(f) == 1
    r = f.iloc[0]
    assert r["event_ids"] == sorted(ids(outs))
    assert (r["user_id"], r["patient_id"], r["severity"]) == ("u1", "", "medium")
    assert r["message_id"] == "copy.bulk_export"
    assert r["score"] == 2.033                                # 61 / 30, three places
    assert r["message_args"] == {"user": "u1", "role": "nurse", "records": 61, "patients": 3,
                                 "minutes": 240, "peak": 61, "required": 30, "imaging": False}
    e = r["evidence"]
    assert e == {
        "window_minutes": 240, "peak_records_in_window": 61, "records": 61,
        "distinct_patients": 3, "actions": {"export": 15, "print": 46},
        "modules": ["医嘱", "病历"],
        "thresholds": {
            "floor": {"value": 30.0, "unit": "records_per_window"},
            "own_baseline": {"value": 0.0, "days": 0, "required": 1.0},
            "peer_percentile": {"group": "nurse", "value": 0.0, "required": 1.0},
            "required": 30.0},
        "min_patients": 3, "rule": "all_outputs", "required_unrelated": 20.0,
        "peak_unrelated_in_window": 0, "unrelated_records": 26, "imaging": False,
        "unrelated_patients": 1, "unrelated_share": 0.333, "severity_raised_by": [],
        "date": "2025-07-22", "department": "ICU"}
    # record counts are whole numbers in the report's data
    assert all(type(v) is int for v in e["actions"].values())


def test_unrelated_outputs_rule_names_the_unrelated_peak_and_its_threshold():
    # 44 records in all (under 50), 24 of three unrelated patients (over 20)
    rel = [out("u1", "p0", "2025-07-22 10:00", 10), out("u1", "p1", "2025-07-22 10:05", 10)]
    unrel = [out("u1", f"q{i}", f"2025-07-22 10:{10 + 5 * i}", 8) for i in range(3)]
    f = copy(rel + unrel, explained=ids(rel))
    assert len(f) == 1
    r = f.iloc[0]
    assert r["message_id"] == "copy.bulk_export.unrelated"
    assert r["event_ids"] == sorted(ids(rel + unrel))
    assert r["severity"] == "high"                           # 3 of 5 patients unrelated
    assert r["message_args"] == {"user": "u1", "role": None, "records": 44, "patients": 5,
                                 "minutes": 240, "peak": 24, "required": 20, "imaging": False}
    e = r["evidence"]
    assert (e["rule"], e["peak_records_in_window"], e["peak_unrelated_in_window"]) == \
        ("unrelated_outputs", 44, 24)
    assert (e["required_unrelated"], e["thresholds"]["required"]) == (20.0, 50.0)
    assert (e["unrelated_records"], e["unrelated_patients"], e["unrelated_share"]) == \
        (24, 3, 0.6)
    assert e["severity_raised_by"] == ["unrelated_patients"]


def test_one_patient_may_be_enough_when_so_configured():
    # one unrelated patient, one print of 3 records, floors of 1: the threshold is 1 record
    rows = [out("u1", "p0", "2025-07-22 10:00", 3)]
    f = copy(rows, params={"min_records": 1, "min_patients": 1})
    assert len(f) == 1
    r = f.iloc[0]
    assert r["score"] == 3.0                                  # 3 records / 1 required
    assert r["evidence"]["unrelated_share"] == 1.0            # 1 of 1 patient
    assert r["evidence"]["thresholds"]["required"] == 1.0
    assert r["severity"] == "high"


# --- what is counted ------------------------------------------------------------------------

@pytest.mark.parametrize("first,fires", [(47, False), (48, True)])
def test_an_output_of_zero_records_counts_as_one(first, fires):
    rows = [out("u1", "p0", "2025-07-22 10:00", first), out("u1", "p1", "2025-07-22 10:05", 1),
            out("u1", "p2", "2025-07-22 10:10", 0)]
    f = copy(rows, explained=ids(rows))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["records"] == 50
        assert f.iloc[0]["evidence"]["peak_records_in_window"] == 50


@pytest.mark.parametrize("first,fires", [(47, False), (48, True)])
def test_an_output_of_unknown_size_counts_as_one(first, fires):
    # validation gives a missing record_count its default, 1
    rows = [out("u1", "p0", "2025-07-22 10:00", first), out("u1", "p1", "2025-07-22 10:05", 1),
            out("u1", "p2", "2025-07-22 10:10", None)]
    f = copy(rows, explained=ids(rows))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["peak_records_in_window"] == 50


def test_outputs_without_any_module_are_no_imaging_and_name_no_module():
    rows = [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 20) for i in range(3)]
    f = copy(rows, explained=ids(rows))
    assert len(f) == 1
    e = f.iloc[0]["evidence"]
    assert (e["modules"], e["imaging"], e["severity_raised_by"]) == ([], False, [])
    assert f.iloc[0]["severity"] == "medium"


@pytest.mark.parametrize("module", ["PACS", "CT", "Radiology"])
def test_imaging_modules_match_whatever_their_case(module):
    rows = [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 20, "export", module=module)
            for i in range(3)]
    f = copy(rows, explained=ids(rows))
    assert f["severity"].tolist() == ["high"]
    assert f.iloc[0]["evidence"]["imaging"] is True
    assert f.iloc[0]["evidence"]["modules"] == [module]
    assert f.iloc[0]["evidence"]["severity_raised_by"] == ["imaging"]


# --- the window and the episode -------------------------------------------------------------

@pytest.mark.parametrize("last,fires", [("2025-07-22 14:00:00", False),
                                        ("2025-07-22 13:59:59", True)])
def test_an_output_exactly_one_window_earlier_is_outside_it(last, fires):
    # 20 + 10 + 10 + 10 records of 4 patients; the window is (t - 240 min, t]: at 14:00 the
    # 10:00 output is out (30 records of 3 patients), at 13:59:59 it is in (50 records)
    rows = [out("u1", "p0", "2025-07-22 10:00", 20), out("u1", "p1", "2025-07-22 12:00", 10),
            out("u1", "p2", "2025-07-22 13:00", 10), out("u1", "p3", last, 10)]
    f = copy(rows, explained=ids(rows))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["peak_records_in_window"] == 50


@pytest.mark.parametrize("rows", [
    # the first output falls 0.05 s inside the window of the last one (3 h 59 min 59.95 s)
    [out("u1", "p0", "2025-07-22 10:00:00.600", 20),
     out("u1", "p1", "2025-07-22 10:00:00.700", 15),
     out("u1", "p2", "2025-07-22 14:00:00.550", 15)],
    # found by a mutant that counted exact time: in whole seconds from the first output the
    # 10:00:00.900 output (20 records) fell out of the window ending 14:00:00.800, and the
    # window's true 50 records of 3 patients made no finding
    [out("u1", "p0", "2025-07-22 10:00:00.000", 1),
     out("u1", "p1", "2025-07-22 10:00:00.900", 20),
     out("u1", "p2", "2025-07-22 13:00", 1),
     out("u1", "p3", "2025-07-22 14:00:00.800", 29)]],
    ids=["first-output-inside", "whole-seconds-dropped-it"])
def test_an_output_under_a_second_inside_the_far_edge_counts(rows):
    f = copy(rows, explained=ids(rows))
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["peak_records_in_window"] == 50


def test_window_sums_equal_a_direct_count_to_the_nanosecond():
    rng = np.random.default_rng(5)
    n, window = 400, 3 * 10**9
    u = np.sort(rng.integers(0, 5, n))
    t = np.empty(n, dtype=np.int64)
    for k in np.unique(u):                      # sorted by (u, t); ties and exact edges
        at = u == k
        t[at] = np.sort(1_750_000_000 * 10**9 + rng.integers(0, 4, at.sum()) * 10**9
                        + rng.choice([0, 1, 500_000_000], at.sum()))
    w = rng.integers(0, 9, n)
    # each event's window holds the user's events up to it (a tie after it is not yet in)
    at = np.arange(n)
    want = [int(w[(u == u[i]) & (t > t[i] - window) & (at <= i)].sum()) for i in range(n)]
    assert window_sums(u, t, w, window).tolist() == want


def test_small_outputs_hours_before_the_burst_are_not_part_of_it():
    # three one-record prints of unrelated patients at 06:00-06:10 and one at 10:00, then the
    # user's own patients' burst at 10:05-10:25: only the windows ending at 10:25 reach 50
    early = [out("u1", f"q{i}", f"2025-07-22 06:{5 * i:02d}", 1) for i in range(3)]
    late = out("u1", "q3", "2025-07-22 10:00", 1)
    burst = [out("u1", f"p{i}", f"2025-07-22 10:{5 + 5 * i:02d}", 12) for i in range(5)]
    f = copy(early + [late] + burst, explained=ids(burst))
    assert len(f) == 1
    r = f.iloc[0]
    assert r["event_ids"] == sorted(ids([late] + burst))
    assert (r["evidence"]["records"], r["evidence"]["distinct_patients"]) == (61, 6)
    assert r["evidence"]["rule"] == "all_outputs"
    assert r["start"] == "2025-07-22T10:00:00+08:00"


@pytest.mark.parametrize("big_first", [True, False])
def test_two_users_outputs_are_never_added_together(big_first):
    # each under the floor of 50: a has 1 + 40 records, b three prints of 10 at one instant
    a = [out("a", "p0", "2025-07-22 10:00", 1), out("a", "p1", "2025-07-22 10:30", 40)]
    b = [out("b", f"q{i}", "2025-07-22 10:00", 10) for i in range(3)]
    rows = a + b if big_first else b + a
    assert copy(rows, explained=ids(rows)).empty
    # interleaved in time, 30 records each
    rows = [out("c" if i % 2 else "d", f"r{i}", f"2025-07-22 10:{i:02d}", 10)
            for i in range(6)]
    assert copy(rows, explained=ids(rows)).empty


def test_an_episode_in_the_look_back_does_not_hide_a_later_one():
    old = [out("a", f"p{i}", f"2025-07-20 10:{5 * i:02d}", 20) for i in range(3)]
    new = [out("b", f"q{i}", f"2025-07-22 10:{5 * i:02d}", 20) for i in range(3)]
    f = copy(old + new, explained=ids(old + new),
             users=[{"user_id": "a", "role": "nurse"}, {"user_id": "b", "role": "clerk"}])
    assert f["user_id"].tolist() == ["b"]
    assert f.iloc[0]["event_ids"] == sorted(ids(new))


# --- peers ------------------------------------------------------------------------------------

PEERS = [{"user_id": f"u{i}", "role": "nurse", "department": "ICU"} for i in range(1, 6)]


def peer_history():
    # u2..u5 each print 30 records of 3 patients on one day of the look-back
    return [out(f"u{k}", f"h{k}_{i}", f"2025-07-15 10:{5 * i:02d}", 10)
            for k in range(2, 6) for i in range(3)]


def test_a_role_and_department_group_sets_the_peer_threshold():
    hist = peer_history()
    rows = hist + [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 10) for i in range(5)]
    f = copy(rows, explained=ids(hist), users=PEERS)
    assert len(f) == 1
    e = f.iloc[0]["evidence"]
    assert e["thresholds"]["peer_percentile"] == {"group": "nurse|ICU", "value": 30.0,
                                                  "required": 46.0}
    assert e["required_unrelated"] == 46.0                    # floor 20 < 1.5 x 30 + 1


def test_the_unrelated_floor_rises_to_the_peer_threshold():
    # 30 records of unrelated patients: over the floor of 20, under the peers' 46
    hist = peer_history()
    rows = hist + [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 10) for i in range(3)]
    assert copy(rows, explained=ids(hist), users=PEERS).empty
    # without peers the same outputs are a finding of the lower rule
    rows = [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 10) for i in range(3)]
    f = copy(rows, users=PEERS[:1])
    assert f["message_id"].tolist() == ["copy.bulk_export.unrelated"]


def test_peers_daily_maxima_from_the_population_set_the_peer_threshold():
    rows = [out("u1", f"p{i}", f"2025-07-22 10:{5 * i:02d}", 20) for i in range(3)]
    assert len(copy(rows, explained=ids(rows))) == 1
    # in a partitioned scan another partition's user printed 100 records on one day
    ctx = stub_explain(make_ctx(rows, window=DAY), explained=ids(rows))
    ctx.population["daily:copy.bulk_export"] = pd.DataFrame(
        {"user_id": ["u9"], "day": [D21], "value": [100.0]})
    assert run("copy.bulk_export", ctx).empty                # 60 < 1.5 x 100 + 1


# --- the population part --------------------------------------------------------------------

def population(rows):
    from emraudit.detectors.registry import all_detectors
    ctx = make_ctx(rows, window=DAY)
    part = all_detectors()["copy.bulk_export"]().population_part(ctx)
    assert list(part) == ["daily:copy.bulk_export"]
    return part["daily:copy.bulk_export"]


def test_population_part_is_each_user_days_largest_window():
    rows = [out("u1", "p0", "2025-07-21 07:00", 10), out("u1", "p1", "2025-07-21 07:30", 5),
            out("u1", "p2", "2025-07-21 23:30", 4),
            out("u1", "p3", "2025-07-22 00:30", 7), out("u1", "p4", "2025-07-22 15:00", 1),
            out("u2", "p0", "2025-07-22 15:00", 3), ev("u3", "p0", "2025-07-22 15:00")]
    daily = population(rows)
    assert daily[["user_id", "day", "value"]].values.tolist() == [
        ["u1", D21, 15], ["u1", D22, 11], ["u2", D22, 3]]


def test_population_part_without_outputs_is_empty():
    daily = population([ev("u1", "p0", "2025-07-22 10:00")])
    assert daily.empty and list(daily.columns) == ["user_id", "day", "value"]
