"""Vectorized timestamp parsing for the formats hospital exports use.

Seen in the field: `2025-07-01 08:03:15`, `2025/07/01 8:03`, `20250701080315`, ISO-8601 with
an offset or `Z`, epoch seconds and epoch milliseconds, and Caché `$H` day counts (handled by
profiles). Naive values are read in the site timezone; aware ones are converted to it. The
common layouts go through fast fixed-format parsers; only leftovers take the slow mixed path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"
_FAST_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
                 "%Y-%m-%d %H:%M", "%Y-%m-%d")
UNIT = "ns"
# fixed-width layouts one pyarrow kernel parses: (format, width); the others go through pandas
_ARROW_FORMATS = (("%Y-%m-%d %H:%M:%S", 19), ("%Y-%m-%d", 10))


def _localize(ts: pd.Series, tz: str) -> pd.Series:
    return ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")


def parse_timestamps(s: pd.Series, tz: str) -> pd.Series:
    """Parse a column to `datetime64[ns, tz]`; values that cannot be parsed become NaT."""
    dtype = f"datetime64[{UNIT}, {tz}]"
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(tz).astype(dtype)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return _localize(s, tz).astype(dtype)
    out = pd.Series(pd.NaT, index=s.index, dtype=dtype)
    if len(s) == 0:
        return out
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _from_epoch(pd.to_numeric(s, errors="coerce"), tz).astype(dtype)
    fast = parse_fixed_width(s)
    if fast is not None:
        return _localize(fast, tz).astype(dtype)
    st = s.astype("string").str.strip()
    st = st.mask(st == "", pd.NA)
    todo = st.notna()

    # all digits: compact YYYYMMDDhhmmss / YYYYMMDD, or epoch seconds / milliseconds
    digits = todo & st.str.fullmatch(r"\d+(\.\d+)?").fillna(False)
    if digits.any():
        d = st[digits]
        lens = d.str.len()
        compact14 = d.str.fullmatch(r"(19|20|21)\d{12}").fillna(False)
        compact8 = d.str.fullmatch(r"(19|20|21)\d{6}").fillna(False) & (lens == 8)
        if compact14.any():
            p = pd.to_datetime(d[compact14], format="%Y%m%d%H%M%S", errors="coerce")
            out[p.index] = _localize(p, tz).astype(dtype)
        if compact8.any():
            p = pd.to_datetime(d[compact8], format="%Y%m%d", errors="coerce")
            out[p.index] = _localize(p, tz).astype(dtype)
        epoch = ~(compact14 | compact8)
        if epoch.any():
            num = pd.to_numeric(d[epoch], errors="coerce")
            out[num.index] = _from_epoch(num, tz).astype(dtype)
        todo &= ~digits

    if todo.any():
        rest = st[todo].str.replace("/", "-", regex=False)
        aware = rest.str.contains(_OFFSET, regex=True).fillna(False)
        naive = rest[~aware]
        if len(naive):
            parsed = pd.Series(pd.NaT, index=naive.index, dtype="datetime64[ns]")
            left = naive
            for fmt in _FAST_FORMATS:
                p = _in_ns_range(pd.to_datetime(left, format=fmt, errors="coerce"))
                ok = p.notna()
                parsed[ok[ok].index] = p[ok]
                left = left[~ok]
                if left.empty:
                    break
            if len(left):
                p = _in_ns_range(pd.to_datetime(left, format="mixed", errors="coerce"))
                parsed[p.index] = p
            out[parsed.index] = _localize(parsed, tz).astype(dtype)
        if aware.any():
            a = rest[aware]
            p = _in_ns_range(pd.to_datetime(a, format="ISO8601", errors="coerce", utc=True))
            miss = p.isna()
            if miss.any():
                p[miss] = _in_ns_range(pd.to_datetime(a[miss], format="mixed", errors="coerce",
                                                      utc=True))
            out[p.index] = p.dt.tz_convert(tz).astype(dtype)
    return out


def parse_fixed_width(s: pd.Series) -> pd.Series | None:
    """Naive times for a text column whose every non-blank value is a zero-padded
    `YYYY-MM-DD hh:mm:ss` (or every one a `YYYY-MM-DD`), parsed in one pyarrow kernel; None
    when any value is in another layout, is not a real date or is outside what nanoseconds
    hold, so that the general path parses (and quarantines) exactly as before.

    pyarrow's strptime rolls 2025-02-30 over to March 2: a parsed day of month must equal
    the text's, which is why only fixed-width text qualifies."""
    if not (isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow") or not len(s):
        return None
    arr = pc.utf8_trim_whitespace(pa.array(s.array))
    blank = pc.fill_null(pc.equal(arr, ""), True)
    arr = pc.if_else(blank, pa.scalar(None, arr.type), arr)
    n_blank = pc.sum(blank).as_py() or 0
    if n_blank == len(arr):
        return None
    lengths = pc.drop_null(pc.utf8_length(arr))
    width = pc.min(lengths).as_py()
    if width != pc.max(lengths).as_py():
        return None
    fmt = next((f for f, w in _ARROW_FORMATS if w == width), None)
    if fmt is None:
        return None
    parsed = pc.strptime(arr, format=fmt, unit="s", error_is_null=True)
    if parsed.null_count != n_blank:
        return None
    real_day = pc.equal(pc.day(parsed), pc.cast(pc.utf8_slice_codeunits(arr, 8, 10), pa.int64()))
    years = pc.year(parsed)
    if not pc.all(real_day).as_py() or pc.min(years).as_py() < 1678 \
            or pc.max(years).as_py() > 2261:
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False).astype("datetime64[ns]"),
                     index=s.index)


def _from_epoch(num: pd.Series, tz: str) -> pd.Series:
    """Epoch seconds (10 digits) or milliseconds (13 digits), told apart by magnitude."""
    vals = pd.to_numeric(num, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ms = np.abs(vals) >= 1e11
    secs = np.where(ms, vals / 1000.0, vals)
    ok = ~np.isnan(secs) & (np.abs(secs) < 8e9)
    ns = np.zeros(len(vals), dtype=np.int64)
    # milliseconds scale exactly; seconds keep their sub-second part to the nanosecond
    ns[ok & ms] = np.round(vals[ok & ms]).astype(np.int64) * 1_000_000
    ns[ok & ~ms] = np.round(vals[ok & ~ms] * 1e9).astype(np.int64)
    res = pd.Series(pd.to_datetime(ns, unit="ns", utc=True), index=num.index).where(ok)
    return res.dt.tz_convert(tz)


def _in_ns_range(p: pd.Series) -> pd.Series:
    """Parsed times outside what nanoseconds can hold (a mistyped year 207) become NaT,
    so that assigning them to a nanosecond column never fails."""
    if str(p.dtype).startswith("datetime64[ns"):
        return p
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    if isinstance(p.dtype, pd.DatetimeTZDtype):
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
    p = p.where((p >= lo) & (p <= hi))
    return p.astype(f"datetime64[ns, {p.dt.tz}]" if isinstance(p.dtype, pd.DatetimeTZDtype)
                    else "datetime64[ns]")


def cache_horolog_days(s: pd.Series) -> pd.Series:
    """Caché `$H` day counts (days since 1840-12-31) to naive dates."""
    num = pd.to_numeric(s, errors="coerce")
    return pd.Timestamp("1840-12-31") + pd.to_timedelta(num, unit="D")


def now(tz: str) -> pd.Timestamp:
    return pd.Timestamp.now(tz=tz)


__all__ = ["parse_timestamps", "parse_fixed_width", "cache_horolog_days", "now"]
