"""bulk.off_hours and bulk.volume at their edges: floor, own baseline multiple, peer
percentile, the night-shift nurse (roster and inferred), midnight in Asia/Shanghai."""

from __future__ import annotations

import numpy as np
import pytest

from detector_frames import ev, make_ctx, run

WINDOW = ("2025-07-22", "2025-07-23")     # Tuesday


def stub_explain(ctx, explained=()):
    """Stand-in for the explanation engine: only the listed event ids are explained."""
    e = ctx.events[ctx.events["patient_id"].notna()]
    df = e[["event_id", "user_id", "patient_id", "ts", "in_window"]].copy()
    df["explained"] = df["event_id"].isin(list(explained)).to_numpy()
    df["explanation"] = np.where(df["explained"], "own_relation", "")
    df["detail"] = ""
    ctx.memo["explain"] = df
    return ctx


def history(user, hours=(9, 11, 14, 16), days=10, first=10, patients=("h1", "h2")):
    rows = []
    for d in range(first, first + days):
        for h in hours:
            for p in patients:
                rows.append(ev(user, p, f"2025-07-{d:02d} {h:02d}:10"))
    return rows


def burst(user, n, start="2025-07-22 02:00", step_min=2, prefix="b", action="view"):
    t0 = np.datetime64(start.replace(" ", "T"))
    return [ev(user, f"{prefix}{i}", str(t0 + np.timedelta64(i * step_min, "m")).replace("T", " "),
               action=action) for i in range(n)]


# --------------------------------------------------------------------------- bulk.off_hours
@pytest.mark.parametrize("n,fires", [(9, False), (10, True)])
def test_off_hours_floor_edge(n, fires):
    ctx = stub_explain(make_ctx(history("d1") + burst("d1", n), window=WINDOW))
    f = run("bulk.off_hours", ctx)
    assert (len(f) == 1) is fires
    if fires:
        evd = f.iloc[0]["evidence"]
        assert evd["duty"]["basis"] == "inferred"
        assert evd["thresholds"]["required"] == 10
        assert {"floor", "own_baseline", "peer_percentile"} <= set(evd["thresholds"])


def test_day_user_at_2am_40_records_is_item_8_high_and_subtle_12_is_item_9():
    ctx = stub_explain(make_ctx(history("d1") + burst("d1", 40, step_min=1), window=WINDOW))
    f = run("bulk.off_hours", ctx)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["rectification_item"] == "8" and r["severity"] == "high"
    assert len(r["event_ids"]) == 40 and r["evidence"]["peak_distinct_patients"] == 40
    ctx = stub_explain(make_ctx(history("d1") + burst("d1", 12, step_min=4), window=WINDOW))
    f = run("bulk.off_hours", ctx)
    assert len(f) == 1
    assert f.iloc[0]["rectification_item"] == "9"
    assert f.iloc[0]["evidence"]["peak_distinct_patients"] == 12


def test_twelve_patients_spread_over_more_than_the_window_do_not_fire():
    # 12 patients over 132 minutes: at most 6 in any 60-minute window
    ctx = stub_explain(make_ctx(history("d1") + burst("d1", 12, step_min=12), window=WINDOW))
    assert run("bulk.off_hours", ctx).empty


def test_night_shift_nurse_at_3am_inferred_is_not_off_hours():
    hist = history("n1", hours=(20, 22, 0, 2, 4, 6), patients=[f"w{i}" for i in range(12)])
    evs = hist + burst("n1", 14, start="2025-07-22 03:00")
    ctx = stub_explain(make_ctx(evs, window=WINDOW))
    assert run("bulk.off_hours", ctx).empty


def test_night_shift_nurse_at_3am_rostered_is_not_off_hours_but_unrostered_night_is():
    shifts = [{"user_id": "n1", "start": "2025-07-21 19:00", "end": "2025-07-22 07:00"},
              {"user_id": "n2", "start": "2025-07-22 08:00", "end": "2025-07-22 17:00"}]
    evs = burst("n1", 14, start="2025-07-22 03:00") + burst("n2", 14, start="2025-07-22 03:00",
                                                            prefix="c")
    ctx = stub_explain(make_ctx(evs, window=WINDOW, shifts=shifts))
    f = run("bulk.off_hours", ctx)
    assert list(f["user_id"]) == ["n2"]
    assert f.iloc[0]["evidence"]["duty"]["basis"] == "roster"


