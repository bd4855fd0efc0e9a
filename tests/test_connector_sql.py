"""The sql connector on SQLite and on a real PostgreSQL server (pg_url fixture)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector
from emraudit.connectors.sql import check_read_only
from emraudit.errors import ConfigError, SourceError


def openemr_log(md: sa.MetaData) -> sa.Table:
    """OpenEMR's `log` table (sql/database.sql), the columns the profile reads and a few more."""
    return sa.Table("log", md,
                    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("date", sa.DateTime), sa.Column("event", sa.String(255)),
                    sa.Column("category", sa.String(255)), sa.Column("user", sa.String(255)),
                    sa.Column("groupname", sa.String(255)), sa.Column("comments", sa.Text),
                    sa.Column("patient_id", sa.BigInteger), sa.Column("success", sa.SmallInteger),
                    sa.Column("checksum", sa.Text), sa.Column("crt_user", sa.String(255)),
                    sa.Column("log_from", sa.String(20)))


EVENTS = ["patient-record-select", "view", "print", "login", "patient-record-update",
          "security-administration-update"]


def fill(url: str, n: int, start: int = 1) -> None:
    md = sa.MetaData()
    log = openemr_log(md)
    eng = sa.create_engine(url)
    md.create_all(eng)
    base = dt.datetime(2025, 7, 1, 8, 0, 0)
    rows = [{"id": i, "date": base + dt.timedelta(minutes=i), "event": EVENTS[i % len(EVENTS)],
             "category": "patient-record", "user": f"doc{i % 3}", "groupname": "Default",
             "comments": "", "patient_id": 0 if EVENTS[i % len(EVENTS)] == "login" else 40 + i,
             "success": 1, "log_from": "open-emr"} for i in range(start, start + n)]
    with eng.begin() as c:
        c.execute(log.insert(), rows)
    eng.dispose()


def config(tmp_path, url: str, body: str):
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\nconnector = "sql"\nurl = "{url}"\n{body}\n', encoding="utf-8")
    return load_config(tmp_path / "emraudit.toml")


def read_all(cfg, wm=None):
    batches = list(open_connector("access_log", cfg).batches(wm))
    frame = pd.concat([b.frame for b in batches], ignore_index=True) if batches \
        else pd.DataFrame()
    return batches, frame


def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'emr.db'}"


def check_openemr_incremental(tmp_path, url: str):
    fill(url, 25)
    cfg = config(tmp_path, url, 'sql_table = "log"\nprofile = "openemr"\nbatch_rows = 10')
    batches, frame = read_all(cfg)
    assert len(frame) == 25 and len(batches) == 3
    assert frame["_source_ref"].iloc[0] == "log:1"
    assert frame["event_id"].iloc[0] == "openemr:log:1"
    assert batches[-1].position == {"column": "id", "value": 25, "type": "int"}
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    # security-administration-update is not an access: quarantined with its name
    assert set(v.quarantine["reason"]) == {"unknown action 'security-administration-update'"}
    assert v.accepted.loc[v.accepted["action"] == "login", "patient_id"].isna().all()
    assert set(v.accepted["action"]) == {"view", "print", "login", "update"}
    # nothing new, then only the new rows
    assert read_all(cfg, batches[-1].position)[1].empty
    fill(url, 3, start=26)
    _, f2 = read_all(cfg, batches[-1].position)
    assert f2["event_id"].tolist() == ["openemr:log:26", "openemr:log:27", "openemr:log:28"]


def test_sqlite_openemr_table_incremental(tmp_path):
    check_openemr_incremental(tmp_path, sqlite_url(tmp_path))


@pytest.mark.postgres
def test_postgresql_openemr_table_incremental(tmp_path, pg_url):
    check_openemr_incremental(tmp_path, pg_url)


@pytest.mark.postgres
def test_postgresql_query_with_time_watermark_and_password_env(tmp_path, pg_url, monkeypatch):
    fill(pg_url, 12)
    url = sa.engine.make_url(pg_url)
    monkeypatch.setenv("EMR_DB_PW", url.password)
    templ = url.set(password="PLACEHOLDER").render_as_string(hide_password=False) \
        .replace("PLACEHOLDER", "{password}")
    cfg = config(tmp_path, templ,
                 'password_env = "EMR_DB_PW"\nprofile = "openemr"\nwatermark = "date"\n'
                 'batch_rows = 5\n'
                 "query = \"SELECT * FROM log WHERE event <> 'security-administration-update' "
                 "AND date >= '2025-07-01'::date\"")
    conn = open_connector("access_log", cfg)
    assert f":{url.password}@" not in conn.describe() and ":***@" in conn.describe()
    batches = list(conn.batches(None))
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    assert len(frame) == 10
    assert batches[-1].position["type"] == "datetime"
    assert list(conn.batches(batches[-1].position)) == []


