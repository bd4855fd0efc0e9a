"""The event lake: access events as Parquet files partitioned by day, plus reference snapshots.

Layout (readable by DuckDB, Spark and pandas alike — hive partitioning):

    lake/access_log/day=2025-07-01/bucket=07of32/part-<run_id>.parquet
    lake/ref/<table>/snapshot-<run_id>.parquet

Events are split by user as well as by day: `bucket=BofM` holds the users whose stable hash
modulo M is B, so one partition of the users (engine.plan) reads its own files, not a filter
over everything. M is a power of two up to BUCKETS, chosen per batch and day so that files
keep at least FILE_ROWS rows (a small hospital's day is one file, `0of1`). Lakes written
before buckets (`day=…/part-….parquet`) stay readable: their files hold every user and are
filtered by the same hash when read by partition.

Each file carries the ingestion run that wrote it. A file counts only once its run is
committed in the state database, so a run that dies half-way leaves nothing visible; its
orphans are deleted by the next run. Days are the site's calendar days.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emraudit.fastops import id_hashes, local_days
from emraudit.model import CODED_EVENT_COLUMNS, SOURCE, SOURCE_REF, code_event_columns, empty_table

_PART = re.compile(r"^(?:part|snapshot)-(?P<run>[A-Za-z0-9_.-]+?)(?:-\d+)?\.parquet$")

BUCKETS = 32        # most user buckets per day; a power of two, as partition counts are
FILE_ROWS = 10_000  # fewest rows an event file is split down to (Parquet's footer and
                    # dictionaries make smaller files cost more than they save)


def buckets_for(rows: int) -> int:
    """Buckets for `rows` events of one batch and day: the largest power of two up to
    BUCKETS that keeps FILE_ROWS rows a file."""
    m = 1
    while m < BUCKETS and rows >= 2 * m * FILE_ROWS:
        m *= 2
    return m


def user_hashes(user_id) -> np.ndarray:
    """A stable 64-bit hash of each user id (the same in every process, engine and run):
    computed once per distinct id."""
    codes, uniq = pd.factorize(pd.Series(user_id).astype("string"))
    h = id_hashes(pd.Series(np.asarray(uniq, dtype=object), dtype="string")) \
        if len(uniq) else np.zeros(0, dtype=np.uint64)
    h = np.append(h, np.uint64(0))               # missing ids: bucket 0
    return h[np.where(codes < 0, len(uniq), codes)]


def user_bucket(user_id, n: int = BUCKETS) -> np.ndarray:
    """The bucket (0..n-1) of each user id."""
    return (user_hashes(user_id) % np.uint64(n)).astype(np.int64)


def in_partition(user_id, part: tuple[int, int] | None) -> np.ndarray | None:
    """Rows whose user belongs to partition (r, n): hash modulo n == r (None: all rows)."""
    if part is None or part[1] <= 1:
        return None
    return user_bucket(user_id, part[1]) == part[0]


class Lake:
    def __init__(self, root: Path, tz: str):
        self.root = Path(root)
        self.tz = tz

    # paths --------------------------------------------------------------------------------
    @property
    def events_dir(self) -> Path:
        return self.root / "access_log"

    def ref_dir(self, table: str) -> Path:
        return self.root / "ref" / table

    @staticmethod
    def run_of(path: Path) -> str | None:
        m = _PART.match(path.name)
        return m.group("run") if m else None

    # writing ------------------------------------------------------------------------------
    def write_events(self, df: pd.DataFrame, run_id: str,
                     day: pd.Series | None = None) -> list[Path]:
        """Write accepted events, one file per day and user bucket for this run; returns the
        files written.
        `day`: the events' site-local days, if the caller has them already."""
        if df.empty:
            return []
        if day is None:
            day = local_days(df["ts"], self.tz)
        hashes = user_hashes(df["user_id"])
        written = []
        for d, rows in df.groupby(day, sort=True).indices.items():
            m = buckets_for(len(rows))
            for b, part in df.iloc[rows].groupby(hashes[rows] % np.uint64(m), sort=True):
                written.append(self._write_day_part(part, run_id, d, int(b), m))
        return written

    def _write_day_part(self, part: pd.DataFrame, run_id: str, d: str, b: int, m: int
                        ) -> Path:
        folder = self.events_dir / f"day={d}" / f"bucket={b:02d}of{m:02d}"
        self._mkdir(folder)
        path = folder / f"part-{run_id}.parquet"
        n = 0
        while path.exists():   # several batches of one run touching the same day
            n += 1
            path = folder / f"part-{run_id}-{n}.parquet"
        _atomic_write(part.sort_values("ts", kind="stable"), path, **_event_write(part))
        return path

    def write_snapshot(self, table: str, df: pd.DataFrame, run_id: str) -> Path:
        folder = self.ref_dir(table)
        self._mkdir(folder)
        path = folder / f"snapshot-{run_id}.parquet"
        _atomic_write(df, path)
        return path

    def _mkdir(self, folder: Path) -> None:
        """Lake folders hold patient data: owner-only permissions."""
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    # reading ------------------------------------------------------------------------------
    @staticmethod
    def day_of(path: Path) -> str:
        """The site-local day of an event file, from its `day=` folder."""
        for part in Path(path).parts[::-1]:
            if part.startswith("day="):
                return part[4:]
        raise ValueError(f"not an event file: {path}")

    @staticmethod
    def bucket_of(path: Path) -> tuple[int, int] | None:
        """(B, M) of an event file in `bucket=BofM`: its users' hash modulo M is B; None for
        a file of a lake written before buckets (it holds every user)."""
        name = Path(path).parent.name
        if not name.startswith("bucket="):
            return None
        b, _, m = name[7:].partition("of")
        return int(b), int(m)

    def event_files(self, committed: set[str], start_day: str | None = None,
                    end_day: str | None = None, part: tuple[int, int] | None = None
                    ) -> list[Path]:
        """Committed event files of the days (both inclusive); with `part` = (r, n) only
        those that may hold users of partition r of n (files without a bucket always)."""
        if not self.events_dir.exists():
            return []
        files = []
        for d in sorted(self.events_dir.iterdir()):
            if not d.name.startswith("day="):
                continue
            day = d.name[4:]
            if (start_day and day < start_day) or (end_day and day > end_day):
                continue
            found = sorted(d.glob("*.parquet")) + sorted(d.glob("bucket=*/*.parquet"))
            files += [f for f in found if self.run_of(f) in committed
                      and _bucket_in(self.bucket_of(f), part)]
        return files

    def days(self, committed: set[str]) -> list[str]:
        return sorted({self.day_of(f) for f in self.event_files(committed)})

    def history(self, committed: set[str], start: pd.Timestamp | None,
                end: pd.Timestamp | None) -> dict:
        """First and last event time with start <= ts < end, the days that hold events and
        the events per bucket (None: files without one), from the Parquet footers (time
        statistics), reading a time column only where a file has none."""
        sd = start.tz_convert(self.tz).strftime("%Y-%m-%d") if start is not None else None
        ed = end.tz_convert(self.tz).strftime("%Y-%m-%d") if end is not None else None
        lo = pd.Timestamp(start).value if start is not None else None
        hi = pd.Timestamp(end).value if end is not None else None
        first = last = None
        days: set[str] = set()
        rows: dict[int | None, int] = {}
        for f in self.event_files(committed, sd, ed):
            t_min, t_max, n = _ts_range(f, lo, hi)
            if n == 0:
                continue
            days.add(self.day_of(f))
            rows[self.bucket_of(f)] = rows.get(self.bucket_of(f), 0) + n
            first = t_min if first is None else min(first, t_min)
            last = t_max if last is None else max(last, t_max)
        conv = (lambda v: None if v is None else
                pd.Timestamp(v, unit="ns", tz="UTC").tz_convert(self.tz))
        return {"first": conv(first), "last": conv(last), "days": sorted(days), "rows": rows}

    def read_events(self, committed: set[str], start: pd.Timestamp | None = None,
                    end: pd.Timestamp | None = None, columns: list[str] | None = None,
                    days: list[str] | None = None, exclude: tuple[str, ...] = (),
                    coded: bool = False, part: tuple[int, int] | None = None
                    ) -> pd.DataFrame:
        """Events with start <= ts < end (site-local days), only from committed runs, ordered
        by (ts, event_id); with `part` = (r, n) only the users of partition r of n (their
        bucket files; a file holding other users too is filtered by the user hash).

        `exclude` names columns not to read at all (the scan leaves out the source references,
        which only reports need: every column costs time in each filter a detector makes).
        `coded` reads CODED_EVENT_COLUMNS as categoricals straight from Parquet's dictionaries
        (the scan's form: a fraction of the memory, and cheap filters). Filtering and sorting
        happen on the Arrow table, before pandas sees it, so no extra copy is made."""
        sd = start.tz_convert(self.tz).strftime("%Y-%m-%d") if start is not None else None
        ed = end.tz_convert(self.tz).strftime("%Y-%m-%d") if end is not None else None
        files = self.event_files(committed, sd, ed, part)
        if days is not None:
            keep = set(days)
            files = [f for f in files if self.day_of(f) in keep]
        if not files:
            df = empty_table("access_log", self.tz)
            return code_event_columns(df) if coded else df
        tables = []
        for f in files:
            names = pq.read_schema(f).names
            cols = [c for c in (columns or names) if c in names and c not in exclude]
            t = pq.read_table(f, columns=cols, read_dictionary=[
                c for c in CODED_EVENT_COLUMNS if c in cols] if coded else None)
            if part is not None and not _whole_bucket(self.bucket_of(f), part):
                uid = pq.read_table(f, columns=["user_id"]).column("user_id").to_pandas()
                t = t.filter(pa.array(in_partition(uid, part)))
            tables.append(t)
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        pick = _range_order(table, start, end) if "ts" in table.column_names else None
        names = table.column_names
        codes = {c: _sorted_categorical(table.column(c), pick) for c in names
                 if coded and c in CODED_EVENT_COLUMNS}
        table = table.drop_columns(list(codes))
        # one chunk per column: pandas' takes and filters on chunked arrow strings are slower
        table = table.combine_chunks()
        if isinstance(pick, slice):
            table = table.slice(pick.start, pick.stop - pick.start)
        elif pick is not None:
            table = table.take(pick)
        df = table.to_pandas()
        del table
        if "ts" in df.columns:
            df["ts"] = df["ts"].dt.tz_convert(self.tz)
        for c, cat in codes.items():
            df[c] = cat
        return df[names].reset_index(drop=True)

    def existing_event_ids(self, committed: set[str], days: list[str]) -> pd.Index:
        """Event ids already stored for these days (to drop duplicates on re-ingest)."""
        files = [f for f in self.event_files(committed)
                 if self.day_of(f) in set(days)]
        if not files:
            return pd.Index([], dtype="string")
        ids = [pq.read_table(f, columns=["event_id"]).column("event_id").to_pandas()
               for f in files]
        return pd.Index(pd.concat(ids, ignore_index=True).astype("string"))

    def drop_events(self, files: list[Path], ids) -> tuple[list[Path], pd.DataFrame]:
        """Rewrite the uncommitted `files` of one run without the events whose id is in
        `ids` (a file left empty is removed). Returns the files kept and their events."""
        drop = pa.array(pd.Series(ids, dtype="string").dropna().unique(), pa.large_string())
        kept, frames = [], []
        for f in files:
            table = pq.read_table(f)
            keep = pc.invert(pc.is_in(table.column("event_id").cast(pa.large_string()),
                                      value_set=drop))
            part = table.filter(keep)
            if part.num_rows == 0:
                f.unlink(missing_ok=True)
                continue
            df = part.to_pandas()
            if "ts" in df.columns:
                df["ts"] = df["ts"].dt.tz_convert(self.tz)
            if part.num_rows != table.num_rows:
                _atomic_write(df, f, **_event_write(df))
            kept.append(f)
            frames.append(df)
        return kept, (pd.concat(frames, ignore_index=True) if frames else
                      pd.DataFrame(columns=["event_id", "ts"]))

    def snapshot_file(self, table: str, committed: set[str]) -> Path | None:
        """The newest committed snapshot file of a reference table, or None if never loaded
        (its row count is in the file's metadata: no need to read it to count)."""
        folder = self.ref_dir(table)
        if not folder.exists():
            return None
        files = [f for f in folder.glob("snapshot-*.parquet") if self.run_of(f) in committed]
        return max(files, key=lambda f: f.stat().st_mtime_ns) if files else None

    def read_snapshot(self, table: str, committed: set[str], *, key: str | None = None,
                      values: list[str] | None = None) -> pd.DataFrame | None:
        """The newest committed snapshot of a reference table, or None if never loaded;
        with `key` and `values`, only its rows whose `key` is one of them."""
        newest = self.snapshot_file(table, committed)
        return None if newest is None else self.read_snapshot_file(newest, key=key,
                                                                   values=values)

    def read_snapshot_file(self, newest: Path, *, key: str | None = None,
                           values: list[str] | None = None) -> pd.DataFrame:
        """A snapshot as the canonical frame detectors read (times in the site zone)."""
        where = [(key, "in", sorted(set(values)))] if key and values is not None else None
        if where is not None and not values:
            df = pq.read_table(newest).schema.empty_table().to_pandas()
        else:
            df = pq.read_table(newest, filters=where).to_pandas()
        for c in df.columns:
            if isinstance(df[c].dtype, pd.DatetimeTZDtype):
                df[c] = df[c].dt.tz_convert(self.tz)
        return df.drop(columns=[c for c in (SOURCE, SOURCE_REF) if c in df.columns])

    # housekeeping -------------------------------------------------------------------------
    def remove_orphans(self, committed: set[str], running: set[str] = frozenset()) -> int:
        """Delete files of runs that never committed (a crash mid-ingest)."""
        removed = 0
        if not self.root.exists():
            return 0
        for f in self.root.rglob("*.parquet"):
            run = self.run_of(f)
            if run is not None and run not in committed and run not in running:
                f.unlink(missing_ok=True)
                removed += 1
        for f in self.root.rglob(".tmp-*"):
            f.unlink(missing_ok=True)
        return removed

    def remove_run(self, run_id: str) -> None:
        for f in self.root.rglob(f"*-{run_id}*.parquet"):
            if self.run_of(f) == run_id:
                f.unlink(missing_ok=True)


