"""The state database: ingestion runs, quarantine, watermarks, coverage, scans, findings,
cases, dispositions, allowlists, stored features and models, and the scan lock.

SQLAlchemy Core on any URL (SQLite by default, PostgreSQL supported). The schema is declared
here once for every feature; feature modules (cases, allow, anomaly, reports) read and write
these tables through the helpers below or their own Core statements. Events themselves live
in the Parquet lake (`emraudit.lake`), not here.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emraudit.errors import ConfigError
from emraudit.model import patient_list

metadata = sa.MetaData()


def _now() -> datetime:
    return datetime.now(timezone.utc)


TS = sa.DateTime(timezone=True)

ingest_runs = sa.Table(
    "ingest_runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(200), nullable=False, index=True),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("started", TS, nullable=False),
    sa.Column("finished", TS),
    sa.Column("status", sa.String(20), nullable=False),   # running | committed | failed
    sa.Column("read", sa.BigInteger, default=0),
    sa.Column("accepted", sa.BigInteger, default=0),
    sa.Column("quarantined", sa.BigInteger, default=0),
    sa.Column("duplicates", sa.BigInteger, default=0),
    sa.Column("watermark_before", sa.Text),
    sa.Column("watermark_after", sa.Text),
    sa.Column("detail", sa.Text),                          # JSON: files, days, notes
    sa.Column("days", sa.Text),                            # JSON list of lake days written
    sa.Column("scanned_by", sa.String(64), index=True),    # the scan that covered this run
    sa.Column("profile_digest", sa.String(64)),            # its mapping: profile_steps.digest
)

# the connector profile steps in force for ingestion runs, stored once per distinct mapping
# (emraudit.connectors.provenance): which step made each canonical value, after the fact
profile_steps = sa.Table(
    "profile_steps", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),        # pipeline order
    sa.Column("profile", sa.String(200), nullable=False),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("step", sa.Text, nullable=False),            # its profile key
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),            # JSON: the step's record
)

quarantine = sa.Table(
    "quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=False, index=True),
    sa.Column("source_ref", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text),
)

watermarks = sa.Table(
    "watermarks", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text),           # JSON: connector-specific position
    sa.Column("updated", TS),
)

coverage = sa.Table(
    "coverage", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("fields", sa.Text),          # JSON: column -> share of rows with a value
)

scans = sa.Table(
    "scans", metadata,
    sa.Column("scan_id", sa.String(64), primary_key=True),
    sa.Column("started", TS, nullable=False),
    sa.Column("finished", TS),
    sa.Column("status", sa.String(20), nullable=False),   # running | committed | failed
    sa.Column("window_start", TS),
    sa.Column("window_end", TS),
    sa.Column("stage", sa.String(40)),
    sa.Column("unmasked", sa.Boolean, default=False),
    sa.Column("report_dir", sa.Text),
    sa.Column("summary", sa.Text),                        # JSON: counts per detector
    sa.Column("params", sa.Text),                         # JSON: options and detector settings
)

findings = sa.Table(
    "findings", metadata,
    sa.Column("finding_id", sa.String(40), primary_key=True),
    sa.Column("detector", sa.String(80), nullable=False, index=True),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("user_id", sa.String(200), index=True),
    sa.Column("patient_id", sa.String(200), index=True),
    sa.Column("start", sa.String(40), index=True),   # ISO-8601 text, as in the contract
    sa.Column("end", sa.String(40)),
    sa.Column("event_ids", sa.Text),                 # JSON list
    sa.Column("rectification_item", sa.String(8)),
    sa.Column("summary", sa.Text),
    sa.Column("evidence", sa.Text),                  # JSON object
    sa.Column("case_id", sa.String(40), index=True),
    sa.Column("suppressed_by", sa.Integer),          # allowlist id, when suppressed
    sa.Column("first_scan", sa.String(64)),
    sa.Column("last_scan", sa.String(64)),
    sa.Column("retracted_scan", sa.String(64)),     # a rescan no longer produced it
    sa.Column("created", TS),
    sa.Column("updated", TS),
    sa.Column("risk_flags", sa.Text),                # JSON list: emraudit.risk.finding_flags
    sa.Column("message_id", sa.String(120)),        # the sentence as data (reports.text)
    sa.Column("message_args", sa.Text),             # JSON object
    sa.Column("site_id", sa.String(200), index=True),  # the site of its first event
    sa.Column("patient_ids", sa.Text),              # JSON list, when several (model)
)

cases = sa.Table(
    "cases", metadata,
    sa.Column("case_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),      # patient | account
    sa.Column("user_id", sa.String(200), index=True),
    sa.Column("patient_id", sa.String(200)),
    sa.Column("day", sa.String(10)),                       # account cases: the day
    sa.Column("severity", sa.String(10)),
    sa.Column("score", sa.Float),
    sa.Column("detectors", sa.Text),                       # JSON list
    sa.Column("items", sa.Text),                           # JSON list of rectification items
    sa.Column("first_seen", sa.String(40)),
    sa.Column("last_seen", sa.String(40)),
    sa.Column("n_findings", sa.Integer),
    sa.Column("n_events", sa.Integer),
    sa.Column("summary", sa.Text),
    sa.Column("status", sa.String(20), nullable=False, default="open"),  # open|resolved|suppressed
    sa.Column("disposition", sa.String(20)),   # confirmed|false_positive|justified|training
    sa.Column("reviewer", sa.String(200)),
    sa.Column("note", sa.Text),
    sa.Column("resolved_at", TS),
    sa.Column("reopened", sa.Boolean, default=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),  # optimistic concurrency
    sa.Column("created", TS),
    sa.Column("updated", TS),
    # incidents (one user, one site-local day) and the review queue
    sa.Column("patients", sa.Text),                        # JSON list of patient ids
    sa.Column("department", sa.String(200), index=True),   # the user's (feed gaps: the unit)
    sa.Column("role", sa.String(40)),
    sa.Column("top_finding", sa.String(40)),               # the finding the headline is
    sa.Column("severity_base", sa.String(10)),             # before the raises below
    sa.Column("severity_reasons", sa.Text),                # JSON [{reason, n}]
    sa.Column("risk", sa.Float, index=True),               # emraudit.risk.case_risk
    sa.Column("risk_factors", sa.Text),                    # JSON {factor: points}
    sa.Column("queued", sa.Boolean),                       # in the review queue
    sa.Column("queue_rank", sa.Integer),                   # rank among the scan's arrivals
    sa.Column("queued_scan", sa.String(64)),               # the scan that queued it
    # rectification (整改), kept apart from the verification (disposition): emraudit.rectification
    sa.Column("rectification_status", sa.String(20)),     # pending | in_progress | done
    sa.Column("rectification_measure", sa.Text),          # the measure actually taken
    sa.Column("rectification_date", sa.String(10)),       # the day it was taken (site-local)
    sa.Column("rectification_by", sa.String(200)),
)

case_history = sa.Table(
    "case_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(40), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("by", sa.String(200)),
    sa.Column("action", sa.String(40), nullable=False),   # opened|resolved|reopened|updated
    sa.Column("field", sa.String(40)),
    sa.Column("old", sa.Text),
    sa.Column("new", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("scan_id", sa.String(64)),
)

allowlist = sa.Table(
    "allowlist", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(200), nullable=False, index=True),
    sa.Column("patient_id", sa.String(200)),
    sa.Column("department", sa.String(200)),
    sa.Column("detector", sa.String(80)),
    sa.Column("until", TS, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created", TS, nullable=False),
    sa.Column("removed", TS),
    sa.Column("removed_by", sa.String(200)),
)

feed_health = sa.Table(
    # How well the care relations explain each unit's accesses, per scan (emraudit.feeds):
    # a unit far below the rest points at an incomplete feed, not at its staff.
    "feed_health", metadata,
    sa.Column("scan_id", sa.String(64), primary_key=True),
    sa.Column("dimension", sa.String(20), primary_key=True),   # department|role|ward|source
    sa.Column("value", sa.String(200), primary_key=True),
    sa.Column("accesses", sa.Integer, nullable=False),
    sa.Column("explained", sa.Integer, nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("others_share", sa.Float),                      # the rest of the hospital
    sa.Column("users", sa.Integer),
    sa.Column("patients", sa.Integer),
    sa.Column("gap", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(20)),                       # floor | below_rest
    sa.Column("first_day", sa.String(10)),
    sa.Column("last_day", sa.String(10)),
)

user_day_features = sa.Table(
    "user_day_features", metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("role", sa.String(40)),
    sa.Column("department", sa.String(200)),
    sa.Column("features", sa.Text, nullable=False),   # JSON: feature -> value
    sa.Column("scan_id", sa.String(64)),
)

models = sa.Table(
    "models", metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("detector", sa.String(80), nullable=False, index=True),
    sa.Column("trained_at", TS, nullable=False),
    sa.Column("window_start", sa.String(10)),
    sa.Column("window_end", sa.String(10)),
    sa.Column("features", sa.Text),                   # JSON list
    sa.Column("params", sa.Text),                     # JSON
    sa.Column("blob", sa.LargeBinary),                # what scoring needs, not training rows
)

rights_usage = sa.Table(
    "rights_usage", metadata,       # emraudit.rights_state: which rights accounts used
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("permission", sa.String(40), primary_key=True),
    sa.Column("record_class", sa.String(80), primary_key=True),
    sa.Column("first_used", sa.String(40), nullable=False),   # ISO-8601, UTC
    sa.Column("last_used", sa.String(40), nullable=False),
    sa.Column("scan_id", sa.String(64)),
)

rights_snapshots = sa.Table(
    "rights_snapshots", metadata,   # emraudit.reports.rights: what the last report showed
    sa.Column("snapshot_id", sa.String(64), primary_key=True),
    sa.Column("taken_at", TS, nullable=False, index=True),
    sa.Column("as_of", sa.String(40)),                        # ISO-8601: the rights shown
    sa.Column("unmasked", sa.Boolean, default=False),         # written with --unmask
    sa.Column("content", sa.LargeBinary, nullable=False),     # zlib-compressed JSON
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired", TS, nullable=False),
    sa.Column("heartbeat", TS, nullable=False),
    sa.Column("command", sa.String(64)),       # what holds it: scan, ingest, allow add …
)


# -- the review app (`emraudit serve`): accounts, sessions, the audit trail, case work -------
web_users = sa.Table(
    "web_users", metadata,
    sa.Column("username", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),     # reviewer|officer|admin|auditor
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id (emraudit.web.accounts)
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("locked", sa.Boolean, nullable=False, default=False),   # too many failures
    sa.Column("failed", sa.Integer, nullable=False, default=0),       # failures in a row
    sa.Column("last_failed", TS),
    sa.Column("lang", sa.String(8)),                       # the user's page language
    sa.Column("created", TS, nullable=False),
    sa.Column("updated", TS),
    sa.Column("last_login", TS),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),   # sha256 of the cookie token
    sa.Column("username", sa.String(100), nullable=False, index=True),
    sa.Column("created", TS, nullable=False),
    sa.Column("seen", TS, nullable=False),
)

web_settings = sa.Table(
    "web_settings", metadata,
    sa.Column("name", sa.String(64), primary_key=True),    # e.g. the cookie signing key
    sa.Column("value", sa.Text, nullable=False),
)

audit_trail = sa.Table(
    # Append-only: every row carries the hash of the one before (emraudit.web.trail);
    # triggers refuse UPDATE and DELETE on SQLite and PostgreSQL.
    "audit_trail", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20)),
    sa.Column("action", sa.String(40), nullable=False, index=True),
    sa.Column("target", sa.String(200)),
    sa.Column("detail", sa.Text),                           # JSON object
    sa.Column("client", sa.String(100)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
for _dialect, _ddl in (
        ("sqlite", ["CREATE TRIGGER IF NOT EXISTS audit_trail_no_update BEFORE UPDATE ON "
                    "audit_trail BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only'); END",
                    "CREATE TRIGGER IF NOT EXISTS audit_trail_no_delete BEFORE DELETE ON "
                    "audit_trail BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only'); END"]),
        ("postgresql", ["CREATE OR REPLACE FUNCTION audit_trail_append_only() RETURNS trigger "
                        "AS $$ BEGIN RAISE EXCEPTION 'audit_trail is append-only'; END $$ "
                        "LANGUAGE plpgsql",
                        "CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON "
                        "audit_trail FOR EACH ROW EXECUTE FUNCTION audit_trail_append_only()"])):
    for _stmt in _ddl:
        sa.event.listen(audit_trail, "after_create", sa.DDL(_stmt).execute_if(dialect=_dialect))

case_assignments = sa.Table(
    "case_assignments", metadata,
    sa.Column("case_id", sa.String(40), primary_key=True),
    sa.Column("assignee", sa.String(100), nullable=False, index=True),
    sa.Column("assigned_by", sa.String(100), nullable=False),
    sa.Column("at", TS, nullable=False),
)

case_comments = sa.Table(
    "case_comments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(40), nullable=False, index=True),
    sa.Column("by", sa.String(100), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)


class Store:
    """The state database behind one configuration."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self._pid = os.getpid()
        try:
            kwargs: dict[str, Any] = {"future": True}
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 30}
                _private_sqlite_file(url)
            self.engine: Engine = sa.create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            if create:
                metadata.create_all(self.engine)
                add_missing_columns(self.engine)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"bad store URL: {exc}", key="store.url") from None
        except sa.exc.OperationalError as exc:
            raise ConfigError(f"cannot open the store: {exc.orig}", key="store.url") from None

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked worker: leave the connections pooled by the parent to the parent
        (sharing one across processes corrupts it) and open its own from now on."""
        if self._pid != os.getpid():
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    # watermarks ---------------------------------------------------------------------------
    def get_watermark(self, source: str) -> Any:
        with self.engine.connect() as c:
            row = c.execute(sa.select(watermarks.c.value)
                            .where(watermarks.c.source == source)).first()
        return json.loads(row[0]) if row and row[0] else None

    def set_watermark(self, conn: sa.Connection, source: str, value: Any) -> None:
        upsert(conn, watermarks, {"source": source, "value": json.dumps(value, default=str),
                                  "updated": _now()}, ["source"])

    # reading helpers ---------------------------------------------------------------------
    def read_table(self, table: sa.Table, where=None, order_by=None) -> pd.DataFrame:
        stmt = sa.select(table)
        if where is not None:
            stmt = stmt.where(where)
        if order_by is not None:
            stmt = stmt.order_by(order_by)
        with self.engine.connect() as c:
            res = c.execute(stmt)
            return pd.DataFrame(res.fetchall(), columns=list(res.keys()))

    def read_findings(self, where=None, *, include_retracted: bool = False) -> pd.DataFrame:
        """Stored findings in the contract's shape (event_ids a list, evidence a dict).

        Findings a later rescan no longer produced (retracted) are left out unless asked for.
        """
        if not include_retracted:
            live = findings.c.retracted_scan.is_(None)
            where = live if where is None else sa.and_(where, live)
        df = self.read_table(findings, where, findings.c.start)
        if not df.empty:
            df["event_ids"] = df["event_ids"].map(lambda s: json.loads(s) if s else [])
            df["evidence"] = df["evidence"].map(lambda s: json.loads(s) if s else {})
            df["message_args"] = df["message_args"].map(decode_args)
            df["patient_ids"] = df["patient_ids"].map(patient_list)
        return df

    def committed_runs(self) -> set[str]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(ingest_runs.c.run_id)
                             .where(ingest_runs.c.status == "committed")).fetchall()
        return {r[0] for r in rows}


def decode_args(s) -> dict | None:
    """A stored `message_args` (JSON text, NULL on findings stored before it) as a dict."""
    return json.loads(s) if isinstance(s, str) and s else None


def add_missing_columns(engine: Engine) -> list[str]:
    """Bring an existing store up to the declared schema, additively.

    `create_all` makes missing tables but leaves existing ones as they are, so a store made
    by an earlier release would lack a column added since. Each missing column is added with
    ALTER TABLE … ADD COLUMN (nullable, no default: old rows read as NULL). Columns are never
    dropped or changed. Returns "table.column" for each column added."""
    inspector = sa.inspect(engine)
    added: list[str] = []
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if not inspector.has_table(table.name):
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for col in table.columns:
                if col.name in have:
                    continue
                kind = col.type.compile(dialect=engine.dialect)
                prep = engine.dialect.identifier_preparer
                conn.execute(sa.text(f"ALTER TABLE {prep.quote(table.name)} ADD COLUMN "
                                     f"{prep.quote(col.name)} {kind}"))
                added.append(f"{table.name}.{col.name}")
    return added


def _private_sqlite_file(url: str) -> None:
    """The state database holds patient ids: create it readable by its owner only."""
    path = sa.engine.make_url(url).database
    if path and path != ":memory:" and not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def upsert(conn: sa.Connection, table: sa.Table, row: dict | list[dict],
           key: list[str]) -> None:
    """Insert or update by primary key, on SQLite and PostgreSQL alike."""
    rows = row if isinstance(row, list) else [row]
    if not rows:
        return
    if _sqlite_many(conn, table, rows, key):
        return
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        cols = [c for c in rows[0] if c not in key]
        stmt = insert(table)
        stmt = (stmt.on_conflict_do_update(index_elements=key,
                                           set_={c: stmt.excluded[c] for c in cols})
                if cols else stmt.on_conflict_do_nothing(index_elements=key))
        for chunk_start in range(0, len(rows), 5000):   # executemany: compiled once
            conn.execute(stmt, rows[chunk_start:chunk_start + 5000])
        return
    for r in rows:  # generic fallback for other databases
        cond = sa.and_(*[table.c[k] == r[k] for k in key])
        if conn.execute(sa.select(table.c[key[0]]).where(cond)).first():
            conn.execute(table.update().where(cond).values(**r))
        else:
            conn.execute(table.insert().values(**r))


# from this many rows an SQLite upsert is one driver executemany of plain tuples: the
# statement's per-row parameter handling was half of storing a night's 26,000 findings
_RAW_MIN_ROWS = 100


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert these rows (one executemany; on SQLite from _RAW_MIN_ROWS rows by the driver
    itself, as `upsert` does)."""
    if rows and not _sqlite_many(conn, table, rows, None):
        conn.execute(table.insert(), rows)


