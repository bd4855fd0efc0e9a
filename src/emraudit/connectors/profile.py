"""Connector profiles: how one EMR's log columns and values map onto the canonical tables.

A profile is TOML data (see `src/emraudit/profiles/connectors/*.toml`, each documented by its
comments). Like a pySigma processing pipeline it is a list of declared steps, applied in this
order to every batch, all vectorized (Series.map, str ops, one pass per step):

1. `columns`   canonical column = source column (a rename; unmapped source columns are kept;
               source columns listed in `optional` may be absent from a file)
2. `combine`   build a column from several: date + time (Caché `$H` day counts and
               seconds-of-day understood), or a join of `columns` with `sep` and a `prefix`
3. `json`      pull a key out of a JSON text column (only where the target is still empty);
   `extract`   the first (group) of a regular expression on a text column, likewise
4. `missing`   placeholder values (`UNKNOW`, `0.0.0.0`, empty) become missing ("*": every column)
5. `values`    exact value maps (查看 → view); `action_raw` keeps the source's word
6. `patterns`  regular expressions for values no exact map covered (`^EMR\\.OP\\.Print` → print)
7. a failed `login` (outcome failure) becomes the canonical `login_failed`
8. `constants` fill a column that is absent or empty

A value no mapping covers keeps its raw word, so `model.validate` quarantines it with the
reason ("unknown action 'xxx'"): nothing is silently guessed. Which step produced each
canonical column is kept in `provenance(table)`, and per batch counts of how each action was
mapped go to the batch notes.

Layout of a profile file:

    [profile]                   # description; reader defaults: encoding, delimiter, format
                                #   (fhir: json | ndjson), watermark (sql)
    [access_log]                # one section per canonical table; tables without one pass
    columns = { ts = "操作时间" } #   through under their canonical names
    [access_log.values.action]
    "查看" = "view"

Unknown keys, unknown canonical columns and (once a source's header is known) mappings to
source columns that do not exist are `ConfigError`s naming the profile file and key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from emraudit.errors import ConfigError, SourceError
from emraudit.model import SOURCE_REF, TABLES
from emraudit.timeparse import cache_horolog_days

PROFILE_KEYS = {"description", "encoding", "delimiter", "format", "watermark"}
TABLE_KEYS = {"columns", "combine", "json", "extract", "missing", "values", "patterns",
              "constants", "ignore_case", "keep_raw", "optional"}
EXTRACT_KEYS = ("column", "regex")     # ordered: they name themselves in errors
JSON_KEYS = ("column", "key")
COMBINE_KEYS = {"date", "time", "date_kind", "time_kind", "columns", "sep", "prefix"}
DATE_KINDS = ("auto", "text", "horolog")
TIME_KINDS = ("auto", "text", "seconds")
ALL_COLUMNS = "*"   # `missing` key applying to every column


@dataclass
class TableRules:
    """The steps for one canonical table (see the module docstring for their order)."""

    table: str
    columns: dict[str, str] = field(default_factory=dict)          # canonical -> source
    combine: dict[str, dict] = field(default_factory=dict)         # canonical -> spec
    json: dict[str, dict] = field(default_factory=dict)            # canonical -> {column, key}
    extract: dict[str, dict] = field(default_factory=dict)         # canonical -> {column, regex}
    missing: dict[str, list[str]] = field(default_factory=dict)    # canonical|* -> placeholders
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    patterns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    ignore_case: bool = True
    keep_raw: bool = True
    optional: list[str] = field(default_factory=list)   # source columns that may be absent


@dataclass
class ConnectorProfile:
    """A parsed, validated profile. `file` is where it came from (for error messages)."""

    name: str
    file: str
    description: str = ""
    encoding: str | None = None
    delimiter: str | None = None
    format: str | None = None
    watermark: str | None = None
    tables: dict[str, TableRules] = field(default_factory=dict)

    def rules(self, table: str) -> TableRules:
        return self.tables.get(table) or TableRules(table)

    # --- the source columns a table needs --------------------------------------------------
    def source_columns(self, table: str) -> dict[str, str]:
        """Every source column the profile reads for `table`, keyed by the profile key naming it."""
        r = self.rules(table)
        need = {f"{table}.columns.{k}": v for k, v in r.columns.items() if v not in r.optional}
        for k, spec in r.combine.items():
            for part in ("date", "time"):
                if spec.get(part):
                    need[f"{table}.combine.{k}.{part}"] = spec[part]
            for i, c in enumerate(spec.get("columns") or []):
                need[f"{table}.combine.{k}.columns[{i}]"] = c
        for k, spec in r.json.items():
            need[f"{table}.json.{k}.column"] = spec["column"]
        for k, spec in r.extract.items():
            if spec["column"] not in r.optional:
                need[f"{table}.extract.{k}.column"] = spec["column"]
        return need

    def check_columns(self, table: str, source_columns: list[str], where: str) -> None:
        """Raise when the profile names a column the source lacks, or a required canonical
        column cannot be produced. `where` names the source (file or table) for the message."""
        have = set(source_columns)
        for key, col in self.source_columns(table).items():
            if col not in have:
                shown = ", ".join(list(source_columns)[:30]) or "(no columns)"
                raise ConfigError(f"maps to column '{col}', which {where} does not have "
                                  f"(it has: {shown})", file=self.file, key=key)
        produced = set(self.output_columns(table, source_columns))
        missing = [c for c in TABLES[table].required if c not in produced and c != "event_id"]
        if missing:
            shown = ", ".join(list(source_columns)[:30]) or "(no columns)"
            raise SourceError(f"missing required column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(m) for m in missing)} for table '{table}' "
                              f"after applying profile '{self.name}' (the source has: {shown})",
                              file=where)

    def output_columns(self, table: str, source_columns: list[str]) -> list[str]:
        r = self.rules(table)
        renamed = {v: k for k, v in r.columns.items()}
        out = [renamed.get(c, c) for c in source_columns]
        out += [k for k, v in r.columns.items() if v in source_columns]
        out += list(r.combine) + list(r.json) + list(r.extract) + list(r.constants)
        if r.keep_raw and table == "access_log" and "action" in out:
            out.append("action_raw")
        return list(dict.fromkeys(out))

    def provenance(self, table: str) -> dict[str, str]:
        """Which step produces each canonical column (an audit trail of the mapping)."""
        r = self.rules(table)
        prov: dict[str, str] = {}
        for k, v in r.columns.items():
            prov[k] = f"{self.name}: column '{v}'"
        for k, spec in r.combine.items():
            parts = [spec[p] for p in ("date", "time") if spec.get(p)] or spec.get("columns", [])
            prov[k] = f"{self.name}: combine {' + '.join(parts)}"
        for k, spec in r.json.items():
            prov.setdefault(k, f"{self.name}: json {spec['column']}.{spec['key']}")
        for k, spec in r.extract.items():
            prov.setdefault(k, f"{self.name}: extract /{spec['regex']}/ from {spec['column']}")
        for k, vals in r.missing.items():
            prov[k] = prov.get(k, f"{self.name}: column '{k}'" if k != ALL_COLUMNS else "*") + \
                f" → {', '.join(repr(v) for v in vals)} as missing"
        for k in r.values:
            prov[k] = prov.get(k, k) + " → values map"
        for k in r.patterns:
            prov[k] = prov.get(k, k) + " → patterns"
        for k in r.constants:
            prov[k] = prov.get(k, "") + (" or " if k in prov else "") + "constant"
        return prov

    # --- applying ----------------------------------------------------------------------------
    def apply(self, table: str, df: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
        """Map a frame of raw source columns (strings) onto canonical names and values."""
        r = self.rules(table)
        out = df
        if r.columns:
            # a source column that already carries a canonical name being produced by the
            # mapping would collide: the mapping wins, the stray column is dropped
            targets = set(r.columns)
            sources = set(r.columns.values())
            drop = [c for c in out.columns if c in targets and c not in sources]
            out = out.drop(columns=drop)
            inv: dict[str, list[str]] = {}
            for k, v in r.columns.items():
                if v in out.columns:     # absent ones are `optional` (checked on the header)
                    inv.setdefault(v, []).append(k)
            new = {}
            for v, ks in inv.items():
                for k in ks[1:]:          # one source column mapped to several canonical ones
                    new[k] = out[v]
            out = out.rename(columns={v: ks[0] for v, ks in inv.items()})
            if new:
                out = out.assign(**new)
        else:
            out = out.copy()
        for k, spec in r.combine.items():
            out[k] = _combine(out, df, spec)
        for k, spec in r.json.items():
            got = _json_key(df[spec["column"]], spec["key"])
            out[k] = out[k].where(~_blank(out[k]), got) if k in out.columns else got
        for k, spec in r.extract.items():
            if spec["column"] not in df.columns:      # an absent optional column
                continue
            got = _regex_group(df[spec["column"]], spec["regex"])
            out[k] = out[k].where(~_blank(out[k]), got) if k in out.columns else got
        for k, placeholders in r.missing.items():
            cols = [c for c in out.columns if c != SOURCE_REF] if k == ALL_COLUMNS else \
                [k] if k in out.columns else []
            for c in cols:
                out[c] = _mask_placeholders(out[c], placeholders)
        if table == "access_log" and r.keep_raw and "action" in out.columns:
            # the source's own word, before any mapping (kept where the source gave none)
            if "action_raw" not in out.columns:
                out["action_raw"] = out["action"].astype("string")
            else:
                out["action_raw"] = out["action_raw"].where(~_blank(out["action_raw"]),
                                                            out["action"].astype("string"))
        for k, mapping in r.values.items():
            if k not in out.columns:
                continue
            st = out[k].astype("string").str.strip()
            key = st.str.lower() if r.ignore_case else st
            hit = key.map(mapping)
            mapped = hit.notna()
            res = st.where(~mapped, hit.astype("string"))
            via_pattern = pd.Series(False, index=out.index)
            for rx, value in r.patterns.get(k, []):
                m = _contains(st, rx, r.ignore_case) & ~mapped & ~via_pattern
                res = res.mask(m, value)
                via_pattern |= m
            out[k] = res
            if notes is not None and k == "action" and len(st):
                left = int((~mapped & ~via_pattern & st.notna()).sum())
                notes.append(f"action: {int(mapped.sum())} by value map, "
                             f"{int(via_pattern.sum())} by pattern, {left} unmapped")
        for k, pats in r.patterns.items():
            if k in r.values or k not in out.columns:
                continue
            st = out[k].astype("string").str.strip()
            res = st
            done = pd.Series(False, index=out.index)
            for rx, value in pats:
                m = _contains(st, rx, r.ignore_case) & ~done
                res = res.mask(m, value)
                done |= m
            out[k] = res
        if table == "access_log" and "action" in out.columns and "outcome" in out.columns:
            # a failed login is its own canonical action
            failed = (out["action"].astype("string") == "login") & \
                (out["outcome"].astype("string").str.strip().str.lower() == "failure")
            if failed.any():
                out["action"] = out["action"].astype("string").mask(failed.fillna(False),
                                                                    "login_failed")
        for k, value in r.constants.items():
            if k in out.columns:
                out[k] = out[k].where(~_blank(out[k]), str(value))
            else:
                out[k] = pd.Series(str(value), index=out.index, dtype="string")
        return out   # extra source columns are kept as they are (DESIGN: never break a read)


# --- steps -----------------------------------------------------------------------------------

def _contains(st: pd.Series, rx: str, ignore_case: bool) -> pd.Series:
    """Where `rx` matches: one RE2 kernel over the column, or — for a pattern RE2 cannot run
    (a look-ahead) — Python's `re` once per distinct value, never once per row."""
    def on_values(u: pd.Series) -> pd.Series:
        try:
            m = pc.match_substring_regex(_arrow(u), rx, ignore_case=ignore_case)
            return pd.Series(m.to_numpy(zero_copy_only=False), dtype=object)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            comp = re.compile(rx, re.I if ignore_case else 0)
            return pd.Series([comp.search(str(v)) is not None for v in u], dtype=object)
    return _via_dictionary(st, on_values).fillna(False).astype(bool)


