"""Ingest: counts reconcile, re-ingest adds nothing, appended rows are picked up, a crash
mid-batch leaves nothing visible and the rerun resumes."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.errors import UserError
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.store import Store, quarantine

HEADER = "event_id,ts,user_id,patient_id,action,workstation\n"


@pytest.fixture
def site(tmp_path):
    (tmp_path / "access_log.csv").write_text(
        HEADER
        + "E1,2025-07-01 08:00:00,u1,p1,view,ws1\n"
        + "E2,2025-07-01 23:59:59,u1,p2,view,ws1\n"
        + "E3,not-a-time,u1,p2,view,ws1\n"
        + "E4,2025-07-02 00:00:00,u2,p2,print,ws2\n"
        + "E4,2025-07-02 00:00:00,u2,p2,print,ws2\n", encoding="utf-8")
    (tmp_path / "users.csv").write_text("user_id,name,role,department\nu1,张三,医生,心内科\n"
                                        "u2,李四,护士,心内科\n", encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\npath = "access_log.csv"\n[sources.users]\npath = "users.csv"\n',
        encoding="utf-8")
    return tmp_path


def _run(site):
    cfg = load_config(site / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    return cfg, store, lake, {r.name: r for r in ingest(cfg, store, lake)}


def test_counts_reconcile_and_days_follow_site_timezone(site):
    cfg, store, lake, res = _run(site)
    r = res["access_log"]
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (5, 3, 1, 1)
    assert r.read == r.accepted + r.quarantined + r.duplicates
    assert sorted(r.days) == ["2025-07-01", "2025-07-02"]   # 23:59:59 stays on the 1st
    q = store.read_table(quarantine)
    assert list(q["source_ref"]) == ["access_log.csv:4"]
    assert "unparseable time" in q["reason"].iloc[0]
    ev = lake.read_events(store.committed_runs())
    assert list(ev["event_id"]) == ["E1", "E2", "E4"]
    assert str(ev["ts"].dt.tz) == "Asia/Shanghai"
    assert set(ev["_source_ref"]) == {"access_log.csv:2", "access_log.csv:3", "access_log.csv:5"}


def test_reingest_adds_nothing_and_appended_rows_are_read(site):
    cfg, store, lake, _ = _run(site)
    _, _, _, res = _run(site)
    assert res["access_log"].accepted == 0 and res["access_log"].status == "unchanged"
    assert res["users"].status == "unchanged"
    with (site / "access_log.csv").open("a", encoding="utf-8") as fh:
        fh.write("E5,2025-07-02 10:00:00,u2,p3,view,ws2\n")
    _, _, _, res = _run(site)
    assert res["access_log"].accepted == 1 and res["access_log"].read == 1
    assert len(lake.read_events(store.committed_runs())) == 4


def test_same_events_from_a_rewritten_file_are_duplicates(site):
    cfg, store, lake, _ = _run(site)
    text = (site / "access_log.csv").read_text(encoding="utf-8")
    (site / "access_log.csv").write_text(text + "E6,2025-07-03 10:00:00,u2,p3,view,ws2\n",
                                         encoding="utf-8")
    os.utime(site / "access_log.csv", (1, 1))   # looks rewritten, not appended
    _, _, _, res = _run(site)
    r = res["access_log"]
    assert r.read == r.accepted + r.quarantined + r.duplicates
    assert len(lake.read_events(store.committed_runs())) == 4


def test_crash_after_lake_write_leaves_nothing_and_rerun_resumes(site):
    script = Path(__file__).with_name("killable.py")
    proc = subprocess.run([sys.executable, str(script), "ingest:after-lake-write", "ingest",
                           "--config", str(site / "emraudit.toml")], capture_output=True)
    assert proc.returncode == -9
    cfg = load_config(site / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    orphans = list((site / "lake" / "access_log").rglob("*.parquet"))
    assert orphans, "the killed run had written its files"
    assert lake.read_events(store.committed_runs()).empty   # invisible: never committed
    _, _, _, res = _run(site)
    assert res["access_log"].accepted == 3
    assert len(lake.read_events(store.committed_runs())) == 3
    assert not any(p.exists() for p in orphans)             # orphans removed


def test_ingest_cli_prints_counts_and_missing_file_is_exit_2(site):
    res = CliRunner().invoke(main, ["ingest", "--config", str(site / "emraudit.toml")])
    assert res.exit_code == 0, res.output
    assert "access_log" in res.output and "quarantine" in res.output
    (site / "users.csv").unlink()
    res = CliRunner().invoke(main, ["ingest", "--config", str(site / "emraudit.toml")])
    assert res.exit_code == 1 and "FAILED" in res.output and "users.csv" in res.output
    res = CliRunner().invoke(main, ["ingest", "--config", str(site / "emraudit.toml"),
                                    "--source", "nope"])
    assert res.exit_code == 2 and "unknown source 'nope'" in res.output


def test_lake_is_readable_as_plain_parquet(site):
    cfg, store, lake, _ = _run(site)
    df = pd.read_parquet(site / "lake" / "access_log")   # hive partitions, pandas alone
    assert len(df) == 3 and "day" in df.columns


def test_reference_snapshot_compares_times_as_instants(site):
    """An unchanged reference table with times is 'unchanged'; one second moved is new."""
    rel = site / "care_relations.csv"
    rel.write_text("user_id,patient_id,kind,start,end\n"
                   "u1,p1,care_team,2025-07-01 08:00:00,2025-07-03 12:00:00\n", encoding="utf-8")
    with (site / "emraudit.toml").open("a", encoding="utf-8") as fh:
        fh.write('[sources.care_relations]\npath = "care_relations.csv"\n')
    _, _, _, res = _run(site)
    assert res["care_relations"].accepted == 1
    _, _, _, res = _run(site)
    assert res["care_relations"].status == "unchanged"
    rel.write_text(rel.read_text(encoding="utf-8").replace("12:00:00", "12:00:01"),
                   encoding="utf-8")
    _, store, lake, res = _run(site)
    assert res["care_relations"].status != "unchanged" and res["care_relations"].accepted == 1
    snap = lake.read_snapshot("care_relations", store.committed_runs())
    assert snap["end"].iloc[0] == pd.Timestamp("2025-07-03 12:00:01", tz="Asia/Shanghai")


def _batch_rows(site, n: int) -> None:
    """Read the site's access log `n` rows a batch."""
    toml = (site / "emraudit.toml").read_text(encoding="utf-8")
    (site / "emraudit.toml").write_text(
        toml.replace('path = "access_log.csv"\n', f'path = "access_log.csv"\nbatch_rows = {n}\n'),
        encoding="utf-8")


