"""Crashes seen on real data (issue 16), each on the smallest frame that raised it."""

from __future__ import annotations

import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors.base import findings_frame
from emraudit.detectors.cred import place_key

W = ("2025-07-07", "2025-07-14")


def test_departed_and_dormant_in_one_run_have_valid_severities():
    # MIMIC-III: departed rows set no severity, dormant rows did; the concat made NaN
    users = [{"user_id": "gone", "role": "nurse", "end_date": "2025-07-01"},
             {"user_id": "ok", "role": "nurse"}]
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00"),
              ev("gone", "p2", "2025-07-08 11:00")]
    f = run("cred.inactive_account", make_ctx(events, window=W, users=users))
    assert sorted(zip(f["user_id"], f["severity"])) == [("gone", "high"), ("ok", "medium")]


def test_findings_frame_gives_rows_without_severity_the_default():
    rows = [{"key": "a", "user_id": "u", "event_ids": ["e1"], "start": None, "end": None,
             "summary": "s", "severity": "low"},
            {"key": "b", "user_id": "u", "event_ids": ["e2"], "start": None, "end": None,
             "summary": "s"}]
    f = findings_frame("x.y", rows, default_item="9", default_severity="high")
    assert sorted(f["severity"]) == ["high", "low"]


@pytest.mark.parametrize("detector", ["copy.bulk_export", "bulk.volume", "care.no_relationship",
                                      "snoop.self"])
def test_explanations_without_any_care_relation(detector):
    # FHIR examples, OpenEMR log: no care_relations table; the ward-work step indexed an
    # empty array
    events = [ev("u", f"p{i}", f"2025-07-08 10:{i:02d}", "export", record_count=30)
              for i in range(5)] + [ev("u", "p1", "2025-07-08 09:00", "update")]
    ctx = make_ctx(events, window=W, care_relations=[], users=[{"user_id": "u"}],
                   patients=[{"patient_id": "p1"}])
    assert isinstance(run(detector, ctx), pd.DataFrame)


def test_one_host_spelled_with_and_without_scheme_is_one_place():
    events = [ev("u", "p1", "2025-07-08 10:00", facility="server.example.com"),
              ev("u", "p1", "2025-07-08 10:00", facility="http://server.example.com"),
              ev("u", "p1", "2025-07-08 10:01", facility="HTTPS://Server.Example.com:443/")]
    assert run("cred.impossible_travel", make_ctx(events, window=W)).empty
    events.append(ev("u", "p1", "2025-07-08 10:02", facility="other.example.com"))
    f = run("cred.impossible_travel", make_ctx(events, window=W))
    assert len(f) == 1
    hop = f["evidence"].iloc[0]["hops"][0]
    assert (hop["from"], hop["to"]) == ("server.example.com", "other.example.com")


@pytest.mark.parametrize("a,b,same", [
    ("server.example.com", "http://server.example.com/", True),
    ("本部", " 本部 ", True), ("East", "east", True),
    ("http://a.example.com:8080", "a.example.com", False), ("本部", "东院", False)])
def test_place_key(a, b, same):
    assert (place_key(a) == place_key(b)) is same


def test_concurrent_use_with_only_failed_events():
    # found by the property tests: every located event a failure, so nobody present
    events = [ev("u", "p1", "2025-07-08 00:00", ip="10.1.1.1", outcome="failure")]
    assert run("cred.concurrent_use", make_ctx(events, window=W)).empty


def test_inactive_account_with_an_empty_users_table():
    # found by the property tests: Index.map over an empty users table lost the dtype
    ctx = make_ctx([ev("u", "p1", "2025-07-08 10:00")], window=W, users=[])
    assert run("cred.inactive_account", ctx).empty


def test_deceased_patient_never_accessed():
    # found by the property tests: no access to the dead patient, an empty merge, no dtype
    ctx = make_ctx([ev("u", "p1", "2025-07-08 10:00")], window=W,
                   patients=[{"patient_id": "p2", "deceased_date": "2025-01-01"}])
    assert run("snoop.deceased", ctx).empty


def test_cases_of_users_in_and_out_of_the_staff_master_in_one_scan(tmp_path):
    # found by the property tests: one insert of new cases named `department` for a user in
    # the staff master and not for another, and SQLAlchemy's executemany refused the batch
    from click.testing import CliRunner
    from emraudit.cli import main
    (tmp_path / "access_log.csv").write_text(
        "event_id,ts,user_id,patient_id,action\n"
        "e1,2025-07-08 10:00,known,p1,view\ne2,2025-07-08 11:00,stranger,p2,view\n",
        encoding="utf-8")
    (tmp_path / "users.csv").write_text("user_id,role,department\nknown,nurse,ICU\n",
                                        encoding="utf-8")
    (tmp_path / "care_relations.csv").write_text(
        "patient_id,user_id,kind,start\np9,known,admission,2025-07-01\n", encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        "".join(f'[sources.{t}]\nconnector = "csv"\npath = "{t}.csv"\n'
                for t in ("access_log", "users", "care_relations")), encoding="utf-8")
    res = CliRunner().invoke(main, ["scan", "--config", str(tmp_path / "emraudit.toml")])
    assert res.exit_code == 0, (res.output, res.exception)