def test_watermark_ties_are_not_split_across_batches(tmp_path):
    url = sqlite_url(tmp_path)
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE ev (k INTEGER PRIMARY KEY, t TEXT, u TEXT, p TEXT, a TEXT)")
        for k in range(1, 11):
            t = "2025-07-01 08:00:00" if k <= 6 else f"2025-07-01 09:0{k}:00"
            c.exec_driver_sql(f"INSERT INTO ev VALUES ({k}, '{t}', 'u', 'p', 'view')")
    eng.dispose()
    (tmp_path / "p.toml").write_text('[access_log.columns]\nts = "t"\nuser_id = "u"\n'
                                     'patient_id = "p"\naction = "a"\n', encoding="utf-8")
    cfg = config(tmp_path, url, 'sql_table = "ev"\nwatermark = "t"\nprofile = "p.toml"\n'
                 'batch_rows = 4')
    batches, frame = read_all(cfg)
    assert sorted(frame["k"].astype(int)) == list(range(1, 11))
    assert len(batches[0].frame) == 6        # the six rows at 08:00:00 stay together


def test_table_and_column_names_are_validated(tmp_path):
    url = sqlite_url(tmp_path)
    fill(url, 2)
    cfg = config(tmp_path, url, 'sql_table = "logs"\nprofile = "openemr"')
    with pytest.raises(ConfigError, match="no table or view 'logs'.*log") as err:
        list(open_connector("access_log", cfg).batches(None))
    assert err.value.key == "sources.access_log.sql_table"
    cfg = config(tmp_path, url, 'sql_table = "log"\nprofile = "openemr"\nwatermark = "idx"')
    with pytest.raises(ConfigError, match="watermark column 'idx'"):
        list(open_connector("access_log", cfg).batches(None))
    cfg = config(tmp_path, url, 'sql_table = "log"')      # canonical names: not in `log`
    with pytest.raises(SourceError, match="missing required column"):
        list(open_connector("access_log", cfg).batches(None))
    # a hostile table name is only ever compared with the catalogue
    cfg = config(tmp_path, url, 'sql_table = "log; DROP TABLE log"\nprofile = "openemr"')
    with pytest.raises(ConfigError, match="no table or view"):
        list(open_connector("access_log", cfg).batches(None))


@pytest.mark.parametrize("query", [
    "DELETE FROM log", "SELECT 1; DROP TABLE log", "WITH x AS (DELETE FROM log RETURNING *) "
    "SELECT * FROM x", "UPDATE log SET user = 'x'", "SELECT * INTO copy FROM log", "PRAGMA x",
])
def test_only_read_queries_are_accepted(query):
    with pytest.raises(ConfigError):
        check_read_only(query, "sources.a.query")


def test_read_queries_pass_the_check():
    q = "-- recent\nWITH r AS (SELECT * FROM log WHERE comments <> 'drop; delete') SELECT * FROM r;"
    assert check_read_only(q, "k").startswith("-- recent")


def test_sqlite_query_mode_uses_the_profile_watermark(tmp_path):
    url = sqlite_url(tmp_path)
    fill(url, 6)
    cfg = config(tmp_path, url, 'profile = "openemr"\n'
                 "query = \"SELECT * FROM log WHERE event = 'view'\"")
    _, frame = read_all(cfg)
    assert frame["action"].tolist() == ["view"] and frame["_source_ref"].tolist() == ["query:1"]


