"""The real-data bench's own logic (bench/realdata) on small hand-made frames: charting rows
collapse into sittings, admissions move by whole weeks, units come from where patients lay,
findings are scored against the planted truth."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.realdata.convert import bursts, care_relations, home_units, pack_timeline, unit_at
from bench.realdata.score import score, table

T = pd.Timestamp


def charting(rows):
    return pd.DataFrame(rows, columns=["user_id", "patient_id", "hadm_id", "stored", "source"]) \
        .assign(stored=lambda d: pd.to_datetime(d["stored"]))


@pytest.mark.parametrize("gap,expected", [(9, 3), (10, 2), (11, 1)])
def test_rows_within_the_gap_are_one_sitting(gap, expected):
    ch = charting([("u", "p", "h", "2025-01-06 08:00", "chartevents"),
                   ("u", "p", "h", "2025-01-06 08:10", "outputevents"),     # 10 min later
                   ("u", "p", "h", "2025-01-06 08:21", "chartevents"),     # 11 min later
                   ("u", "q", "h2", "2025-01-06 08:05", "chartevents")])   # another patient
    acc = bursts(ch, gap, "m3")
    assert (acc["patient_id"] == "p").sum() == expected
    assert (acc["action"] == "update").all() and acc["event_id"].is_unique
    first = acc[acc["patient_id"] == "p"].iloc[0]
    assert first["ts"] == T("2025-01-06 08:00") and first["action_raw"] == "chartevents"


def test_admissions_move_by_whole_weeks_keeping_weekday_and_intervals():
    ch = charting([("u", "p", "h1", "2150-03-02 09:30", "chartevents"),
                   ("u", "p", "h1", "2150-03-04 21:00", "chartevents"),
                   ("u", "p", "h2", "2155-07-01 10:00", "chartevents")])
    mv = pd.DataFrame({"patient_id": ["p", "p"], "hadm_id": ["h1", "h2"],
                       "start": [T("2150-03-02 08:00"), T("2155-07-01 08:00")],
                       "end": [T("2150-03-05"), T("2155-07-03")], "ward": ["MICU", "CCU"],
                       "department": [None, None], "kind": ["admission", "admission"]})
    pats = pd.DataFrame({"patient_id": ["p"], "deceased_date": [T("2155-07-10")]})
    out = pack_timeline({"charting": ch, "movements": mv, "patients": pats}, "2025-01-06", 60)
    moved = out["charting"]["stored"]
    delta = (moved - ch["stored"]).dt.days
    assert (delta % 7 == 0).all()
    assert (moved.dt.day_of_week == ch["stored"].dt.day_of_week).all()
    assert moved.iloc[1] - moved.iloc[0] == ch["stored"].iloc[1] - ch["stored"].iloc[0]
    assert moved.between(T("2024-12-01"), T("2025-04-01")).all()    # both within the span
    assert (out["patients"]["deceased_date"] - pats["deceased_date"]).dt.days.iloc[0] == \
        delta.iloc[2]                                                # death moves with h2


def test_home_unit_is_where_the_users_patients_lay_most():
    mv = pd.DataFrame({"patient_id": ["p", "q", "p"], "hadm_id": ["1", "2", "1"],
                       "start": [T("2025-01-06"), T("2025-01-06"), T("2025-01-06")],
                       "end": [T("2025-01-09"), pd.NaT, T("2025-01-09")],
                       "ward": ["MICU", "CCU", None], "department": [None, None, "MED"],
                       "kind": ["admission"] * 3})
    acc = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "patient_id": ["p", "p", "q", "q"],
                        "ts": [T("2025-01-07"), T("2025-01-08"), T("2025-01-07"),
                               T("2025-01-10")]})
    assert unit_at(acc, mv, "ward").tolist() == ["MICU", "MICU", "CCU", "CCU"]
    home = home_units(acc, mv).set_index("user_id")
    assert home.loc["u", "ward"] == "MICU" and home.loc["u", "department"] == "MED"
    assert home.loc["v", "ward"] == "CCU" and pd.isna(home.loc["v", "department"])
    rel = care_relations(mv)
    assert rel["user_id"].isna().all()             # unit level only: no per-user relation


def test_score_counts_true_false_and_recall_per_kind():
    truth = pd.DataFrame({"event_id": ["plant:a:0:0", "plant:a:0:1", "plant:b:0:2"],
                          "violation": ["a", "a", "b"],
                          "case_key": ["a:0", "a:0", "b:0"]})
    found = [{"detector": "x", "event_ids": ["plant:a:0:1", "real1"]},
             {"detector": "x", "event_ids": ["real2"]},
             {"detector": "y", "event_ids": ["real3"]}]
    s = score(found, truth, real_events=50_000)
    assert s["detectors"]["x"] == {"findings": 2, "true": 1, "false": 1, "precision": 0.5,
                                   "false_per_100k": 2.0}
    assert s["kinds"]["a"]["found"] == 1 and s["kinds"]["a"]["by"] == ["x"]
    assert s["kinds"]["b"]["recall"] == 0.0
    assert s["false_total"] == 2 and s["false_per_100k"] == 4.0
    assert "| x | 2 | 1 | 1 | 0.500 | 2.0 |" in table(s, "t")
