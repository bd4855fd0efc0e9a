"""The Spark executor: the same partition job, run by `groupBy(partition).applyInPandas`.

Spark reads the lake's event files of the scan (look-back included) itself, keeps the
columns detectors read, gives every row its partition (the user hash modulo the partition
count, by a pandas UDF computing `lake.user_bucket`) and hands each partition's rows to
`job.pass_one` / `job.pass_two` in a Python worker, which return one row: the partition
and its pickled result (findings, population parts; never events). The job itself (window,
settings, population statistics) is a broadcast variable; reference snapshots are read by
each Python worker once (job.load_refs).

Pitfalls handled here (measured with pyspark 4.3 on Java 17): the session takes 12–18 s to
start, so one is kept per process (`session`); SPARK_LOCAL_IP, the UI and console progress
off, spark.local.dir under a temporary folder; the session time zone is UTC, so timestamps
reach pandas as naive UTC, and the lake's nanosecond times (which Spark will not read as
timestamps) are read as integer nanoseconds (job.canonical_events makes both site-zone
times again); partition columns a reader may infer from the `day=` and `bucket=` folders
are dropped.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emraudit.config import Config
from emraudit.engine.job import ScanJob, failure
from emraudit.errors import UserError
from emraudit.lake import Lake, user_bucket

_SESSIONS: dict[str, Any] = {}

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "false",     # one task per partition, as planned
    "spark.python.worker.reuse": "true",
    # the lake's times are Parquet TIMESTAMP(NANOS), which Spark refuses as a timestamp:
    # read as the integer nanoseconds they are (UTC), compared as such, converted in pandas
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}


def session(master: str = "local[2]", conf: dict[str, str] | None = None):
    """One Spark session per process and master (starting one costs seconds)."""
    if master in _SESSIONS:
        return _SESSIONS[master]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("the Spark engine needs pyspark: pip install 'emraudit[spark]' "
                        "(and a Java 17 runtime)") from None
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # pyspark 4.3 warns on every pandas UDF that pandas 3 is not fully supported; the
    # findings are tested equal to the local engine's (docs/CLUSTER.md)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    b = SparkSession.builder.master(master).appName("emraudit")
    settings = {**DEFAULT_CONF, "spark.local.dir": tempfile.mkdtemp(prefix="emraudit-spark-"),
                **(conf or {})}
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _SESSIONS[master] = spark
    return spark


class SparkExecutor:
    name = "spark"

    def __init__(self, spark):
        self.spark = spark

    @classmethod
    def from_config(cls, config: Config, master: str | None = None) -> "SparkExecutor":
        return cls(session(master or config.engine.master or "local[2]",
                           dict(config.engine.spark_conf)))

    def map(self, fn: Callable[..., dict], job: ScanJob, tasks: list,
            on_done: Callable[[int, dict], None] | None = None) -> list[dict]:
        """fn(job, task, rows) for every task, each task's rows grouped by Spark."""
        out: list[dict | None] = [None] * len(tasks)
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault((t.count, t.detectors), []).append(i)
        events = self._events(job)
        for (count, _dets), idx in groups.items():
            for i, res in self._run(fn, job, [tasks[i] for i in idx], count, events).items():
                out[idx[i]] = res
        empty = None
        for i, t in enumerate(tasks):       # a partition without events has no group
            if out[i] is None:
                if empty is None:
                    empty = _empty_rows(job)
                try:
                    out[i] = fn(job, t, empty)
                except Exception as exc:  # noqa: BLE001 - the partition's failure
                    out[i] = failure(exc)
            if on_done:
                on_done(i, out[i])
        return out

    def _events(self, job: ScanJob):
        from pyspark.sql import functions as F
        lake = Lake(Path(job.lake_root), job.tz)
        sd = job.start.tz_convert(job.tz).strftime("%Y-%m-%d")
        ed = job.window_end.tz_convert(job.tz).strftime("%Y-%m-%d")
        files = [str(f) for f in lake.event_files(set(job.committed), sd, ed)]
        if not files:
            return None
        df = self.spark.read.option("mergeSchema", "true").parquet(*files)
        keep = [c for c in df.columns if c not in job.exclude and c not in ("day", "bucket")]
        lo, hi = pd.Timestamp(job.start).value, pd.Timestamp(job.window_end).value
        return df.select(*keep).where((F.col("ts") >= F.lit(lo)) & (F.col("ts") < F.lit(hi)))

    def _run(self, fn, job: ScanJob, tasks: list, count: int, events) -> dict[int, dict]:
        if events is None:
            return {}
        from pyspark.sql import functions as F
        from pyspark.sql.functions import pandas_udf
        by_index = {t.index: k for k, t in enumerate(tasks)}
        bjob = self.spark.sparkContext.broadcast(job)
        bt = self.spark.sparkContext.broadcast(tasks)

        @pandas_udf("long")
        def part_of(user_id: pd.Series) -> pd.Series:
            if count <= 1:                  # one partition: every row in it (same length)
                return pd.Series(0, index=user_id.index, dtype="int64")
            return pd.Series(user_bucket(user_id, count), index=user_id.index)

        def run(rows: pd.DataFrame) -> pd.DataFrame:
            r = int(rows["_part"].iloc[0])
            task = next(t for t in bt.value if t.index == r)
            try:
                res = fn(bjob.value, task, rows)
            except Exception as exc:  # noqa: BLE001 - reported as the partition's failure
                res = failure(exc)
            return pd.DataFrame({"part": [r], "payload": [pickle.dumps(
                res, protocol=pickle.HIGHEST_PROTOCOL)]})

        n = max(count, 1)
        df = events.withColumn("_part", part_of(F.col("user_id")))
        rows = (df.repartition(n, "_part").groupBy("_part")
                .applyInPandas(run, schema="part long, payload binary").collect())
        bjob.unpersist()
        bt.unpersist()
        return {by_index[int(r["part"])]: pickle.loads(r["payload"]) for r in rows
                if int(r["part"]) in by_index}


def _empty_rows(job: ScanJob) -> pd.DataFrame:
    """No events, in the lake's columns (a partition Spark had no rows for)."""
    from emraudit.model import empty_table
    df = empty_table("access_log", job.tz)
    df["ts"] = pd.Series([], dtype="int64")
    return df.drop(columns=[c for c in job.exclude if c in df.columns])
