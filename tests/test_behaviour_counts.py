"""Ingest's count invariant for every canonical table (issue 23): each row read is accepted,
quarantined with its reason and line, or counted as a duplicate of its key — never dropped
silently — so read = accepted + quarantined + duplicates in the result, in the ingest run
stored, and in the quarantine table. One CSV per table with good rows, malformed rows and,
where the table has a key, a repeated key.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit.config import load_config
from emraudit.ingest import format_results, ingest
from emraudit.lake import Lake
from emraudit.store import Store, ingest_runs, quarantine

# table -> (csv text, read, accepted, quarantined, duplicates, reasons of the quarantined)
CASES = {
    "access_log": (
        "event_id,ts,user_id,patient_id,action\n"
        "E1,2025-07-01 08:00:00,u1,p1,view\n"
        "E2,2025-07-01 09:00:00,u1,p2,view\n"
        "E3,not-a-time,u1,p2,view\n"
        "E4,2025-07-01 10:00:00,,p2,view\n"
        "E2,2025-07-01 09:00:00,u1,p2,view\n",
        5, 2, 2, 1),
    "users": (
        "user_id,name,role,department\n"
        "u1,张三,physician,心内科\n"
        "u2,李四,nurse,心内科\n"
        ",王五,nurse,心内科\n"
        "u1,张三,physician,心内科\n",
        4, 2, 1, 1),
    "patients": (
        "patient_id,name,birth_date\n"
        "P1,李莉,1980-01-02\n"
        "P2,王小明,1990-03-04\n"
        ",无名,1990-03-04\n"
        "P3,赵六,not-a-date\n"
        "P2,王小明,1990-03-04\n",
        5, 2, 2, 1),
    "care_relations": (
        "patient_id,user_id,kind,start,end\n"
        "P1,u1,admission,2025-07-01,2025-07-05\n"
        "P2,u1,consult,2025-07-01,\n"
        ",u1,admission,2025-07-01,2025-07-05\n"
        "P3,u1,not-a-kind,2025-07-01,2025-07-05\n"
        "P4,u1,admission,,2025-07-05\n"
        "P5,u1,admission,2025-07-05,2025-07-01\n",
        6, 2, 4, 0),
    "patient_contacts": (
        "patient_id,name,relation\n"
        "P1,李大,父亲\n"
        ",李二,母亲\n",
        2, 1, 1, 0),
    "shifts": (
        "user_id,start,end,kind,ward\n"
        "u1,2025-07-01 08:00,2025-07-01 16:00,duty,W1\n"
        "u1,2025-07-02 08:00,2025-07-02 16:00,leave,\n"
        ",2025-07-01 08:00,2025-07-01 16:00,duty,W1\n"
        "u2,2025-07-01 16:00,2025-07-01 08:00,duty,W1\n"
        "u2,2025-07-01 08:00,2025-07-01 16:00,holiday,W1\n",
        5, 2, 3, 0),
    "workstations": (
        "workstation,ip,department\n"
        "ws1,10.0.0.1,心内科\n"
        ",10.0.0.2,心内科\n",
        2, 1, 1, 0),
    "departments": (
        "department,parent\n"
        "心内科,内科\n"
        "内科,\n"
        ",内科\n"
        "心内科,内科\n",
        4, 2, 1, 1),
    "grants": (
        "grant_id,user_id,permission,granted_at\n"
        "G1,u1,read,2025-01-01\n"
        "G2,u2,read,2025-01-01\n"
        "G3,u2,read,\n"
        "G1,u1,read,2025-01-01\n",
        4, 2, 1, 1),
    "roles": (
        "role,permissions,record_class,scope\n"
        "physician,read,,department\n"
        "nurse,read,,ward\n"
        ",read,,ward\n"
        "physician,read,,department\n",
        4, 2, 1, 1),
}


def _site(tmp_path, table, text):
    (tmp_path / f"{table}.csv").write_text(text, encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[site]\ntimezone = "Asia/Shanghai"\n'
        f'[sources.{table}]\nconnector = "csv"\npath = "{table}.csv"\nprofile = "canonical"\n',
        encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    return cfg, Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)


@pytest.mark.parametrize("table", list(CASES))
def test_every_row_read_is_accepted_quarantined_or_a_duplicate(tmp_path, table):
    text, read, accepted, quarantined, duplicates = CASES[table]
    cfg, store, lake = _site(tmp_path, table, text)
    (r,) = ingest(cfg, store, lake)
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == \
        (read, accepted, quarantined, duplicates)
    assert r.read == r.accepted + r.quarantined + r.duplicates
    assert r.read == text.count("\n") - 1                        # every data line read
    q = store.read_table(quarantine)
    assert len(q) == quarantined
    assert q["reason"].str.len().min() > 0
    assert set(q["source"]) == {table}
    assert all(ref.startswith(f"{table}.csv:") for ref in q["source_ref"])
    with store.engine.connect() as c:
        runs = c.execute(sa.select(ingest_runs).where(ingest_runs.c.status == "committed")).all()
    assert [(x.read, x.accepted, x.quarantined, x.duplicates) for x in runs] == \
        [(read, accepted, quarantined, duplicates)]
    assert all(x.profile_digest for x in runs)      # the run names the mapping it used
    # what landed is exactly what was accepted
    if table == "access_log":
        landed = lake.read_events(store.committed_runs())
    else:
        landed = lake.read_snapshot(table, store.committed_runs())
    assert len(landed) == accepted
    # the summary table prints the same four numbers
    line = format_results([r]).splitlines()[-1].split()
    assert [int(x.replace(",", "")) for x in line[2:6]] == [read, accepted, quarantined,
                                                            duplicates]


def test_quarantine_names_the_line_and_the_reason(tmp_path):
    text = CASES["care_relations"][0]
    cfg, store, lake = _site(tmp_path, "care_relations", text)
    ingest(cfg, store, lake)
    q = store.read_table(quarantine).sort_values("source_ref")
    assert q["source_ref"].tolist() == ["care_relations.csv:4", "care_relations.csv:5",
                                        "care_relations.csv:6", "care_relations.csv:7"]
    reasons = dict(zip(q["source_ref"], q["reason"]))
    assert "patient_id" in reasons["care_relations.csv:4"]
    assert "kind" in reasons["care_relations.csv:5"]
    assert "start" in reasons["care_relations.csv:6"]
    assert reasons["care_relations.csv:7"] == "care relation ends before it starts"


def test_a_second_ingest_of_the_same_reference_file_adds_nothing(tmp_path):
    text = CASES["users"][0].replace(",王五,nurse,心内科\n", "")
    cfg, store, lake = _site(tmp_path, "users", text)
    ingest(cfg, store, lake)
    (r,) = ingest(cfg, store, lake)
    assert r.status == "unchanged"
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (0, 0, 0, 0)
    with store.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(ingest_runs)).scalar() == 1


def test_a_second_ingest_of_the_same_events_counts_them_as_duplicates(tmp_path):
    text = CASES["access_log"][0]
    cfg, store, lake = _site(tmp_path, "access_log", text)
    ingest(cfg, store, lake)
    (tmp_path / "access_log.csv").write_text(text + "E9,2025-07-02 08:00:00,u1,p1,view\n",
                                             encoding="utf-8")
    (r,) = ingest(cfg, store, lake)
    # only the appended line is read the second time (the watermark), and it is new
    assert r.read == r.accepted + r.quarantined + r.duplicates
    ev = lake.read_events(store.committed_runs())
    assert sorted(ev["event_id"]) == ["E1", "E2", "E9"]
    assert pd.Series(ev["event_id"]).is_unique


def test_the_summary_table_names_its_columns_and_each_source(tmp_path):
    from emraudit.ingest import SourceResult
    ok = SourceResult("his_log", "access_log", read=1234, accepted=1200, quarantined=30,
                      duplicates=4)
    bad = SourceResult("users", "users", status="failed", error="users.csv: no such file")
    lines = format_results([ok, bad]).split("\n")
    assert len(lines) == 3
    assert lines[0].split() == ["source", "table", "read", "accepted", "quarantined",
                                "duplicate", "status"]
    assert lines[1].split() == ["his_log", "access_log", "1,234", "1,200", "30", "4", "ok"]
    assert lines[2].split()[:6] == ["users", "users", "0", "0", "0", "0"]
    assert lines[2].endswith("FAILED: users.csv: no such file")


def test_the_stored_run_keeps_the_reader_notes_legible(tmp_path):
    # a file rewritten (not only appended) is read again from the start; the run stored in
    # the state database says so, with the file's own (Chinese) name as it is, not escaped
    import json
    import os
    (tmp_path / "访问日志.csv").write_text(CASES["access_log"][0], encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\nconnector = "csv"\npath = "访问日志.csv"\n'
        'profile = "canonical"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    ingest(cfg, store, lake)
    (tmp_path / "访问日志.csv").write_text(CASES["access_log"][0].replace("E1,", "E7,"),
                                         encoding="utf-8")
    os.utime(tmp_path / "访问日志.csv", (1, 1))
    (r,) = ingest(cfg, store, lake)
    assert (r.read, r.accepted, r.duplicates) == (5, 1, 2)
    with store.engine.connect() as c:
        detail = c.execute(sa.select(ingest_runs.c.detail).where(
            ingest_runs.c.run_id == r.runs[-1])).scalar_one()
    assert "访问日志.csv changed since the last run" in detail
    assert json.loads(detail)["notes"] == [
        "访问日志.csv changed since the last run (not only appended): read again from the start"]


def test_a_reference_table_in_several_files_is_read_whole(tmp_path):
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "a.csv").write_text("user_id,role\nu1,nurse\nu2,nurse\n",
                                              encoding="utf-8")
    (tmp_path / "users" / "b.csv").write_text("user_id,role\nu3,physician\n,nurse\n",
                                              encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.users]\nconnector = "csv"\npath = "users"\nprofile = "canonical"\n',
        encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    (r,) = ingest(cfg, store, lake)
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (4, 3, 1, 0)
    snap = lake.read_snapshot("users", store.committed_runs())
    assert sorted(snap["user_id"]) == ["u1", "u2", "u3"]