def test_duplicate_in_a_later_batch_of_the_same_file_is_dropped_once(site, monkeypatch):
    """Batches of one ingest see the ids the earlier batches wrote (by hash, confirmed)."""
    from emraudit.connectors import files
    monkeypatch.setattr(files, "MIN_BLOCK", 64)
    (site / "access_log.csv").write_text(
        HEADER + "".join(f"E{i},2025-07-01 08:{i:02d}:00,u1,p{i},view,ws1\n" for i in range(7))
        + "E1,2025-07-01 08:01:00,u1,p1,view,ws1\n", encoding="utf-8")
    _batch_rows(site, 2)
    cfg, store, lake, res = _run(site)
    r = res["access_log"]
    assert r.batches >= 4
    assert (r.read, r.accepted, r.duplicates) == (8, 7, 1)
    assert sorted(lake.read_events(store.committed_runs())["event_id"]) == \
        [f"E{i}" for i in range(7)]


def test_duplicate_of_a_batch_still_being_written_is_dropped(site, monkeypatch):
    """The next batch is validated while the previous one's files are written (before it
    commits): a re-delivered row straddling the two is still dropped exactly once."""
    from emraudit.connectors import files
    monkeypatch.setattr(files, "MIN_BLOCK", 64)
    rows = [f"E{i},2025-07-01 08:{i:02d}:00,u1,p{i},view,ws1\n" for i in range(7)]
    (site / "access_log.csv").write_text(HEADER + "".join(r + r for r in rows),
                                         encoding="utf-8")
    _batch_rows(site, 3)
    cfg, store, lake, res = _run(site)
    r = res["access_log"]
    assert r.batches >= 4 and r.read == 14
    assert (r.accepted, r.quarantined, r.duplicates) == (7, 0, 7)
    assert sorted(lake.read_events(store.committed_runs())["event_id"]) == \
        [f"E{i}" for i in range(7)]


