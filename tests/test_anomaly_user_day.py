"""anomaly.user_day: planted outlier ranks first, budget, persistence, peer fallback, seed."""

from __future__ import annotations

import sys
import types

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pandas as pd
import pytest

from property_settings import examples

from emraudit.detectors.anomaly.state import load_baseline, save_outputs
from emraudit.detectors.anomaly.user_day import SCORES_MEMO, UserDayAnomaly
from emraudit.detectors.anomaly.models import UserDayModel, ecdf_table, ecod_cells
from emraudit.detectors.base import Context
from emraudit.detectors.anomaly.features import FEATURE_NAMES
from emraudit.store import Store

TZ = "Asia/Shanghai"
DAY0 = pd.Timestamp("2025-04-01", tz=TZ)


def synth(n_days=20, window_days=1, seed=1, plant=True):
    """8 nurses and 3 physicians of ward A, one therapist (a peer group of one)."""
    rng = np.random.default_rng(seed)
    users = [f"n{i}" for i in range(8)] + [f"d{i}" for i in range(3)] + ["t0"]
    roles = ["nurse"] * 8 + ["physician"] * 3 + ["technician"]
    rows = []
    for d in range(n_days):
        for u in users:
            k = rng.integers(15, 25)
            pats = rng.integers(0, 60, size=k)            # ward A's 60 patients
            mins = np.sort(rng.integers(8 * 60, 17 * 60, size=k))
            for j in range(k):
                rows.append((DAY0 + pd.Timedelta(days=d, minutes=int(mins[j])), u,
                             f"p{pats[j]}", "view", f"ws-{u}", 1))
    if plant:   # n3 on the last day: 80 patients from all over, and a 40-record export
        last = DAY0 + pd.Timedelta(days=n_days - 1)
        for j in range(80):
            rows.append((last + pd.Timedelta(hours=20, seconds=20 * j), "n3", f"x{j}", "view",
                         "ws-n3", 1))
        rows.append((last + pd.Timedelta(hours=21), "n3", "x1", "export", "ws-n3", 40))
    ev = pd.DataFrame(rows, columns=["ts", "user_id", "patient_id", "action", "workstation",
                                     "record_count"])
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ev["event_id"] = pd.Series([f"e{i}" for i in range(len(ev))], dtype="string")
    for c in ("user_id", "patient_id", "action", "workstation"):
        ev[c] = ev[c].astype("string")
    ev["ip"] = ev["workstation"]
    ws = DAY0 + pd.Timedelta(days=n_days - window_days)
    ev["in_window"] = ev["ts"] >= ws
    u = pd.DataFrame({"user_id": users, "role": roles,
                      "department": ["A"] * 11 + ["rehab"]}).astype("string")
    return dict(events=ev, window_start=ws, window_end=DAY0 + pd.Timedelta(days=n_days),
                tz=TZ, users=u)


@pytest.fixture(autouse=True)
def engines(monkeypatch):
    from emraudit.detectors.registry import all_detectors
    all_detectors()     # the real modules load first: findings are worded through the registry
    explain = types.ModuleType("emraudit.detectors.explain")

    def explain_accesses(ctx):
        ev = ctx.events[ctx.events["patient_id"].notna()]
        return pd.DataFrame({"event_id": ev["event_id"], "user_id": ev["user_id"],
                             "patient_id": ev["patient_id"], "ts": ev["ts"],
                             "in_window": ev["in_window"],
                             "explained": ~ev["patient_id"].str.startswith("x"),
                             "explanation": "", "detail": ""})

    explain.explain_accesses = explain_accesses
    schedule = types.ModuleType("emraudit.detectors.schedule")

    def duty_mask(ctx, events):
        h = events["ts"].dt.tz_convert(ctx.tz).dt.hour
        return (h >= 8) & (h < 18), pd.Series("roster", index=events.index)

    schedule.duty_mask = duty_mask
    monkeypatch.setitem(sys.modules, "emraudit.detectors.explain", explain)
    monkeypatch.setitem(sys.modules, "emraudit.detectors.schedule", schedule)


def run(det, ctx):
    f = det.run(ctx)
    return f, ctx.memo[SCORES_MEMO]