def test_burst_straddling_midnight_in_shanghai_is_one_window():
    evs = history("d1") + burst("d1", 6, start="2025-07-21 23:35", step_min=4, prefix="a") + \
        burst("d1", 6, start="2025-07-22 00:00", step_min=4, prefix="b")
    ctx = stub_explain(make_ctx(evs, window=WINDOW))
    f = run("bulk.off_hours", ctx)
    assert len(f) == 1
    assert f.iloc[0]["evidence"]["peak_distinct_patients"] == 12
    assert len(f.iloc[0]["event_ids"]) == 12       # look-back half included as evidence
    # the same burst entirely in the look-back: no finding
    ctx = stub_explain(make_ctx(evs, window=("2025-07-22 01:00", "2025-07-23")))
    assert run("bulk.off_hours", ctx).empty


def _rostered_with_evenings(user, evening_patients):
    """Day roster on 10 days; each evening `evening_patients` distinct patients off duty."""
    shifts, rows = [], []
    for d in range(10, 22):
        shifts.append({"user_id": user, "start": f"2025-07-{d:02d} 08:00",
                       "end": f"2025-07-{d:02d} 17:00"})
        rows.append(ev(user, "day", f"2025-07-{d:02d} 10:00"))
        rows += burst(user, evening_patients, start=f"2025-07-{d:02d} 20:00", prefix=f"e{d}_")
    shifts.append({"user_id": user, "start": "2025-07-22 08:00", "end": "2025-07-22 17:00"})
    return shifts, rows


@pytest.mark.parametrize("n,fires", [(18, False), (19, True)])
def test_off_hours_own_baseline_multiple_edge(n, fires):
    shifts, rows = _rostered_with_evenings("u1", 6)      # usual 6 → required 3 x 6 + 1 = 19
    rows += burst("u1", n, start="2025-07-22 20:00", step_min=1, prefix="z")
    ctx = stub_explain(make_ctx(rows, window=WINDOW, shifts=shifts))
    f = run("bulk.off_hours", ctx)
    assert (len(f) == 1) is fires
    if fires:
        th = f.iloc[0]["evidence"]["thresholds"]
        assert th["own_baseline"]["value"] == 6 and th["required"] == 19


@pytest.mark.parametrize("n,fires", [(15, False), (16, True)])
def test_off_hours_peer_percentile_edge(n, fires):
    users = [{"user_id": f"p{i}", "role": "nurse", "department": "ICU"} for i in range(5)]
    users.append({"user_id": "me", "role": "nurse", "department": "ICU"})
    rows = []
    for i in range(5):     # peers: 3 days of history (office hours), 15 patients at 21:00
        for d in (15, 16, 17):
            rows += burst(f"p{i}", 15, start=f"2025-07-{d:02d} 21:00", step_min=1,
                          prefix=f"q{i}{d}_")
    rows += burst("me", n, start="2025-07-22 21:00", step_min=1)
    ctx = stub_explain(make_ctx(rows, window=WINDOW, users=users))
    f = run("bulk.off_hours", ctx)
    assert (len(f) == 1) is fires
    if fires:
        th = f.iloc[0]["evidence"]["thresholds"]
        assert th["peer_percentile"]["group"] == "nurse|ICU"
        assert th["peer_percentile"]["value"] == 15 and th["required"] == 16


@pytest.mark.parametrize("n,fires", [(19, False), (20, True)])
def test_explained_burst_without_roster_needs_twice_the_threshold(n, fires):
    evs = history("d1") + burst("d1", n)
    ids = [e["event_id"] for e in evs[-n:]]
    ctx = stub_explain(make_ctx(evs, window=WINDOW), explained=ids)
    f = run("bulk.off_hours", ctx)
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["thresholds"]["explained_required"] == 20


def test_explained_burst_with_roster_is_off_duty_all_the_same():
    evs = history("d1") + burst("d1", 12)
    ids = [e["event_id"] for e in evs[-12:]]
    shifts = [{"user_id": "d1", "start": "2025-07-22 08:00", "end": "2025-07-22 17:00"}]
    ctx = stub_explain(make_ctx(evs, window=WINDOW, shifts=shifts), explained=ids)
    assert len(run("bulk.off_hours", ctx)) == 1


