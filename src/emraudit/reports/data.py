"""Reading what reports show: findings, cases, history, events, reference tables.

Reports never recompute a finding (DESIGN.md): they read the store's findings, cases and
case_history, the events behind the findings from the lake (only the days involved, filtered
by event id or user while reading), and the reference snapshots. Every finding has its case
id from the scan (emraudit.results): nothing is grouped again here.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from emraudit.fastops import isin, local_days, values_of
from emraudit.lake import Lake, user_hashes
from emraudit.model import patient_list
from emraudit.store import (Store, case_history, cases, decode_args, feed_health, findings, scans,
                            user_day_features)

_CHUNK = 500


def _select_in(store: Store, table: sa.Table, col: str, values: Iterable,
               extra=None) -> pd.DataFrame:
    vals = sorted({str(v) for v in values if v is not None and str(v) != ""})
    frames = []
    for i in range(0, len(vals), _CHUNK):
        cond = table.c[col].in_(vals[i:i + _CHUNK])
        if extra is not None:
            cond = sa.and_(cond, extra)
        frames.append(store.read_table(table, cond))
    if not frames:
        return pd.DataFrame(columns=[c.name for c in table.columns])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def decode_findings(df: pd.DataFrame, evidence: np.ndarray | None = None) -> pd.DataFrame:
    """Store rows of findings with their JSON columns as objects; `evidence` (a mask): only
    those rows' evidence decoded, the others' left as the store's text."""
    if len(df):
        # lists of values, not Series.map: on Arrow strings map tries to make an Arrow
        # column of what it returns (a night's findings.jsonl reads every finding)
        df = df.copy()
        df["event_ids"] = [json.loads(s) if s else [] for s in values_of(df["event_ids"])]
        if evidence is None:
            df["evidence"] = [json.loads(s) if s else {} for s in values_of(df["evidence"])]
        else:
            df["evidence"] = [(json.loads(s) if s else {}) if d else s
                              for s, d in zip(values_of(df["evidence"]), evidence.tolist())]
        df["message_args"] = [decode_args(v) for v in values_of(df["message_args"])]
        if "patient_ids" in df:
            df["patient_ids"] = [patient_list(v) for v in values_of(df["patient_ids"])]
    return df


def scan_row(store: Store, scan_id: str) -> dict | None:
    with store.engine.connect() as c:
        row = c.execute(sa.select(scans).where(scans.c.scan_id == scan_id)).mappings().first()
    return dict(row) if row else None


def latest_scan_id(store: Store) -> str | None:
    with store.engine.connect() as c:
        row = c.execute(sa.select(scans.c.scan_id).where(scans.c.status == "committed")
                        .order_by(scans.c.started.desc(), scans.c.scan_id.desc())).first()
    return row[0] if row else None


def scan_findings(store: Store, scan_id: str) -> pd.DataFrame:
    """The findings this scan produced or confirmed (`last_scan == scan_id`), live only."""
    return store.read_findings(findings.c.last_scan == scan_id)


def feed_health_rows(store: Store, scan_id: str | None = None) -> pd.DataFrame:
    """The feed check of one scan (default: the latest scan that made one)."""
    with store.engine.connect() as c:
        if scan_id is None or not c.execute(sa.select(feed_health.c.scan_id).where(
                feed_health.c.scan_id == scan_id).limit(1)).first():
            scan_id = c.execute(sa.select(feed_health.c.scan_id).join(
                scans, scans.c.scan_id == feed_health.c.scan_id).order_by(
                scans.c.started.desc()).limit(1)).scalar()
    if scan_id is None:
        return pd.DataFrame(columns=[c.name for c in feed_health.columns])
    return store.read_table(feed_health, feed_health.c.scan_id == scan_id,
                            feed_health.c.share)


def case_findings(store: Store, case_ids: Iterable[str]) -> pd.DataFrame:
    """Every live finding of these cases (earlier scans included)."""
    df = _select_in(store, findings, "case_id", case_ids, findings.c.retracted_scan.is_(None))
    return decode_findings(df)


def resolved_cases_of(store: Store, case_ids: Iterable[str]) -> list[str]:
    """Which of these cases reviewers have resolved, most severe first."""
    df = _select_in(store, cases, "case_id", case_ids, cases.c.status == "resolved")
    if not len(df):
        return []
    df = df.assign(_r=df["severity"].map({"low": 0, "medium": 1, "high": 2, "critical": 3})
                   .fillna(0), _s=pd.to_numeric(df["score"], errors="coerce").fillna(0.0))
    return df.sort_values(["_r", "_s", "case_id"], ascending=[False, False, True])[
        "case_id"].tolist()


SENTENCE_COLUMNS = ("finding_id", "case_id", "detector", "severity", "score", "user_id",
                    "patient_id", "summary", "suppressed_by", "message_id", "message_args")
