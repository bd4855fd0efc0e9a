"""Tuning: the sweep's figures checked against a hand-computed example, ranges, the chart,
and the profile diff."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from emraudit import tune as T
from emraudit.cases import case_id_for
from emraudit.detectors.base import Context, Detector, Param
from emraudit.detectors.profile import DetectorSetting
from emraudit.errors import UserError

TZ = "Asia/Shanghai"


class CountDetector(Detector):
    """Toy detector (not registered): a (user, patient) pair with >= min_count events."""

    id = "test.count"
    name_en = name_zh = "count"
    item = "9"
    params = (Param("min_count", int, 4, "fewest events", min=1, max=100),
              Param("label", str, "x", "a string parameter"))

    def run(self, ctx):
        ev = ctx.window_events
        g = ev.groupby(["user_id", "patient_id"]).agg(
            n=("event_id", "size"), ids=("event_id", list), start=("ts", "min"),
            end=("ts", "max")).reset_index()
        g = g[g["n"] >= self.p.min_count]
        rows = [{"key": f"{r.user_id}|{r.patient_id}", "user_id": r.user_id,
                 "patient_id": r.patient_id, "event_ids": r.ids, "start": r.start,
                 "end": r.end, "summary": f"{r.n} events"} for r in g.itertuples()]
        return self.findings(rows)


# each pair on its own day, so that every finding is its own incident case
PAIRS = [("u1", "p1", 5, "2025-07-01"), ("u2", "p2", 3, "2025-07-01"),
         ("u3", "p3", 2, "2025-07-01"), ("u1", "p4", 4, "2025-07-02"),
         ("u5", "p5", 1, "2025-07-01")]
CASE = {(u, p): case_id_for("incident", u, d) for u, p, _, d in PAIRS}


def _events():
    rows, n = [], 0
    for u, p, k, d in PAIRS:
        for _ in range(k):
            n += 1
            rows.append({"event_id": f"e{n}", "user_id": u, "patient_id": p,
                         "ts": pd.Timestamp(f"{d}T10:00", tz=TZ) + pd.Timedelta(minutes=n)})
    # e1-e5 u1/p1, e6-e8 u2/p2, e9-e10 u3/p3, e11-e14 u1/p4 (the next day), e15 u5/p5
    df = pd.DataFrame(rows)
    df["in_window"] = True
    return df


def fake_replay(entries=None):
    ctx = Context(events=_events(), window_start=pd.Timestamp("2025-07-01", tz=TZ),
                  window_end=pd.Timestamp("2025-07-03", tz=TZ), tz=TZ)

    def run(settings):
        found = settings["test.count"].instantiate().run(ctx)
        if entries is not None:
            from emraudit.allow import apply_allowlist
            return apply_allowlist(None, found, pd.Timestamp("2025-07-03", tz=TZ),
                                   entries=entries)
        return found.assign(suppressed_by=None)

    def factory(variants):
        return T.Replay(run, set(ctx.events["event_id"]) | {"e20"}, ctx.window_start,
                        ctx.window_end, TZ)
    return factory


SETTINGS = {"test.count": DetectorSetting(CountDetector, True,
                                          {"min_count": 4, "label": "x"})}


def by_value(res):
    return {r["value"]: r for r in res["rows"]}


def test_counts_and_change_against_the_value_in_force():
    res = T.sweep("test.count", "min_count", [2, 3, 5, 6], SETTINGS, fake_replay())
    rows = by_value(res)
    assert list(rows) == [2, 3, 4, 5, 6]              # the value in force is added
    assert rows[4]["current"] and not rows[4]["tried"]
    assert [rows[v]["findings"] for v in rows] == [4, 3, 2, 1, 0]
    assert [rows[v]["cases"] for v in rows] == [4, 3, 2, 1, 0]
    # against min_count 4 (u1/p1 and u1/p4): 2 adds u2/p2 and u3/p3; 6 loses both
    assert (rows[2]["cases_new"], rows[2]["cases_gone"]) == (2, 0)
    assert (rows[5]["cases_new"], rows[5]["cases_gone"]) == (0, 1)
    assert (rows[6]["cases_new"], rows[6]["cases_gone"]) == (0, 2)
    assert "precision" not in rows[2]


def test_precision_recall_from_dispositions_by_hand():
    c = CASE
    labels = T.Labels(confirmed={c["u1", "p1"], c["u2", "p2"]},
                      false_positive={c["u3", "p3"], c["u1", "p4"]},
                      relevant_confirmed=set())
    res = T.sweep("test.count", "min_count", [2, 3, 4, 5, 6], SETTINGS, fake_replay(),
                  labels=labels)
    rows = by_value(res)
    # 2: TP u1p1 u2p2, FP u3p3 u1p4 -> 2/4; both confirmed cases raised -> recall 1
    assert rows[2]["precision"] == pytest.approx(0.5) and rows[2]["recall"] == 1.0
    # 3: TP u1p1 u2p2, FP u1p4 -> 2/3; recall 1
    assert rows[3]["precision"] == pytest.approx(2 / 3) and rows[3]["recall"] == 1.0
    # 4: TP u1p1, FP u1p4 -> 1/2; recall 1/2
    assert rows[4]["precision"] == pytest.approx(0.5) and rows[4]["recall"] == 0.5
    # 5: TP u1p1 only -> 1; recall 1/2
    assert rows[5]["precision"] == 1.0 and rows[5]["recall"] == 0.5
    # 6: nothing raised -> precision undefined, recall 0
    assert rows[6]["precision"] is None and rows[6]["recall"] == 0.0
    assert res["confirmed_relevant"] == 2
    text = T.format_sweep(res)
    assert "66.7%" in text and "4 *" in text


def test_precision_recall_from_a_truth_file_by_hand(tmp_path):
    p = tmp_path / "truth.csv"
    p.write_text("event_id,violation,case_key\n"
                 "e1,repeat,K1\ne2,repeat,K1\n"      # u1/p1
                 "e6,curious,K2\n"                   # u2/p2
                 "e9,curious,K3\n"                   # u3/p3
                 "e15,curious,K5\n"                  # u5/p5: one event, never raised
                 "e20,bulk,K4\n"                     # a kind this detector never finds
                 "e99,curious,K9\n",                 # outside the replayed window
                 encoding="utf-8")
    truth = T.read_truth(p)
    res = T.sweep("test.count", "min_count", [2, 3, 5, 6], SETTINGS, fake_replay(),
                  truth=truth)
    rows = by_value(res)
    assert res["kinds"] == ["curious", "repeat"]
    # relevant violations: K1, K2, K3, K5 (curious/repeat, in the window) -> 4
    assert rows[2]["planted"] == 4
    # 2: findings u1p1 T, u2p2 T, u3p3 T, u1p4 F -> 3/4; found K1 K2 K3 -> 3/4
    assert rows[2]["truth_precision"] == 0.75 and rows[2]["truth_recall"] == 0.75
    # 3: u1p1 T, u2p2 T, u1p4 F -> 2/3; found K1 K2 -> 2/4
    assert rows[3]["truth_precision"] == pytest.approx(2 / 3)
    assert rows[3]["truth_recall"] == 0.5
    # 4: u1p1 T, u1p4 F -> 1/2; found K1 -> 1/4
    assert rows[4]["truth_precision"] == 0.5 and rows[4]["truth_recall"] == 0.25
    assert rows[5]["truth_precision"] == 1.0 and rows[5]["truth_recall"] == 0.25
    assert rows[6]["truth_precision"] is None and rows[6]["truth_recall"] == 0.0


def test_allowlisted_findings_are_counted_apart():
    entries = pd.DataFrame([{"id": 7, "user_id": "u3", "patient_id": None, "department": None,
                             "detector": "test.count", "until": pd.Timestamp("2026-01-01",
                                                                            tz="UTC"),
                             "removed": None}])
    res = T.sweep("test.count", "min_count", [2], SETTINGS, fake_replay(entries))
    r = by_value(res)[2]
    assert (r["findings"], r["suppressed"], r["cases"]) == (3, 1, 3)


def test_values_and_ranges_are_typed_and_checked():
    p = CountDetector.params[0]
    assert T.range_values(p, "2:6:2") == [2, 4, 6]
    assert T.range_values(Param("q", float, 0.5, "", min=0, max=1), "0.1:0.3:0.1") == \
        [0.1, 0.2, 0.3]
    assert T.parse_value(p, "7") == 7
    with pytest.raises(UserError, match="whole number"):
        T.parse_value(p, "7.5")
    with pytest.raises(UserError, match="at most 100"):
        T.parse_value(p, "500")
    with pytest.raises(UserError, match="START:STOP:STEP"):
        T.range_values(p, "2-6")
    with pytest.raises(UserError, match="numeric"):
        T.range_values(CountDetector.params[1], "1:2:1")
    with pytest.raises(UserError, match="no parameter 'nope'"):
        T.sweep("test.count", "nope", [1], SETTINGS, fake_replay())


def test_chart_is_a_self_contained_svg():
    c = CASE["u1", "p1"]
    res = T.sweep("test.count", "min_count", [2, 3, 5, 6], SETTINGS, fake_replay(),
                  labels=T.Labels({c}, set(), set()))
    svg = T.chart_svg(res)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}polyline")) == 4          # findings, cases, prec., recall
    assert "in force" in svg and "http" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_profile_diff_counts_and_parameters(tmp_path):
    from emraudit.config import default_config
    from emraudit.detectors.profile import resolve_detectors
    from emraudit.detectors.registry import all_detectors
    det_id = "bulk.off_hours" if "bulk.off_hours" in all_detectors() else \
        next(iter(all_detectors()))
    cls = all_detectors()[det_id]
    pname = next(p.name for p in cls.params if p.type is int)
    cur_value = resolve_detectors({}, None)[det_id].params[pname]
    new_value = cur_value + 1
    prof = tmp_path / "edited.toml"
    prof.write_text(f'["{det_id}"]\n{pname} = {new_value}\n', encoding="utf-8")
    cfg = default_config(tmp_path)

    def factory(variants):
        def run(settings):
            v = settings[det_id].params[pname]
            rows = [{"finding_id": "F1", "detector": det_id, "user_id": "u1",
                     "patient_id": "p1", "start": "2025-07-01T10:00:00+08:00"}]
            if v == cur_value:   # the edited value no longer raises u2/p2
                rows.append({"finding_id": "F2", "detector": det_id, "user_id": "u2",
                             "patient_id": "p2", "start": "2025-07-01T11:00:00+08:00"})
            return pd.DataFrame(rows).assign(suppressed_by=None)
        return T.Replay(run, set(), pd.Timestamp("2025-07-01", tz=TZ),
                        pd.Timestamp("2025-07-02", tz=TZ), TZ)

    res = T.diff_profiles(cfg, str(prof), replay_factory=factory)
    assert res["params"] == [{"detector": det_id, "param": pname, "current": cur_value,
                              "new": new_value}]
    d = {x["detector"]: x for x in res["detectors"]}[det_id]
    assert (d["current_findings"], d["new_findings"], d["findings_removed"],
            d["findings_added"]) == (2, 1, 1, 0)
    assert res["cases"] == {"current": 2, "new": 1, "added": 0, "removed": 1}
    text = T.format_diff(res)
    assert f"{det_id}.{pname}: {cur_value} -> {new_value}" in text


@pytest.mark.slow
def test_tune_and_diff_replay_a_scanned_hospital_without_writing(tmp_path):
    """End to end on a small hospital: the replay at the value in force reproduces the scan;
    other values and an edited profile change the counts; the store is left untouched."""
    import json
    import xml.etree.ElementTree as ET

    from click.testing import CliRunner
    from test_crash_safety import _hand_hospital

    from emraudit.cases import list_cases, resolve_case
    from emraudit.cli import main
    from emraudit.config import load_config
    from emraudit.scan import run_scan
    from emraudit.store import Store, case_history, cases, findings

    cfg_path = _hand_hospital(tmp_path / "h")
    cfg = load_config(cfg_path)
    run_scan(cfg, echo=lambda m: None)
    store = Store(cfg.store_url)
    det = "bulk.off_hours"
    stored = store.read_findings(findings.c.detector == det)
    assert len(stored) > 0
    mine = list_cases(store, detector=det)
    resolve_case(store, mine.iloc[0]["case_id"], "confirmed", "night harvest", "officer")

    def snapshot():
        return [len(store.read_table(t)) for t in (findings, cases, case_history)] + \
            [store.read_table(cases)["version"].sum()]

    before = snapshot()
    r = CliRunner().invoke(main, ["tune", "--config", str(cfg_path), det, "min_patients",
                                  "5", "20", "40", "--days", "10", "--format", "json",
                                  "--chart", str(tmp_path / "curve.svg")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    rows = {x["value"]: x for x in res["rows"]}
    cur = next(x for x in res["rows"] if x["current"])
    assert cur["findings"] == len(stored)          # the replay reproduces the scan
    assert rows[40]["findings"] <= cur["findings"] <= rows[5]["findings"]
    assert cur["precision"] == 1.0 and cur["recall"] == 1.0
    ET.parse(tmp_path / "curve.svg")
    r = CliRunner().invoke(main, ["tune", "--config", str(cfg_path), det, "min_patients",
                                  "--range", "5:40:35"])
    assert r.exit_code == 0, r.output
    assert "precision" in r.output and " *" in r.output

    prof = tmp_path / "edited.toml"
    prof.write_text(f'["{det}"]\nmin_patients = 200\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["detectors", "diff", str(prof), "--config", str(cfg_path),
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["params"][0]["param"] == "min_patients" and d["params"][0]["new"] == 200
    row = {x["detector"]: x for x in d["detectors"]}[det]
    assert row["current_findings"] == len(stored) and row["new_findings"] == 0
    assert row["findings_removed"] == len(stored)
    assert snapshot() == before
