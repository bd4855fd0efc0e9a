"""The multi-user store on a real PostgreSQL server: reviewers never lose a disposition, and
a long scan transaction does not block them. Uses the `pg_url` fixture (a fresh schema)."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit import cases as C
from emraudit.allow import add_entry, apply_allowlist
from emraudit.results import save_scan_results, store_findings
from emraudit.store import Store, case_history, cases, findings as findings_t

pytestmark = pytest.mark.postgres

NOW = pd.Timestamp("2025-07-03T01:00:00+08:00")


def F(fid, detector, user, patient="", events=("e1",), severity="medium"):
    return {"finding_id": fid, "detector": detector, "severity": severity, "score": 1.0,
            "user_id": user, "patient_id": patient, "start": "2025-07-01T10:00:00+08:00",
            "end": "2025-07-01T10:05:00+08:00", "event_ids": list(events),
            "rectification_item": "9", "summary": "s", "evidence": {}}


@pytest.fixture
def store(pg_url):
    s = Store(pg_url)
    assert s.engine.dialect.name == "postgresql"
    yield s
    s.dispose()


WS = pd.Timestamp("2025-07-01", tz="Asia/Shanghai")
CASE_U1 = C.case_id_for("incident", "u1", "2025-07-01")


def _open_cases(store, rows, scan_id="S1"):
    """What the pipeline does in one transaction (emraudit.results): the findings with their
    case ids, then the cases, then the queue."""
    df = pd.DataFrame(rows)
    with store.begin() as conn:
        return save_scan_results(conn, df, scan_id, ran=[], window_start=WS,
                                 window_end=WS + pd.Timedelta(days=1), days=None,
                                 tz="Asia/Shanghai", quota=10, now=NOW).cases


def _store_findings(conn, df, scan_id):
    """The findings alone, as the pipeline writes them (their case ids with them)."""
    store_findings(conn, df.pipe(C.annotate, "Asia/Shanghai"), scan_id, [], WS,
                   WS + pd.Timedelta(days=1), None)


def test_cases_and_allowlist_work_on_postgres(store):
    entry = add_entry(store, user="u2", patient="p1", until="2099-01-01", reason="cohort",
                      by="irb", tz="Asia/Shanghai")
    found = apply_allowlist(store, pd.DataFrame([F("F1", "a", "u1", "p1"),
                                                 F("F2", "b", "u1", "p1"),
                                                 F("F3", "a", "u2", "p1")]), NOW)
    assert list(found["suppressed_by"]) == [None, None, entry]
    touched = _open_cases(store, found)
    assert sorted(touched["status"]) == ["open", "suppressed"]
    again = _open_cases(store, found, "S2")
    assert set(again["change"]) == {"unchanged"}
    cid = CASE_U1
    row = C.resolve_case(store, cid, "confirmed", "n", "r1")
    assert row["version"] == 2


def test_two_reviewers_resolving_at_once_lose_nothing(store):
    _open_cases(store, [F("F1", "a", "u1", "p1")])
    cid = CASE_U1
    n = 8
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def reviewer(name: str, disposition: str) -> None:
        try:
            barrier.wait()
            for i in range(n):
                C.resolve_case(store, cid, disposition, f"{name} #{i}", name, retries=50)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=("alice", "confirmed")),
               threading.Thread(target=reviewer, args=("bob", "false_positive"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    hist = C.case_history_of(store, cid)
    res = hist[hist["action"] == "resolved"]
    assert len(res) == 2 * n
    assert (res["by"] == "alice").sum() == n and (res["by"] == "bob").sum() == n
    # each change names the value it replaced: the chain has no gap
    chain = list(res["new"])
    assert list(res["old"])[1:] == chain[:-1]
    row = store.read_table(cases, cases.c.case_id == cid).iloc[0]
    assert row["version"] == 1 + 2 * n
    assert row["disposition"] == chain[-1] and row["reviewer"] == list(res["by"])[-1]


def test_a_resolve_racing_another_is_retried_not_lost(store):
    """Deterministic race: B reads version 1 while A's update holds the row; A commits; B's
    guarded update matches nothing, so B reads again and applies on top of A."""
    _open_cases(store, [F("F1", "a", "u1", "p1")])
    cid = CASE_U1
    a_updated = threading.Event()
    b_done = threading.Event()
    result = {}

    def a():
        with store.begin() as conn:
            conn.execute(cases.update().where(cases.c.case_id == cid, cases.c.version == 1)
                         .values(status="resolved", disposition="justified", reviewer="A",
                                 version=2))
            conn.execute(case_history.insert().values(case_id=cid, at=NOW.to_pydatetime(),
                                                      by="A", action="resolved",
                                                      field="disposition", new="justified"))
            a_updated.set()
            time.sleep(0.8)   # B has read version 1 and is now waiting on the row lock

    def b():
        a_updated.wait(10)
        result["row"] = C.resolve_case(store, cid, "confirmed", "B's note", "B")
        b_done.set()

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start(), tb.start()
    ta.join(20), tb.join(20)
    assert result["row"]["version"] == 3
    hist = C.case_history_of(store, cid)
    res = hist[hist["action"] == "resolved"]
    assert list(res["by"]) == ["A", "B"] and list(res["old"].fillna("")) == ["", "justified"]


def test_a_long_scan_transaction_does_not_block_reviewers(store):
    _open_cases(store, [F("F1", "a", "u1", "p1"), F("F2", "a", "u2", "p2")])
    busy = CASE_U1
    other = C.case_id_for("incident", "u2", "2025-07-01")
    in_scan = threading.Event()
    release = threading.Event()

    def long_scan():
        with store.begin() as conn:
            df = pd.DataFrame([F("F9", "b", "u1", "p1", events=("e9",))])
            prior = C.prior_case_ids(conn, ["F9"])
            _store_findings(conn, df, "S2")
            C.update_cases(conn, df, "S2", NOW, tz="Asia/Shanghai", prior_case=prior)
            in_scan.set()
            release.wait(20)

    t = threading.Thread(target=long_scan)
    t.start()
    try:
        assert in_scan.wait(20)
        t0 = time.perf_counter()
        row = C.resolve_case(store, other, "justified", "covering", "reviewer")
        listed = C.list_cases(store, status="all")
        elapsed = time.perf_counter() - t0
        assert row["status"] == "resolved"
        # the reviewer sees the committed state of the busy case, not the scan's half-work
        assert listed.set_index("case_id").loc[busy, "n_findings"] == 1
        assert elapsed < 2.0, f"reviewer waited {elapsed:.1f}s on the scan"
    finally:
        release.set()
        t.join(20)
    assert store.read_table(cases, cases.c.case_id == busy).iloc[0]["n_findings"] == 2


def test_resolve_on_a_row_held_by_a_scan_reports_instead_of_hanging(store, monkeypatch):
    _open_cases(store, [F("F1", "a", "u1", "p1")])
    cid = CASE_U1
    held = threading.Event()
    release = threading.Event()

    def scan_holding_row():
        with store.begin() as conn:
            conn.execute(sa.update(cases).where(cases.c.case_id == cid)
                         .values(version=cases.c.version + 1))
            held.set()
            release.wait(20)

    real_text = sa.text
    monkeypatch.setattr(C.sa, "text", lambda s: real_text(
        s.replace("'10s'", "'300ms'")))
    t = threading.Thread(target=scan_holding_row)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(C.CaseConflict, match="running scan"):
            C.resolve_case(store, cid, "confirmed", "n", "r")
    finally:
        release.set()
        t.join(20)