def _bucket_in(bucket: tuple[int, int] | None, part: tuple[int, int] | None) -> bool:
    """May a file of bucket (B, M) hold users of partition `part` = (r, n)? (Both moduli
    are powers of two: the smaller divides the larger.)"""
    if part is None or bucket is None or part[1] <= 1:
        return True
    (b, m), (r, n) = bucket, part
    k = min(m, n)
    return b % k == r % k


def _whole_bucket(bucket: tuple[int, int] | None, part: tuple[int, int]) -> bool:
    """Does the partition take every row of a file of this bucket (no row filter)?"""
    return part[1] <= 1 or (bucket is not None and bucket[1] % part[1] == 0)


def _ts_range(f: Path, lo: int | None, hi: int | None) -> tuple[int, int, int]:
    """(min, max, rows) of an event file's times (ns, UTC) within [lo, hi): from the row-group
    statistics when they lie within it, else from the column."""
    md = pq.ParquetFile(f).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    mins, maxs = [], []
    if "ts" in names and md.num_rows:
        i = names.index("ts")
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(i).statistics
            if st is None or not st.has_min_max:
                break
            mins.append(pd.Timestamp(st.min).value if not isinstance(st.min, int) else None)
            maxs.append(pd.Timestamp(st.max).value if not isinstance(st.max, int) else None)
    ok = len(mins) == md.num_row_groups and None not in mins and None not in maxs
    if ok and md.num_rows and (lo is None or min(mins) >= lo) and (hi is None or max(maxs) < hi):
        return min(mins), max(maxs), md.num_rows
    t = pc.cast(pq.read_table(f, columns=["ts"]).column("ts"),
                pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    keep = np.ones(len(t), dtype=bool)
    if lo is not None:
        keep &= t >= lo
    if hi is not None:
        keep &= t < hi
    t = t[keep]
    return (int(t.min()), int(t.max()), len(t)) if len(t) else (0, 0, 0)


def _range_order(table: pa.Table, start: pd.Timestamp | None,
                 end: pd.Timestamp | None) -> np.ndarray | slice | None:
    """Positions of the rows with start <= ts < end, ordered by (ts, event_id): None when
    that is every row in its present order (one ingest run per day is not re-sorted), a
    slice when it is a run of them."""
    t = pc.cast(table.column("ts"), pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    t = t.to_numpy() if isinstance(t, pa.Array) else t.combine_chunks().to_numpy()
    keep = np.ones(len(t), dtype=bool)
    if start is not None:
        keep &= t >= pd.Timestamp(start).value
    if end is not None:
        keep &= t < pd.Timestamp(end).value
    kept = None if keep.all() else np.flatnonzero(keep)
    has_ids = "event_id" in table.column_names
    # one chunk: a take from a chunked array concatenates all of it first, on every call
    ids = table.column("event_id").combine_chunks() if has_ids else None
    if kept is not None:
        t = t[kept]
        ids = ids.take(kept) if has_ids else None
    step = np.diff(t)
    if (step >= 0).all() and (not has_ids or _ids_ordered_at(ids, np.flatnonzero(step == 0))):
        if kept is not None and len(kept) and kept[-1] - kept[0] + 1 == len(kept):
            return slice(int(kept[0]), int(kept[-1]) + 1)   # a run of rows: sliced, not taken
        return kept
    keys = pa.table({"ts": t} | ({"event_id": ids} if has_ids else {}))
    order = pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in keys.column_names])
    order = order.to_numpy()
    return order if kept is None else kept[order]


