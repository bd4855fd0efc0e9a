"""store.upsert on SQLite: from _RAW_MIN_ROWS rows the driver runs one executemany of
plain tuples. What it stores must be what SQLAlchemy's own statement stores, on insert and
on conflict, column by column (datetimes, booleans, floats, nulls, unicode)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from emraudit import store as store_mod
from emraudit.store import Store, findings, scans, upsert


def _rows(n: int, when: datetime, tag: str) -> list[dict]:
    return [{"finding_id": f"F{i:04d}", "detector": "care.no_relationship",
             "severity": "low", "score": i / 7 if i % 5 else None, "user_id": f"U{i % 3}",
             "patient_id": "患者" + str(i), "evidence": '{"k":"' + tag + '"}',
             "suppressed_by": i if i % 4 == 0 else None, "created": when,
             "updated": when + timedelta(microseconds=i)} for i in range(n)]


def _stored(st: Store) -> list[tuple]:
    with st.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(findings).order_by(
            findings.c.finding_id))]


def _raw_text(st: Store) -> list[tuple]:
    """The values as SQLite holds them (the driver's own text of a datetime)."""
    with st.engine.connect() as c:
        return list(c.exec_driver_sql(
            "SELECT finding_id, score, created, updated, suppressed_by, evidence "
            "FROM findings ORDER BY finding_id"))


def _both_ways(tmp_path, monkeypatch, write) -> dict:
    """What `write` reads back from a new store, by the driver's executemany ("raw") and by
    SQLAlchemy's statement ("statement")."""
    out = {}
    for name, minimum in (("raw", 1), ("statement", 10 ** 9)):
        monkeypatch.setattr(store_mod, "_RAW_MIN_ROWS", minimum)
        st = Store(f"sqlite:///{tmp_path / (name + '.db')}")
        try:
            out[name] = write(st)
        finally:
            st.dispose()
    return out


def test_raw_and_statement_upserts_store_the_same(tmp_path, monkeypatch):
    when = datetime(2026, 12, 7, 17, 18, 8, 123456, tzinfo=timezone.utc)
    n = store_mod._RAW_MIN_ROWS + 20

    def write(st: Store) -> tuple:
        with st.begin() as c:
            upsert(c, findings, _rows(n, when, "first"), ["finding_id"])
        with st.begin() as c:               # half of them again: the conflict branch
            upsert(c, findings, _rows(n // 2, when + timedelta(days=1), "again"),
                   ["finding_id"])
        return _stored(st), _raw_text(st)

    out = _both_ways(tmp_path, monkeypatch, write)
    assert out["raw"] == out["statement"]
    stored, raw = out["raw"]
    assert len(stored) == n
    assert raw[0][5] == '{"k":"again"}' and raw[-1][5] == '{"k":"first"}'


def test_rows_the_fast_path_cannot_take_go_through_the_statement(tmp_path, monkeypatch):
    """Rows naming different columns, or leaving out a column with a default (scans'
    `unmasked`): SQLAlchemy's statement, which fills the default in."""
    monkeypatch.setattr(store_mod, "_RAW_MIN_ROWS", 1)
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    when = datetime(2026, 12, 7, tzinfo=timezone.utc)
    try:
        with st.begin() as c:
            assert not store_mod._sqlite_many(c, scans, [{"scan_id": "s1", "started": when,
                                                          "status": "running"}], ["scan_id"])
            upsert(c, scans, [{"scan_id": "s1", "started": when, "status": "running"}],
                   ["scan_id"])
            rows = _rows(2, when, "x")
            del rows[1]["score"]
            assert not store_mod._sqlite_many(c, findings, rows, ["finding_id"])
        with st.engine.connect() as c:
            assert c.execute(sa.select(scans.c.unmasked)).scalar() is False
    finally:
        st.dispose()


def test_insert_many_stores_what_the_insert_statement_stores(tmp_path, monkeypatch):
    """case_history: an autoincrement id the rows leave to the database, datetimes and
    nulls; the same rows and ids either way."""
    from emraudit.store import case_history, insert_many
    when = datetime(2026, 12, 7, 1, 2, 3, 4, tzinfo=timezone.utc)
    rows = [{"case_id": f"C{i}", "at": when + timedelta(seconds=i), "by": "scan",
             "action": "opened", "field": "status", "old": None, "new": "open",
             "note": f"{i} finding(s) — 无", "scan_id": "s1"}
            for i in range(store_mod._RAW_MIN_ROWS + 5)]

    def write(st: Store) -> list:
        with st.begin() as c:
            insert_many(c, case_history, rows)
        with st.engine.connect() as c:
            return list(c.exec_driver_sql("SELECT * FROM case_history ORDER BY id"))

    out = _both_ways(tmp_path, monkeypatch, write)
    assert out["raw"] == out["statement"] and len(out["raw"]) == len(rows)
    assert [r[0] for r in out["raw"]] == list(range(1, len(rows) + 1))
