"""Column kernels the connector profile steps are built from: vectorized over a whole column.

Regexes, date arithmetic and placeholder tests run as pyarrow kernels (RE2) on the column's
own Arrow array, or on its distinct values only (`via_dictionary`): log columns repeat a lot
(dates, action codes, content words), so the work is a few thousand values, not every row.
Where RE2 cannot run a pattern (a look-ahead), Python's `re` runs once per distinct value.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from emraudit.timeparse import cache_horolog_days


def contains(st: pd.Series, rx: str, ignore_case: bool) -> pd.Series:
    """Where `rx` matches: one RE2 kernel over the column, or — for a pattern RE2 cannot run
    (a look-ahead) — Python's `re` once per distinct value, never once per row."""
    def on_values(u: pd.Series) -> pd.Series:
        try:
            m = pc.match_substring_regex(as_arrow(u), rx, ignore_case=ignore_case)
            return pd.Series(m.to_numpy(zero_copy_only=False), dtype=object)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            comp = re.compile(rx, re.I if ignore_case else 0)
            return pd.Series([comp.search(str(v)) is not None for v in u], dtype=object)
    return via_dictionary(st, on_values).fillna(False).astype(bool)


def via_dictionary(s: pd.Series, fn) -> pd.Series:
    """`fn` (a vectorized function of a Series) computed on the distinct values of `s` only
    and spread back to the rows: log columns repeat a lot (dates, action codes, content
    words), so regexes and date arithmetic run on a few thousand values, not every row."""
    arr = as_arrow(s)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(arr)
    uniques = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([enc.dictionary])))
    res = fn(uniques).reset_index(drop=True)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = res.reindex(codes)                   # -1 is no label: missing
    out.index = s.index
    return out


def regex_group(st: pd.Series, rx: str, groups: str = "\\1") -> pd.Series:
    """The (first) group of `rx` in each value, missing where it does not match. One RE2
    replace over the column; Python's `re` per distinct value when RE2 cannot run it."""
    def on_values(u: pd.Series) -> pd.Series:
        arr = as_arrow(u)
        try:
            hit = pc.match_substring_regex(arr, "(?s)" + rx)
            got = pc.replace_substring_regex(arr, "(?s)^.*?" + rx + ".*$", groups)
            out = pc.if_else(pc.fill_null(hit, False), got, pa.scalar(None, arr.type))
            return pd.Series(pd.arrays.ArrowStringArray(out))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            comp = re.compile(rx, re.S)

            def first(v: str):
                m = comp.search(v)
                return next((g for g in m.groups() if g is not None), None) if m else None
            return pd.Series([first(str(v)) for v in u], dtype="string")
    res = via_dictionary(st, on_values).astype("string")
    return res.mask(res.str.strip() == "", pd.NA)


def blank(s: pd.Series) -> pd.Series:
    """Where a value is missing or only white space."""
    st = s.astype("string")
    return (st.isna() | (st.str.strip() == "")).fillna(True).astype(bool)


def mask_placeholders(s: pd.Series, placeholders: list[str]) -> pd.Series:
    """Values equal (after trimming) to a placeholder become missing; pyarrow kernels on the
    column's own Arrow array (no copies unless something is masked)."""
    values = sorted({p.strip() for p in placeholders})
    arr = as_arrow(s)
    # trimming copies the column: only do it when values are padded (CHAR columns pad all
    # their values, so a look at the first ones tells)
    head = arr.slice(0, 2000).to_pylist()
    padded = any(v is not None and v != v.strip() for v in head)
    hit = pc.is_in(pc.utf8_trim_whitespace(arr) if padded else arr,
                   value_set=pa.array(values, arr.type))
    if not pc.any(hit).as_py():
        return s if arrow_backed(s) else pd.Series(pd.arrays.ArrowStringArray(arr), index=s.index)
    out = pc.if_else(hit, pa.scalar(None, arr.type), arr)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=s.index)


def arrow_backed(s: pd.Series) -> bool:
    """Whether the column is already Arrow-backed text (then `as_arrow` copies nothing)."""
    return isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"