def _ids_ordered_at(ids: pa.Array, ties: np.ndarray, step: int = 1 << 16) -> bool:
    """Whether ids[i] <= ids[i + 1] at every position i of `ties`; looked at a slice at a
    time, so the usual answer when it is no (events of one second in arrival order) costs
    one slice, not two copies of millions of ids."""
    for lo in range(0, len(ties), step):
        at = ties[lo:lo + step]
        if not pc.all(pc.less_equal(ids.take(at), ids.take(at + 1))).as_py():
            return False
    return True


def _sorted_categorical(col: pa.ChunkedArray, pick: np.ndarray | slice | None
                        ) -> pd.Categorical:
    """A column read as Parquet dictionaries (one per row group and file) as one pandas
    categorical with lexically sorted categories (model.code_event_columns' form), taking
    rows `pick` (all when None). Each chunk's codes are translated through its small
    dictionary, so no step touches the column's strings: Arrow's unify-then-concatenate
    and pandas' re-coding each cost seconds at 10 million events. A chunk read as plain
    text or as nulls (a column some file lacks) is coded too."""
    parts = []          # (first row, the chunk dictionary-coded)
    at = 0
    for c in col.chunks:
        if len(c) and not pa.types.is_null(c.type):
            parts.append((at, c if pa.types.is_dictionary(c.type)
                          else pc.dictionary_encode(c.cast(pa.large_string()))))
        at += len(c)
    codes = np.full(len(col), -1, dtype=np.int32)
    if not parts:
        values = pa.array([], pa.large_string())
    else:
        # every chunk's dictionary at once: one hash pass gives each entry a distinct-value
        # number, the distinct values' sort gives that number a rank = its sorted code
        entries = pa.concat_arrays([c.dictionary.cast(pa.large_string()) for _, c in parts])
        enc = pc.dictionary_encode(entries)
        order = pc.sort_indices(enc.dictionary)      # UTF-8 byte order = code point order
        values = enc.dictionary.take(order)
        rank = np.empty(len(values) + 1, dtype=np.int32)
        rank[order.to_numpy()] = np.arange(len(values), dtype=np.int32)
        rank[-1] = -1                                  # missing values
        entry_code = rank[enc.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)]
        first = 0
        for at, c in parts:
            size = len(c.dictionary)
            to_sorted = np.append(entry_code[first:first + size], np.int32(-1))
            first += size
            idx = c.indices.fill_null(size).to_numpy(zero_copy_only=False)
            codes[at:at + len(c)] = to_sorted[idx]
    if isinstance(pick, slice):
        codes = codes[pick].copy()      # not a view that keeps the rows left out alive
    elif pick is not None:
        codes = codes[pick]
    cats = pd.Index(values.to_numpy(zero_copy_only=False), dtype=object)
    return pd.Categorical.from_codes(codes, categories=cats)


def _event_write(df: pd.DataFrame) -> dict:
    """Parquet options for event files: min/max statistics only where a reader prunes by
    them (time, event id), no dictionary for the columns unique to each row (built only to be
    dropped); a quarter of the write time. The coded columns keep their dictionaries: the
    scan reads them as categoricals."""
    cols = list(df.columns)
    return {"write_statistics": [c for c in ("ts", "event_id") if c in cols],
            "use_dictionary": [c for c in cols if c not in ("event_id", SOURCE_REF)]}


def _atomic_write(df: pd.DataFrame, path: Path, **options) -> None:
    """Write to a temporary name, fsync, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".tmp-{path.name}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    try:
        pq.write_table(table, tmp, compression="zstd", **options)
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)      # a full disk keeps no half file (and gets its space)
        raise
