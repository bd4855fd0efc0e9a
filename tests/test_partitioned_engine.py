"""Partitioned detection (emraudit.engine): the same findings, ids and stored outputs as the
single-process path, on the sample hospital and on a generated multi-day hospital; the lake
by day and user bucket, old lakes still readable; a dying worker fails its partition."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.engine import plan
from emraudit.engine.driver import detect
from emraudit.engine.local import LocalExecutor
from emraudit.packed import unpack
from emraudit.lake import BUCKETS, Lake, in_partition, user_bucket
from emraudit.scan import build_context, detector_settings, run_detectors, run_scan
from emraudit.store import Store

from engine_fixtures import SAMPLE, multiday, sample  # noqa: F401 - fixtures


def _window(cfg, store, lake):
    days = lake.days(store.committed_runs())
    ws = pd.Timestamp(days[0]).tz_localize(cfg.tz)
    return days, ws, pd.Timestamp(days[-1]).tz_localize(cfg.tz) + pd.Timedelta(days=1)


def _both(cfg, store, lake, per_partition, executor=None):
    days, ws, we = _window(cfg, store, lake)
    ctx = build_context(cfg, store, lake, ws, we, detector_settings(cfg), days)
    single, status = run_detectors(ctx, detector_settings(cfg))
    det = detect(cfg, store, lake, ws, we, detector_settings(cfg), days,
                 executor or LocalExecutor(2), per_partition=per_partition)
    return (single, status, ctx), det


def _same(single, status, ctx, det):
    assert len(single) > 50
    pd.testing.assert_frame_equal(single.reset_index(drop=True),
                                  unpack(det.found).reset_index(drop=True))
    assert {d: (s.status, s.findings) for d, s in status.items()} == \
        {d: (s.status, s.findings) for d, s in det.status.items()}
    for key in ("feed_health", "user_day_features", "feed_gaps", "feed_gap_events",
                "rights_usage"):
        a, b = ctx.outputs.get(key), det.ctx.outputs.get(key)
        assert (a is None) == (b is None), key
        if a is not None:
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert sorted(ctx.notes) == sorted(det.ctx.notes)


def test_sample_hospital_partitioned_equals_single_process(sample):
    (single, status, ctx), det = _both(*sample, per_partition=3_000)
    assert det.partitions >= 8
    _same(single, status, ctx, det)
    # every planted kind the single path finds is found: the comparison is not vacuous
    assert single["detector"].nunique() >= 12


def test_partitions_held_back_by_the_memory_budget_give_the_same_findings(sample):
    """Over its memory budget the engine runs one worker at a time (both passes): slower,
    never different."""
    ex = LocalExecutor(2, memory_limit_mb=1)
    (single, status, ctx), det = _both(*sample, per_partition=6_000, executor=ex)
    assert det.partitions >= 4 and ex.held_back >= 2 * (det.partitions - 1)
    _same(single, status, ctx, det)


def test_detectors_run_with_the_partition_frozen_and_leave_nothing_frozen(sample,
                                                                          monkeypatch):
    """pass_two keeps the partition's events out of the collector's full passes while the
    detectors build their findings, and unfreezes them after (a long-lived worker, or the
    scan's own process without fork, must free them): same findings, nothing left frozen."""
    import gc
    from emraudit.engine import job, local
    monkeypatch.setattr(local, "can_fork", lambda: False)     # pass_two in this process
    seen = []
    real = job.run_detectors

    def spy(ctx, settings):
        seen.append(gc.get_freeze_count())
        return real(ctx, settings)

    monkeypatch.setattr(job, "run_detectors", spy)
    before = gc.get_freeze_count()
    (single, status, ctx), det = _both(*sample, per_partition=6_000)
    assert gc.get_freeze_count() == before
    assert len(seen) >= det.partitions and min(seen) > before + 1000
    _same(single, status, ctx, det)


def test_generated_multi_day_hospital_partitioned_equals_single_process(multiday):
    (single, status, ctx), det = _both(*multiday, per_partition=5_000)
    assert det.partitions >= 4
    _same(single, status, ctx, det)


@pytest.fixture
def bucketed(tmp_path, sample, monkeypatch):
    """The sample's events written again with small files, so days split into buckets."""
    import emraudit.lake as lake_mod
    cfg, store, lake = sample
    every = lake.read_events(store.committed_runs())
    monkeypatch.setattr(lake_mod, "FILE_ROWS", 20)
    out = Lake(tmp_path / "lake", cfg.tz)
    out.write_events(every, "run1")
    return every, out


def test_lake_is_written_by_day_and_user_bucket(bucketed, sample):
    every, lake = bucketed
    files = lake.event_files({"run1"})
    assert {lake.bucket_of(f)[1] for f in files} >= {BUCKETS}     # busy days: 32 buckets
    for f in files[:60]:
        b, m = lake.bucket_of(f)
        uid = pq.read_table(f, columns=["user_id"]).column("user_id").to_pandas()
        assert (user_bucket(uid, m) == b).all()
    # a partition reads only the files that may hold its users
    part = lake.event_files({"run1"}, part=(3, 8))
    assert part and all(b % min(m, 8) == 3 % min(m, 8) for b, m in map(lake.bucket_of, part))
    # a small hospital's day is one file
    cfg, store, small = sample
    assert {small.bucket_of(f) for f in small.event_files(store.committed_runs())} == {(0, 1)}


def test_reports_read_events_by_id_from_their_users_buckets_first(bucketed):
    """A report's events (reports.data.read_events_by_id): found in the bucket files of the
    findings' users, read there alone; an id whose event another user wrote is still found,
    from the day's other files; nothing read twice."""
    from emraudit.reports import data
    every, lake = bucketed
    day = lake.day_of(lake.event_files({"run1"})[0])
    ev = every[every["ts"].dt.tz_convert(lake.tz).dt.strftime("%Y-%m-%d") == day]
    user = ev["user_id"].astype(str).value_counts().index[0]
    mine = sorted(ev.loc[ev["user_id"].astype(str) == user, "event_id"].astype(str))[:5]
    b = user_bucket(ev["user_id"], BUCKETS)
    other = ev.loc[b != user_bucket(pd.Series([user]), BUCKETS)[0]]   # in another file
    other_id = str(other["event_id"].iloc[0])
    read: set = set()
    got = data.read_lake(lake, {"run1"}, [day], None, [("event_id", "in", mine)],
                         users=[user], skip=read)
    assert sorted(got["event_id"].astype(str)) == mine
    day_files = [f for f in lake.event_files({"run1"}) if lake.day_of(f) == day]
    assert 0 < len(read) < len(day_files) / 4          # a few buckets of the day's 32
    both = data.read_events_by_id(lake, {"run1"}, [day], mine + [other_id], [user])
    assert sorted(both["event_id"].astype(str)) == sorted(mine + [other_id])
    assert both["event_id"].is_unique and both["ts"].is_monotonic_increasing
    # another user's event in the very bucket file of `user` (read there by user first):
    # still found, by id, from that file
    same = ev.loc[(b == user_bucket(pd.Series([user]), BUCKETS)[0])
                  & (ev["user_id"].astype(str) != user)]
    assert len(same)
    nb = str(same["event_id"].iloc[0])
    got = data.read_events_by_id(lake, {"run1"}, [day], mine + [nb, nb], [user])
    assert sorted(got["event_id"].astype(str)) == sorted(mine + [nb])
    # every event of the user, wanted or not: only the wanted ones come back
    assert sorted(data.read_events_by_id(lake, {"run1"}, [day], mine[:2], [user])[
        "event_id"].astype(str)) == mine[:2]
    # no user given: by id alone
    assert sorted(data.read_events_by_id(lake, {"run1"}, [day], mine, [])["event_id"]
                  .astype(str)) == mine


def test_partitions_cover_every_event_once(bucketed):
    every, lake = bucketed
    for n in (2, BUCKETS, 2 * BUCKETS):     # whole buckets, one bucket each, half buckets
        parts = [lake.read_events({"run1"}, part=(r, n)) for r in range(n)]
        got = pd.concat(parts)["event_id"].astype(str)
        assert sorted(got) == sorted(every["event_id"].astype(str))
        users = [set(p["user_id"].astype(str)) for p in parts]
        assert all(not (a & b) for i, a in enumerate(users) for b in users[i + 1:])
    assert lake.history({"run1"}, None, None)["first"] == every["ts"].min()


def test_a_lake_written_before_buckets_is_read_by_partition(tmp_path, sample):
    """Old layout: day=D/part-RUN.parquet holding every user; read by hash, not by file."""
    cfg, store, lake = sample
    committed = store.committed_runs()
    every = lake.read_events(committed)
    old = Lake(tmp_path / "lake", cfg.tz)
    day = every["ts"].dt.tz_convert(cfg.tz).dt.strftime("%Y-%m-%d")
    for d, g in every.groupby(day):
        folder = old.events_dir / f"day={d}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(g, preserve_index=False),
                       folder / "part-oldrun.parquet")
    assert all(old.bucket_of(f) is None for f in old.event_files({"oldrun"}))
    for r in (0, 5):
        got = old.read_events({"oldrun"}, part=(r, 8))
        want = every[in_partition(every["user_id"], (r, 8))]
        assert sorted(got["event_id"]) == sorted(want["event_id"].astype(str))
    h = old.history({"oldrun"}, None, None)
    assert h["first"] == every["ts"].min() and h["last"] == every["ts"].max()
    assert h["rows"] == {None: len(every)}


