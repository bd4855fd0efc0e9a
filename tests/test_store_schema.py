"""A store made by an earlier release gains the columns declared since, keeping its rows."""

import sqlalchemy as sa

from emraudit.store import Store, add_missing_columns, cases


def _old_store(url: str) -> None:
    """The cases table as an earlier release made it (no `day` column), with one row."""
    engine = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table("cases", old, sa.Column("case_id", sa.String(40), primary_key=True),
             sa.Column("kind", sa.String(20), nullable=False),
             sa.Column("status", sa.String(20), nullable=False),
             sa.Column("version", sa.Integer, nullable=False))
    old.create_all(engine)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO cases (case_id, kind, status, version) "
                          "VALUES ('C1', 'patient', 'open', 3)"))
    engine.dispose()


def _check(url: str) -> None:
    _old_store(url)
    store = Store(url)
    names = {c["name"] for c in sa.inspect(store.engine).get_columns("cases")}
    assert {c.name for c in cases.columns} <= names
    with store.engine.connect() as c:
        row = c.execute(sa.select(cases.c.case_id, cases.c.version, cases.c.day)).one()
    assert tuple(row) == ("C1", 3, None)
    assert add_missing_columns(store.engine) == []       # a second open changes nothing


def test_sqlite_store_gains_new_columns(tmp_path):
    _check(f"sqlite:///{tmp_path / 'old.db'}")


def test_postgres_store_gains_new_columns(pg_url):
    _check(pg_url)
