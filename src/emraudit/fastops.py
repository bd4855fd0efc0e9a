"""Vectorized helpers for the hot paths, where pandas' generic route is slow at 10M rows.

- `local_days`: site-local calendar days as 'YYYY-MM-DD' strings; formats each day once and
  lets pyarrow expand them (Series.dt.strftime formats row by row).
- `isin`: membership through pyarrow's hash set; pandas' Arrow-string `isin` turns the value
  set into a Python list element by element.
- `map_values`: Series.map that maps each distinct value of a coded (categorical) column once
  and never returns a categorical (pandas would, for a one-to-one mapping).
- `blank_text`: missing-or-whitespace test without trimmed copies.
- `duplicated_text`: Series.duplicated for text by dictionary encoding (no Python objects).
- `dense_unique`: np.unique of integer codes from a presence table, without a sort.
- `stable_order` / `cache_order`: a stable argsort of integers, and an order for the needles
  of a binary search, both by np.sort of value-and-position keys (numpy's argsorts are
  several times slower on millions of rows).
- `trimmed_ids` / `text_missing_where`: validation's id cleaning and blank masking by Arrow
  kernels.
- `is_value` / `factorize_text`: comparisons and factorizing on a coded column's codes.
- `positions_in`: index.get_indexer for text, through pyarrow's hash table.
- `iso_strings`: Timestamp.isoformat() of a column, formatting each second's digits by
  numpy and each distinct UTC offset once (a Timestamp object per value costs ~1 µs more).
- `id_hashes` / `in_sorted`: membership in a set of millions of ids kept as sorted 64-bit
  hashes (no Python set of strings; a hit may need confirming where a collision would matter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def local_days(ts: pd.Series, tz: str) -> pd.Series:
    """'YYYY-MM-DD' of each timestamp in the site timezone (missing stays missing): the one
    site-local-day helper (local_ns below gives the same day as a number of nanoseconds,
    for arithmetic on wall-clock times)."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        naive = ts.dt.tz_convert(tz).dt.tz_localize(None)
    else:
        naive = ts
    day = naive.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").view(np.int64)
    nat = day == np.iinfo(np.int64).min
    if nat.all():
        return pd.Series(pd.NA, index=ts.index, dtype="string")
    # nanosecond times span at most ~213,000 days: the offset from the first is the code
    # (no sort), one string is made per day of the span and pyarrow expands them, not per row
    lo, hi = int(day[~nat].min()), int(day[~nat].max())
    code = np.where(nat, 0, day - lo)
    names = np.datetime_as_string(np.arange(lo, hi + 1).astype("datetime64[D]"), unit="D")
    codes = pa.array(code.astype(np.int32), mask=nat)
    text = pa.DictionaryArray.from_arrays(codes, pa.array(names.tolist(), pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(text.cast(pa.large_string())), index=ts.index)


_HOUR_NS = 3_600 * 10**9


def utc_ns(ts: pd.Series) -> np.ndarray:
    """Instants as int64 nanoseconds since the epoch (UTC); naive times are taken as they are."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(ts.dtype):
        if getattr(ts.dtype, "unit", "ns") != "ns":
            ts = ts.dt.as_unit("ns")
        return np.asarray(ts.array.asi8, dtype=np.int64)
    return pd.to_datetime(ts).astype("datetime64[ns]").to_numpy().astype("int64")


def local_ns(ts: pd.Series, tz: str | None = None) -> np.ndarray:
    """Wall-clock nanoseconds in `tz` (default: the series' own timezone), so day
    (`// DAY_NS`) and hour are site-local; naive times are taken as they are. The
    site-local day as a number, where local_days gives it as text.

    The UTC offset is looked up once per distinct hour (offsets change on hour boundaries),
    through a dense table over the span, so 10 million events cost one gather, not a tz
    conversion each."""
    t = utc_ns(ts)
    own = getattr(ts.dtype, "tz", None)
    tz = (tz or own) if own is not None else None
    if tz is None or len(t) == 0:
        return t
    h = t // _HOUR_NS
    h0, h1 = int(h.min()), int(h.max())
    if h1 - h0 > 2_000_000:         # more than ~228 years: convert directly
        return local_ns_slow(ts.dt.tz_convert(tz))
    hours = np.arange(h0, h1 + 1, dtype=np.int64) * _HOUR_NS
    wall = pd.DatetimeIndex(hours.view("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)
    off = wall.tz_localize(None).asi8 - hours
    return t + off[h - h0]


def local_ns_slow(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().astype("int64")


def iso_strings(ts: pd.Series) -> np.ndarray:
    """Per value, exactly what `pd.Timestamp(value).isoformat()` gives (object array):
    'YYYY-MM-DDTHH:MM:SS', then '.ffffff' when there are microseconds ('.fffffffff' when
    nanoseconds), then the UTC offset of a zone-aware value ('+08:00')."""
    s = pd.Series(ts)
    aware = isinstance(s.dtype, pd.DatetimeTZDtype)
    wall = s.dt.tz_localize(None) if aware else s
    w = wall.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(w)
    ns = w.view(np.int64)
    frac = ns % 1_000_000_000                       # >= 0: before 1970 too
    out = np.datetime_as_string((ns - frac).view("datetime64[ns]"), unit="s").astype(object)
    sub = frac % 1000 != 0
    micro = ~sub & (frac != 0)
    if sub.any():
        out[sub] += "." + np.char.zfill(frac[sub].astype(str), 9).astype(object)
    if micro.any():
        out[micro] += "." + np.char.zfill((frac[micro] // 1000).astype(str), 6).astype(object)
    if aware:
        utc = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        off = (ns - utc.view(np.int64)) // 1_000_000_000
        codes, uniq = pd.factorize(off)
        texts = np.asarray([_offset_text(int(o)) for o in uniq], dtype=object)
        if len(texts):
            out[codes >= 0] += texts[codes[codes >= 0]]
    out[nat] = "NaT"
    return out


def _offset_text(seconds: int) -> str:
    """'+HH:MM' (or '+HH:MM:SS'), as datetime.isoformat writes a UTC offset."""
    sign = "-" if seconds < 0 else "+"
    h, rest = divmod(abs(seconds), 3600)
    m, sec = divmod(rest, 60)
    return f"{sign}{h:02d}:{m:02d}" + (f":{sec:02d}" if sec else "")


def isin(values: pd.Series | pd.Index | np.ndarray, value_set) -> np.ndarray:
    """Boolean array: is each value in `value_set` (any iterable / array / Series)."""
    left = _text(values) if not isinstance(values, pa.Array) else values
    right = pd.Series(value_set if not isinstance(value_set, (set, frozenset))
                      else list(value_set))
    if len(right) == 0 or len(left) == 0:
        return np.zeros(len(left), dtype=bool)
    right = _text(right)
    res = pc.is_in(left, value_set=right, skip_nulls=True)
    return res.to_numpy(zero_copy_only=False).astype(bool)


def values_of(col: pd.Series) -> list:
    """A column's values as a list, missing ones (None, NaN, NA) as None: for a loop over
    a night's values, where Series.map on Arrow strings tries to make an Arrow column of
    what it returns."""
    values = col.tolist()
    for i in np.flatnonzero(col.isna().to_numpy()).tolist():
        values[i] = None
    return values


def text_fields(df: pd.DataFrame, key: str, wanted, cols) -> dict[str, dict]:
    """{key: {col: text or None}} of the rows of `df` whose `key` is among `wanted` (the last
    row of a key wins), for the `cols` it has: a night's thousands of users with findings,
    read as column lists rather than a dict per row."""
    cols = [c for c in cols if c in df.columns]
    rows = df.loc[isin(df[key].astype(str), set(map(str, wanted))), [key, *cols]] \
        .drop_duplicates(key, keep="last")
    texts = [[None if pd.isna(v) else str(v) for v in rows[c].tolist()] for c in cols]
    return {str(k): dict(zip(cols, vals)) for k, *vals in zip(rows[key].tolist(), *texts)}


def map_values(s: pd.Series, mapping) -> pd.Series:
    """`s.map(mapping)` with a plain (non-categorical) result, on `s`'s index."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s.map(mapping)
    per_cat = pd.Series(s.cat.categories, dtype=object).map(mapping)
    codes = s.cat.codes.to_numpy()
    missing = codes < 0
    if not len(per_cat):
        return pd.Series(np.nan, index=s.index, dtype=object).map(mapping)
    out = per_cat.iloc[np.where(missing, 0, codes)]
    out.index = s.index
    if missing.any():
        out = out.mask(missing)
    return out


def is_value(s: pd.Series, value: str) -> np.ndarray:
    """Boolean array: `s == value`, missing counting as False; on a coded (categorical)
    column one comparison of integer codes, no strings made."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        if value not in cats:
            return np.zeros(len(s), dtype=bool)
        return s.cat.codes.to_numpy() == cats.get_loc(value)
    return (s.astype("string") == value).fillna(False).to_numpy(dtype=bool)


def factorize_text(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values as str objects) of a text column; a coded column is
    factorized on its codes without turning millions of rows into strings."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes, uniq = pd.factorize(s)
    else:
        codes, uniq = pd.factorize(s.astype("string"))
    return np.asarray(codes, dtype=np.int64), np.asarray(pd.Index(uniq).astype(str), dtype=object)


def _text(values) -> pa.Array | pa.ChunkedArray:
    """Text values (Series, Index, array, list) as Arrow large strings, missing as null."""
    return pa.array(pd.Series(values).astype("string"), type=pa.large_string())


def _one_chunk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """pa.array of a Series gives a ChunkedArray when the Series was concatenated."""
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def blank_text(s: pd.Series) -> np.ndarray:
    """Boolean array: is each value missing, empty or only whitespace? pyarrow's length and
    is-space kernels (the whitespace pandas' str.strip removes from Arrow strings), without
    making a trimmed copy of every value."""
    arr = _text(s)
    blank = pc.or_kleene(pc.equal(pc.utf8_length(arr), 0), pc.utf8_is_space(arr))
    return np.asarray(pc.fill_null(blank, True), dtype=bool)


def trimmed_ids(s: pd.Series) -> pa.Array:
    """Id text trimmed, a spreadsheet's float-looking id ('1234.0') without its '.0', blanks
    missing: Arrow kernels on the column (the pandas route copied it three times, masking
    even when nothing was blank)."""
    arr = pc.utf8_trim_whitespace(_one_chunk(_text(s)))
    if pc.any(pc.ends_with(arr, ".0")).as_py():
        # \p{Nd}: any decimal digit, as Python's \d (RE2's \d is ASCII only)
        arr = pc.replace_substring_regex(arr, r"^(\p{Nd}+)\.0$", r"\1")
    empty = pc.equal(pc.utf8_length(arr), 0)
    if pc.any(empty).as_py():
        arr = pc.if_else(empty, pa.scalar(None, arr.type), arr)
    return arr


def text_missing_where(s: pd.Series, mask: np.ndarray) -> pd.Series:
    """A text column with missing values where `mask` holds: one Arrow if_else (pandas'
    `mask` on Arrow strings takes a slower path through its own replace)."""
    arr = _one_chunk(_text(s))
    out = pc.if_else(pa.array(np.asarray(mask, dtype=bool)), pa.scalar(None, arr.type), arr)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=s.index)


def duplicated_text(s: pd.Series) -> np.ndarray:
    """`s.duplicated(keep="first")` for a text column, through pyarrow's dictionary
    encoding: codes are handed out in order of first appearance, so a value repeats exactly
    where its code is not above every code before it."""
    arr = _one_chunk(_text(s))
    if arr.null_count or not len(arr):
        return pd.Series(s).duplicated(keep="first").to_numpy(dtype=bool)
    codes = pc.dictionary_encode(arr).indices.to_numpy(zero_copy_only=False)
    before = np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
    return codes <= before


def positions_in(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in `index` (distinct strings), -1 when missing or absent.

    A pyarrow hash look-up (pandas' get_indexer first turns Arrow strings into Python
    objects); a coded column looks its categories up once."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_cat = positions_in(pd.Series(values.cat.categories), index)
        return np.append(per_cat, -1)[values.cat.codes.to_numpy()]   # code -1: missing
    if len(values) == 0 or len(index) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    arr, known = _one_chunk(_text(values)), _one_chunk(_text(index))
    found = pc.index_in(arr, value_set=known, skip_nulls=True)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def dense_unique(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(codes, return_index=True, return_inverse=True) for non-negative integers:
    from a presence table when the codes are dense enough (no sort of the millions of
    values), else np.unique. Returns (distinct codes ascending, a position of each —
    any occurrence, the values are equal — and each value's index among them)."""
    n = len(codes)
    if not n:
        return codes, codes, codes
    top = int(codes.max()) + 1
    if top > max(4 * n, 1 << 20):
        uniq, first, inv = np.unique(codes, return_index=True, return_inverse=True)
        return uniq, first, inv.reshape(-1)
    where = np.full(top, -1, dtype=np.int64)
    where[codes] = np.arange(n)
    uniq = np.flatnonzero(where >= 0)
    remap = np.zeros(top, dtype=np.int64)
    remap[uniq] = np.arange(len(uniq))
    return uniq, where[uniq], remap[codes]


def stable_order(values: np.ndarray) -> np.ndarray:
    """np.argsort(values, kind="stable") for integers. When value range and row count fit
    in 62 bits together, each value is packed above its position and the keys sorted with
    np.sort, which is several times faster on millions of rows than numpy's stable
    argsorts (timsort; radix for 16 bits, which misses the cache) and equal to them: equal
    values keep their order because the positions break the tie."""
    v = np.asarray(values)
    n = len(v)
    if n < 2:
        return np.arange(n, dtype=np.intp)
    lo, hi = int(v.min()), int(v.max())
    bits = (n - 1).bit_length()
    if (hi - lo).bit_length() + bits > 62:
        return np.argsort(v, kind="stable")
    key = (v.astype(np.int64) - lo) << bits
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    key &= (1 << bits) - 1
    return key.astype(np.intp, copy=False)


def cache_order(values: np.ndarray) -> np.ndarray:
    """A permutation that puts integer `values` in ascending order of their high bits: for
    needles of a binary search, which then walk the haystack in order (many times faster
    than random look-ups). Not a sort: any order of the needles gives the same answers."""
    v = np.asarray(values)
    n = len(v)
    if n < 2:
        return np.arange(n, dtype=np.intp)
    bits = (n - 1).bit_length()
    lo = int(v.min())
    shift = max(0, (int(v.max()) - lo).bit_length() + bits - 62)
    key = ((v.astype(np.int64) - lo) >> shift) << bits if v.dtype != np.uint64 else \
        ((v - np.uint64(lo)) >> np.uint64(shift)).astype(np.int64) << bits
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    key &= (1 << bits) - 1
    return key.astype(np.intp, copy=False)


def id_hashes(values) -> np.ndarray:
    """64-bit hashes of ids taken as text (missing ids hash as the empty string).

    Ids of at most 16 bytes (nearly all: sequence numbers, UUIDs without dashes are 32) are
    read straight from the Arrow buffers as two 64-bit words and mixed with their length;
    longer ones take pandas' SipHash. Either way a value always gets the same hash, whatever
    it is batched with. (Pandas' route turns every id into a Python string first: 6 s for
    10M ids.)"""
    text = pd.Series(values).astype("string").fillna("")
    arr = _one_chunk(pa.array(text, type=pa.large_string()))
    lens = np.asarray(pc.binary_length(arr), dtype=np.int64)
    short = lens <= 16
    if short.all():
        return _packed_hashes(arr, lens)
    out = np.empty(len(arr), dtype=np.uint64)
    at = np.flatnonzero(short)
    if len(at):
        out[at] = _packed_hashes(arr.take(pa.array(at)), lens[at])
    at = np.flatnonzero(~short)
    out[at] = pd.util.hash_pandas_object(text.iloc[at], index=False).to_numpy()
    return out


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: every input bit reaches every output bit."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _packed_hashes(arr: pa.Array, lens: np.ndarray) -> np.ndarray:
    """Hashes of strings of at most 16 bytes: the bytes, zero-padded, as two words."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n]
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    block = np.zeros((n, 16), dtype=np.uint8)
    for j in range(int(lens.max()) if n else 0):    # one column of bytes at a time
        has = np.flatnonzero(lens > j)
        block[has, j] = data[offsets[has] + j]
    words = block.view(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(words[:, 0] ^ _mix(words[:, 1] ^ (lens.astype(np.uint64) * _GOLDEN)))


def in_sorted(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Boolean array: is each hash in the sorted array."""
    if not len(sorted_hashes):
        return np.zeros(len(hashes), dtype=bool)
    if len(hashes) < 4096:
        pos = np.searchsorted(sorted_hashes, hashes).clip(max=len(sorted_hashes) - 1)
        return sorted_hashes[pos] == hashes
    # needles in order walk the haystack in order (cache-friendly: several times faster)
    order = cache_order(hashes)
    needles = hashes[order]
    pos = np.searchsorted(sorted_hashes, needles).clip(max=len(sorted_hashes) - 1)
    out = np.empty(len(hashes), dtype=bool)
    out[order] = sorted_hashes[pos] == needles
    return out