def test_known_ids_see_batches_in_flight_until_they_land(tmp_path):
    from emraudit.fastops import id_hashes
    from emraudit.ingest import _KnownIds
    from emraudit.lake import Lake
    known = _KnownIds(Lake(tmp_path / "lake", "Asia/Shanghai"), set())
    first = pd.Series(["E1", "E2"], dtype="string")
    known.duplicates(first, ["2025-07-01"], id_hashes(first))
    known.add("r1", first, id_hashes(first), pd.Series(["2025-07-01"] * 2))
    nxt = pd.Series(["E2", "E3"], dtype="string")
    assert list(known.duplicates(nxt, ["2025-07-01"], id_hashes(nxt))) == [True, False]
    known.landed("r1")    # nothing in the lake: once landed, only the lake confirms a hit
    assert list(known.duplicates(nxt, ["2025-07-01"], id_hashes(nxt))) == [False, False]


def test_known_ids_hold_a_bounded_number_and_reload_a_day_touched_again(site, monkeypatch):
    """A backlog delivered day by day: past KNOWN_IDS_MAX the days touched longest ago are
    let go; a day touched again is read from the lake again, so its re-delivered rows are
    still dropped, once."""
    from emraudit import ingest as ingest_mod
    from emraudit.connectors import files
    monkeypatch.setattr(files, "MIN_BLOCK", 64)
    monkeypatch.setattr(ingest_mod, "KNOWN_IDS_MAX", 3)
    held = []
    real = ingest_mod._KnownIds.duplicates

    def spy(self, ids, days, hashes):
        out = real(self, ids, days, hashes)
        held.append((set(self.by_day), set(days), self.held))
        return out

    monkeypatch.setattr(ingest_mod._KnownIds, "duplicates", spy)
    days = [f"2025-07-{d:02d}" for d in range(1, 6)]
    rows = [f"E{d}{i},{day} 08:0{i}:00,u1,p{i},view,ws1\n"
            for d, day in enumerate(days) for i in range(3)]
    again = [rows[0], rows[4]]          # day one and day two, re-delivered at the end
    (site / "access_log.csv").write_text(HEADER + "".join(rows + again), encoding="utf-8")
    _batch_rows(site, 3)
    cfg, store, lake, res = _run(site)
    r = res["access_log"]
    assert (r.read, r.accepted, r.duplicates) == (17, 15, 2)
    assert len(lake.read_events(store.committed_runs())) == 15
    # never more than the bound, beyond the days of the batch at hand
    assert all(n <= 3 or kept <= batch for kept, batch, n in held)
    assert max(len(kept - batch) for kept, batch, _ in held) <= 1
    assert len(held) >= 5


def test_read_ahead_hands_over_batches_in_order_then_the_error():
    from emraudit.ingest import _read_ahead

    def batches():
        yield 1
        yield 2
        raise UserError("line 9: malformed")

    got = []
    with pytest.raises(UserError, match="line 9"):
        for b in _read_ahead(batches()):
            got.append(b)
    assert got == [1, 2]


def test_read_ahead_stops_and_closes_the_source_when_the_consumer_stops():
    import threading
    from emraudit.ingest import _read_ahead
    closed = threading.Event()

    def batches():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    it = _read_ahead(batches())
    assert next(it) == 0
    it.close()                  # the ingest loop left early (an error of its own)
    assert closed.wait(5)
    assert not any(t.name == "emraudit-read-ahead" for t in threading.enumerate())