def test_partition_count_is_a_power_of_two_within_the_budget():
    assert plan.partition_count(0, 1000) == 1
    assert plan.partition_count(1000, 1000) == 1
    assert plan.partition_count(1001, 1000) == 2
    assert plan.partition_count(10_000_000, 1_000_000) == 16
    assert plan.partition_count(10**12, 1) == plan.MAX_PARTITIONS


def _dies(job, task):
    if task.index == 1:
        os._exit(9)             # what the kernel's OOM killer does to a worker
    return {"ok": task.index}


def test_the_task_over_every_user_loads_events_only_when_a_detector_reads_them(sample):
    """The rights detectors that judge grants read the reference tables and the usage the
    population pass gathered: their task loads no events (at 10M it loaded every event in
    one process); rights.outside_grant and generic_account divide by user."""
    settings = detector_settings(sample[0])
    runnable = [d for d, s in settings.items() if s.enabled]
    divided, whole = plan.split_detectors(settings, runnable)
    assert {"rights.outside_grant", "rights.generic_account"} <= set(divided)
    assert {"rights.beyond_role", "rights.unapproved", "rights.after_leaving",
            "rights.unused"} <= set(whole)
    assert not plan.reads_events(settings, plan.Task(0, 1, tuple(whole)))
    assert plan.has_population_part(settings["rights.unused"])
    assert plan.reads_events(settings, plan.Task(0, 1, tuple(whole) + ("anomaly.relational",)))
    assert plan.reads_events(settings, plan.Task(3, 8, ("rights.unused",)))
    tasks = plan.tasks(settings, runnable, 8)
    assert [t.count for t in tasks if not plan.reads_events(settings, t)] == [1]


