"""`emraudit eval`: scoring findings against planted truth, on a hand-made example."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.demo.violations import KINDS
from emraudit.evaluate import EXPECTED, RULE_KINDS, score

TRUTH = pd.DataFrame([
    ("E1", "care.no_relationship", "care.no_relationship:U1:P1"),
    ("E2", "care.no_relationship", "care.no_relationship:U1:P1"),
    ("E3", "snoop.vip", "snoop.vip:U2:P2"),
    ("E4", "bulk.off_hours", "bulk.off_hours:U3:2026-09-08"),
    ("E5", "bulk.off_hours", "bulk.off_hours:U3:2026-09-08"),
    ("E6", "snoop.vip", "snoop.vip:U4:P2"),
], columns=["event_id", "violation", "case_key"])

FINDINGS = pd.DataFrame([
    ("F1", "care.no_relationship", ["E1"]),            # true, case A by its expected detector
    ("F2", "care.no_relationship", ["E3", "E100"]),    # true, VIP case B (expected: 2nd choice)
    ("F3", "care.no_relationship", ["E200"]),          # false
    ("F4", "bulk.off_hours", ["E4", "E5", "E300"]),    # true, case C
    ("F5", "bulk.off_hours", ["E400"]),                # false
    ("F6", "cred.concurrent_use", ["E6", "E500"]),     # true, case D but not an expected one
    ("F7", "snoop.vip", []),                           # false: no events at all
], columns=["finding_id", "detector", "event_ids"])


def test_score_hand_made_example():
    r = score(FINDINGS, TRUTH, n_events=1006)
    o = r["overall"]
    assert o["legitimate_events"] == 1000 and o["planted_events"] == 6
    assert (o["findings"], o["true_findings"], o["false_findings"]) == (7, 4, 3)
    assert o["precision"] == pytest.approx(4 / 7, abs=1e-4)
    assert o["false_per_100k"] == pytest.approx(300.0)
    assert (o["planted_cases"], o["detected_cases"]) == (4, 4)
    assert o["recall"] == 1.0 and o["recall_expected"] == 0.75
    kinds = {k["violation"]: k for k in r["kinds"]}
    assert kinds["snoop.vip"]["planted"] == 2
    assert kinds["snoop.vip"]["detected"] == 2 and kinds["snoop.vip"]["recall"] == 1.0
    assert kinds["snoop.vip"]["detected_expected"] == 1
    assert kinds["snoop.vip"]["recall_expected"] == 0.5
    assert kinds["snoop.vip"]["by_detector"] == {"care.no_relationship": 1,
                                                 "cred.concurrent_use": 1}
    assert kinds["bulk.off_hours"]["recall"] == 1.0
    assert kinds["care.no_relationship"]["detected_expected"] == 1
    dets = {d["detector"]: d for d in r["detectors"]}
    assert (dets["care.no_relationship"]["findings"], dets["care.no_relationship"]["true"]) == (3, 2)
    assert dets["care.no_relationship"]["precision"] == pytest.approx(0.6667)
    assert dets["care.no_relationship"]["false_per_100k"] == pytest.approx(100.0)
    assert dets["bulk.off_hours"]["precision"] == 0.5
    assert dets["cred.concurrent_use"]["precision"] == 1.0
    assert dets["cred.concurrent_use"]["false_per_100k"] == 0.0
    assert dets["snoop.vip"]["precision"] == 0.0


def test_missed_cases_and_no_findings():
    r = score(FINDINGS.iloc[0:0], TRUTH, n_events=10)
    assert r["overall"]["recall"] == 0.0 and r["overall"]["precision"] is None
    kinds = {k["violation"]: k for k in r["kinds"]}
    assert kinds["snoop.vip"]["missed"] == ["snoop.vip:U2:P2", "snoop.vip:U4:P2"]


def test_every_planted_kind_has_expected_detectors():
    assert set(EXPECTED) == set(KINDS)
    assert "anomaly.slow_insider" not in RULE_KINDS and "care.no_relationship" in RULE_KINDS


@pytest.fixture
def site(tmp_path):
    (tmp_path / "emraudit.toml").write_text(
        '[store]\nurl = "sqlite:///emraudit.db"\nlake = "lake"\n'
        '[sources.access_log]\nconnector = "csv"\npath = "access_log.csv"\n', encoding="utf-8")
    TRUTH.to_csv(tmp_path / "truth.csv", index=False)
    pd.DataFrame({"event_id": [f"E{i}" for i in range(1, 1007)],
                  "ts": "2026-09-08 10:00:00", "user_id": "U1", "action": "login"}).to_csv(
        tmp_path / "access_log.csv", index=False)
    from emraudit.store import Store, findings, upsert
    store = Store(f"sqlite:///{tmp_path / 'emraudit.db'}")
    with store.begin() as conn:
        upsert(conn, findings, [{"finding_id": f, "detector": d, "severity": "medium",
                                 "start": "2026-09-08T10:00:00+08:00",
                                 "event_ids": json.dumps(e)} for f, d, e in
                                FINDINGS.itertuples(index=False)], ["finding_id"])
    store.dispose()
    return tmp_path


def test_cli_eval_json_and_text(site):
    args = ["eval", "--config", str(site / "emraudit.toml"), "--truth", str(site / "truth.csv")]
    r = CliRunner().invoke(main, args + ["--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["overall"]["events"] == 1006 and out["overall"]["false_per_100k"] == 300.0
    assert "missed" not in out["kinds"][0]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "snoop.vip" in r.output and "precision" in r.output


def test_cli_eval_bad_truth(site):
    (site / "bad.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["eval", "--config", str(site / "emraudit.toml"), "--truth",
                                  str(site / "bad.csv")])
    assert r.exit_code == 2 and "missing column" in r.output


def test_findings_about_grants_are_matched_through_their_refs():
    truth = pd.concat([TRUTH.assign(ref=""), pd.DataFrame([
        ("", "rights.unused", "rights.unused:U7:export", "grants:G1"),
        ("", "rights.beyond_role", "rights.beyond_role:role:R", "roles:R"),
    ], columns=["event_id", "violation", "case_key", "ref"])], ignore_index=True)
    findings = pd.DataFrame([
        ("F1", "care.no_relationship", ["E1"], {}),
        ("F8", "rights.unused", [], {"refs": ["grants:G1"]}),           # true by its ref
        ("F9", "rights.beyond_role", [], {"refs": ["grants:G2"]}),      # a ref not planted
        ("F10", "rights.beyond_role", [], {"refs": ["roles:R"]}),
    ], columns=["finding_id", "detector", "event_ids", "evidence"])
    r = score(findings, truth, n_events=1006)
    o = r["overall"]
    assert o["planted_events"] == 6 and o["legitimate_events"] == 1000   # refs are no events
    assert (o["findings"], o["true_findings"]) == (4, 3)
    kinds = {k["violation"]: k for k in r["kinds"]}
    assert kinds["rights.unused"]["detected_expected"] == 1
    assert kinds["rights.beyond_role"]["recall_expected"] == 1.0
    dets = {d["detector"]: d for d in r["detectors"]}
    assert dets["rights.beyond_role"]["precision"] == 0.5
