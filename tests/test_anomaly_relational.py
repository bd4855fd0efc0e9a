"""anomaly.relational: a user whose patients no colleague of the role shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emraudit.detectors.anomaly.relational import RelationalAnomaly
from emraudit.detectors.base import Context

TZ = "Asia/Shanghai"
DAY0 = pd.Timestamp("2025-05-01", tz=TZ)


def synth(seed=3, loner=True):
    rng = np.random.default_rng(seed)
    rows = []
    teams = {"A": [f"a{i}" for i in range(6)], "B": [f"b{i}" for i in range(6)],
             "C": [f"c{i}" for i in range(6)]}          # C: a team of physicians
    for d in range(10):
        for ward, members in teams.items():
            for u in members:
                for p in rng.choice(30, size=15, replace=False):
                    rows.append((DAY0 + pd.Timedelta(days=d, hours=9, minutes=int(p)), u,
                                 f"{ward}{p}"))
    if loner:   # a5, a ward-A nurse, also opens 25 patients of ward C no nurse touches
        for j in range(25):
            rows.append((DAY0 + pd.Timedelta(days=9, hours=20, minutes=j), "a5", f"C{j}"))
    ev = pd.DataFrame(rows, columns=["ts", "user_id", "patient_id"])
    ev["action"] = "view"
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ev["event_id"] = [f"e{i}" for i in range(len(ev))]
    for c in ("user_id", "patient_id", "action", "event_id"):
        ev[c] = ev[c].astype("string")
    ws = DAY0 + pd.Timedelta(days=9)
    ev["in_window"] = ev["ts"] >= ws
    users = pd.DataFrame({"user_id": teams["A"] + teams["B"] + teams["C"] + ["x0"],
                          "role": ["nurse"] * 12 + ["physician"] * 7}).astype("string")
    return Context(events=ev, window_start=ws, window_end=ws + pd.Timedelta(days=1), tz=TZ,
                   users=users)


@pytest.mark.parametrize("method", ["cosine", "svd"])
def test_loner_ranks_first(method):
    ctx = synth()
    det = RelationalAnomaly(method=method, svd_components=8, score="similarity",
                            min_percentile=0.0, max_findings=1)
    f = det.run(ctx)
    assert len(f) == 1 and f.iloc[0]["user_id"] == "a5"
    ev = f.iloc[0]["evidence"]
    assert len(ev["neighbours"]) == 5
    assert all(n["user_id"].startswith("a") for n in ev["neighbours"])  # her own ward's team
    assert ev["patients_no_neighbour_touched"] >= 25
    assert set(f"C{j}" for j in range(25)) <= set(ev["patients_listed"])
    scores = ctx.memo["anomaly.relational.scores"].set_index("user_id")["score"]
    assert scores.idxmax() == "a5"


def test_budget_and_similarity_floor():
    ctx = synth(loner=False)
    f = RelationalAnomaly().run(ctx)          # well-knit teams: no foreign patients
    assert f.empty
    f = RelationalAnomaly(score="similarity", max_similarity=0.2).run(synth(loner=False))
    assert f.empty                            # nor anyone under 0.2 similarity
    f = RelationalAnomaly(score="similarity", min_percentile=0.0, max_findings=3).run(synth())
    assert len(f) == 3
    f = RelationalAnomaly(max_findings=3).run(synth())          # foreign: only the loner
    assert list(f["user_id"]) == ["a5"]


def test_deterministic():
    a = RelationalAnomaly(method="svd", max_similarity=1.0, min_percentile=0.0).run(synth())
    b = RelationalAnomaly(method="svd", max_similarity=1.0, min_percentile=0.0).run(synth())
    assert list(a["finding_id"]) == list(b["finding_id"])
    assert list(a["score"]) == list(b["score"])


def test_small_role_compares_with_everyone():
    ctx = synth()
    f = RelationalAnomaly(max_similarity=1.0, min_percentile=0.0, max_findings=0).run(ctx)
    assert f.empty
    ctx = synth()
    det = RelationalAnomaly(score="similarity", min_percentile=0.0, max_findings=20,
                            min_role_users=20)          # nurses (12) < 20: everyone
    f = det.run(ctx)
    assert len(f) == 18