@pytest.mark.parametrize("model", ["ecod", "iforest", "ensemble"])
def test_planted_outlier_ranks_first(model):
    ctx = Context(**synth())
    det = UserDayAnomaly(model=model, history_days=3, min_percentile=90.0)
    f, scores = run(det, ctx)
    top = scores.sort_values("score", ascending=False).iloc[0]
    assert top["user_id"] == "n3"
    best = f.sort_values("score", ascending=False).iloc[0]
    assert best["user_id"] == "n3"
    ev = best["evidence"]
    feats = [d["feature"] for d in ev["drivers"]]
    assert set(feats) & {"patients", "unexplained", "unexplained_share", "new_patients",
                         "output_records", "burst_patients", "off_duty_share", "events"}
    d0 = ev["drivers"][0]
    assert {"value", "peer_median", "peer_p99", "own_median", "own_days"} <= set(d0)
    assert best["message_id"] == "anomaly.user_day"
    assert best["message_args"]["drivers"][0]["feature"] == d0["feature"]
    assert "peers: median" in best["summary"] and "own median" in best["summary"]
    assert d0["peer_group"] == "nurse|A"
    assert best["event_ids"] and len(best["event_ids"]) <= det.p.max_event_ids


def test_export_driven_finding_is_item_8():
    ctx = Context(**synth(plant=False))
    ev = ctx.events
    last = ev["ts"].max().normalize()
    extra = pd.DataFrame({"ts": [last + pd.Timedelta(hours=12, minutes=m) for m in range(6)],
                          "user_id": "n5", "patient_id": "p1", "action": "export",
                          "workstation": "ws-n5", "record_count": 50})
    extra["event_id"] = [f"x{i}" for i in range(6)]
    extra["ip"] = "ws-n5"
    extra["in_window"] = True
    ctx.events = pd.concat([ev, extra.astype(ev.dtypes.to_dict())], ignore_index=True) \
        .sort_values("ts", kind="stable").reset_index(drop=True)
    f, _ = run(UserDayAnomaly(history_days=3, max_per_day=1, min_percentile=90.0), ctx)
    assert len(f) == 1
    assert f.iloc[0]["user_id"] == "n5" and f.iloc[0]["rectification_item"] == "8"
    drv = f.iloc[0]["evidence"]["drivers"]
    assert drv[0]["feature"] in ("outputs", "output_records")
    assert set(drv[0]["event_ids"]) == {f"x{i}" for i in range(6)}


def test_alert_budget_respected():
    ctx = Context(**synth(window_days=3, plant=False))
    det = UserDayAnomaly(history_days=3, max_per_day=2, min_percentile=0.0,
                         max_per_100k_events=0.0, require_signal=False)
    f, scores = run(det, ctx)
    per_day = scores[scores["flagged"]].groupby("day").size()
    assert len(per_day) == 3 and (per_day == 2).all()
    assert len(f) == 6
    # a high percentile floor admits nothing ordinary
    ctx2 = Context(**synth(window_days=3, plant=False))
    f2, s2 = run(UserDayAnomaly(history_days=3, max_per_day=100, min_percentile=100.0), ctx2)
    assert (s2["flagged"] == (s2["rank"] > 1.0)).all()


def test_peer_group_of_one_is_not_scored():
    # 1 technician < 5 users: no role+department group, no role group; compared with
    # everyone, a therapist's normal day (every ward) would look unusual
    ctx = Context(**synth())
    det = UserDayAnomaly(history_days=3, max_per_day=0, min_percentile=0.0,
                         max_per_100k_events=0.0, require_signal=False)
    f, scores = run(det, ctx)
    assert "t0" not in set(f["user_id"]) and len(f)
    assert any("not scored: their role has fewer than 5 users" in n for n in ctx.notes)
    ctx = Context(**synth())
    f1, _ = run(UserDayAnomaly(history_days=3, max_per_day=0, min_percentile=0.0,
                               max_per_100k_events=0.0, require_signal=False,
                               min_peer_users=1), ctx)
    t1 = f1[f1["user_id"] == "t0"].iloc[0]
    assert t1["evidence"]["drivers"][0]["peer_group"] == "technician|rehab"
    assert np.isfinite(t1["score"])


def test_deterministic_under_seed():
    a = run(UserDayAnomaly(model="ensemble", history_days=3, random_state=7), Context(**synth()))
    b = run(UserDayAnomaly(model="ensemble", history_days=3, random_state=7), Context(**synth()))
    pd.testing.assert_frame_equal(a[1], b[1])
    assert list(a[0]["finding_id"]) == list(b[0]["finding_id"])
    assert list(a[0]["summary"]) == list(b[0]["summary"])


