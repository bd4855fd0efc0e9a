"""Detectors divided among forked processes: same result as serial, a dying worker is a
failed detector (not a hung scan), shared work done once before the fork."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.base import SHARED_WORK, Detector
from emraudit.detectors.profile import DetectorSetting
from emraudit.detectors.registry import get
from emraudit.scan import run_detectors

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

PARENT = os.getpid()


def _ctx(**tables):
    rows = [ev("u1", f"P{i}", f"2025-07-22 0{2 + i % 3}:{i:02d}", event_id=f"e{i:03d}")
            for i in range(40)]
    rows += [ev("u2", "P1", "2025-07-22 10:00", "export", record_count=500, event_id="x1")]
    users = [{"user_id": u, "role": "nurse", "department": "D1", "ward": "W1"}
             for u in ("u1", "u2")]
    rels = [{"patient_id": "P1", "user_id": "u2", "kind": "admission",
             "start": "2025-07-20 08:00"}]
    return make_ctx(rows, window=("2025-07-22", "2025-07-23"), users=users,
                    care_relations=rels, **tables)


def _settings(*ids):
    return {i: DetectorSetting(get(i), True, {}) for i in ids}


IDS = ("care.no_relationship", "bulk.volume", "bulk.off_hours", "copy.bulk_export",
       "cred.concurrent_use")


def test_forked_run_equals_serial_run():
    serial, s_status = run_detectors(_ctx(), _settings(*IDS))
    forked, f_status = run_detectors(_ctx(), _settings(*IDS), workers=2)
    assert len(serial) > 0
    pd.testing.assert_frame_equal(serial, forked)
    assert list(s_status) == list(f_status) == list(IDS)
    assert [s.findings for s in s_status.values()] == [s.findings for s in f_status.values()]
    assert all(s.status == "ran" for s in f_status.values())


class _DiesInWorker(Detector):
    id = "test.dies_in_worker"
    name_en, name_zh, item = "Dies", "崩溃", "9"

    def run(self, ctx):
        if os.getpid() != PARENT:
            os._exit(9)   # what the kernel's OOM killer does to a worker
        return self.findings([])


def test_a_worker_that_dies_fails_its_detector_without_hanging_the_scan():
    settings = {"test.dies_in_worker": DetectorSetting(_DiesInWorker, True, {}),
                **_settings("bulk.volume")}
    found, status = run_detectors(_ctx(), settings, workers=2,
                                  costs={"test.dies_in_worker": 99})
    st = status["test.dies_in_worker"]
    assert st.status == "failed" and "worker process died" in st.message
    assert set(status) == set(settings)


def test_shared_work_runs_once_in_the_parent(monkeypatch):
    import emraudit.detectors.explain  # noqa: F401 - registers the shared work
    calls = []
    real = SHARED_WORK["explain"]
    monkeypatch.setitem(SHARED_WORK, "explain",
                        lambda ctx: calls.append(os.getpid()) or real(ctx))
    ctx = _ctx()
    run_detectors(ctx, _settings("care.no_relationship", "copy.bulk_export"), workers=2)
    assert calls == [os.getpid()]
    assert "explain" in ctx.memo   # the workers inherited it instead of computing it
    from emraudit.scan import SHARED_SECONDS
    assert set(ctx.memo[SHARED_SECONDS]) == {"explain"}     # timed for the scan summary


class _MarksStart(Detector):
    """Shares nothing: writes a marker file as soon as it runs."""
    id = "test.marks_start"
    name_en, name_zh, item = "Marks", "标记", "9"
    marker = ""

    def run(self, ctx):
        with open(self.marker, "w") as fh:
            fh.write(str(os.getpid()))
        return self.findings([])


def test_detectors_sharing_nothing_run_while_the_shared_work_is_done(monkeypatch, tmp_path):
    """The first phase's worker starts the detectors that need no shared work while the
    parent is still doing it, so neither core waits."""
    import time
    import emraudit.detectors.explain  # noqa: F401 - registers the shared work
    marker = tmp_path / "started"
    monkeypatch.setattr(_MarksStart, "marker", str(marker))
    seen = []
    real = SHARED_WORK["explain"]

    def slow_explain(ctx):
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(marker.exists())
        return real(ctx)

    monkeypatch.setitem(SHARED_WORK, "explain", slow_explain)
    settings = {"test.marks_start": DetectorSetting(_MarksStart, True, {}),
                **_settings("care.no_relationship", "bulk.volume")}
    found, status = run_detectors(_ctx(), settings, workers=2)
    assert seen == [True]
    assert int(marker.read_text()) != os.getpid()
    assert [s.status for s in status.values()] == ["ran"] * 3


def test_household_pairs_are_found_once_for_family_and_neighbour(monkeypatch):
    from emraudit.detectors import snoop
    calls = []
    real = snoop._household_pairs
    monkeypatch.setattr(snoop, "_household_pairs",
                        lambda ctx, m: calls.append((os.getpid(), m)) or real(ctx, m))
    patients = [{"patient_id": f"P{i}", "name": f"患者{i}", "address": "东街1号"}
                for i in range(3)]
    found, status = run_detectors(
        _ctx(patients=patients), _settings("snoop.family", "snoop.neighbor", "bulk.volume"),
        workers=2)
    assert [s.status for s in status.values()] == ["ran"] * 3
    assert calls == [(os.getpid(), 5)]


class _ReportsPid(_MarksStart):
    id = "test.reports_pid"


class _WaitsForFirstPhase(Detector):
    """Shares the explanations (second phase): waits for the first phase's worker to exit."""
    id = "test.waits_for_first_phase"
    name_en, name_zh, item = "Waits", "等待", "9"
    shares = ("explain",)
    marker = ""
    verdict = ""

    def run(self, ctx):
        import time
        deadline = time.monotonic() + 10
        gone = False
        while time.monotonic() < deadline and not gone:
            try:
                with open(self.marker) as fh:
                    os.kill(int(fh.read()), 0)
            except (FileNotFoundError, ValueError):
                pass
            except ProcessLookupError:
                gone = True
            time.sleep(0.05)
        with open(self.verdict, "w") as fh:
            fh.write("gone" if gone else "alive")
        return self.findings([])


