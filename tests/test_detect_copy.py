"""copy.bulk_export: record_count summed in a sliding window, patients floor, own and peer
baselines, imaging and unrelated patients raising the severity."""

from __future__ import annotations

import numpy as np
import pytest

from detector_frames import ev, make_ctx, run

WINDOW = ("2025-07-22", "2025-07-23")


def stub_explain(ctx, explained=()):
    e = ctx.events[ctx.events["patient_id"].notna()]
    df = e[["event_id", "user_id", "patient_id", "ts", "in_window"]].copy()
    df["explained"] = df["event_id"].isin(list(explained)).to_numpy()
    df["explanation"] = np.where(df["explained"], "own_relation", "")
    df["detail"] = ""
    ctx.memo["explain"] = df
    return ctx


def prints(user, patients, records_each, start="2025-07-22 10:00", action="print",
           module="病历", step_min=5, prefix="p"):
    t0 = np.datetime64(start.replace(" ", "T"))
    return [ev(user, f"{prefix}{i}", str(t0 + np.timedelta64(i * step_min, "m")).replace("T", " "),
               action=action, record_count=records_each[i] if isinstance(records_each, list)
               else records_each, module=module)
            for i in range(patients)]


def related(rows):
    return [e["event_id"] for e in rows]


@pytest.mark.parametrize("records,fires", [([17, 16, 16], False), ([17, 17, 16], True)])
def test_records_floor_edge(records, fires):
    rows = prints("u1", 3, records)
    ctx = stub_explain(make_ctx(rows, window=WINDOW), explained=related(rows))
    f = run("copy.bulk_export", ctx)
    assert (len(f) == 1) is fires
    if fires:
        e = f.iloc[0]["evidence"]
        assert e["records"] == 50 and e["thresholds"]["required"] == 50
        assert f.iloc[0]["rectification_item"] == "8"


@pytest.mark.parametrize("records,fires", [([7, 7, 5], False), ([7, 7, 6], True)])
def test_unrelated_patients_have_a_lower_floor(records, fires):
    rows = prints("u1", 3, records)
    f = run("copy.bulk_export", stub_explain(make_ctx(rows, window=WINDOW)))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["required_unrelated"] == 20
        assert f.iloc[0]["evidence"]["unrelated_records"] == 20
    # the same outputs of the user's own patients stay under the general floor
    ctx = stub_explain(make_ctx(rows, window=WINDOW), explained=related(rows))
    assert run("copy.bulk_export", ctx).empty


def test_one_patients_full_copy_is_not_bulk():
    ctx = stub_explain(make_ctx(prints("u1", 2, 100), window=WINDOW))
    assert run("copy.bulk_export", ctx).empty


def test_window_edge_records_spread_beyond_the_window_do_not_add_up():
    # 5 prints of 10 records, 70 minutes apart: never 50 within 240 minutes
    rows = prints("u1", 5, 10, step_min=70)
    ctx = stub_explain(make_ctx(rows, window=WINDOW), explained=related(rows))
    assert run("copy.bulk_export", ctx).empty
    rows = prints("u1", 5, 10, step_min=50)
    ctx = stub_explain(make_ctx(rows, window=WINDOW), explained=related(rows))
    assert len(run("copy.bulk_export", ctx)) == 1


def test_ward_staff_printing_discharge_summaries_daily_is_their_baseline():
    rows = []
    for d in range(10, 22):   # 25 discharge summaries of 2 pages every day
        rows += prints("w1", 25, 2, start=f"2025-07-{d:02d} 14:00", step_min=3, prefix=f"d{d}_")
    rows += prints("w1", 30, 2, start="2025-07-22 14:00", step_min=3, prefix="t")
    ctx = stub_explain(make_ctx(rows, window=WINDOW), explained=related(rows))
    assert run("copy.bulk_export", ctx).empty


def test_own_baseline_multiple_edge():
    rows = []
    for d in range(10, 22):
        rows += prints("w1", 5, 4, start=f"2025-07-{d:02d} 14:00", prefix=f"d{d}_")  # 20/day
    under = rows + prints("w1", 10, 6, prefix="t")                                 # 60
    over = rows + prints("w1", 61, 1, step_min=1, prefix="t")                      # 61
    assert run("copy.bulk_export", stub_explain(make_ctx(under, window=WINDOW))).empty
    f = run("copy.bulk_export", stub_explain(make_ctx(over, window=WINDOW)))   # unrelated too
    assert len(f) == 1 and f.iloc[0]["evidence"]["thresholds"]["required"] == 61


def test_imaging_and_unrelated_patients_raise_severity():
    base = prints("u1", 5, 20)
    related = [e["event_id"] for e in base]
    f = run("copy.bulk_export", stub_explain(make_ctx(base, window=WINDOW), explained=related))
    assert f.iloc[0]["severity"] == "medium"
    f = run("copy.bulk_export", stub_explain(make_ctx(base, window=WINDOW)))
    assert f.iloc[0]["severity"] == "high"
    assert f.iloc[0]["evidence"]["unrelated_patients"] == 5
    img = prints("u1", 5, 20, action="export", module="影像")
    f = run("copy.bulk_export", stub_explain(make_ctx(img, window=WINDOW)))
    assert f.iloc[0]["severity"] == "critical"
    assert f.iloc[0]["evidence"]["imaging"] is True
    assert f.iloc[0]["evidence"]["severity_raised_by"] == ["imaging", "unrelated_patients"]
    assert f.iloc[0]["message_args"]["imaging"] is True
    assert f.iloc[0]["summary"].endswith("; imaging was among the exports")


def test_views_are_not_exports():
    rows = prints("u1", 5, 20, action="view")
    assert run("copy.bulk_export", stub_explain(make_ctx(rows, window=WINDOW))).empty
