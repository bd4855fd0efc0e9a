"""SQL sources: any SQLAlchemy URL, a table or a read-only query, incremental by a watermark.

The password comes from the environment variable named in `password_env` (the URL may hold a
`{password}` placeholder) and never appears in output: `describe()` and every error message
show the URL with the password hidden. Table and column names are checked against the
database's own catalogue and used only as SQLAlchemy Core objects, never pasted into SQL
text. A `query` must be a single SELECT (or WITH … SELECT); it is also run in a read-only
transaction where the database supports one (PostgreSQL, MySQL, SQLite).

Incremental reads use keyset pagination: `WHERE watermark > last ORDER BY watermark LIMIT n`.
Rows sharing the last watermark value of a full batch are fetched together, so a page
boundary never splits them. Without a watermark every run reads everything (the pipeline
drops events it already has by event_id).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import re
from typing import Any, Iterator
from urllib.parse import quote_plus

import numpy as np
import pandas as pd
import sqlalchemy as sa

from emraudit.connectors.base import Batch, Connector
from emraudit.connectors.filebase import STRING, empty_frame
from emraudit.errors import ConfigError, SourceError
from emraudit.model import SOURCE_REF, TABLES, empty_quarantine

_WRITE_WORDS = re.compile(
    r"\b(insert|update|delete|merge|drop|alter|create|truncate|grant|revoke|call|exec|"
    r"execute|copy|attach|detach|pragma|vacuum|reindex|lock|into)\b", re.I)


def check_read_only(query: str, where: str) -> str:
    """The query without a trailing ';' when it is one SELECT/WITH statement; else ConfigError."""
    stripped = re.sub(r"--[^\n]*", " ", query)
    stripped = re.sub(r"/\*.*?\*/", " ", stripped, flags=re.S)
    text_only = re.sub(r"'(?:[^']|'')*'", "''", stripped)        # string literals
    text_only = re.sub(r'"(?:[^"]|"")*"', '""', text_only)      # quoted identifiers
    body = text_only.strip().rstrip(";").strip()
    if not re.match(r"(?is)^(select|with)\b", body):
        raise ConfigError("the query must be a single SELECT (or WITH … SELECT) statement",
                          key=where)
    if ";" in body:
        raise ConfigError("the query must be a single statement (found ';' inside)", key=where)
    bad = _WRITE_WORDS.search(body)
    if bad:
        raise ConfigError(f"the query must only read: '{bad.group(0)}' is not allowed", key=where)
    return query.strip().rstrip(";").strip()


def _json_value(v: Any) -> tuple[Any, str]:
    """A watermark value as (JSON-able value, type tag) so it can be restored exactly."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v), "bool"
    if isinstance(v, (int, np.integer)):
        return int(v), "int"
    if isinstance(v, (float, np.floating)):
        return float(v), "float"
    if isinstance(v, decimal.Decimal):
        return str(v), "decimal"
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        return v.isoformat(), "datetime"
    if isinstance(v, dt.date):
        return v.isoformat(), "date"
    return str(v), "str"


def _restore(value: Any, kind: str) -> Any:
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


def _to_text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s):
        whole = s.notna() & (s == np.floor(s)) & (s.abs() < 2 ** 53)
        out = s.astype(STRING)
        return out.where(~whole, s[whole].astype("Int64").astype(STRING)) if whole.any() else out
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s):
        return s.map(lambda v: v.isoformat(sep=" ") if pd.notna(v) else None).astype(STRING)
    if s.dtype == object:
        s = s.map(lambda v: v.isoformat(sep=" ") if isinstance(v, dt.datetime)
                  else v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray, memoryview))
                  else v)
    return s.astype(STRING)