def _via_dictionary(s: pd.Series, fn) -> pd.Series:
    """`fn` (a vectorized function of a Series) computed on the distinct values of `s` only
    and spread back to the rows: log columns repeat a lot (dates, action codes, content
    words), so regexes and date arithmetic run on a few thousand values, not every row."""
    arr = _arrow(s)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(arr)
    uniques = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([enc.dictionary])))
    res = fn(uniques).reset_index(drop=True)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = res.reindex(codes)                   # -1 is no label: missing
    out.index = s.index
    return out


def _regex_group(st: pd.Series, rx: str, groups: str = "\\1") -> pd.Series:
    """The (first) group of `rx` in each value, missing where it does not match. One RE2
    replace over the column; Python's `re` per distinct value when RE2 cannot run it."""
    def on_values(u: pd.Series) -> pd.Series:
        arr = _arrow(u)
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
    res = _via_dictionary(st, on_values).astype("string")
    return res.mask(res.str.strip() == "", pd.NA)


def _blank(s: pd.Series) -> pd.Series:
    st = s.astype("string")
    return (st.isna() | (st.str.strip() == "")).fillna(True).astype(bool)


def _mask_placeholders(s: pd.Series, placeholders: list[str]) -> pd.Series:
    """Values equal (after trimming) to a placeholder become missing; pyarrow kernels on the
    column's own Arrow array (no copies unless something is masked)."""
    values = sorted({p.strip() for p in placeholders})
    arr = _arrow(s)
    # trimming copies the column: only do it when values are padded (CHAR columns pad all
    # their values, so a look at the first ones tells)
    head = arr.slice(0, 2000).to_pylist()
    padded = any(v is not None and v != v.strip() for v in head)
    hit = pc.is_in(pc.utf8_trim_whitespace(arr) if padded else arr,
                   value_set=pa.array(values, arr.type))
    if not pc.any(hit).as_py():
        return s if _arrow_backed(s) else pd.Series(pd.arrays.ArrowStringArray(arr), index=s.index)
    out = pc.if_else(hit, pa.scalar(None, arr.type), arr)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=s.index)


