"""The event lake: access events as Parquet files partitioned by day, plus reference snapshots.

Layout (readable by DuckDB, Spark and pandas alike — hive partitioning):

    lake/access_log/day=2025-07-01/part-<run_id>.parquet
    lake/ref/<table>/snapshot-<run_id>.parquet

Each file carries the ingestion run that wrote it. A file counts only once its run is
committed in the state database, so a run that dies half-way leaves nothing visible; its
orphans are deleted by the next run. Days are the site's calendar days.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emraudit.fastops import local_days
from emraudit.model import SOURCE, SOURCE_REF, empty_table

_PART = re.compile(r"^(?:part|snapshot)-(?P<run>[A-Za-z0-9_.-]+?)(?:-\d+)?\.parquet$")


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
    def write_events(self, df: pd.DataFrame, run_id: str) -> list[Path]:
        """Write accepted events, one file per day for this run; returns the files written."""
        if df.empty:
            return []
        day = local_days(df["ts"], self.tz)
        written = []
        for d, part in df.groupby(day, sort=True):
            folder = self.events_dir / f"day={d}"
            self._mkdir(folder)
            path = folder / f"part-{run_id}.parquet"
            n = 0
            while path.exists():   # several batches of one run touching the same day
                n += 1
                path = folder / f"part-{run_id}-{n}.parquet"
            _atomic_write(part.sort_values("ts", kind="stable"), path)
            written.append(path)
        return written

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
    def event_files(self, committed: set[str], start_day: str | None = None,
                    end_day: str | None = None) -> list[Path]:
        if not self.events_dir.exists():
            return []
        files = []
        for d in sorted(self.events_dir.iterdir()):
            if not d.name.startswith("day="):
                continue
            day = d.name[4:]
            if (start_day and day < start_day) or (end_day and day > end_day):
                continue
            files += [f for f in sorted(d.glob("*.parquet")) if self.run_of(f) in committed]
        return files

    def days(self, committed: set[str]) -> list[str]:
        return sorted({f.parent.name[4:] for f in self.event_files(committed)})

    def read_events(self, committed: set[str], start: pd.Timestamp | None = None,
                    end: pd.Timestamp | None = None, columns: list[str] | None = None,
                    days: list[str] | None = None, exclude: tuple[str, ...] = ()
                    ) -> pd.DataFrame:
        """Events with start <= ts < end (site-local days), only from committed runs.

        `exclude` names columns not to read at all (the scan leaves out the source references,
        which only reports need: every column costs time in each filter a detector makes)."""
        sd = start.tz_convert(self.tz).strftime("%Y-%m-%d") if start is not None else None
        ed = end.tz_convert(self.tz).strftime("%Y-%m-%d") if end is not None else None
        files = self.event_files(committed, sd, ed)
        if days is not None:
            keep = set(days)
            files = [f for f in files if f.parent.name[4:] in keep]
        if not files:
            return empty_table("access_log", self.tz)
        if exclude and columns is None:
            tables = [pq.read_table(f, columns=[c for c in pq.read_schema(f).names
                                                if c not in exclude]) for f in files]
        else:
            tables = [pq.read_table(f, columns=columns) for f in files]
        # one chunk per column: pandas' takes and filters on chunked arrow strings are slower
        table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        df = table.to_pandas()
        if "ts" in df.columns:
            df["ts"] = df["ts"].dt.tz_convert(self.tz)
            if start is not None:
                df = df[df["ts"] >= start]
            if end is not None:
                df = df[df["ts"] < end]
            df = df.sort_values(["ts", "event_id"] if "event_id" in df.columns else ["ts"],
                                kind="stable")
        return df.reset_index(drop=True)

    def existing_event_ids(self, committed: set[str], days: list[str]) -> pd.Index:
        """Event ids already stored for these days (to drop duplicates on re-ingest)."""
        files = [f for f in self.event_files(committed)
                 if f.parent.name[4:] in set(days)]
        if not files:
            return pd.Index([], dtype="string")
        ids = [pq.read_table(f, columns=["event_id"]).column("event_id").to_pandas()
               for f in files]
        return pd.Index(pd.concat(ids, ignore_index=True).astype("string"))

    def read_snapshot(self, table: str, committed: set[str]) -> pd.DataFrame | None:
        """The newest committed snapshot of a reference table, or None if never loaded."""
        folder = self.ref_dir(table)
        if not folder.exists():
            return None
        files = [f for f in folder.glob("snapshot-*.parquet") if self.run_of(f) in committed]
        if not files:
            return None
        newest = max(files, key=lambda f: f.stat().st_mtime_ns)
        df = pq.read_table(newest).to_pandas()
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


def _atomic_write(df: pd.DataFrame, path: Path) -> None:
    """Write to a temporary name, fsync, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".tmp-{path.name}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, tmp, compression="zstd")
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
