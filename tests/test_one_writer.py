"""One writer at a time, and no event stored twice whatever the order of writers
(issue 17 item 1).

Two `emraudit` processes writing the same store at once: the second stops on the writer lock
(exit 4) and every event is in the lake once. Under the lock, the lake still refuses a second
copy: a batch checks its ids at the commit point against what runs committed since its
ingest began, so writers that bypass the lock cannot double events either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.errors import LockedError
from emraudit.ingest import ingest, ingest_source
from emraudit.lake import Lake
from emraudit.lock import current_holder, writer_lock
from emraudit.store import Store, coverage, ingest_runs, locks

HEADER = "event_id,ts,user_id,patient_id,action\n"


def _rows(first: int, last: int) -> str:
    return "".join(f"E{i:06d},2025-07-01 {8 + i % 10:02d}:{i % 60:02d}:{i // 60 % 60:02d},"
                   f"u{i % 50},p{i % 700},view\n" for i in range(first, last + 1))


def _site(tmp_path: Path, rows: int, batch_rows: int) -> Path:
    (tmp_path / "access_log.csv").write_text(HEADER + _rows(1, rows), encoding="utf-8")
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text(f'[sources.access_log]\npath = "access_log.csv"\nbatch_rows = {batch_rows}\n'
                   '[reports]\ndir = "reports"\n', encoding="utf-8")
    return cfg


def _env() -> dict:
    return {k: v for k, v in os.environ.items()
            if k not in ("EMRAUDIT_STORE_URL", "EMRAUDIT_LAKE", "EMRAUDIT_CONFIG")}


def _lake_ids(cfg_path: Path) -> list[str]:
    cfg = load_config(cfg_path)
    store = Store(cfg.store_url)
    ev = Lake(cfg.lake_dir, cfg.tz).read_events(store.committed_runs(), columns=["event_id"])
    store.dispose()
    return list(ev["event_id"])


@pytest.mark.slow
@pytest.mark.parametrize("first,second", [("scan", "ingest"), ("ingest", "scan"),
                                          ("ingest", "ingest")])
def test_two_writer_processes_at_once_store_each_event_once(tmp_path, first, second):
    """The first writer is paused half-way through its ingest (files of a batch written,
    not committed) while the second runs from start to end; then the first finishes."""
    n = 2_000
    cfg = _site(tmp_path, n, batch_rows=500)
    ready, go = tmp_path / "ready", tmp_path / "go"
    a = subprocess.Popen([sys.executable, str(Path(__file__).with_name("pausable.py")),
                          "ingest:after-lake-write", str(ready), str(go), first,
                          "--config", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        t0 = time.time()
        while not ready.exists():
            assert a.poll() is None, a.communicate()
            assert time.time() - t0 < 120, "the first writer never reached its first commit"
            time.sleep(0.02)
        b = subprocess.run([sys.executable, "-m", "emraudit", second, "--config", str(cfg)],
                           capture_output=True, text=True, env=_env(), timeout=300)
    finally:
        go.touch()
    out_a, err_a = a.communicate(timeout=300)
    assert a.returncode == 0, out_a + err_a
    assert b.returncode == LockedError.exit_code == 4, b.stdout + b.stderr
    assert f"another writer holds this store ({first} on host" in b.stderr
    assert "Traceback" not in b.stderr
    ids = _lake_ids(cfg)
    assert len(ids) == n and len(set(ids)) == n
    store = Store(load_config(cfg).store_url)
    with store.engine.connect() as c:
        events = c.execute(sa.select(sa.func.sum(coverage.c.events))).scalar()
    assert events == n                       # coverage counted once too


def test_lake_refuses_a_copy_committed_by_another_writer_meanwhile(tmp_path, monkeypatch):
    """Writer A reads its batch while writer B (bypassing the lock, here called directly)
    stores overlapping events and commits; A's commit then drops what B already stored."""
    (tmp_path / "a.csv").write_text(HEADER + _rows(1, 100), encoding="utf-8")
    (tmp_path / "b.csv").write_text(HEADER + _rows(50, 150), encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.a]\ntable = "access_log"\npath = "a.csv"\n'
        '[sources.b]\ntable = "access_log"\npath = "b.csv"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    real_write = Lake.write_events
    state = {"b": None}

    def write_then_let_b_in(self, df, run_id, day=None):
        if state["b"] is None and set(df["_source"]) == {"a"}:
            state["b"] = "running"
            state["b"] = ingest_source(cfg, store, lake, "b", set(store.committed_runs()))
        return real_write(self, df, run_id, day)

    monkeypatch.setattr(Lake, "write_events", write_then_let_b_in)
    res = {r.name: r for r in ingest(cfg, store, lake, only=["a"])}
    b = state["b"]
    assert b.accepted == 101 and b.duplicates == 0
    a = res["a"]
    assert (a.read, a.accepted, a.duplicates) == (100, 49, 51)
    ids = list(lake.read_events(store.committed_runs(), columns=["event_id"])["event_id"])
    assert sorted(ids) == [f"E{i:06d}" for i in range(1, 151)]
    # the run's own record agrees with what its files hold
    with store.engine.connect() as c:
        row = c.execute(sa.select(ingest_runs).where(ingest_runs.c.source == "a")).one()
        cov = c.execute(sa.select(sa.func.sum(coverage.c.events))
                        .where(coverage.c.source == "a")).scalar()
    files = [lake.root / f for f in __import__("json").loads(row.detail)["files"]]
    assert sum(pq.read_metadata(f).num_rows for f in files) == row.accepted == 49 == cov