def _sqlite_many(conn: sa.Connection, table: sa.Table, rows: list[dict],
                 key: list[str] | None) -> bool:
    """The insert (an upsert by `key`, unless None) as SQLAlchemy would run it, written
    once and executed by the driver with each column's own bind conversion; False (nothing
    done) off SQLite, below _RAW_MIN_ROWS rows, or when the rows do not all name the same
    columns or a column they leave out has a default SQLAlchemy would fill in."""
    if conn.dialect.name != "sqlite" or len(rows) < _RAW_MIN_ROWS:
        return False
    names = list(rows[0])
    if any(r.keys() != rows[0].keys() for r in rows):
        return False
    if any((c.default is not None or c.onupdate is not None) and c.name not in rows[0]
           for c in table.columns):
        return False
    q = conn.dialect.identifier_preparer
    sql = (f"INSERT INTO {q.format_table(table)} ({', '.join(q.quote(c) for c in names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    if key is not None:
        cols = [c for c in names if c not in key]
        sql += f" ON CONFLICT ({', '.join(q.quote(k) for k in key)})" + (
            (" DO UPDATE SET " + ", ".join(f"{q.quote(c)} = excluded.{q.quote(c)}"
                                           for c in cols)) if cols else " DO NOTHING")
    procs = [table.c[c].type._cached_bind_processor(conn.dialect) for c in names]
    values = [[r[c] for r in rows] for c in names]
    for i, proc in enumerate(procs):
        if proc is not None:
            values[i] = [proc(v) for v in values[i]]
    conn.exec_driver_sql(sql, list(zip(*values)))
    return True


def now_utc() -> datetime:
    return _now()
