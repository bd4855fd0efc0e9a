"""Coverage: how complete each source's log is, per day.

Vendor logs are often incomplete (views logged only for non-attending users, terminals
recorded as `UNKNOW`, a source that silently stops). Rather than assume completeness, ingest
records per source and day the number of events and the share of rows carrying each
optional field; `coverage_report` adds the days with no events inside the source's span
(gaps) and days far below the source's usual volume, so a reader can see what the
findings could not have seen.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from emraudit.model import TABLES
from emraudit.fastops import blank_text, local_days

# optional access_log fields worth measuring (columns with a default are always "present")
# (site_id too: the ingest fills it from the configuration when a source has none)
COVERAGE_FIELDS = tuple(c.name for c in TABLES["access_log"].columns
                        if not c.required and c.default is None
                        and c.name not in ("event_id", "site_id"))
LOW_SHARE_OF_MEDIAN = 0.2    # a day with fewer events than this share of the median is "low"


def _present(s: pd.Series) -> pd.Series:
    """A value that is not missing, empty or only whitespace (pyarrow's definition, as
    pandas' str.strip on Arrow strings uses), tested without making trimmed copies."""
    if isinstance(s.dtype, pd.CategoricalDtype):     # per category; code -1 is missing
        per_cat = np.append(_present(pd.Series(s.cat.categories)).to_numpy(), False)
        return pd.Series(per_cat[s.cat.codes.to_numpy()], index=s.index)
    if pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        return pd.Series(~blank_text(s), index=s.index)
    return s.notna()


def day_coverage(accepted: pd.DataFrame, source: str, tz: str,
                 day: pd.Series | None = None) -> pd.DataFrame:
    """Per site-calendar day of `accepted` events: events and, as JSON, each optional field's
    share of rows with a value (0..1, 4 decimals). A pure function of the rows given (and of
    their site-local days `day`, when the caller has computed them)."""
    cols = ["source", "day", "events", "fields"]
    if accepted is None or len(accepted) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "events" else "string")
                             for c in cols})
    if day is None:
        ts = accepted["ts"]
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            from emraudit.timeparse import parse_timestamps
            ts = parse_timestamps(ts, tz)
        day = local_days(ts, tz)
    present = pd.DataFrame({f: (_present(accepted[f]) if f in accepted.columns
                                else pd.Series(False, index=accepted.index))
                            for f in COVERAGE_FIELDS}, index=accepted.index)
    grouped = present.groupby(day.to_numpy(), sort=True)
    shares = grouped.mean().round(4)
    events = grouped.size()
    fields = [json.dumps({k: float(v) for k, v in row.items()}, sort_keys=True)
              for row in shares.to_dict("records")]
    return pd.DataFrame({"source": pd.Series(source, index=range(len(events)), dtype="string"),
                         "day": pd.Series(events.index.astype(str), dtype="string"),
                         "events": events.to_numpy(np.int64),
                         "fields": pd.Series(fields, dtype="string")})


def coverage_report(store, config, source: str | None = None) -> pd.DataFrame:
    """Every source's days from the store: events, field shares (dict), status.

    status is `ok`, `low` (fewer than LOW_SHARE_OF_MEDIAN × the source's median day) or `gap`
    (no events on a day between the source's first and last day, for sources where events
    are expected every day: access_log sources unless `expected_daily = false`).
    """
    from emraudit.store import coverage as cov_table

    where = cov_table.c.source == source if source else None
    raw = store.read_table(cov_table, where, cov_table.c.day)
    out_cols = ["source", "day", "events", "status", "fields"]
    if raw.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in out_cols})
    frames = []
    for src, part in raw.groupby("source", sort=True):
        part = part.sort_values("day")
        cfg_src = config.sources.get(src) if config is not None else None
        expected = True
        if cfg_src is not None:
            expected = cfg_src.expected_daily if cfg_src.expected_daily is not None else \
                config.source_table(src) == "access_log"
        days = pd.to_datetime(part["day"])
        full = pd.date_range(days.min(), days.max(), freq="D")
        present = part.assign(day=days).set_index("day")
        idx = full if expected else pd.DatetimeIndex(days)
        df = present.reindex(idx)
        events = df["events"].fillna(0).astype("int64")
        median = float(events[events > 0].median()) if (events > 0).any() else 0.0
        status = np.where(events == 0, "gap",
                          np.where(events < LOW_SHARE_OF_MEDIAN * median, "low", "ok"))
        fields = df["fields"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
        frames.append(pd.DataFrame({"source": src, "day": idx.strftime("%Y-%m-%d"),
                                    "events": events.to_numpy(), "status": status,
                                    "fields": fields.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def format_report(report: pd.DataFrame, fields: tuple[str, ...] | None = None) -> str:
    """A plain-text table: one line per source and day, field shares in percent."""
    if report.empty:
        return "no coverage recorded yet (run `emraudit ingest` first)"
    if fields is None:
        seen = set()
        for f in report["fields"]:
            seen.update(f)
        fields = tuple(f for f in COVERAGE_FIELDS if f in seen)
    head = f"{'source':20} {'day':10} {'events':>9} {'status':6} " + \
        " ".join(f"{f[:10]:>10}" for f in fields)
    lines = [head]
    rows = list(report.itertuples(index=False))
    i = 0
    while i < len(rows):
        r = rows[i]
        if r.status == "gap":      # a run of empty days is one line
            j = i
            while j + 1 < len(rows) and rows[j + 1].status == "gap" and \
                    rows[j + 1].source == r.source:
                j += 1
            if j > i:
                lines.append(f"{str(r.source)[:20]:20} {r.day:10} {0:>9} gap    "
                             f"… {rows[j].day} ({j - i + 1} days without events)")
                i = j + 1
                continue
        shares = " ".join(f"{(str(round(100 * r.fields[f])) + '%') if f in r.fields else '-':>10}"
                          for f in fields)
        lines.append(f"{str(r.source)[:20]:20} {r.day:10} {int(r.events):>9,} {r.status:6} {shares}")
        i += 1
    gaps = report[report["status"] == "gap"]
    if len(gaps):
        lines.append("")
        for src, part in gaps.groupby("source"):
            lines.append(f"{src}: {len(part)} day(s) with no events: "
                         + ", ".join(part["day"].head(10)) + (" …" if len(part) > 10 else ""))
    return "\n".join(lines)