def _arrow_backed(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"


def _arrow(s: pd.Series) -> pa.ChunkedArray:
    """The column as an Arrow string array (zero-copy when it already is one)."""
    if not _arrow_backed(s):
        s = s.astype(pd.StringDtype("pyarrow"))
    arr = s.array.__arrow_array__()
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _combine(out: pd.DataFrame, raw: pd.DataFrame, spec: dict) -> pd.Series:
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
    d = _via_dictionary(date, lambda u: _date_part(u, spec.get("date_kind", "auto")))
    given = ~_blank(date)
    if spec.get("time"):
        time = raw[spec["time"]].astype("string").str.strip()
        tp = _via_dictionary(time, lambda u: _time_part(u, spec.get("time_kind", "auto")))
        res = (d + tp).astype("datetime64[ns]")
        given |= ~_blank(time)
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


def _json_key(s: pd.Series, key: str) -> pd.Series:
    """A top-level scalar from JSON text, by a vectorized regex (no per-row json.loads)."""
    rx = r'"' + re.escape(key) + r'"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?[\d.]+|true|false))'
    return _regex_group(s, rx, "\\1\\2")


# --- loading ---------------------------------------------------------------------------------

def builtin_profiles() -> list[str]:
    """Names of the profiles shipped inside the package."""
    root = resources.files("emraudit") / "profiles" / "connectors"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(ref: str, base: Path | None = None) -> ConnectorProfile:
    """A built-in profile by name, or a TOML file (relative paths against `base`)."""
    looks_like_path = ref.endswith(".toml") or "/" in ref or "\\" in ref
    if not looks_like_path:
        res = resources.files("emraudit") / "profiles" / "connectors" / f"{ref}.toml"
        if res.is_file():
            return parse_profile(res.read_bytes(), ref, f"profiles/connectors/{ref}.toml")
        raise ConfigError(f"unknown connector profile '{ref}' (built-in: "
                          f"{', '.join(builtin_profiles())}; or give a path to a .toml file)",
                          key="profile")
    p = Path(ref)
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.is_file():
        raise ConfigError("connector profile file not found", file=str(p), key="profile")
    return parse_profile(p.read_bytes(), p.stem, str(p))


def parse_profile(data: bytes, name: str, file: str) -> ConnectorProfile:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a valid TOML profile: {exc}", file=file) from None
    prof = ConnectorProfile(name=name, file=file)
    for top, val in doc.items():
        if top == "profile":
            _table(val, file, top)
            for k, v in val.items():
                if k not in PROFILE_KEYS:
                    raise ConfigError(f"unknown key (expected one of {', '.join(sorted(PROFILE_KEYS))})",
                                      file=file, key=f"profile.{k}")
                _str(v, file, f"profile.{k}")
                setattr(prof, k, v)
            if prof.format is not None and prof.format not in ("json", "ndjson"):
                raise ConfigError("expected 'json' or 'ndjson'", file=file, key="profile.format")
            if prof.delimiter is not None and (len(prof.delimiter.encode()) != 1):
                raise ConfigError("delimiter must be a single ASCII character", file=file,
                                  key="profile.delimiter")
            continue
        if top not in TABLES:
            raise ConfigError(f"unknown section (expected 'profile' or a canonical table: "
                              f"{', '.join(TABLES)})", file=file, key=top)
        prof.tables[top] = _parse_table(top, _table(val, file, top), file)
    return prof


def _table(v, file, key) -> dict:
    if not isinstance(v, dict):
        raise ConfigError("expected a table", file=file, key=key)
    return v


def _str(v, file, key) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"expected a string (got {v!r})", file=file, key=key)
    return v


