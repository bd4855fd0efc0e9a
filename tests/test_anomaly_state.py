"""Stored anomaly state: user-day features and models round-trip through the store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from emraudit.detectors.anomaly.state import load_baseline, save_outputs
from emraudit.detectors.anomaly.features import FEATURE_NAMES
from emraudit.store import Store


def feats(days, users=("u1", "u2")):
    rows = []
    for d in days:
        for i, u in enumerate(users):
            r = {"user_id": u, "day": d, "role": "nurse", "department": "ICU"}
            r.update({f: float(i + len(d) % 3) for f in FEATURE_NAMES})
            r["unexplained_share"] = 1 / 3
            r["off_duty_share"] = np.nan           # engine missing: stays unknown
            rows.append(r)
    return pd.DataFrame(rows)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 's.db'}")
    else:
        s = Store(request.getfixturevalue("pg_url"))
    yield s
    s.dispose()


def test_round_trip(store):
    f = feats(["2025-01-01", "2025-01-02", "2025-02-10"])
    model = {"model_id": "M1", "detector": "anomaly.user_day",
             "trained_at": pd.Timestamp("2025-02-01", tz="UTC").to_pydatetime(),
             "window_start": "2025-01-01", "window_end": "2025-01-30",
             "features": ["unexplained"], "params": {"kind": "ecod"}, "blob": b"\x00\x01"}
    with store.begin() as c:
        n = save_outputs(c, {"user_day_features": f, "models": [model]}, "scan-1")
    assert n == {"user_day_features": 6, "models": 1}
    newer = dict(model, model_id="M2",
                 trained_at=pd.Timestamp("2025-02-08", tz="UTC").to_pydatetime())
    with store.begin() as c:   # upsert: same rows again change nothing, a newer model wins
        save_outputs(c, {"user_day_features": f, "models": [newer]}, "scan-2")
    b = load_baseline(store, "2025-01-02", "2025-02-10", baseline_days=30)
    got = b["user_day_features"]
    assert list(got["day"].unique()) == ["2025-01-02", "2025-02-10"]  # 01-01 outside
    assert got["unexplained_share"].iloc[0] == pytest.approx(1 / 3, abs=0)
    assert got["off_duty_share"].isna().all()
    assert b["models"]["anomaly.user_day"]["model_id"] == "M2"
    assert b["models"]["anomaly.user_day"]["blob"] == b"\x00\x01"
    assert b["models"]["anomaly.user_day"]["params"] == {"kind": "ecod"}


def test_start_widened_to_baseline(store):
    with store.begin() as c:
        save_outputs(c, {"user_day_features": feats(["2025-03-01", "2025-03-25"])}, "s")
    b = load_baseline(store, "2025-03-20", "2025-04-01", baseline_days=30)
    assert set(b["user_day_features"]["day"]) == {"2025-03-01", "2025-03-25"}
    assert b["models"] == {}
    assert not math.isnan(b["user_day_features"]["events"].iloc[0])


def test_baseline_sorted_by_day_then_user_in_binary_order_on_every_backend(store):
    # saved out of order; PostgreSQL's locale collation would put "b1" before "B2" and
    # "u10" after "u9" differently from SQLite: the load sorts itself, in code-point order
    users = ("u9", "u10", "b1", "B2", "张三")
    with store.begin() as c:
        save_outputs(c, {"user_day_features": feats(["2025-03-02", "2025-03-01"], users)}, "s")
    got = load_baseline(store, "2025-03-01", "2025-03-02")["user_day_features"]
    keys = list(zip(got["day"], got["user_id"]))
    assert keys == sorted(keys)
    assert keys[:5] == [("2025-03-01", u) for u in ("B2", "b1", "u10", "u9", "张三")]
    assert list(got["events"]) == [
        float(users.index(u) + len(d) % 3) for d, u in keys]    # features follow their row


def test_baseline_rows_with_odd_stored_text_are_read_one_by_one(store):
    from emraudit.store import user_day_features as t
    with store.begin() as c:
        c.execute(t.insert(), [
            {"user_id": "u1", "day": "2025-03-01", "role": None, "department": None,
             "features": '{"events":\n 3}', "scan_id": "s"},       # written by another tool
            {"user_id": "u2", "day": "2025-03-01", "role": "", "department": "ICU",
             "features": "", "scan_id": "s"}])
    got = load_baseline(store, "2025-03-01", "2025-03-01")["user_day_features"]
    assert list(got["events"].fillna(-1)) == [3.0, -1.0]
    assert list(got["role"]) == ["other", "other"] and list(got["department"]) == ["", "ICU"]