# what choosing a case's headline finding needs (text.case_sentences)
RANK_COLUMNS = ("finding_id", "case_id", "detector", "severity", "score", "suppressed_by")


def sentence_findings(store: Store, case_ids: Iterable[str] | None = None, *,
                      finding_ids: Iterable[str] | None = None,
                      columns: Iterable[str] = SENTENCE_COLUMNS) -> pd.DataFrame:
    """The live findings of these cases (or these findings) with only what their sentences
    need (no evidence, no event lists): ledgers and reports over many cases. With narrower
    `columns` (no `message_args`), a night of 700,000 findings costs tens of MB."""
    columns = list(columns)
    key, wanted = (findings.c.finding_id, finding_ids) if finding_ids is not None \
        else (findings.c.case_id, case_ids)
    vals = sorted({str(v) for v in wanted or () if v is not None and str(v) != ""})
    frames = []
    with store.engine.connect() as c:
        for i in range(0, len(vals), _CHUNK):
            res = c.execute(sa.select(*[findings.c[k] for k in columns]).where(
                key.in_(vals[i:i + _CHUNK]), findings.c.retracted_scan.is_(None)))
            frames.append(pd.DataFrame(res.fetchall(), columns=list(res.keys())))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    if len(df) and "message_args" in df:
        df["message_args"] = df["message_args"].map(decode_args)
    if len(df) and "patient_ids" in df:
        df["patient_ids"] = df["patient_ids"].map(patient_list)
    return df


def read_cases(store: Store, case_ids: Iterable[str]) -> pd.DataFrame:
    return _select_in(store, cases, "case_id", case_ids)


def read_history(store: Store, case_ids: Iterable[str]) -> pd.DataFrame:
    df = _select_in(store, case_history, "case_id", case_ids)
    return df.sort_values("id") if len(df) else df


def user_cases(store: Store, user_ids: Iterable[str]) -> pd.DataFrame:
    return _select_in(store, cases, "user_id", user_ids)


def cases_per_day(store: Store, days: int) -> pd.Series:
    """Live cases (not retracted) per day of their incident, over the last `days` days that
    have any: one GROUP BY in the database, however many findings the store holds."""
    day = sa.func.coalesce(cases.c.day, sa.func.substr(cases.c.first_seen, 1, 10))
    with store.engine.connect() as c:
        last = c.execute(sa.select(sa.func.max(day)).where(
            cases.c.status != "retracted")).scalar()
        if not last:
            return pd.Series(dtype="int64")
        first = (pd.Timestamp(last) - pd.Timedelta(days=days - 1)).strftime("%Y-%m-%d")
        rows = c.execute(sa.select(day.label("d"), sa.func.count()).where(
            cases.c.status != "retracted", day >= first).group_by(day)).fetchall()
    return pd.Series({str(d): int(n) for d, n in rows}, dtype="int64").sort_index()


def scan_case_ids(store: Store, scan_id: str) -> list[str]:
    """The cases this scan's live findings belong to."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(findings.c.case_id).distinct().where(
            findings.c.last_scan == scan_id, findings.c.retracted_scan.is_(None),
            findings.c.case_id.is_not(None))).fetchall()
    return sorted(r[0] for r in rows)


def _scan_live(scan_id: str):
    return sa.and_(findings.c.last_scan == scan_id, findings.c.retracted_scan.is_(None))


def scan_finding_ids(store: Store, scan_id: str) -> list[str]:
    """The ids of this scan's live findings, in order (to split them into ranges)."""
    with store.engine.connect() as c:
        return list(c.execute(sa.select(findings.c.finding_id).where(_scan_live(scan_id))
                              .order_by(findings.c.finding_id)).scalars())


def iter_scan_findings(store: Store, scan_id: str, batch: int = 5_000, *,
                       decode: bool = True, after: str = "", until: str | None = None,
                       columns: Iterable[str] | None = None):
    """This scan's live findings in the contract's shape, `batch` at a time by id (a night
    with hundreds of thousands of findings is never held whole); `decode=False` leaves the
    JSON columns as the store's text (decode_findings). Only ids above `after` and up to
    `until` (a range of them); only `columns` when named (not decoded then)."""
    cols = [findings.c[c] for c in columns] if columns is not None else [findings]
    while True:
        where = sa.and_(_scan_live(scan_id), findings.c.finding_id > after)
        if until is not None:
            where = sa.and_(where, findings.c.finding_id <= until)
        with store.engine.connect() as c:
            res = c.execute(sa.select(*cols).where(where)
                            .order_by(findings.c.finding_id).limit(batch))
            df = pd.DataFrame(res.fetchall(), columns=list(res.keys()))
        if df.empty:
            return
        yield decode_findings(df) if decode and columns is None else df
        after = str(df["finding_id"].iloc[-1])