@pytest.mark.parametrize("model", ["ecod", "ensemble"])
def test_model_persistence_round_trip(tmp_path, model):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    det = UserDayAnomaly(model=model, history_days=3, min_percentile=90.0)
    ctx = Context(**synth())
    f1, s1 = run(det, ctx)
    assert ctx.outputs["models"] and len(ctx.outputs["user_day_features"]) > 0
    with store.begin() as conn:
        counts = save_outputs(conn, ctx.outputs, "scan-1")
    assert counts["models"] == 1
    blob = ctx.outputs["models"][0]["blob"]
    assert len(blob) < (100_000 if model == "ecod" else 2_000_000)  # no training rows
    base = load_baseline(store, "2025-03-01", "2025-04-30")
    assert set(base["models"]) == {det.id}
    assert set(FEATURE_NAMES) <= set(base["user_day_features"].columns)
    ctx2 = Context(**synth(), baseline=base)
    f2, s2 = run(det, ctx2)
    assert "models" not in ctx2.outputs               # the stored model was reused
    np.testing.assert_allclose(s1["score"], s2["score"], rtol=0, atol=0)
    assert list(f1["finding_id"]) == list(f2["finding_id"])
    # and the model alone: scoring from the stored row equals scoring with the fitted one
    m = UserDayModel.from_row(base["models"][det.id])
    assert m.columns and m.window == tuple(ctx.outputs["models"][0][k]
                                           for k in ("window_start", "window_end"))


def test_stored_baseline_replaces_raw_history():
    """A nightly scan with the look-back's features in the store needs no raw look-back."""
    full = synth()
    ctx = Context(**full)
    det = UserDayAnomaly(history_days=3, min_percentile=90.0)
    _, s1 = run(det, ctx)
    stored = ctx.outputs["user_day_features"]
    ev = full["events"]
    only_window = dict(full, events=ev[ev["in_window"] | (ev["ts"] >= full["window_start"] -
                                                          pd.Timedelta(days=3))]
                       .reset_index(drop=True))
    base = {"user_day_features": stored[stored["day"] < "2025-04-20"]}
    _, s2 = run(det, Context(**only_window, baseline=base))
    np.testing.assert_allclose(s1["score"], s2["score"])


def test_ecod_tables_match_pyod():
    from pyod.models.ecod import ECOD
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.exponential(1.0, 400), rng.exponential(2.0, 400),
                         -rng.exponential(1.0, 400)])
    row = np.array([[3.0, 0.5, -0.2]])
    pyod_score = ECOD().fit(X).decision_function(row)[0]
    tables = [ecdf_table(X[:, j]) for j in range(3)]
    from scipy.stats import skew
    mine = ecod_cells(tables, np.sign(skew(X, axis=0)), row).sum()
    assert mine == pytest.approx(pyod_score, rel=1e-9)


def test_declaration_complete():
    d = UserDayAnomaly.declaration()
    assert d["kind"] == "anomaly" and d["note"] and d["false_positives"]
    assert d["measure_zh"] and d["measure_en"]
    for p in d["params"]:
        assert p["doc"]


def test_empty_log_and_no_features():
    from emraudit.model import empty_table
    ev = empty_table("access_log", TZ)
    ev["in_window"] = pd.Series(dtype=bool)
    ctx = Context(events=ev, window_start=DAY0, window_end=DAY0 + pd.Timedelta(days=1), tz=TZ)
    assert UserDayAnomaly().run(ctx).empty
    ctx = Context(**synth())
    assert UserDayAnomaly(features=[]).run(ctx).empty
    assert any("no features" in n for n in ctx.notes)


def test_nightly_scan_computes_only_recent_days():
    """With every look-back day in the store, features are computed for the window and the
    history_days before it only, and the scores equal a scan computing everything."""
    full = synth()
    ctx = Context(**full)
    det = UserDayAnomaly(history_days=3, min_percentile=90.0)
    _, s1 = run(det, ctx)
    stored = ctx.outputs["user_day_features"]
    base = {"user_day_features": stored[stored["day"] < "2025-04-20"]}
    ctx2 = Context(**synth(), baseline=base)
    _, s2 = run(det, ctx2)
    computed = ctx2.memo["features.user_day:3:30"]
    assert computed["day"].min() == "2025-04-17"
    np.testing.assert_allclose(s1["score"], s2["score"])


def test_skewness_is_scipys_to_the_bit():
    import numpy as np
    from scipy.stats import skew
    from emraudit.detectors.anomaly.models import skewness
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.exponential(size=500), -rng.exponential(size=500),
                         np.full(500, 3.0), rng.normal(size=500), np.r_[np.zeros(499), 1e-9]])
    X[:, 3] = np.round(X[:, 3], 1)
    import warnings
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # "catastrophic cancellation"
        ref = skew(X, axis=0)
    got = skewness(X)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got[2])
    assert np.array_equal(got[~np.isnan(got)], ref[~np.isnan(ref)])
    assert np.sign(got[0]) == 1 and np.sign(got[1]) == -1