def test_a_batch_whose_run_was_failed_meanwhile_is_not_committed(tmp_path, monkeypatch):
    """A run marked failed by another process (after a forced unlock) must not come back
    as committed over files that process may have removed."""
    (tmp_path / "a.csv").write_text(HEADER + _rows(1, 20), encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text('[sources.access_log]\npath = "a.csv"\n',
                                            encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    real_write = Lake.write_events

    def write_and_be_failed(self, df, run_id, day=None):
        out = real_write(self, df, run_id, day)
        with store.begin() as c:
            c.execute(ingest_runs.update().values(status="failed"))
        return out

    monkeypatch.setattr(Lake, "write_events", write_and_be_failed)
    res = ingest(cfg, store, lake)
    assert res[0].status == "failed" and "marked failed by another process" in res[0].error
    assert "(a lock removed by force?); this batch was not kept: run the command again" in \
        res[0].error
    assert store.committed_runs() == set()


@pytest.fixture
def held(tmp_path):
    """A live process on this host holding the store's writer lock."""
    cfg = _site(tmp_path, 10, batch_rows=1_000)
    url = load_config(cfg).store_url
    Store(url).dispose()
    code = ("import sys, time\nfrom emraudit.store import Store\n"
            "from emraudit.lock import writer_lock\n"
            f"with writer_lock(Store({url!r}), 'test holder'):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield cfg, proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("args", [
    ["ingest"], ["scan"],
    ["allow", "add", "--user", "u1", "--detector", "care.no_relationship", "--until",
     "2030-01-01", "--reason", "r", "--by", "b"],
    ["allow", "remove", "1", "--by", "b"],
])
def test_every_writing_command_stops_on_a_held_lock_with_exit_4(held, args):
    cfg, proc = held
    res = CliRunner().invoke(main, [*args[:2], "--config", str(cfg), *args[2:]]
                             if args[0] == "allow" else [args[0], "--config", str(cfg)])
    assert res.exit_code == 4, res.output
    assert f"another writer holds this store (test holder on host" in res.output
    assert f"pid {proc.pid}" in res.output
    assert _lake_ids(cfg) == []


def test_reviewers_resolve_cases_while_a_writer_runs(held):
    """`cases resolve` is one versioned transaction: it never waits for a nightly scan."""
    from emraudit.store import cases, now_utc
    cfg, _ = held
    store = Store(load_config(cfg).store_url)
    with store.begin() as c:
        c.execute(cases.insert().values(case_id="C1", kind="patient", user_id="u1",
                                        patient_id="p1", status="open", version=1,
                                        created=now_utc(), updated=now_utc()))
    res = CliRunner().invoke(main, ["cases", "resolve", "--config", str(cfg), "C1",
                                    "--disposition", "justified", "--note", "ok", "--by", "r"])
    assert res.exit_code == 0, res.output
    with store.engine.connect() as c:
        row = c.execute(sa.select(cases.c.status, cases.c.disposition)).one()
    assert tuple(row) == ("resolved", "justified")


def test_unlock_refuses_a_live_holder_unless_forced(held):
    cfg, proc = held
    res = CliRunner().invoke(main, ["unlock", "--config", str(cfg)])
    assert res.exit_code == 4 and "not stale" in res.output
    res = CliRunner().invoke(main, ["unlock", "--config", str(cfg), "--force"])
    assert res.exit_code == 0 and f"pid {proc.pid}" in res.output
    assert current_holder(Store(load_config(cfg).store_url)) is None


def test_a_dead_or_reused_pid_does_not_hold_the_lock(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    import socket
    from datetime import timedelta
    from emraudit.store import now_utc
    # pid 1 is alive, but it started after this lock was taken: the pid was reused
    with store.begin() as c:
        c.execute(locks.insert().values(name="scan", holder=f"{socket.gethostname()}:1",
                                        acquired=now_utc() - timedelta(days=365 * 30),
                                        heartbeat=now_utc(), command="scan"))
    if not Path("/proc/1/stat").exists():
        pytest.skip("no /proc to tell a reused pid")
    with writer_lock(store, "ingest"):
        assert current_holder(store).command == "ingest"
    assert current_holder(store) is None


def test_the_lock_is_reentrant_but_notices_being_taken_away(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with writer_lock(store, "scan"):
        with writer_lock(store, "ingest"):           # run_scan ingests under its own lock
            assert current_holder(store).command == "scan"
        with store.begin() as c:
            c.execute(locks.delete())                # `unlock --force` by someone else
        with pytest.raises(LockedError, match="removed while it ran"):
            with writer_lock(store, "ingest"):
                pass