def read_lake(lake: Lake, committed: set[str], days: Iterable[str],
              columns: list[str] | None = None, filters=None, *,
              users: Iterable[str] | None = None, skip: set | None = None,
              source: bool = False) -> pd.DataFrame:
    """Events of the given site-local days, filtered while reading (pyarrow filters).

    `users`: read only the files whose user bucket may hold one of them (a day of 10M
    events is 32 bucket files; a report's few hundred users are in a few of them), files
    written before buckets always. `skip`: files not to read (already read by the caller);
    the files read are added to it. `source`: add `_file`, the file each row was read
    from (read_event_rows reads the rest of a row there)."""
    days = sorted(set(days))
    if not days:
        return pd.DataFrame(columns=columns or [])
    keep = set(days)
    files = [f for f in lake.event_files(committed, days[0], days[-1])
             if lake.day_of(f) in keep]
    if users is not None:
        ids = list(users)
        h = user_hashes(pd.Series(ids, dtype="string")) if ids else np.zeros(0, np.uint64)
        files = [f for f in files if _may_hold(lake.bucket_of(f), h)]
    if skip is not None:
        files = [f for f in files if f not in skip]
        skip.update(files)
    tables = []
    for f in files:
        try:
            t = _read_filtered(f, columns, filters)
        except (pa.ArrowInvalid, KeyError):
            continue
        if source:
            t = t.append_column("_file", pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(t.num_rows, dtype=np.int32)), pa.array([str(f)])))
        tables.append(t)
    return _frame(lake, tables, columns)


def _frame(lake: Lake, tables: list[pa.Table], columns: list[str] | None) -> pd.DataFrame:
    """Tables read from event files as one frame in the site's time, sorted by time."""
    if not tables:
        return pd.DataFrame(columns=columns or [])
    df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if "ts" in df.columns and len(df):
        df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(lake.tz)
        df = df.sort_values(["ts", "event_id"] if "event_id" in df.columns else ["ts"],
                            kind="stable")
    return df.reset_index(drop=True)


def read_events_by_id(lake: Lake, committed: set[str], days: Iterable[str],
                      event_ids: list[str], users: Iterable[str]) -> pd.DataFrame:
    """The events with these ids: first the events of `users` in their bucket files (a
    finding's events are its user's), kept when their id is wanted; then, for ids not
    found there, the days' other files filtered by id.

    The first read filters by user, not by id: a queue whose cases hold 300,000 event ids
    (a bulk user's night) made pyarrow build that set again for every row group of every
    file, 35 s of a 10M night's reports; a few users' events are read and matched once."""
    days = sorted(set(days))
    if not event_ids or not days:
        return pd.DataFrame()
    read: set = set()
    who = sorted({str(u) for u in users} - {""})
    wanted = _wanted(event_ids)
    if who:
        first = read_lake(lake, committed, days, None, [("user_id", "in", who)], users=who,
                          skip=read)
        if "event_id" in first.columns and len(first):
            first = first[isin(first["event_id"], wanted)].reset_index(drop=True)
    else:
        first = pd.DataFrame()
    rest = _read_missing(lake, committed, days, wanted,
                         first["event_id"] if "event_id" in first.columns else None)
    if not len(rest):
        return first
    if not len(first):
        return rest
    df = pd.concat([first, rest], ignore_index=True)
    return df.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


# what choosing a case page's events needs of each: the rest of a row is read for the few
# listed (read_event_rows)
EVENT_KEYS = ["event_id", "ts", "user_id", "patient_id"]


