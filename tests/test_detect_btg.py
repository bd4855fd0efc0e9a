"""btg.unjustified: a relation for the user, department or ward active or starting within
justify_hours after the break-the-glass justifies it; pending ones wait for the next scan;
the rate pattern against peers."""

from __future__ import annotations

import pytest

from detector_frames import ev, make_ctx, run

WINDOW = ("2025-07-22", "2025-07-23")
USERS = [{"user_id": "e1", "role": "physician", "department": "急诊科", "ward": "EW"},
         {"user_id": "e2", "role": "physician", "department": "急诊科", "ward": "EW"}]


def btg_ctx(relations, events=None, window=WINDOW):
    events = events or [ev("e1", "P1", "2025-07-22 02:00", action="break_glass",
                           event_id="btg1", reason="抢救"),
                        ev("e1", "P1", "2025-07-22 02:01", event_id="view1")]
    return make_ctx(events, window=window, users=USERS, care_relations=relations)


@pytest.mark.parametrize("rel,fires", [
    ({"user_id": "e1", "kind": "admission", "start": "2025-07-22 20:00"}, False),   # 18 h later
    ({"department": "急诊科", "kind": "admission", "start": "2025-07-23 01:59"}, False),  # 23:59
    ({"ward": "EW", "kind": "admission", "start": "2025-07-22 03:00"}, False),
    ({"user_id": "e1", "kind": "admission", "start": "2025-07-20 00:00",
      "end": "2025-07-25 00:00"}, False),                                              # active
    ({"department": "急诊科", "kind": "admission", "start": "2025-07-23 02:01"}, True),  # 24h01
    ({"department": "骨科", "kind": "admission", "start": "2025-07-22 03:00"}, True),   # other dept
    ({"user_id": "e1", "kind": "admission", "start": "2025-07-10 00:00",
      "end": "2025-07-15 00:00"}, True),                                               # ended
])
def test_btg_justified_by_a_relation_within_24h(rel, fires):
    rels = [{"patient_id": "P1", **rel},
            # an unrelated later relation keeps the horizon past the justification period
            {"patient_id": "PX", "user_id": "x", "kind": "admission", "start": "2025-07-25"}]
    f = run("btg.unjustified", btg_ctx(rels))
    assert (len(f) == 1) is fires
    if fires:
        r = f.iloc[0]
        assert r["patient_id"] == "P1" and r["rectification_item"] == "9"
        assert sorted(r["event_ids"]) == ["btg1", "view1"]
        assert r["evidence"]["reason_given"] == "抢救"


OTHER = [{"patient_id": "PX", "user_id": "x", "kind": "admission", "start": "2025-07-20"}]


def test_btg_without_care_relations_table_is_not_judged_one_by_one():
    ctx = btg_ctx(None, window=("2025-07-22", "2025-07-24"))
    assert run("btg.unjustified", ctx).empty
    assert any("no care_relations" in n for n in ctx.notes)
    f = run("btg.unjustified", btg_ctx(OTHER, window=("2025-07-22", "2025-07-24")))
    assert len(f) == 1


def test_btg_still_within_its_period_is_pending_then_judged_next_scan():
    ctx = btg_ctx(OTHER)                  # window ends 22 h after the BTG
    assert run("btg.unjustified", ctx).empty
    assert any("justification period" in n for n in ctx.notes)
    nxt = btg_ctx(OTHER, window=("2025-07-23", "2025-07-24"))
    f = run("btg.unjustified", nxt)
    assert len(f) == 1 and f.iloc[0]["evidence"]["judged_after_window_start"] is True
    # the scan after that does not judge it again
    assert run("btg.unjustified", btg_ctx(OTHER, window=("2025-07-24", "2025-07-25"))).empty


def test_btg_followed_by_print_is_raised():
    evs = [ev("e1", "P1", "2025-07-22 02:00", action="break_glass", event_id="b"),
           ev("e1", "P1", "2025-07-22 02:05", action="print", event_id="pr")]
    f = run("btg.unjustified", btg_ctx(OTHER, evs, window=("2025-07-22", "2025-07-24")))
    assert f.iloc[0]["severity"] == "high" and f.iloc[0]["evidence"]["outputs_after"] is True


