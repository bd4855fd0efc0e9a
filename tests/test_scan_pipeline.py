"""The scan pipeline with a stand-in detector: incremental days, late events, stable ids,
retraction, failing detectors, the findings verb."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.detectors import registry
from emraudit.detectors.base import Detector, Param
from emraudit.scan import run_scan
from emraudit.store import Store, ingest_runs

HEADER = "event_id,ts,user_id,patient_id,action\n"


class EveryPrint(Detector):
    """Flags every print, one finding per event: enough to watch the pipeline."""

    id = "test.every_print"
    name_en, name_zh, item, severity = "Every print", "打印", "8", "low"
    params = (Param("min_records", int, 1, "records"),)

    def run(self, ctx):
        ev = ctx.events[(ctx.events["action"] == "print")
                        & (ctx.events["record_count"] >= self.p.min_records)]
        return self.findings(pd.DataFrame({
            "key": ev["event_id"], "user_id": ev["user_id"], "patient_id": ev["patient_id"],
            "event_ids": [[e] for e in ev["event_id"]], "start": ev["ts"], "end": ev["ts"],
            "summary": "printed", "evidence": [{"n": 1}] * len(ev)}))


class Broken(Detector):
    id = "test.broken"
    name_en, name_zh, item = "Broken", "坏", "9"

    def run(self, ctx):
        raise RuntimeError("boom")


class NeedsShifts(Detector):
    id = "test.needs_shifts"
    name_en, name_zh, item = "Needs shifts", "排班", "9"
    needs = ("access_log", "shifts")

    def run(self, ctx):  # pragma: no cover - never runs without shifts
        raise AssertionError


@pytest.fixture
def only_test_detectors(tmp_path):
    registry.all_detectors()
    saved = dict(registry._REGISTRY)
    registry._REGISTRY.clear()
    for cls in (EveryPrint, Broken, NeedsShifts):
        registry.register(cls)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.fixture
def site(tmp_path, only_test_detectors):
    (tmp_path / "access_log.csv").write_text(
        HEADER + "E1,2025-07-01 08:00:00,u1,p1,print\nE2,2025-07-02 09:00:00,u1,p2,print\n",
        encoding="utf-8")
    (tmp_path / "only-tests.toml").write_text("# the stand-in detectors' defaults\n",
                                              encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\npath = "access_log.csv"\n'
        '[detectors]\nprofile = "only-tests.toml"\n'
        '[detectors."test.broken"]\nenabled = true\n', encoding="utf-8")
    return tmp_path


def test_scan_runs_incrementally_and_reports_failures(site):
    cfg = load_config(site / "emraudit.toml")
    res = run_scan(cfg)
    assert res.days == ["2025-07-01", "2025-07-02"]
    st = {d.id: d for d in res.detectors}
    assert st["test.every_print"].status == "ran" and st["test.every_print"].findings == 2
    assert st["test.broken"].status == "failed" and "boom" in st["test.broken"].message
    assert st["test.needs_shifts"].status == "skipped" and "shifts" in st["test.needs_shifts"].message
    assert res.exit_code == 1
    lines = (res.report_dir / "findings.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"finding_id", "detector", "severity", "score", "user_id",
                          "patient_id", "start", "end", "event_ids", "rectification_item",
                          "summary", "evidence", "message_id", "message_args",
                          "site_id", "patient_ids"} | (
        {"summary_zh"} if cfg.reports.lang == "zh" else set())   # the report's language too
    assert first["message_id"] is None        # a test detector that writes its own summary
    assert first["site_id"] == cfg.site.id    # no site_id in the source: the default site
    # nothing new: nothing scanned
    again = run_scan(cfg)
    assert again.days == [] and "nothing new" in again.notes[0]


def test_late_events_are_scanned_and_ids_stable(site):
    cfg = load_config(site / "emraudit.toml")
    run_scan(cfg)
    store = Store(cfg.store_url)
    ids_before = set(store.read_findings()["finding_id"])
    with (site / "access_log.csv").open("a", encoding="utf-8") as fh:
        fh.write("E0,2025-06-30 10:00:00,u9,p9,print\n")   # yesterday's log, delivered late
    res = run_scan(cfg)
    assert res.days == ["2025-06-30"]
    after = store.read_findings()
    assert ids_before < set(after["finding_id"]) and len(after) == 3
    # a full rescan reproduces the same ids, nothing duplicated
    full = run_scan(cfg, full=True)
    assert full.new_findings == 0 and full.findings == 3
    assert set(store.read_findings()["finding_id"]) == set(after["finding_id"])
    runs = store.read_table(ingest_runs)
    assert runs["scanned_by"].notna().all()


def test_rescan_with_a_stricter_threshold_retracts_only_in_the_rescanned_days(site):
    cfg = load_config(site / "emraudit.toml")
    run_scan(cfg)
    (site / "emraudit.toml").write_text(
        '[sources.access_log]\npath = "access_log.csv"\n'
        '[detectors]\nprofile = "only-tests.toml"\n'
        '[detectors."test.every_print"]\nmin_records = 2\n', encoding="utf-8")
    cfg = load_config(site / "emraudit.toml")
    res = run_scan(cfg, since="2025-07-02", until="2025-07-03")
    assert res.days == ["2025-07-02"] and res.retracted == 1
    store = Store(cfg.store_url)
    live = store.read_findings()
    assert list(live["event_ids"]) == [["E1"]]           # the 1st was not rescanned
    assert len(store.read_findings(include_retracted=True)) == 2


def test_findings_verb_jsonl_and_csv(site):
    cfg = load_config(site / "emraudit.toml")
    run_scan(cfg)
    out = CliRunner().invoke(main, ["findings", "--config", str(site / "emraudit.toml")])
    assert out.exit_code == 0, out.output
    rows = [json.loads(x) for x in out.output.splitlines()]
    assert [r["event_ids"] for r in rows] == [["E1"], ["E2"]]
    out = CliRunner().invoke(main, ["findings", "--config", str(site / "emraudit.toml"),
                                    "--format", "csv"])
    assert out.output.splitlines()[0].startswith("finding_id,detector,severity")


def test_bad_since_is_a_user_error(site):
    res = CliRunner().invoke(main, ["scan", "--config", str(site / "emraudit.toml"),
                                    "--since", "yesterdayish"])
    assert res.exit_code == 2 and "--since" in res.output


@pytest.mark.parametrize("n_lookback", [1, 5])
def test_window_membership_is_the_same_from_either_side(n_lookback):
    """The window filter hashes the smaller side (window or look-back): same answer."""
    from detector_frames import ev, make_ctx
    from emraudit.detection import _window_ids
    rows = [ev("u1", "P1", f"2025-07-20 0{i}:00", event_id=f"old{i}") for i in range(n_lookback)]
    rows += [ev("u1", "P1", f"2025-07-22 0{i}:00", event_id=f"new{i}") for i in range(3)]
    ctx = make_ctx(rows, window=("2025-07-22", "2025-07-23"))
    ids = _window_ids(ctx)
    assert ids.complement == (n_lookback < 3)
    got = ids.any_in(pd.Series([["old0"], ["old0", "new1"], ["new2"], []], dtype=object))
    assert got.tolist() == [False, True, True, False]