def test_the_first_phase_worker_exits_once_its_detectors_are_done(monkeypatch, tmp_path):
    """An idle worker would hold its memos (a gigabyte at 10M events) through the second
    phase."""
    import emraudit.detectors.explain  # noqa: F401 - registers the shared work
    monkeypatch.setattr(_ReportsPid, "marker", str(tmp_path / "pid"))
    monkeypatch.setattr(_WaitsForFirstPhase, "marker", str(tmp_path / "pid"))
    monkeypatch.setattr(_WaitsForFirstPhase, "verdict", str(tmp_path / "verdict"))
    settings = {"test.reports_pid": DetectorSetting(_ReportsPid, True, {}),
                "test.waits_for_first_phase": DetectorSetting(_WaitsForFirstPhase, True, {})}
    found, status = run_detectors(_ctx(), settings, workers=2)
    assert [s.status for s in status.values()] == ["ran", "ran"]
    assert (tmp_path / "verdict").read_text() == "gone"


def test_the_memory_estimate_adds_up_the_phases_that_overlap():
    from emraudit.detection import _phases_peak_mb
    pools = [(None, 1000.0, {}), (None, 1500.0, {})]
    workers = {1: (0, 1000.0, 1800.0), 2: (1, 1500.0, 2100.0), 3: (1, 1500.0, 1900.0)}
    # phase 1: parent's peak 2500 + 800; phase 2: 1500 + 600 + 400
    assert _phases_peak_mb(pools, workers, 2500.0, overlap=False) == 3300.0
    # the first phase's worker still running in the second: its growth counts there too
    assert _phases_peak_mb(pools, workers, 2500.0, overlap=True) == 3300.0
    assert _phases_peak_mb(pools, workers, 1200.0, overlap=True) == 3300.0
    assert _phases_peak_mb(pools, workers, 1200.0, overlap=False) == 2500.0
    assert _phases_peak_mb([], {}, 900.0, overlap=False) == 900.0