def busy_day_ctx(patient_prefix: str) -> Context:
    """n3's last day: 80 accesses to 60 ward patients within an hour (explained when the
    prefix is 'p'), or to 80 unknown patients ('x': unexplained)."""
    s = synth(plant=False)
    ev = s["events"]
    last = ev["ts"].max().normalize()
    extra = pd.DataFrame({"ts": [last + pd.Timedelta(hours=10, seconds=40 * j)
                                 for j in range(80)], "user_id": "n3",
                          "patient_id": [f"{patient_prefix}{j % 60}" for j in range(80)],
                          "action": "view", "workstation": "ws-n3", "record_count": 1})
    extra["event_id"] = [f"busy{j}" for j in range(80)]
    extra["ip"] = "ws-n3"
    extra["in_window"] = True
    s["events"] = pd.concat([ev, extra.astype(ev.dtypes.to_dict())], ignore_index=True) \
        .sort_values("ts", kind="stable").reset_index(drop=True)
    return Context(**s)


@pytest.mark.parametrize("prefix,gate,reported", [
    ("p", True, False),     # every access explained by care: workload, not a privacy lead
    ("p", False, True),
    ("x", True, True)])     # the same burst of unexplained patients is
def test_privacy_gate(prefix, gate, reported):
    f, scores = run(UserDayAnomaly(history_days=3, min_percentile=90.0, require_signal=gate),
                    busy_day_ctx(prefix))
    top = scores.sort_values("score", ascending=False).iloc[0]
    assert top["user_id"] == "n3"                   # scored the same either way
    assert ("n3" in set(f["user_id"])) is reported
    if reported:
        ev = f[f["user_id"] == "n3"].iloc[0]["evidence"]
        assert ev["unusual_features"] == [d["feature"] for d in ev["drivers"]]
        # each driver is worded in both languages
        from emraudit.detectors.anomaly.features import FEATURES
        assert all(FEATURES[d["feature"]]["zh"] and FEATURES[d["feature"]]["en"]
                   for d in ev["drivers"])


def test_volume_budget_percentile():
    from emraudit.detectors.anomaly.user_day import volume_percentile
    base = pd.DataFrame({"events": [3.0] * 1000})          # 3 events a user-day
    # 10 per 100k events over 3,000 events: 0.3 user-days of 1,000 -> q = 0.9997
    assert volume_percentile(base, 10.0) == pytest.approx(1 - 10 * 3000 / (1000 * 1e5))
    big = pd.DataFrame({"events": [500.0] * 1000})         # a large hospital's busy staff
    assert volume_percentile(big, 10.0) == pytest.approx(0.95)
    assert volume_percentile(base, 0.0) == 0.0


def test_volume_budget_holds_a_small_unit_to_the_rate():
    ctx = busy_day_ctx("x")
    f_off, _ = run(UserDayAnomaly(history_days=3, min_percentile=50.0, max_per_day=0,
                                  max_per_100k_events=0.0, require_signal=False), ctx)
    ctx = busy_day_ctx("x")
    f_on, _ = run(UserDayAnomaly(history_days=3, min_percentile=50.0, max_per_day=0,
                                 require_signal=False), ctx)
    assert len(f_on) < len(f_off) and "n3" in set(f_on["user_id"])
    assert f_on.iloc[0]["evidence"]["threshold_rank"] > 0.5


def _densest_brute(t, codes, width):
    best, best_lo, best_hi = -1, 0, 0
    for i in range(len(t)):
        lo = int(np.searchsorted(t, t[i] - width, side="right"))
        k = len(np.unique(codes[lo:i + 1]))
        if k > best:
            best, best_lo, best_hi = k, lo, i
    return best_lo, best_hi


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 6)), min_size=1, max_size=60),
       st.integers(0, 20))
def test_densest_window_equals_counting_every_window(pairs, width):
    """The burst evidence's one-pass window (anomaly.user_day.densest_window) picks the
    same first densest window as counting each window's distinct patients afresh, equal
    times and repeats included."""
    from emraudit.detectors.anomaly.user_day import densest_window
    t = np.sort(np.array([p[0] for p in pairs], dtype=np.int64))
    codes = np.array([p[1] for p in pairs], dtype=np.int64)
    assert densest_window(t, codes, width) == _densest_brute(t, codes, width)