def test_a_worker_that_dies_fails_its_partition_and_the_others_finish():
    tasks = [plan.Task(r, 4, ("x",)) for r in range(4)]
    out = LocalExecutor(2).map(_dies, None, tasks)
    assert [o.get("ok") for o in out] == [0, None, 2, 3]
    assert "worker process died" in out[1]["error"]


def test_scan_through_the_cli_partitions_and_says_so(tmp_path):
    work = tmp_path / "h"
    shutil.copytree(SAMPLE, work)
    with (work / "emraudit.toml").open("a", encoding="utf-8") as fh:
        fh.write("\n[scan]\nparallel_min_events = 0\n\n[engine]\nkind = \"local\"\n"
                 "partition_events = 5000\n")
    res = CliRunner().invoke(main, ["scan", "--config", str(work / "emraudit.toml"),
                                    "--engine", "local"])
    assert res.exit_code == 0, res.output
    import json
    import sqlalchemy as sa
    eng = sa.create_engine(f"sqlite:///{work / 'emraudit.db'}")
    with eng.connect() as c:
        summary = json.loads(c.execute(sa.text("SELECT summary FROM scans")).scalar())
    assert summary["engine"]["kind"] == "local" and summary["engine"]["partitions"] >= 4
    # the scan's own memory after each phase, to tell which phase a parent's growth is in
    parent = summary["engine"]["parent_mb"]
    assert list(parent) == ["plan", "population", "global", "detect"]
    assert all(0 < m["rss"] <= m["peak"] for m in parent.values())
    assert [m["peak"] for m in parent.values()] == sorted(m["peak"] for m in parent.values())


def test_spark_master_without_spark_is_a_usage_error(tmp_path):
    work = tmp_path / "h"
    shutil.copytree(SAMPLE, work)
    res = CliRunner().invoke(main, ["scan", "--config", str(work / "emraudit.toml"),
                                    "--spark-master", "local[2]"])
    assert res.exit_code == 2 and "--engine spark" in res.output


def test_engine_section_is_strict(tmp_path):
    from emraudit.errors import ConfigError
    cfg = tmp_path / "emraudit.toml"
    for bad, key in (('[engine]\nkind = "dask"\n', "engine.kind"),
                     ('[engine]\nworkerz = 2\n', "engine.workerz"),
                     ('[engine]\npartition_events = "many"\n', "engine.partition_events")):
        cfg.write_text('[sources.access_log]\npath = "a.csv"\n' + bad, encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_config(cfg)
        assert key in str(e.value)


def test_run_scan_partitioned_stores_the_same_findings(tmp_path):
    """Whole scans: in one process, then partitioned, of the same data: the same ids."""
    out = {}
    for name, extra in (("single", ""), ("parts", "\n[scan]\nparallel_min_events = 0\n"
                                                  "\n[engine]\npartition_events = 4000\n")):
        work = tmp_path / name
        shutil.copytree(SAMPLE, work)
        with (work / "emraudit.toml").open("a", encoding="utf-8") as fh:
            fh.write(extra)
        cfg = load_config(work / "emraudit.toml")
        res = run_scan(cfg, echo=lambda m: None)
        assert res.exit_code == 0
        out[name] = Store(cfg.store_url).read_findings().sort_values("finding_id")
    cols = ["finding_id", "detector", "severity", "user_id", "patient_id", "event_ids",
            "summary", "case_id"]
    pd.testing.assert_frame_equal(out["single"][cols].reset_index(drop=True),
                                  out["parts"][cols].reset_index(drop=True))