def test_off_hours_finding_ids_are_stable_across_rescans():
    evs = history("d1") + burst("d1", 12)
    a = run("bulk.off_hours", stub_explain(make_ctx(evs, window=WINDOW)))
    b = run("bulk.off_hours", stub_explain(make_ctx(evs, window=WINDOW)))
    assert list(a["finding_id"]) == list(b["finding_id"]) and len(a) == 1


# --------------------------------------------------------------------------- bulk.volume
@pytest.mark.parametrize("n,fires", [(29, False), (30, True)])
def test_volume_floor_edge_for_a_new_user(n, fires):
    evs = burst("new", n, start="2025-07-22 09:00", step_min=5)
    f = run("bulk.volume", stub_explain(make_ctx(evs, window=WINDOW)))
    assert (len(f) == 1) is fires


def _daily(user, n, days=range(10, 22), prefix=None):
    rows = []
    for d in days:
        rows += burst(user, n, start=f"2025-07-{d:02d} 09:00", step_min=5,
                      prefix=prefix or f"{user}{d}_")
    return rows


@pytest.mark.parametrize("n,fires", [(40, False), (41, True)])
def test_volume_own_baseline_edge(n, fires):
    evs = _daily("u1", 20) + burst("u1", n, start="2025-07-22 08:00", step_min=3, prefix="z")
    f = run("bulk.volume", stub_explain(make_ctx(evs, window=WINDOW)))
    assert (len(f) == 1) is fires
    if fires:
        th = f.iloc[0]["evidence"]["thresholds"]
        assert th["own_baseline"]["value"] == 20 and th["required"] == 41


def test_records_staff_are_measured_against_records_staff():
    users = [{"user_id": f"r{i}", "role": "medical_records", "department": "病案室"}
             for i in range(6)]
    evs = []
    for i in range(5):
        evs += _daily(f"r{i}", 60, days=range(15, 22))
    evs += burst("r5", 80, start="2025-07-22 08:00", step_min=3)   # new clerk, busy day
    f = run("bulk.volume", stub_explain(make_ctx(evs, window=WINDOW, users=users)))
    assert f.empty
    # the same day by a nurse with no such peers fires
    users.append({"user_id": "n1", "role": "nurse", "department": "ICU"})
    evs += burst("n1", 80, start="2025-07-22 08:00", step_min=3, prefix="n")
    f = run("bulk.volume", stub_explain(make_ctx(evs, window=WINDOW, users=users)))
    assert list(f["user_id"]) == ["n1"]
    assert f.iloc[0]["severity"] == "high"


@pytest.mark.parametrize("n,fires", [(59, False), (60, True)])
def test_volume_day_fully_explained_needs_twice_the_threshold(n, fires):
    evs = burst("u", n, start="2025-07-22 09:00", step_min=1)
    ctx = stub_explain(make_ctx(evs, window=WINDOW), explained=[e["event_id"] for e in evs])
    assert (len(run("bulk.volume", ctx)) == 1) is fires


@pytest.mark.parametrize("n,fires", [(40, False), (41, True)])
def test_volume_first_scan_without_lookback_judges_each_day_against_the_others(n, fires):
    evs = _daily("u1", 20) + burst("u1", n, start="2025-07-22 08:00", step_min=3, prefix="z")
    ctx = stub_explain(make_ctx(evs, window=("2025-07-01", "2025-07-23")))   # all in window
    f = run("bulk.volume", ctx)
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["date"] == "2025-07-22"
        assert f.iloc[0]["evidence"]["thresholds"]["own_baseline"]["days"] == 12


def test_off_hours_peers_in_the_same_window_count_without_lookback():
    users = [{"user_id": f"rt{i}", "role": "technician", "department": "呼吸治疗"}
             for i in range(6)]
    rows = []
    for i in range(6):   # every therapist: 14 ventilated patients at 03:00, 3 nights, no roster
        for d in (20, 21, 22):
            rows += burst(f"rt{i}", 14, start=f"2025-07-{d:02d} 03:00", step_min=2,
                          prefix=f"v{i}{d}_")
    ctx = stub_explain(make_ctx(rows, window=("2025-07-20", "2025-07-23"), users=users))
    assert run("bulk.off_hours", ctx).empty