def as_arrow(s: pd.Series) -> pa.ChunkedArray:
    """The column as an Arrow string array (zero-copy when it already is one)."""
    if not arrow_backed(s):
        s = s.astype(pd.StringDtype("pyarrow"))
    arr = s.array.__arrow_array__()
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def combine(raw: pd.DataFrame, spec: dict) -> pd.Series:
    """One column built from several source columns: their join (`columns`, `sep`,
    `prefix`), or a timestamp from a `date` and a `time` column (see the combine step)."""
    if spec.get("columns"):
        parts = [raw[c].astype("string").fillna("") for c in spec["columns"]]
        res = parts[0]
        for p in parts[1:]:
            res = res + spec.get("sep", " ") + p
        res = res.str.strip()
        empty = res == ""
        if spec.get("prefix"):
            res = spec["prefix"] + res
        return res.mask(empty, pd.NA)
    date = raw[spec["date"]].astype("string").str.strip()
    d = via_dictionary(date, lambda u: _date_part(u, spec.get("date_kind", "auto")))
    given = ~blank(date)
    if spec.get("time"):
        time = raw[spec["time"]].astype("string").str.strip()
        tp = via_dictionary(time, lambda u: _time_part(u, spec.get("time_kind", "auto")))
        res = (d + tp).astype("datetime64[ns]")
        given |= ~blank(time)
        shown = spec["date"] + "=" + date.fillna("") + " " + spec["time"] + "=" + time.fillna("")
    else:
        res = d.astype("datetime64[ns]")
        shown = spec["date"] + "=" + date.fillna("")
    bad = res.isna() & given
    if bad.any():
        # keep what could not be combined visible: validation quarantines it with the text
        # ("unparseable time in 'ts': 日期=abc 时间=08:00") instead of "missing 'ts'"
        return res.dt.strftime("%Y-%m-%d %H:%M:%S.%f").astype("string").mask(bad, shown)
    return res


def _date_part(s: pd.Series, kind: str) -> pd.Series:
    """Dates as naive midnight timestamps; `$H` day counts where the values are small integers."""
    res = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    isnum = s.str.fullmatch(r"\d{1,6}").fillna(False).astype(bool)
    if kind in ("auto", "horolog"):
        h = isnum if kind == "auto" else s.notna()
        days = pd.to_numeric(s.where(h), errors="coerce")
        h &= (days >= 0) & (days <= 100_000)          # 1840-12-31 … 2114: anything else is noise
        if h.any():
            res[h] = cache_horolog_days(s[h]).astype("datetime64[ns]")
    if kind in ("auto", "text"):
        t = ~isnum & s.notna() if kind == "auto" else s.notna()
        if t.any():
            p = pd.to_datetime(s[t].str.replace("/", "-", regex=False), format="mixed",
                               errors="coerce")
            if not str(p.dtype).startswith("datetime64[ns"):
                p = p.where((p >= pd.Timestamp.min) & (p <= pd.Timestamp.max))
                p = p.astype("datetime64[ns]")
            res[t] = p.dt.normalize()
    return res


def _time_part(s: pd.Series, kind: str) -> pd.Series:
    """Times of day as timedeltas: seconds-of-day counts (`$H` second part) where numeric,
    else h:mm[:ss[.fff]]; anything outside one day is NaT."""
    res = pd.Series(pd.NaT, index=s.index, dtype="timedelta64[ns]")
    isnum = s.str.fullmatch(r"\d{1,5}").fillna(False).astype(bool)
    if kind in ("auto", "seconds"):
        n = isnum if kind == "auto" else s.notna()
        secs = pd.to_numeric(s.where(n), errors="coerce")
        n &= (secs >= 0) & (secs < 86400)
        if n.any():
            res[n] = pd.to_timedelta(secs[n], unit="s")
    if kind in ("auto", "text"):
        t = ~isnum & s.notna() if kind == "auto" else s.notna()
        if t.any():
            parts = s[t].str.extract(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")
            h = pd.to_numeric(parts[0], errors="coerce")
            m = pd.to_numeric(parts[1], errors="coerce")
            sec = pd.to_numeric(parts[2], errors="coerce").fillna(0)
            ok = (h < 24) & (m < 60) & (sec < 61)
            total = (h * 3600 + m * 60 + sec).where(ok)
            res[t] = pd.to_timedelta(total, unit="s")
    return res


def json_key(s: pd.Series, key: str) -> pd.Series:
    """A top-level scalar from JSON text, by a vectorized regex (no per-row json.loads)."""
    rx = r'"' + re.escape(key) + r'"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?[\d.]+|true|false))'
    return regex_group(s, rx, "\\1\\2")