def test_missing_password_env_bad_url_and_missing_db(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_PW", raising=False)
    cfg = config(tmp_path, "postgresql+psycopg://u:{password}@localhost/x",
                 'password_env = "NOPE_PW"\nsql_table = "log"')
    with pytest.raises(ConfigError, match="NOPE_PW") as err:
        open_connector("access_log", cfg)
    assert err.value.key == "sources.access_log.password_env"
    cfg = config(tmp_path, "not a url", 'sql_table = "log"')
    with pytest.raises(ConfigError, match="not a valid SQLAlchemy URL"):
        open_connector("access_log", cfg)
    cfg = config(tmp_path, "sqlite:///missing.db", 'sql_table = "log"')
    with pytest.raises(SourceError, match="not found"):
        open_connector("access_log", cfg)


def test_unreachable_server_is_a_source_error_without_password(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_PW", "s3cr3t-value")
    cfg = config(tmp_path, "postgresql+psycopg://u:{password}@127.0.0.1:1/x",
                 'password_env = "SECRET_PW"\nsql_table = "log"')
    with pytest.raises(SourceError) as err:
        list(open_connector("access_log", cfg).batches(None))
    assert "s3cr3t-value" not in str(err.value)


def test_reference_table_from_sql_is_read_whole(tmp_path):
    url = sqlite_url(tmp_path)
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE staff (user_id TEXT PRIMARY KEY, name TEXT, role TEXT)")
        c.exec_driver_sql("INSERT INTO staff VALUES ('u1', '张三', '医生'), ('u2', '李四', '护士')")
    eng.dispose()
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.users]\nconnector = "sql"\nurl = "{url}"\nsql_table = "staff"\n',
        encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    b = list(open_connector("users", cfg).batches({"rows": 2}))
    assert len(b[0].frame) == 2 and b[0].frame["_source_ref"].tolist() == ["staff:u1", "staff:u2"]


def test_blsjrz_profile_matches_lower_case_column_names(tmp_path):
    """Oracle's EMR_BLSJRZ columns come back from SQLAlchemy in lower case."""
    url = sqlite_url(tmp_path)
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE emr_blsjrz (jlxh INTEGER PRIMARY KEY, czgh TEXT, rznr TEXT,"
                          " sjxm TEXT, xtsj TEXT, ywid1 TEXT, ipdz TEXT, jsjm TEXT, jgid TEXT)")
        c.exec_driver_sql("INSERT INTO emr_blsjrz VALUES (1, '0101', '打开', '1006', "
                          "'2025-07-01 08:00:00', 'Z1', 'UNKNOW', 'PC1', 'H1')")
    eng.dispose()
    cfg = config(tmp_path, url, 'sql_table = "EMR_BLSJRZ"\nprofile = "emr-blsjrz"')
    batches, frame = read_all(cfg)
    v = model.validate("access_log", frame, cfg.tz, "bl")
    assert v.accepted["action"].tolist() == ["view"] and v.accepted["ip"].isna().all()
    assert v.accepted["event_id"].tolist() == ["EMR_BLSJRZ:1"]
    assert batches[-1].position["column"] == "jlxh"


def test_ingest_reads_a_database_source_ahead_on_its_thread(tmp_path):
    """The ingest reads the next batch on a background thread: the connector's engine and
    connection live on that thread, and batches still land in order with the watermark."""
    from emraudit.ingest import ingest
    from emraudit.lake import Lake
    from emraudit.store import Store
    url = sqlite_url(tmp_path)
    fill(url, 25)
    cfg = config(tmp_path, url, 'sql_table = "log"\nprofile = "openemr"\nbatch_rows = 10')
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    [res] = ingest(cfg, store, lake)
    assert res.status == "ok" and res.batches == 3
    assert (res.read, res.accepted + res.quarantined + res.duplicates) == (25, 25)
    assert store.get_watermark("access_log") == {"column": "id", "value": 25, "type": "int"}
    fill(url, 3, start=26)
    [res] = ingest(cfg, store, lake)
    assert res.read == 3
    ids = lake.read_events(store.committed_runs())["event_id"]
    assert ids.is_unique and "openemr:log:28" in set(ids)


def test_openemr_category_names_the_kind_of_record_written(tmp_path):
    """OpenEMR 5.0.2+ writes the kind of record in `log.category` (eventCategoryFinder). The
    kinds routine care writes become the module names `care_record_modules` knows, so one
    vitals entry explains itself as charting does; a free-text encounter form, clinical mail
    or an application event keeps its own word."""
    url = sqlite_url(tmp_path)
    md = sa.MetaData()
    log = openemr_log(md)
    eng = sa.create_engine(url)
    md.create_all(eng)
    cats = [("patient-record-insert", "Vitals"), ("order-insert", "Medication"),
            ("patient-record-insert", "Immunization"), ("lab-order-insert", "Lab Order"),
            ("patient-record-update", "Encounter Form"), ("patient-record-insert",
                                                          "Clinical Mail"),
            ("view", "view"), ("patient-record-update", "VITALS ")]
    base = dt.datetime(2025, 7, 1, 8, 0, 0)
    with eng.begin() as c:
        c.execute(log.insert(), [
            {"id": i + 1, "date": base + dt.timedelta(minutes=i), "event": ev, "category": cat,
             "user": "nurse1", "groupname": "Default", "comments": "", "patient_id": 40 + i,
             "success": 1, "log_from": "open-emr"} for i, (ev, cat) in enumerate(cats)])
    eng.dispose()
    cfg = config(tmp_path, url, 'sql_table = "log"\nprofile = "openemr"')
    _, frame = read_all(cfg)
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert v.quarantine.empty
    got = v.accepted.sort_values("event_id")          # openemr:log:1 … openemr:log:8
    assert got["module"].tolist() == ["vital signs", "medication", "medication", "orders",
                                      "Encounter Form", "Clinical Mail", "view", "vital signs"]
    assert got["action"].tolist() == ["create", "create", "create", "create", "update",
                                      "create", "view", "update"]
