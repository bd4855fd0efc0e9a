"""More of ingest's count invariant and run record (issue 23), from the survivors of a run of
every mutant of the count functions of `ingest.py`: counts summed over several batches, the
quarantine's raw text kept, a disabled source, the stage hook and the batch callback, each
run's record (finish time, position reached, the mapping of its own table), and a batch
trimmed at the commit point by another writer's copies (its duplicates and coverage).
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from emraudit.config import load_config
from emraudit.ingest import ingest, ingest_source
from emraudit.lake import Lake
from emraudit.scan import STAGES
from emraudit.store import Store, coverage, ingest_runs, profile_steps, quarantine

HEADER = "event_id,ts,user_id,patient_id,action\n"


def _good(i: int, day: str = "2025-07-01") -> str:
    return f"E{i:04d},{day} {8 + i % 10:02d}:{i % 60:02d}:00,u{i % 5},p{i % 7},view\n"


def _site(tmp_path, text: str, extra: str = "", name: str = "access_log"):
    (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    return _config(tmp_path, f"{name}.csv", extra, name)


def _config(tmp_path, path: str, extra: str = "", name: str = "access_log"):
    return _store(tmp_path, {}, f'[sources.{name}]\nconnector = "csv"\npath = "{path}"\n'
                  f'profile = "canonical"\n' + extra)


def _store(tmp_path, files: dict[str, str], sources: str):
    """Write `files` and a configuration (Shanghai time) with `sources`; open the store."""
    for fname, text in files.items():
        (tmp_path / fname).write_text(text, encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[site]\ntimezone = "Asia/Shanghai"\nid = "main"\n' + sources, encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    return cfg, Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)


def _many_batches(tmp_path):
    """A folder of three files (one batch each) of 20 lines, every tenth line without a
    user (quarantined), and the last file repeating an event of the first (a duplicate)."""
    folder = tmp_path / "access_log"
    folder.mkdir()
    for k in range(3):
        lines = []
        for i in range(20 * k + 1, 20 * k + 21):
            line = _good(i)
            if i % 10 == 0:
                line = line.replace(f",u{i % 5},", ",,")
            lines.append(line)
        if k == 2:
            lines.append(_good(3))
        (folder / f"f{k + 1}.csv").write_text(HEADER + "".join(lines), encoding="utf-8")
    return _config(tmp_path, "access_log")


def _runs(store):
    with store.engine.connect() as c:
        return c.execute(sa.select(ingest_runs).order_by(ingest_runs.c.started,
                                                         ingest_runs.c.run_id)).all()


def test_counts_add_up_over_many_batches(tmp_path):
    cfg, store, lake = _many_batches(tmp_path)
    (r,) = ingest(cfg, store, lake)
    assert r.batches == 3
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (61, 54, 6, 1)
    assert r.read == r.accepted + r.quarantined + r.duplicates
    # one run per batch, and the result counts exactly those
    assert r.batches == len(r.runs) == len(_runs(store))
    runs = _runs(store)
    assert sorted(r.runs) == sorted(x.run_id for x in runs)   # the runs it committed
    assert sum(x.quarantined for x in runs) == 6 == len(store.read_table(quarantine))
    assert sum(x.read for x in runs) == 61
    assert sum(x.duplicates for x in runs) == 1


def test_the_quarantine_keeps_each_rejected_line_as_it_was_read(tmp_path):
    bad = "E9,2025-07-01 09:00:00,,p1,view"
    cfg, store, lake = _site(tmp_path, HEADER + _good(1) + bad + "\n" + "E8,never,u1,p1,view\n")
    ingest(cfg, store, lake)
    q = store.read_table(quarantine).sort_values("source_ref")
    assert q["source_ref"].tolist() == ["access_log.csv:3", "access_log.csv:4"]
    assert q["source"].tolist() == ["access_log", "access_log"]
    raws = q["raw"].tolist()
    assert all(isinstance(x, str) and x for x in raws)
    assert "E9" in raws[0] and "p1" in raws[0]
    assert "never" in raws[1]
    assert q["run_id"].notna().all()


def test_a_disabled_source_reads_nothing_and_says_disabled(tmp_path):
    cfg, store, lake = _site(tmp_path, HEADER + _good(1), "enabled = false\n")
    (r,) = ingest(cfg, store, lake)
    assert r.status == "disabled"
    assert (r.read, r.accepted, r.quarantined, r.duplicates, r.batches) == (0, 0, 0, 0, 0)
    assert _runs(store) == []


def test_each_batch_announces_its_written_files_before_it_commits(tmp_path):
    """The stage hook (what the kill -9 tests stop at) is told a stage of `scan.STAGES`
    once per batch, after its files are written and before its run is committed."""
    cfg, store, lake = _many_batches(tmp_path)
    seen = []

    def stage(name):
        seen.append((name, sorted(x.status for x in _runs(store))))

    (r,) = ingest(cfg, store, lake, on_stage=stage)
    assert [name for name, _ in seen] == ["ingest:after-lake-write"] * r.batches
    assert all(name in STAGES for name, _ in seen)
    for i, (_, statuses) in enumerate(seen):
        # batch i is written, not committed: the batches before it are committed
        assert statuses.count("committed") == i
        assert "running" in statuses


def test_the_batch_callback_is_told_the_running_totals(tmp_path):
    cfg, store, lake = _many_batches(tmp_path)
    told = []
    (r,) = ingest(cfg, store, lake,
                  on_batch=lambda res: told.append((res.name, res.read, res.batches)))
    assert len(told) == r.batches
    assert [b for _, _, b in told] == list(range(1, r.batches + 1))
    assert all(name == "access_log" for name, _, _ in told)
    reads = [n for _, n, _ in told]
    assert reads == sorted(reads) and reads[-1] == r.read == 61


def test_each_run_records_when_it_finished_and_where_it_stopped(tmp_path):
    cfg, store, lake = _many_batches(tmp_path)
    ingest(cfg, store, lake)
    runs = _runs(store)
    assert len(runs) > 1
    for x in runs:
        assert x.status == "committed"
        assert x.finished is not None and x.finished >= x.started
        assert x.watermark_after
    # each run starts where the one before it stopped, and the last one where the source is
    for before, after in zip(runs, runs[1:]):
        assert json.loads(after.watermark_before) == json.loads(before.watermark_after)
    assert json.loads(runs[-1].watermark_after) == store.get_watermark("access_log")
    files = json.loads(runs[-1].watermark_after)["files"]
    assert sorted(files) == sorted(str(p) for p in (tmp_path / "access_log").iterdir())
    last = [v for k, v in files.items() if k.endswith("f3.csv")]
    assert last[0]["line"] == 23                              # after its last line (22)


def test_a_reference_run_records_the_files_it_read(tmp_path):
    cfg, store, lake = _site(tmp_path, "user_id,role\nu1,nurse\nu2,physician\n", name="users")
    ingest(cfg, store, lake)
    (run,) = _runs(store)
    assert run.finished is not None and run.finished >= run.started
    after = json.loads(run.watermark_after)
    assert after == store.get_watermark("users")
    (path,) = after["files"]
    assert path.endswith("users.csv")
    # changed: read again, and the new run starts from where the last one stopped
    (tmp_path / "users.csv").write_text("user_id,role\nu1,nurse\nu3,nurse\n", encoding="utf-8")
    (r,) = ingest(cfg, store, lake)
    assert r.status == "ok" and (r.read, r.accepted) == (2, 2)
    first, second = _runs(store)
    assert r.runs == [second.run_id]
    assert json.loads(second.watermark_before) == after
    assert json.loads(second.watermark_after) == store.get_watermark("users") != after


def test_a_run_names_the_mapping_of_its_own_table(tmp_path):
    cfg, store, lake = _site(tmp_path, HEADER + _good(1))
    ingest(cfg, store, lake)
    (run,) = _runs(store)
    steps = store.read_table(profile_steps, where=profile_steps.c.digest == run.profile_digest)
    assert len(steps) > 0
    assert set(steps["table_name"]) == {"access_log"}


def test_rows_that_name_no_site_belong_to_their_source_s_site(tmp_path):
    cfg, store, lake = _store(
        tmp_path, {"access_log.csv": HEADER + _good(1) + _good(2),
                   "users.csv": "user_id,role\nu1,nurse\n"},
        '[sources.access_log]\npath = "access_log.csv"\nsite = "east"\n'
        '[sources.users]\npath = "users.csv"\nsite = "east"\n')
    ingest(cfg, store, lake)
    committed = store.committed_runs()
    assert set(lake.read_events(committed)["site_id"]) == {"east"}
    assert set(lake.read_snapshot("users", committed)["site_id"]) == {"east"}


def test_coverage_counts_each_accepted_event_on_its_local_day(tmp_path):
    # 23:30 and 00:30 in Shanghai: two local days (one UTC day)
    text = (HEADER + "E1,2025-07-01 23:30:00,u1,p1,view\n" + "E2,2025-07-02 00:30:00,u1,p1,view\n"
            + "E3,2025-07-02 00:40:00,,p1,view\n")
    cfg, store, lake = _site(tmp_path, text)
    ingest(cfg, store, lake)
    cov = store.read_table(coverage).sort_values("day")
    assert cov["day"].tolist() == ["2025-07-01", "2025-07-02"]
    assert cov["events"].tolist() == [1, 1]


def _two_writers(tmp_path, a_text: str, b_text: str):
    """Writer A's batch is written, not committed, when writer B (bypassing the lock, here
    called at A's stage hook) stores its events and commits; then A commits."""
    cfg, store, lake = _store(tmp_path, {"a.csv": a_text, "b.csv": b_text},
                              '[sources.a]\ntable = "access_log"\npath = "a.csv"\n'
                              '[sources.b]\ntable = "access_log"\npath = "b.csv"\n')
    b = []

    def let_b_in(stage):
        if not b:
            b.append(ingest_source(cfg, store, lake, "b", set(store.committed_runs())))

    (a,) = ingest(cfg, store, lake, only=["a"], on_stage=let_b_in)
    return store, lake, a, b[0]


