"""Daily behaviour features on a hand-made frame: every value checked exactly."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pandas as pd
import pytest

from emraudit.detectors.base import Context
from emraudit.detectors.anomaly.features import FEATURE_NAMES, FEATURES, user_day_features

TZ = "Asia/Shanghai"


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=TZ)


ROWS = [  # event_id, local time, user, patient, action, workstation, ip, record_count
    ("e1", "2025-03-01 08:00", "u1", "p1", "view", "ws1", "ip1", 1),
    ("e2", "2025-03-01 08:10", "u1", "p2", "view", "ws1", "ip1", 1),
    ("e3", "2025-03-01 08:20", "u1", "p1", "view", "ws2", "ip1", 1),
    ("e3b", "2025-03-01 08:25", "u1", "p3", "view", "ws2", "ip1", 1),
    ("e4", "2025-03-01 09:00", "u1", "p1", "print", "ws2", "ip2", 5),
    ("e5", "2025-03-01 09:05", "u1", "p3", "query", "ws2", "ip2", 1),
    ("e6", "2025-03-01 23:50", "u1", "p4", "view", "ws1", "ip1", 1),
    ("e7", "2025-03-02 00:10", "u1", "p4", "view", "ws1", "ip1", 1),
    ("e8", "2025-03-02 10:00", "u1", "p5", "export", "ws1", "ip1", 3),
    ("e9", "2025-03-02 10:01", "u1", "p1", "view", "ws1", "ip1", 1),
    ("e10", "2025-03-01 12:00", "u2", None, "login", "ws3", "ip3", 1),
    ("e11", "2025-03-01 12:01", "u2", "p6", "view", "ws3", "ip3", 1),
]


def make_ctx() -> Context:
    ev = pd.DataFrame(ROWS, columns=["event_id", "ts", "user_id", "patient_id", "action",
                                     "workstation", "ip", "record_count"])
    ev["ts"] = pd.to_datetime(ev["ts"]).dt.tz_localize(TZ)
    for c in ("event_id", "user_id", "patient_id", "action", "workstation", "ip"):
        ev[c] = ev[c].astype("string")
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ev["in_window"] = ev["ts"] >= T("2025-03-02")
    users = pd.DataFrame({"user_id": ["u1", "u2"], "role": ["physician", "nurse"],
                          "department": ["A", "A"]}).astype("string")
    patients = pd.DataFrame({"patient_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
                             "vip": [False, False, False, False, False, True],
                             "sensitive": [False, False, True, False, False, False],
                             "employee_user_id": [None, None, None, None, "u9", None]})
    patients["patient_id"] = patients["patient_id"].astype("string")
    patients["employee_user_id"] = patients["employee_user_id"].astype("string")
    rel = pd.DataFrame({
        "patient_id": ["p1", "p2", "p4", "p4"],
        "department": ["A", "B", "A", "C"],
        "ward": ["A1", "B1", "A2", None],
        "kind": ["admission"] * 4,
        "start": [T("2025-02-20"), T("2025-03-01 09:00"), T("2025-02-01"),
                  T("2025-03-01 23:00")],
        "end": [pd.NaT] * 4,
    })
    rel["end"] = pd.Series(pd.NaT, index=rel.index, dtype=f"datetime64[ns, {TZ}]")
    for c in ("patient_id", "department", "ward"):
        rel[c] = rel[c].astype("string")
    return Context(events=ev, window_start=T("2025-03-02"), window_end=T("2025-03-03"), tz=TZ,
                   users=users, patients=patients, care_relations=rel)


@pytest.fixture
def engines(monkeypatch):
    """Stand-ins for the explanation engine and the duty schedule."""
    explain = types.ModuleType("emraudit.detectors.explain")

    def explain_accesses(ctx):
        ev = ctx.events[ctx.events["patient_id"].notna()]
        return pd.DataFrame({"event_id": ev["event_id"], "user_id": ev["user_id"],
                             "patient_id": ev["patient_id"], "ts": ev["ts"],
                             "in_window": ev["in_window"],
                             "explained": ~ev["patient_id"].isin(["p2", "p3"]),
                             "explanation": "", "detail": ""})

    explain.explain_accesses = explain_accesses
    schedule = types.ModuleType("emraudit.detectors.schedule")

    def duty_mask(ctx, events):
        h = events["ts"].dt.tz_convert(ctx.tz).dt.hour
        on = (h >= 8) & (h < 18)
        return on, pd.Series("roster", index=events.index)

    schedule.duty_mask = duty_mask
    monkeypatch.setitem(sys.modules, "emraudit.detectors.explain", explain)
    monkeypatch.setitem(sys.modules, "emraudit.detectors.schedule", schedule)


def row(df, user, day):
    r = df[(df["user_id"] == user) & (df["day"] == day)]
    assert len(r) == 1
    return r.iloc[0]


def test_every_feature_documented():
    for name in FEATURE_NAMES:
        d = FEATURES[name]
        assert d["kind"] in ("count", "share") and d["item"] in ("8", "9")
        assert d["doc"] and d["en"] and d["zh"]


def test_features_exact(engines):
    ctx = make_ctx()
    df = user_day_features(ctx, history_days=1, burst_minutes=30)
    assert list(df[["user_id", "day"]].itertuples(index=False, name=None)) == [
        ("u1", "2025-03-01"), ("u2", "2025-03-01"), ("u1", "2025-03-02")]
    a = row(df, "u1", "2025-03-01")
    assert (a["role"], a["department"]) == ("physician", "A")
    expect_a = dict(events=7, patients=4, unexplained=3, unexplained_share=3 / 7,
                    off_duty_share=1 / 7, outputs=1, output_records=5, departments=3, wards=2,
                    workstations=2, ips=2, vip_accesses=0, employee_accesses=0,
                    sensitive_accesses=2, burst_patients=3, queries=1)
    for k, v in expect_a.items():
        assert a[k] == pytest.approx(v), k
    assert math.isnan(a["new_patients"])          # history does not reach back one day
    assert not a["in_window"]

    b = row(df, "u1", "2025-03-02")
    expect_b = dict(events=3, patients=3, new_patients=1, unexplained=0, unexplained_share=0,
                    off_duty_share=1 / 3, outputs=1, output_records=3, departments=2, wards=1,
                    workstations=1, ips=1, vip_accesses=0, employee_accesses=0,
                    sensitive_accesses=0, burst_patients=2, queries=0)  # p5's care: explained
    for k, v in expect_b.items():
        assert b[k] == pytest.approx(v), k
    assert b["in_window"]

    c = row(df, "u2", "2025-03-01")
    expect_c = dict(events=2, patients=1, unexplained=0, unexplained_share=0,
                    off_duty_share=0, outputs=0, output_records=0, departments=0, wards=0,
                    workstations=1, ips=1, vip_accesses=0, employee_accesses=0,
                    sensitive_accesses=0, burst_patients=1, queries=0)  # the VIP's own care
    for k, v in expect_c.items():
        assert c[k] == pytest.approx(v), k


def test_flagged_patient_features_count_unexplained_accesses_only(engines):
    """A VIP's, an employee's or a sensitive patient's own care team is not unusual: only
    accesses the explanation engine could not explain count (p2 and p3 are unexplained)."""
    ctx = make_ctx()
    pt = ctx.patients.copy()
    pt["vip"] = pt["patient_id"].isin(["p2", "p6"]).to_numpy()
    pt["employee_user_id"] = pd.Series(["u9", None, None, None, "u9", None], dtype="string")
    ctx.patients = pt
    df = user_day_features(ctx, history_days=1, burst_minutes=30)
    a, c = row(df, "u1", "2025-03-01"), row(df, "u2", "2025-03-01")
    n_p2 = int(((ctx.events["patient_id"] == "p2") & (ctx.events["user_id"] == "u1")
                & (ctx.events["ts"] < T("2025-03-02"))).sum())
    assert n_p2 > 0 and a["vip_accesses"] == n_p2           # p2: unexplained VIP
    assert a["employee_accesses"] == 0                        # p1: employee, explained
    assert c["vip_accesses"] == 0                             # p6: the VIP's own care


def test_new_patient_history_window(engines):
    """With a 0-day history every patient first touched that day is new (p4 seen yesterday
    counts again only when history_days is 0)."""
    ctx = make_ctx()
    df = user_day_features(ctx, history_days=0)
    assert row(df, "u1", "2025-03-02")["new_patients"] == 3
    assert row(df, "u1", "2025-03-01")["new_patients"] == 4


def test_burst_boundary(engines):
    """Accesses exactly 30 minutes apart are not in one 30-minute window; 29:59 are."""
    ctx = make_ctx()
    ev = ctx.events.iloc[:0]
    base = T("2025-03-05 10:00")
    rows = pd.DataFrame({"event_id": ["a", "b", "c"], "ts": [base, base + pd.Timedelta("30min"),
                                                             base + pd.Timedelta("59min59s")],
                         "user_id": ["u3"] * 3, "patient_id": ["x", "y", "z"],
                         "action": ["view"] * 3, "workstation": ["w"] * 3, "ip": ["i"] * 3,
                         "record_count": [1, 1, 1], "in_window": [True] * 3})
    ctx.events = pd.concat([ev, rows.astype(ev.dtypes.to_dict())], ignore_index=True)
    df = user_day_features(ctx)
    assert df.iloc[0]["burst_patients"] == 2


def test_midnight_in_site_timezone(engines):
    """23:59 and 00:00 Asia/Shanghai are different days, though the same UTC day."""
    ctx = make_ctx()
    df = user_day_features(ctx, history_days=1)
    assert row(df, "u1", "2025-03-01")["events"] == 7
    assert row(df, "u1", "2025-03-02")["events"] == 3


def test_missing_engines_give_nan(monkeypatch):
    monkeypatch.setitem(sys.modules, "emraudit.detectors.explain", None)
    monkeypatch.setitem(sys.modules, "emraudit.detectors.schedule", None)
    ctx = make_ctx()
    df = user_day_features(ctx)
    assert df["unexplained_share"].isna().all() and df["off_duty_share"].isna().all()
    assert df["events"].notna().all()
    assert any("explanation engine" in n for n in ctx.notes)


def test_missing_reference_tables(engines):
    ctx = make_ctx()
    ctx.patients = None
    ctx.care_relations = None
    ctx.users = None
    df = user_day_features(ctx)
    assert df["vip_accesses"].isna().all() and df["departments"].isna().all()
    assert (df["role"] == "other").all()
    assert np.isfinite(df["patients"]).all()