class SqlConnector(Connector):
    kind = "sql"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._key = f"sources.{self.name}"
        self._password: str | None = None
        self.url = self._build_url()

    # --- connection --------------------------------------------------------------------------
    def _build_url(self) -> sa.engine.URL:
        raw = self.source.url or ""
        env = self.source.password_env
        password = None
        if env:
            password = os.environ.get(env)
            if password is None:
                raise ConfigError(f"environment variable '{env}' (the database password) is not "
                                  "set", file=str(self.config.path), key=f"{self._key}.password_env")
        if "{password}" in raw and password is None:
            raise ConfigError("the URL has a {password} placeholder but no 'password_env' names "
                              "the variable holding it", file=str(self.config.path),
                              key=f"{self._key}.password_env")
        self._password = password
        text = raw.replace("{password}", quote_plus(password)) if password is not None else raw
        try:
            url = sa.engine.make_url(text)
        except (sa.exc.ArgumentError, ValueError):
            raise ConfigError(f"not a valid SQLAlchemy URL: {raw!r} (expected e.g. "
                              "postgresql+psycopg://user:{password}@host/db or sqlite:///file.db)",
                              file=str(self.config.path), key=f"{self._key}.url") from None
        if password is not None and "{password}" not in raw:
            url = url.set(password=password)
        if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
            db = os.path.expanduser(url.database)
            if not os.path.isabs(db):
                db = str(self.config.resolve(db))
            if not os.path.exists(db):
                raise SourceError("SQLite database file not found", file=db)
            url = url.set(database=db)
        return url

    def describe(self) -> str:
        safe = self.url.render_as_string(hide_password=True)
        return f"sql:{safe}:{self.source.sql_table or 'query'}"

    def _hide(self, msg: str) -> str:
        if self._password:
            msg = msg.replace(self._password, "***").replace(quote_plus(self._password), "***")
        return msg

    def _engine(self) -> sa.Engine:
        try:
            return sa.create_engine(self.url)
        except (sa.exc.NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            raise ConfigError(f"the database driver for '{self.url.drivername}' is not installed "
                              f"({self._hide(str(exc))})", file=str(self.config.path),
                              key=f"{self._key}.url") from None
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"bad URL: {self._hide(str(exc))}", file=str(self.config.path),
                              key=f"{self._key}.url") from None

    def _read_only(self, conn: sa.Connection) -> None:
        name = conn.dialect.name
        if name == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        elif name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")

    # --- what to select ------------------------------------------------------------------------
    def _selectable(self, conn: sa.Connection):
        """(selectable, its column names, source-ref key columns, where-label)."""
        if self.source.sql_table:
            name = self.source.sql_table
            schema = None
            if "." in name:
                schema, name = name.rsplit(".", 1)
            insp = sa.inspect(conn)
            try:
                names = insp.get_table_names(schema=schema) + insp.get_view_names(schema=schema)
            except sa.exc.SQLAlchemyError as exc:
                raise SourceError(f"cannot list the tables of schema '{schema}': "
                                  f"{self._hide(str(getattr(exc, 'orig', exc)))}",
                                  file=self.describe()) from None
            match = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
            if not match:
                raise ConfigError(f"no table or view '{self.source.sql_table}' in the database "
                                  f"(it has: {', '.join(sorted(names)[:30]) or 'none'})",
                                  file=str(self.config.path), key=f"{self._key}.sql_table")
            table = sa.Table(match[0], sa.MetaData(), schema=schema, autoload_with=conn)
            cols = [c.name for c in table.columns]
            pk = [c.name for c in table.primary_key.columns]
            return table, cols, pk, f"table {self.source.sql_table}"
        query = check_read_only(self.source.query or "", f"{self._key}.query")
        escaped = query.replace(":", r"\:")
        text = sa.text(escaped)
        try:   # the user's own (checked) query, asked for its columns only
            res = conn.execute(sa.text(f"SELECT * FROM ({escaped}) q WHERE 1 = 0"))
            cols = list(res.keys())
            res.close()
        except sa.exc.SQLAlchemyError as exc:
            conn.rollback()
            self._read_only(conn)
            raise SourceError(f"the query failed: {self._hide(str(getattr(exc, 'orig', exc)))}",
                              file=str(self.config.path), key=f"{self._key}.query") from None
        sub = text.columns(*[sa.column(c) for c in cols]).subquery("q")
        return sub, cols, [], "query"

    def _watermark_column(self, cols: list[str]) -> str | None:
        wm = self.source.watermark or self.profile.watermark
        if not wm:
            return None
        match = [c for c in cols if c == wm] or [c for c in cols if c.lower() == wm.lower()]
        if not match:
            raise ConfigError(f"watermark column '{wm}' is not in the {self.source.sql_table or 'query'}"
                              f" (columns: {', '.join(cols[:30])})", file=str(self.config.path),
                              key=f"{self._key}.watermark")
        return match[0]

    # --- batches -------------------------------------------------------------------------------
    def batches(self, watermark) -> Iterator[Batch]:
        engine = self._engine()
        try:
            yield from self._batches(engine, watermark)
        except sa.exc.OperationalError as exc:
            raise SourceError(f"cannot read the database: "
                              f"{self._hide(str(getattr(exc, 'orig', exc))).strip()}",
                              file=self.describe()) from None
        finally:
            engine.dispose()

    def _batches(self, engine: sa.Engine, watermark) -> Iterator[Batch]:
        n = self.source.batch_rows
        reference = self.table != "access_log"
        with engine.connect() as conn:
            self._read_only(conn)
            sel, cols, pk, where = self._selectable(conn)
            # databases fold unquoted names (Oracle upper, PostgreSQL lower; SQLAlchemy shows
            # Oracle's as lower case): a profile's CZGH matches a column czgh
            have = {c.lower(): c for c in cols}
            self._renames = {have[n.lower()]: n for n in self.profile.source_columns(self.table)
                             .values() if n not in cols and n.lower() in have}
            self.profile.check_columns(self.table, [self._renames.get(c, c) for c in cols], where)
            wm_col = None if reference else self._watermark_column(cols)
            label = self.source.sql_table or "query"
            ref_cols = pk or ([wm_col] if wm_col else [])
            if wm_col is None:
                # everything, streamed in chunks of n rows
                stmt = sa.select(sel)
                if pk:
                    stmt = stmt.order_by(*[sel.c[k] for k in pk])
                res = conn.execution_options(stream_results=True, yield_per=n).execute(stmt)
                keys = list(res.keys())
                total = 0
                got = False
                while True:
                    rows = res.fetchmany(n)
                    if not rows:
                        break
                    got = True
                    frame = self._frame(rows, keys, ref_cols, label, total)
                    total += len(rows)
                    yield Batch(frame, {"rows": total}, len(rows), empty_quarantine(),
                                [] if not reference else [f"{label}: read whole ({total} rows)"])
                if not got:
                    yield Batch(empty_frame(self.profile, self.table), {"rows": 0}, 0)
                return
            col = sel.c[wm_col]
            last = None
            notes = []
            if isinstance(watermark, dict) and watermark.get("column") == wm_col:
                last = _restore(watermark.get("value"), watermark.get("type", "str"))
            elif watermark:
                notes.append(f"watermark column changed to '{wm_col}': reading from the start")
            while True:
                stmt = sa.select(sel).order_by(col).limit(n)
                if last is not None:
                    stmt = stmt.where(col > sa.bindparam("last", last, type_=col.type))
                res = conn.execute(stmt)
                keys = list(res.keys())
                rows = res.fetchall()
                if not rows:
                    break
                wi = keys.index(wm_col)
                if len(rows) == n:
                    top = rows[-1][wi]
                    rows = [r for r in rows if r[wi] != top]
                    ties = conn.execute(sa.select(sel).where(
                        col == sa.bindparam("top", top, type_=col.type))).fetchall()
                    rows += ties
                    last = top
                else:
                    last = rows[-1][wi]
                value, kind = _json_value(last)
                frame = self._frame(rows, keys, ref_cols, label, 0)
                yield Batch(frame, {"column": wm_col, "value": value, "type": kind}, len(rows),
                            empty_quarantine(), notes)
                notes = []

    def _frame(self, rows, keys, ref_cols, label, offset) -> pd.DataFrame:
        df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=keys)
        df = pd.DataFrame({c: _to_text(df[c]) for c in df.columns})
        if ref_cols:
            ref = df[ref_cols[0]].astype(STRING).fillna("")
            for c in ref_cols[1:]:
                ref = ref + "/" + df[c].astype(STRING).fillna("")
            df[SOURCE_REF] = (label + ":") + ref
        else:
            df[SOURCE_REF] = (label + ":row ") + pd.Series(
                np.arange(offset + 1, offset + len(df) + 1), index=df.index).astype(STRING)
        frame = self.profile.apply(self.table, df.rename(columns=getattr(self, "_renames", {})))
        for c in TABLES[self.table].required:
            if c not in frame.columns:  # pragma: no cover - check_columns guards this
                frame[c] = pd.Series(pd.NA, index=frame.index, dtype=STRING)
        return frame


__all__ = ["SqlConnector", "check_read_only"]