def _coverage_events(store, source):
    with store.engine.connect() as c:
        return c.execute(sa.select(sa.func.coalesce(sa.func.sum(coverage.c.events), 0))
                         .where(coverage.c.source == source)).scalar()


def test_copies_dropped_at_the_commit_point_add_to_the_batch_s_own_duplicates(
        tmp_path):
    a_text = HEADER + "".join(_good(i) for i in range(1, 21)) + _good(2) + _good(5)
    b_text = HEADER + "".join(_good(i) for i in range(11, 31))
    # A's first events just after midnight in Shanghai (the day before in UTC)
    a_text = a_text.replace("2025-07-01 09:01:00", "2025-07-01 00:01:00")
    store, lake, a, b = _two_writers(tmp_path, a_text, b_text)
    assert (b.read, b.accepted, b.duplicates) == (20, 20, 0)
    # 2 repeated in A's own file, 10 (E0011..E0020) stored by B meanwhile
    assert (a.read, a.accepted, a.quarantined, a.duplicates) == (22, 10, 0, 12)
    assert a.read == a.accepted + a.quarantined + a.duplicates
    ids = lake.read_events(store.committed_runs(), columns=["event_id"])["event_id"]
    assert sorted(ids) == [f"E{i:04d}" for i in range(1, 31)]
    assert _coverage_events(store, "a") == 10
    days = store.read_table(coverage, where=coverage.c.source == "a")["day"].tolist()
    assert days == ["2025-07-01"]
    (run,) = [x for x in _runs(store) if x.source == "a"]
    assert (run.read, run.accepted, run.duplicates) == (22, 10, 12)


def test_a_batch_wholly_stored_by_another_writer_meanwhile_adds_no_coverage(
        tmp_path):
    a_text = HEADER + "".join(_good(i) for i in range(11, 21))
    b_text = HEADER + "".join(_good(i) for i in range(1, 31))
    store, lake, a, b = _two_writers(tmp_path, a_text, b_text)
    assert (a.read, a.accepted, a.duplicates) == (10, 0, 10)
    assert _coverage_events(store, "a") == 0
    assert _coverage_events(store, "b") == 30
    ids = lake.read_events(store.committed_runs(), columns=["event_id"])["event_id"]
    assert len(ids) == 30 and ids.is_unique