def _string_pair(spec, keys: tuple[str, str], file, key) -> None:
    """A table of exactly these two string keys (the json and extract column specs)."""
    _table(spec, file, key)
    for sk, sv in spec.items():
        if sk not in keys:
            raise ConfigError(f"unknown key (expected {', '.join(keys)})", file=file,
                              key=f"{key}.{sk}")
        _str(sv, file, f"{key}.{sk}")
    if set(spec) != set(keys):
        raise ConfigError(f"expected both '{keys[0]}' and '{keys[1]}'", file=file, key=key)


def _canon(table: str, col: str, file: str, key: str) -> None:
    if col not in TABLES[table].names:
        raise ConfigError(f"'{col}' is not a column of the canonical table '{table}' (expected one "
                          f"of {', '.join(TABLES[table].names)})", file=file, key=key)


def _parse_table(table: str, sec: dict, file: str) -> TableRules:
    r = TableRules(table)
    for k, v in sec.items():
        key = f"{table}.{k}"
        if k not in TABLE_KEYS:
            raise ConfigError(f"unknown key (expected one of {', '.join(sorted(TABLE_KEYS))})",
                              file=file, key=key)
        if k == "optional":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError("expected a list of source column names", file=file, key=key)
            r.optional = list(v)
            continue
        if k in ("ignore_case", "keep_raw"):
            if not isinstance(v, bool):
                raise ConfigError(f"expected true or false (got {v!r})", file=file, key=key)
            setattr(r, k, v)
            continue
        _table(v, file, key)
        for col, spec in v.items():
            ck = f"{key}.{col}"
            if k == "missing" and col == ALL_COLUMNS:
                pass
            else:
                _canon(table, col, file, ck)
            if k == "columns":
                r.columns[col] = _str(spec, file, ck)
            elif k == "combine":
                _table(spec, file, ck)
                for sk, sv in spec.items():
                    if sk not in COMBINE_KEYS:
                        raise ConfigError(f"unknown key (expected one of "
                                          f"{', '.join(sorted(COMBINE_KEYS))})", file=file,
                                          key=f"{ck}.{sk}")
                if not spec.get("date") and not spec.get("columns"):
                    raise ConfigError("expected 'date' (and 'time') or 'columns'", file=file, key=ck)
                if spec.get("columns") is not None and (
                        not isinstance(spec["columns"], list)
                        or not all(isinstance(c, str) for c in spec["columns"])):
                    raise ConfigError("expected a list of column names", file=file,
                                      key=f"{ck}.columns")
                for sk in ("date", "time", "sep", "prefix"):
                    if sk in spec:
                        _str(spec[sk], file, f"{ck}.{sk}")
                if spec.get("date_kind", "auto") not in DATE_KINDS:
                    raise ConfigError(f"expected one of {', '.join(DATE_KINDS)}", file=file,
                                      key=f"{ck}.date_kind")
                if spec.get("time_kind", "auto") not in TIME_KINDS:
                    raise ConfigError(f"expected one of {', '.join(TIME_KINDS)}", file=file,
                                      key=f"{ck}.time_kind")
                r.combine[col] = dict(spec)
            elif k == "json":
                _string_pair(spec, JSON_KEYS, file, ck)
                r.json[col] = dict(spec)
            elif k == "extract":
                _string_pair(spec, EXTRACT_KEYS, file, ck)
                try:
                    groups = re.compile(spec["regex"]).groups
                except re.error as exc:
                    raise ConfigError(f"not a valid regular expression: {exc}", file=file,
                                      key=f"{ck}.regex") from None
                if groups < 1:
                    raise ConfigError("the regex needs a (group) holding the value", file=file,
                                      key=f"{ck}.regex")
                r.extract[col] = dict(spec)
            elif k == "missing":
                vals = spec if isinstance(spec, list) else [spec]
                for x in vals:
                    _str(x, file, ck)
                r.missing[col] = list(vals)
            elif k == "values":
                _table(spec, file, ck)
                mp = {}
                for src, dst in spec.items():
                    _str(dst, file, f"{ck}.{src}")
                    _allowed(table, col, dst, file, f"{ck}.{src}")
                    mp[src.strip().lower() if r.ignore_case or sec.get("ignore_case", True)
                       else src.strip()] = dst
                r.values[col] = mp
            elif k == "patterns":
                _table(spec, file, ck)
                pats = []
                for rx, dst in spec.items():
                    _str(dst, file, f"{ck}.{rx}")
                    _allowed(table, col, dst, file, f"{ck}.{rx}")
                    try:
                        re.compile(rx)
                    except re.error as exc:
                        raise ConfigError(f"not a valid regular expression: {exc}", file=file,
                                          key=f"{ck}.{rx}") from None
                    pats.append((rx, dst))
                r.patterns[col] = pats
            elif k == "constants":
                if not isinstance(spec, (str, int, float, bool)):
                    raise ConfigError(f"expected a plain value (got {spec!r})", file=file, key=ck)
                if isinstance(spec, str):
                    _allowed(table, col, spec, file, ck)
                r.constants[col] = spec
    if "ignore_case" in sec and not sec["ignore_case"]:
        # re-key the value maps exactly as written
        for col, spec in sec.get("values", {}).items():
            r.values[col] = {s.strip(): d for s, d in spec.items()}
    return r


def _allowed(table: str, col: str, value: str, file: str, key: str) -> None:
    allowed = TABLES[table].column(col).allowed
    if allowed and value not in allowed:
        raise ConfigError(f"'{value}' is not an allowed {col} (expected one of "
                          f"{', '.join(allowed)})", file=file, key=key)


__all__ = ["ConnectorProfile", "TableRules", "load_profile", "parse_profile",
           "builtin_profiles", "np"]
