"""Coverage: events and field shares per source and site day, gaps and low days."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emraudit import model
from emraudit.config import load_config
from emraudit.coverage import coverage_report, day_coverage, format_report
from emraudit.store import Store, coverage, upsert

TZ = "Asia/Shanghai"


def accepted(rows):
    v = model.validate("access_log", pd.DataFrame(rows).astype("string"), TZ, "s")
    assert v.quarantine.empty
    return v.accepted


def test_day_coverage_uses_site_days_and_field_shares():
    acc = accepted([
        # 23:59:59 and 00:00:00 in Shanghai fall on two days, whatever UTC says
        {"ts": "2025-07-01 23:59:59", "user_id": "u", "patient_id": "p", "action": "view",
         "ip": "10.0.0.1", "workstation": ""},
        {"ts": "2025-07-02 00:00:00", "user_id": "u", "patient_id": "p", "action": "view",
         "ip": "10.0.0.1", "workstation": "W1"},
        {"ts": "2025-07-01T15:30:00Z", "user_id": "u", "patient_id": "p", "action": "view",
         "ip": "", "workstation": "W1"},      # 23:30 in Shanghai
    ])
    cov = day_coverage(acc, "his", TZ)
    assert cov["day"].tolist() == ["2025-07-01", "2025-07-02"]
    assert cov["events"].tolist() == [2, 1]
    f1 = json.loads(cov["fields"][0])
    assert f1["ip"] == 0.5 and f1["workstation"] == 0.5 and f1["patient_id"] == 1.0
    assert f1["session_id"] == 0.0          # a field the source never has is measured too
    assert (cov["source"] == "his").all()
    # pure: the same rows give the same answer
    pd.testing.assert_frame_equal(cov, day_coverage(acc, "his", TZ))


def test_day_coverage_of_nothing_is_empty():
    assert day_coverage(model.empty_table("access_log"), "x", TZ).empty


def test_report_marks_gaps_and_low_days(tmp_path):
    (tmp_path / "emraudit.toml").write_text(
        '[sources.his]\ntable = "access_log"\npath = "x.csv"\n'
        '[sources.users]\npath = "u.csv"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    rows = [{"source": "his", "day": d, "events": n, "fields": json.dumps({"ip": 0.5})}
            for d, n in [("2025-07-01", 1000), ("2025-07-02", 900), ("2025-07-04", 100),
                         ("2025-07-05", 1100)]]
    with store.begin() as c:
        upsert(c, coverage, rows, ["source", "day"])
    rep = coverage_report(store, cfg)
    assert rep["day"].tolist() == ["2025-07-01", "2025-07-02", "2025-07-03", "2025-07-04",
                                   "2025-07-05"]
    assert rep["status"].tolist() == ["ok", "ok", "gap", "low", "ok"]
    assert rep["events"].tolist() == [1000, 900, 0, 100, 1100]
    text = format_report(rep)
    assert "2025-07-03" in text and "50%" in text and "1 day(s) with no events" in text


def test_report_skips_gaps_when_not_expected(tmp_path):
    (tmp_path / "emraudit.toml").write_text(
        '[sources.his]\ntable = "access_log"\npath = "x.csv"\nexpected_daily = false\n',
        encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.begin() as c:
        upsert(c, coverage, [{"source": "his", "day": "2025-07-01", "events": 5, "fields": "{}"},
                             {"source": "his", "day": "2025-07-09", "events": 5, "fields": "{}"}],
               ["source", "day"])
    rep = coverage_report(store, cfg)
    assert rep["status"].tolist() == ["ok", "ok"]


def test_runs_of_empty_days_print_as_one_line(tmp_path):
    (tmp_path / "emraudit.toml").write_text('[sources.his]\ntable = "access_log"\npath = "x"\n',
                                            encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.begin() as c:
        upsert(c, coverage, [{"source": "his", "day": "2025-07-01", "events": 5, "fields": "{}"},
                             {"source": "his", "day": "2025-07-04", "events": 5, "fields": "{}"}],
               ["source", "day"])
    text = format_report(coverage_report(store, cfg))
    assert "2025-07-02" in text and "2025-07-03 (2 days without events)" in text


@pytest.mark.parametrize("dtype", ["string", "category", "object", "chunked"])
def test_a_field_is_present_unless_missing_empty_or_whitespace(dtype):
    from emraudit.coverage import _present
    vals = ["a", "", " ", "\t\n", "\u3000", "\u2028", "\x85", "\xa0", " x ", None, "\u200b"]
    s = pd.Series(vals, dtype="string")
    want = (s.notna() & (s.str.strip() != "")).fillna(False).tolist()
    if dtype == "chunked":
        s = pd.concat([s.iloc[:4], s.iloc[4:]], ignore_index=True)
    elif dtype != "string":
        s = pd.Series(vals, dtype=dtype)
    assert _present(s).tolist() == want
    assert want[:5] == [True, False, False, False, False] and want[8] is True
    assert _present(pd.Series([], dtype="category")).tolist() == []
