"""What detectors keep between scans: each enabled detector's declared `state_tables` are read
into ctx.baseline, as far back as the most `baseline_days()` any of them asks for, and saved
from ctx.outputs (emraudit.state). The scan names no detector."""

from __future__ import annotations

import pandas as pd
import pytest

from emraudit.detectors.anomaly.features import FEATURE_NAMES
from emraudit.detectors.profile import resolve_detectors
from emraudit.state import load_state, save_state, wanted_state
from emraudit.store import Store

TZ = "Asia/Shanghai"


def feats(days):
    rows = [{"user_id": "u1", "day": d, "role": "nurse", "department": "ICU",
             **{f: 1.0 for f in FEATURE_NAMES}} for d in days]
    return pd.DataFrame(rows)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    with s.begin() as c:
        save_state(c, {"user_day_features": feats(["2025-02-20", "2025-03-20"])}, "scan-1")
    yield s
    s.dispose()


def test_tables_and_days_come_from_the_enabled_detectors_declarations():
    tables, days = wanted_state(resolve_detectors({}))
    assert set(tables) == {"user_day_features", "models", "rights_usage"}
    assert days == 30                                  # anomaly.user_day's baseline_days
    tables, days = wanted_state(resolve_detectors({"anomaly.user_day": {"baseline_days": 60}}))
    assert days == 60
    tables, days = wanted_state(resolve_detectors({"anomaly.user_day": {"enabled": False},
                                                   "rights.unused": {"enabled": False}}))
    assert (tables, days) == ([], 0)


def test_baseline_days_reach_back_from_the_window_end(store):
    got = load_state(store, resolve_detectors({}), "2025-04-01", "2025-04-01", TZ)
    assert list(got["user_day_features"]["day"]) == ["2025-03-20"]   # 02-20: > 31 days back
    assert got["models"] == {}
    assert len(got["rights_usage"]) == 0
    wide = resolve_detectors({"anomaly.user_day": {"baseline_days": 60}})
    got = load_state(store, wide, "2025-04-01", "2025-04-01", TZ)
    assert list(got["user_day_features"]["day"]) == ["2025-02-20", "2025-03-20"]


def test_a_disabled_detectors_state_is_not_read(store):
    off = resolve_detectors({"anomaly.user_day": {"enabled": False}})
    got = load_state(store, off, "2025-03-01", "2025-04-01", TZ)
    assert "user_day_features" not in got and "models" not in got
    assert "rights_usage" in got                       # rights.unused still declares it


def test_save_state_writes_each_table_left_in_the_outputs(store):
    model = {"model_id": "M1", "detector": "anomaly.user_day", "features": ["events"],
             "params": {}, "blob": b"\x00"}
    with store.begin() as c:
        n = save_state(c, {"user_day_features": feats(["2025-03-21"]), "models": [model],
                           "unrelated": object()}, "scan-2")
    assert n == {"user_day_features": 1, "models": 1}
    got = load_state(store, resolve_detectors({}), "2025-03-21", "2025-03-21", TZ)
    assert "2025-03-21" in set(got["user_day_features"]["day"])
    assert got["models"]["anomaly.user_day"]["model_id"] == "M1"