def test_btg_rate_far_above_peers():
    users = [{"user_id": f"d{i}", "role": "physician", "department": "心内科"} for i in range(6)]
    evs, rels = [], []
    for i in range(6):
        for d in range(10, 22):
            evs.append(ev(f"d{i}", f"P{i}_{d}", f"2025-07-{d:02d} 10:00"))
    for k in range(6):   # d0 breaks the glass on 6 of its patients, each justified
        evs.append(ev("d0", f"P0_{10 + k}", f"2025-07-{10 + k:02d} 09:59", action="break_glass"))
    evs.append(ev("d0", "P0_22", "2025-07-22 09:59", action="break_glass"))
    evs.append(ev("d0", "P0_22", "2025-07-22 10:00"))
    rels = [{"patient_id": f"P0_{d}", "user_id": "d0", "kind": "admission",
             "start": f"2025-07-{d:02d} 09:00"} for d in range(10, 23)]
    ctx = make_ctx(evs, window=WINDOW, users=users, care_relations=rels)
    f = run("btg.unjustified", ctx)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["user_id"] == "d0" and r["patient_id"] == ""
    assert r["evidence"]["pattern"] == "rate_above_peers"
    assert r["message_id"] == "btg.unjustified.rate" and r["message_args"]["count"] == 7
    assert r["evidence"]["btg_count"] == 7
    # below the minimum count: no rate finding
    assert run("btg.unjustified", ctx, rate_min_count=8).empty


def test_deferred_judgement_survives_the_scan_pipeline_filter():
    from emraudit.detectors.profile import DetectorSetting
    from emraudit.detectors.registry import get
    from emraudit.scan import run_detectors
    ctx = btg_ctx(OTHER, window=("2025-07-23", "2025-07-24"))   # BTG in the look-back
    settings = {"btg.unjustified": DetectorSetting(get("btg.unjustified"), True, {})}
    found, status = run_detectors(ctx, settings)
    assert status["btg.unjustified"].status == "ran"
    assert len(found) == 1 and "btg1" in found.iloc[0]["event_ids"]


def test_relations_without_optional_columns():
    rels = [{"patient_id": "P1", "kind": "admission", "start": "2025-07-22 05:00"}]  # no user
    f = run("btg.unjustified", btg_ctx(rels, window=("2025-07-22", "2025-07-24")))
    assert len(f) == 1 and f.iloc[0]["patient_id"] == "P1"


def test_each_btg_lists_only_its_own_user_and_patients_accesses_within_the_period():
    """Two unjustified break-the-glass events: each finding lists the same user's accesses
    to the same patient from the event to justify_hours after it, in time order, and ends
    at the last of them; another user's access, another patient's and a later one are
    not its evidence. Relations of other patients do not matter."""
    evs = [ev("e1", "P1", "2025-07-22 02:00", action="break_glass", event_id="b1"),
           ev("e1", "P1", "2025-07-22 03:00", event_id="v1"),
           ev("e1", "P1", "2025-07-22 05:00", action="print", event_id="p1"),
           ev("e1", "P1", "2025-07-23 03:00", event_id="late"),        # 25 h after
           ev("e1", "P2", "2025-07-22 04:00", event_id="other_patient"),
           ev("e2", "P1", "2025-07-22 04:00", event_id="other_user"),
           ev("e2", "P3", "2025-07-22 06:00", action="break_glass", event_id="b2")]
    rels = OTHER + [{"patient_id": "P9", "user_id": "e1", "kind": "admission",
                     "start": "2025-07-22 01:00"}]
    f = run("btg.unjustified", btg_ctx(rels, evs, window=("2025-07-22", "2025-07-25")))
    by = {r["user_id"]: r for _, r in f.iterrows()}
    assert set(by) == {"e1", "e2"}
    e1 = by["e1"]
    assert sorted(e1["event_ids"]) == ["b1", "p1", "v1"]
    assert e1["evidence"]["accesses_after"] == 2 and e1["evidence"]["outputs_after"] is True
    assert e1["end"].startswith("2025-07-22T05:00") and e1["severity"] == "high"
    e2 = by["e2"]
    assert e2["event_ids"] == ["b2"] and e2["evidence"]["accesses_after"] == 0
    assert e2["end"] == e2["start"] and e2["evidence"]["outputs_after"] is False
    assert e2["evidence"]["judged_after_window_start"] is False