def read_case_events(lake: Lake, committed: set[str], days: Iterable[str],
                     event_ids: list[str], users: Iterable[str],
                     activity_days: Iterable[str] = ()
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The events behind some cases, for their pages, and their users' activity, reading
    the users' bucket files once and only the columns each part needs.

    Returns (keys, rows, activity):
    - keys: EVENT_KEYS and `_file` (where the rest of the row is: read_event_rows) of the
      wanted events found among `users`' events of `days`;
    - rows: whole rows of the wanted events found elsewhere (another user's, read by id);
    - activity: ts and user_id of every event of `users` on `activity_days`.
    A bulk user's night is hundreds of thousands of events: their whole rows were most of
    a 10M night's report reading, where a page lists a few hundred."""
    days, act = set(days), set(activity_days)
    who = sorted({str(u) for u in users} - {""})
    empty = pd.DataFrame(columns=EVENT_KEYS + ["_file"])
    mine = read_lake(lake, committed, days | act, EVENT_KEYS, [("user_id", "in", who)],
                     users=who, source=True) if who and (days | act) else empty
    if len(mine):
        day = local_days(mine["ts"], lake.tz).to_numpy(dtype=object)
        activity = mine.loc[np.isin(day, list(act)), ["ts", "user_id"]] \
            .reset_index(drop=True) if act else pd.DataFrame(columns=["ts", "user_id"])
    else:
        activity = pd.DataFrame(columns=["ts", "user_id"])
    wanted = _wanted(event_ids)
    keys = mine[isin(mine["event_id"], wanted)].reset_index(drop=True) if len(mine) \
        and len(wanted) else empty
    return keys, _read_missing(lake, committed, days, wanted, keys["event_id"]), activity


def _wanted(event_ids) -> pd.Index:
    """Event ids as distinct text."""
    return pd.Index(pd.unique(pd.Series(list(event_ids), dtype=object).astype(str)))


def _read_missing(lake: Lake, committed: set[str], days: Iterable[str], wanted: pd.Index,
                  found: pd.Series | None) -> pd.DataFrame:
    """Whole rows of the `wanted` events not among `found` (another user's: not in the
    bucket files read by user), read from the days' files by id."""
    missing = sorted(wanted[~isin(wanted, found)]) if found is not None and len(found) \
        else sorted(wanted)
    days = set(days)
    return read_lake(lake, committed, days, None, [("event_id", "in", missing)]) \
        if missing and days else pd.DataFrame()


def read_event_rows(lake: Lake, event_ids: Iterable[str], files: Iterable[str]
                    ) -> pd.DataFrame:
    """Whole rows of events whose keys read_case_events found, each id read in the file
    it was found in (`files`, one per id): only the files holding them, filtered by id."""
    by_file: dict[str, list[str]] = {}
    for e, f in zip(event_ids, files):
        by_file.setdefault(str(f), []).append(str(e))
    tables = []
    for f, ids in sorted(by_file.items()):
        try:
            tables.append(_read_filtered(f, None, [("event_id", "in", sorted(set(ids)))]))
        except (pa.ArrowInvalid, KeyError, OSError):
            continue
    return _frame(lake, tables, None)


def _may_hold(bucket: tuple[int, int] | None, hashes: np.ndarray) -> bool:
    """May an event file of bucket (B, M) hold a user of these hashes (lake.user_hashes)?
    (None: a file written before buckets holds every user.)"""
    if bucket is None:
        return True
    b, m = bucket
    return bool((hashes % np.uint64(m) == np.uint64(b)).any())


# text unique to each row: a dictionary of it would be as large as the column
_ROW_UNIQUE = ("event_id", "_source_ref")


def _read_filtered(f, columns: list[str] | None, filters) -> pa.Table:
    """One event file's rows that pass `filters`, in the file's own types. With a filter,
    repeated text is read as dictionaries and decoded only for the rows kept: a report keeps
    thousands of a day's millions of rows, and decoding every string first was half its
    reading time."""
    schema = pq.read_schema(f)
    cols = [c for c in columns if c in schema.names] if columns else list(schema.names)
    text = [c for c in cols if c not in _ROW_UNIQUE
            and (pa.types.is_string(schema.field(c).type)
                 or pa.types.is_large_string(schema.field(c).type))] if filters else []
    table = pq.read_table(f, columns=cols, filters=filters, read_dictionary=text or None)
    if not text:
        return table
    return table.cast(pa.schema([schema.field(c) for c in table.column_names],
                                metadata=schema.metadata))


def days_between(start: str, end: str) -> list[str]:
    if not start:
        return []
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start[:10], (end or start)[:10])]


def snapshot(lake: Lake, committed: set[str], table: str) -> pd.DataFrame | None:
    try:
        df = lake.read_snapshot(table, committed)
    except (OSError, pa.ArrowInvalid):
        return None
    if df is None:
        return None
    for c in df.columns:
        if c.endswith("_id") or c in ("name", "department", "role", "ward", "workstation"):
            df[c] = df[c].astype("string")
    return df


def stored_day_counts(store: Store, users: Iterable[str], first_day: str,
                      last_day: str) -> dict[str, dict[str, int]]:
    """user -> day -> events, from the daily features the anomaly detectors store (so the
    30-day chart needs no month of raw events). Empty when none are stored."""
    out: dict[str, dict[str, int]] = {}
    t = user_day_features
    vals = sorted({str(u) for u in users})
    with store.engine.connect() as c:
        for i in range(0, len(vals), _CHUNK):
            rows = c.execute(sa.select(t.c.user_id, t.c.day, t.c.features).where(
                t.c.user_id.in_(vals[i:i + _CHUNK]), t.c.day >= first_day,
                t.c.day <= last_day)).fetchall()
            for uid, day, feats in rows:
                try:
                    n = json.loads(feats or "{}").get("events")
                except json.JSONDecodeError:
                    n = None
                if n is not None:
                    out.setdefault(str(uid), {})[str(day)] = int(n)
    return out
