"""The Spark executor (`scan --engine spark`): the same findings and ids as the
single-process path, on the sample hospital and a generated multi-day hospital, with one
Spark session (local[2]) for the whole test run. Skipped locally without pyspark or Java;
under CI (CI=true) their absence is a failure, as scripts/test.sh installs both."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from engine_fixtures import SAMPLE, multiday, sample  # noqa: F401 - fixtures
from test_partitioned_engine import _window
from emraudit.cli import main
from emraudit.engine.driver import detect
from emraudit.packed import unpack
from emraudit.scan import build_context, detector_settings, run_detectors


# one Spark session per test run: every Spark test on the same xdist worker
pytestmark = pytest.mark.xdist_group("spark")


def _spark_or_skip():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("pyspark is not installed (scripts/test.sh installs emraudit[spark])")
        pytest.skip("pyspark not installed")
    if shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Java runtime (scripts/test.sh installs openjdk-17-jre-headless)")
        pytest.skip("no Java runtime")


@pytest.fixture(scope="session")
def spark():
    _spark_or_skip()
    from emraudit.engine.spark import session
    return session("local[2]")


def _same_as_single(spark, cfg, store, lake, per_partition):
    from emraudit.engine.spark import SparkExecutor
    days, ws, we = _window(cfg, store, lake)
    ctx = build_context(cfg, store, lake, ws, we, detector_settings(cfg), days)
    single, status = run_detectors(ctx, detector_settings(cfg))
    det = detect(cfg, store, lake, ws, we, detector_settings(cfg), days, SparkExecutor(spark),
                 per_partition=per_partition)
    assert det.executor == "spark" and det.partitions >= 4
    assert len(single) > 50
    pd.testing.assert_frame_equal(single.reset_index(drop=True),
                                  unpack(det.found).reset_index(drop=True))
    assert {d: (s.status, s.findings) for d, s in status.items()} == \
        {d: (s.status, s.findings) for d, s in det.status.items()}
    pd.testing.assert_frame_equal(ctx.outputs["feed_health"].reset_index(drop=True),
                                  det.ctx.outputs["feed_health"].reset_index(drop=True))


def test_spark_finds_what_the_single_process_finds_on_the_sample(spark, sample):
    _same_as_single(spark, *sample, per_partition=6_000)


def test_spark_finds_what_the_single_process_finds_on_a_multi_day_hospital(spark, multiday):
    _same_as_single(spark, *multiday, per_partition=8_000)


def test_scan_engine_spark_through_the_cli(spark, tmp_path):
    work = tmp_path / "h"
    shutil.copytree(SAMPLE, work)
    with (work / "emraudit.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[engine]\nkind = "spark"\nmaster = "local[2]"\npartition_events = 20000\n')
    res = CliRunner().invoke(main, ["scan", "--config", str(work / "emraudit.toml")])
    assert res.exit_code == 0, res.output
    import json
    import sqlalchemy as sa
    eng = sa.create_engine(f"sqlite:///{work / 'emraudit.db'}")
    with eng.connect() as c:
        summary = json.loads(c.execute(sa.text("SELECT summary FROM scans")).scalar())
    assert summary["engine"]["kind"] == "spark" and summary["findings"] > 50
