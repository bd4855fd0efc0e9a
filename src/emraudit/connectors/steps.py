"""Connector profile steps: one class per step kind, registered under its profile key.

Like a pySigma processing pipeline, a profile's section for one canonical table is a list
of declared steps. Each kind is a class registered with `@step_kind` under the short type
string that names it in the profile (`values`, `patterns` …); it knows how to

- `parse` its part of the profile, raising `ConfigError`s that name the file and the key,
- `apply` itself to a batch, vectorized (one pass over a column, never a loop per row),
- say in `provenance` what it does to which canonical column, and
- `record` itself as plain data, so that the steps in force for an ingestion run can be
  stored and rebuilt later (`from_record`) to explain how a stored value was mapped.

The pipeline order is each kind's `order`; within a kind, the order of the profile. Two
steps are built in rather than declared: the source's own action word kept in `action_raw`
(option `keep_raw`) and a failed `login` becoming `login_failed`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import pandas as pd

from emraudit.connectors.columnops import (blank, combine, contains, json_key,
                                           mask_placeholders, regex_group)
from emraudit.errors import ConfigError
from emraudit.model import SOURCE_REF, TABLES

ALL_COLUMNS = "*"   # `missing` key applying to every column
RAW_ACTION = "action_raw"
DATE_KINDS = ("auto", "text", "horolog")
TIME_KINDS = ("auto", "text", "seconds")
COMBINE_KEYS = {"date", "time", "date_kind", "time_kind", "columns", "sep", "prefix"}
EXTRACT_KEYS = ("column", "regex")     # ordered: they name themselves in errors
JSON_KEYS = ("column", "key")

STEP_KINDS: dict[str, type["Step"]] = {}


def step_kind(cls: type["Step"]) -> type["Step"]:
    """Class decorator: register a step kind under its profile key."""
    if cls.kind in STEP_KINDS and STEP_KINDS[cls.kind] is not cls:
        raise TypeError(f"profile step kind {cls.kind!r} registered twice")
    STEP_KINDS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Where:
    """Where a step is being parsed: the table, the file (for errors) and the section's
    options that change how steps read their specification."""

    table: str
    file: str
    ignore_case: bool = True
    optional: tuple[str, ...] = ()


@dataclass
class Run:
    """One application of a table's steps to one frame: the raw source columns, the frame
    being built, and what the mapping steps matched (patterns skip what a value map took;
    the action counts go to the batch notes)."""

    raw: pd.DataFrame
    out: pd.DataFrame
    stripped: dict[str, pd.Series] = field(default_factory=dict)   # column -> trimmed text
    by_value: dict[str, pd.Series] = field(default_factory=dict)   # column -> value-map hits
    by_pattern: dict[str, pd.Series] = field(default_factory=dict)  # column -> pattern hits


@dataclass(frozen=True)
class Step:
    """A declared step of one canonical table. Subclasses set `kind` and `order`, add their
    specification as dataclass fields and implement `apply` and `provenance`."""

    kind: ClassVar[str]
    order: ClassVar[int]
    per_column: ClassVar[bool] = True     # declared per canonical column, or once per table
    any_column: ClassVar[bool] = False    # may be declared for "*" (every column)
    table: str
    column: str          # the canonical column it produces or changes ("*": every column)

    @property
    def key(self) -> str:
        """The profile key it was declared under (errors, provenance, the run record)."""
        if self.per_column:
            return f"{self.table}.{self.kind}.{self.column}"
        return f"{self.table}.{self.kind}"

    @classmethod
    def parse(cls, section: dict, where: Where) -> list["Step"]:
        """The steps one profile key declares (`[access_log.values]` → one per column)."""
        steps = []
        for col, spec in section.items():
            key = f"{where.table}.{cls.kind}.{col}"
            if not (col == ALL_COLUMNS and cls.any_column):
                _canon(where.table, col, where.file, key)
            steps.append(cls.parse_column(col, spec, where, key))
        return steps

    @classmethod
    def parse_column(cls, col: str, spec: Any, where: Where, key: str) -> "Step":
        """The step one column's specification declares (checked: errors name `key`)."""
        raise NotImplementedError  # pragma: no cover - every kind implements parse or this

    def apply(self, run: Run) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def provenance(self) -> dict[str, str]:  # pragma: no cover - abstract
        """Canonical column → what this step does to it, in a few words."""
        raise NotImplementedError

    def reads(self) -> dict[str, str]:
        """Source columns it needs, keyed by the profile key naming each."""
        return {}

    def outputs(self, header: list[str]) -> list[str]:
        """Columns it adds to a frame with these source columns (before validation)."""
        return []

    def record(self) -> dict:
        """The step as plain JSON data (lists, not tuples: equal once stored and read back);
        `from_record` rebuilds it."""
        spec = asdict(self)
        del spec["table"], spec["column"]
        return {"step": self.key, "kind": self.kind, "table": self.table,
                "column": self.column, "spec": json.loads(json.dumps(spec, ensure_ascii=False))}


def from_record(rec: dict) -> Step:
    """A step rebuilt from `Step.record()` (as stored for an ingestion run)."""
    cls = STEP_KINDS.get(rec["kind"]) or BUILT_IN[rec["kind"]]
    return cls(table=rec["table"], column=rec["column"], **rec["spec"])


# --- the declared kinds, in pipeline order ---------------------------------------------------

@step_kind
@dataclass(frozen=True)
class ColumnsStep(Step):
    """`columns`: canonical column = source column, a rename. Unmapped source columns are
    kept; one source column may feed several canonical ones; a stray source column already
    named like a canonical column the mapping produces is dropped (the mapping wins)."""

    kind: ClassVar[str] = "columns"
    order: ClassVar[int] = 10
    per_column: ClassVar[bool] = False
    mapping: dict[str, str] = field(default_factory=dict)      # canonical -> source
    optional: tuple[str, ...] = ()                              # may be absent from a file

    @classmethod
    def parse(cls, section: dict, where: Where) -> list[Step]:
        mapping = {}
        for col, spec in section.items():
            key = f"{where.table}.columns.{col}"
            _canon(where.table, col, where.file, key)
            mapping[col] = expect_str(spec, where.file, key)
        return [cls(where.table, "", mapping, where.optional)] if mapping else []

    def apply(self, run: Run) -> None:
        out = run.out
        drop = [c for c in out.columns if c in self.mapping and c not in self._sources]
        out = out.drop(columns=drop)
        inv: dict[str, list[str]] = {}
        for k, v in self.mapping.items():
            if v in out.columns:     # absent ones are `optional` (checked on the header)
                inv.setdefault(v, []).append(k)
        new = {}
        for v, ks in inv.items():
            for k in ks[1:]:          # one source column mapped to several canonical ones
                new[k] = out[v]
        out = out.rename(columns={v: ks[0] for v, ks in inv.items()})
        run.out = out.assign(**new) if new else out

    @property
    def _sources(self) -> set[str]:
        return set(self.mapping.values())

    def provenance(self) -> dict[str, str]:
        return {k: f"column '{v}'" for k, v in self.mapping.items()}

    def reads(self) -> dict[str, str]:
        return {f"{self.table}.columns.{k}": v for k, v in self.mapping.items()
                if v not in self.optional}

    def outputs(self, header: list[str]) -> list[str]:
        return [k for k, v in self.mapping.items() if v in header]

    def rename(self, header: list[str]) -> list[str]:
        """The source header under the names this step gives it."""
        renamed = {v: k for k, v in self.mapping.items()}
        return [renamed.get(c, c) for c in header]


@step_kind
@dataclass(frozen=True)
class CombineStep(Step):
    """`combine`: a column built from several: date + time (Caché `$H` day counts and
    seconds-of-day understood), or a join of `columns` with `sep` and a `prefix`."""

    kind: ClassVar[str] = "combine"
    order: ClassVar[int] = 20
    spec: dict = field(default_factory=dict)

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        file = where.file
        expect_table(spec, file, key)
        for sk in spec:
            if sk not in COMBINE_KEYS:
                raise ConfigError(f"unknown key (expected one of "
                                  f"{', '.join(sorted(COMBINE_KEYS))})", file=file,
                                  key=f"{key}.{sk}")
        if not spec.get("date") and not spec.get("columns"):
            raise ConfigError("expected 'date' (and 'time') or 'columns'", file=file, key=key)
        if spec.get("columns") is not None and (
                not isinstance(spec["columns"], list)
                or not all(isinstance(c, str) for c in spec["columns"])):
            raise ConfigError("expected a list of column names", file=file, key=f"{key}.columns")
        for sk in ("date", "time", "sep", "prefix"):
            if sk in spec:
                expect_str(spec[sk], file, f"{key}.{sk}")
        if spec.get("date_kind", "auto") not in DATE_KINDS:
            raise ConfigError(f"expected one of {', '.join(DATE_KINDS)}", file=file,
                              key=f"{key}.date_kind")
        if spec.get("time_kind", "auto") not in TIME_KINDS:
            raise ConfigError(f"expected one of {', '.join(TIME_KINDS)}", file=file,
                              key=f"{key}.time_kind")
        return cls(where.table, col, dict(spec))

    def apply(self, run: Run) -> None:
        run.out[self.column] = combine(run.raw, self.spec)

    def _parts(self) -> list[str]:
        return [self.spec[p] for p in ("date", "time") if self.spec.get(p)] or \
            list(self.spec.get("columns", []))

    def provenance(self) -> dict[str, str]:
        prefix = f" with prefix '{self.spec['prefix']}'" if self.spec.get("prefix") else ""
        return {self.column: f"combine {' + '.join(self._parts())}{prefix}"}

    def reads(self) -> dict[str, str]:
        need = {f"{self.key}.{p}": self.spec[p] for p in ("date", "time") if self.spec.get(p)}
        for i, c in enumerate(self.spec.get("columns") or []):
            need[f"{self.key}.columns[{i}]"] = c
        return need

    def outputs(self, header: list[str]) -> list[str]:
        return [self.column]


def _fill_blanks(run: Run, col: str, got: pd.Series) -> None:
    """`got` where the column is empty (or the whole column, when it is absent)."""
    out = run.out
    out[col] = out[col].where(~blank(out[col]), got) if col in out.columns else got


@step_kind
@dataclass(frozen=True)
class JsonStep(Step):
    """`json`: a key pulled out of a JSON text column, where the target is still empty."""

    kind: ClassVar[str] = "json"
    order: ClassVar[int] = 30
    source: str = ""
    member: str = ""          # the key inside the JSON object

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        _string_pair(spec, JSON_KEYS, where.file, key)
        return cls(where.table, col, spec["column"], spec["key"])

    def apply(self, run: Run) -> None:
        _fill_blanks(run, self.column, json_key(run.raw[self.source], self.member))

    def provenance(self) -> dict[str, str]:
        return {self.column: f"json {self.source}.{self.member} where empty"}

    def reads(self) -> dict[str, str]:
        return {f"{self.key}.column": self.source}

    def outputs(self, header: list[str]) -> list[str]:
        return [self.column]


@step_kind
@dataclass(frozen=True)
class ExtractStep(Step):
    """`extract`: the first (group) of a regular expression on a text column, where the
    target is still empty; skipped when the column is `optional` and absent."""

    kind: ClassVar[str] = "extract"
    order: ClassVar[int] = 40
    source: str = ""
    regex: str = ""
    optional: bool = False

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        _string_pair(spec, EXTRACT_KEYS, where.file, key)
        try:
            groups = re.compile(spec["regex"]).groups
        except re.error as exc:
            raise ConfigError(f"not a valid regular expression: {exc}", file=where.file,
                              key=f"{key}.regex") from None
        if groups < 1:
            raise ConfigError("the regex needs a (group) holding the value", file=where.file,
                              key=f"{key}.regex")
        return cls(where.table, col, spec["column"], spec["regex"],
                   spec["column"] in where.optional)

    def apply(self, run: Run) -> None:
        if self.source in run.raw.columns:      # else an absent optional column
            _fill_blanks(run, self.column, regex_group(run.raw[self.source], self.regex))

    def provenance(self) -> dict[str, str]:
        return {self.column: f"extract /{self.regex}/ from {self.source} where empty"}

    def reads(self) -> dict[str, str]:
        return {} if self.optional else {f"{self.key}.column": self.source}

    def outputs(self, header: list[str]) -> list[str]:
        return [self.column]


@step_kind
@dataclass(frozen=True)
class MissingStep(Step):
    """`missing`: placeholder values (`UNKNOW`, `0.0.0.0`, empty) become missing; "*" is
    every column."""

    kind: ClassVar[str] = "missing"
    order: ClassVar[int] = 50
    any_column: ClassVar[bool] = True
    placeholders: tuple[str, ...] = ()

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        vals = spec if isinstance(spec, list) else [spec]
        for x in vals:
            expect_str(x, where.file, key)
        return cls(where.table, col, tuple(vals))

    def apply(self, run: Run) -> None:
        out = run.out
        cols = [c for c in out.columns if c != SOURCE_REF] if self.column == ALL_COLUMNS else \
            [self.column] if self.column in out.columns else []
        for c in cols:
            out[c] = mask_placeholders(out[c], list(self.placeholders))

    def provenance(self) -> dict[str, str]:
        return {self.column: f"{', '.join(repr(v) for v in self.placeholders)} as missing"}


@dataclass(frozen=True)
class KeepRawStep(Step):
    """Built in (option `keep_raw`, on by default): the source's own action word, before any
    mapping, in `action_raw` (kept where the source gave one already)."""

    kind: ClassVar[str] = "keep_raw"
    order: ClassVar[int] = 55
    per_column: ClassVar[bool] = False

    def apply(self, run: Run) -> None:
        out = run.out
        if "action" not in out.columns:
            return
        if RAW_ACTION not in out.columns:
            out[RAW_ACTION] = out["action"].astype("string")
        else:
            out[RAW_ACTION] = out[RAW_ACTION].where(~blank(out[RAW_ACTION]),
                                                    out["action"].astype("string"))

    def provenance(self) -> dict[str, str]:
        return {RAW_ACTION: "the source's action word, before mapping"}


@step_kind
@dataclass(frozen=True)
class ValuesStep(Step):
    """`values`: an exact value map (查看 → view), on trimmed values, ignoring case unless
    the section says `ignore_case = false`. A value no map covers keeps its raw word, so
    validation quarantines it with the reason: nothing is silently guessed."""

    kind: ClassVar[str] = "values"
    order: ClassVar[int] = 60
    mapping: dict[str, str] = field(default_factory=dict)   # trimmed (lower-cased) -> canonical
    ignore_case: bool = True

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        expect_table(spec, where.file, key)
        mp = {}
        for src, dst in spec.items():
            expect_str(dst, where.file, f"{key}.{src}")
            _allowed(where.table, col, dst, where.file, f"{key}.{src}")
            mp[src.strip().lower() if where.ignore_case else src.strip()] = dst
        return cls(where.table, col, mp, where.ignore_case)

    def apply(self, run: Run) -> None:
        k = self.column
        if k not in run.out.columns:
            return
        st = run.out[k].astype("string").str.strip()
        key = st.str.lower() if self.ignore_case else st
        hit = key.map(self.mapping)
        mapped = hit.notna()
        run.out[k] = st.where(~mapped, hit.astype("string"))
        run.stripped[k] = st
        run.by_value[k] = mapped

    def provenance(self) -> dict[str, str]:
        return {self.column: f"values map ({len(self.mapping)} words)"}


@step_kind
@dataclass(frozen=True)
class PatternsStep(Step):
    """`patterns`: regular expressions for the values no exact map covered, the first
    matching one winning (`^EMR\\.OP\\.Print` → print)."""

    kind: ClassVar[str] = "patterns"
    order: ClassVar[int] = 70
    patterns: tuple[tuple[str, str], ...] = ()
    ignore_case: bool = True

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        expect_table(spec, where.file, key)
        pats = []
        for rx, dst in spec.items():
            expect_str(dst, where.file, f"{key}.{rx}")
            _allowed(where.table, col, dst, where.file, f"{key}.{rx}")
            try:
                re.compile(rx)
            except re.error as exc:
                raise ConfigError(f"not a valid regular expression: {exc}", file=where.file,
                                  key=f"{key}.{rx}") from None
            pats.append((rx, dst))
        return cls(where.table, col, tuple(pats), where.ignore_case)

    def apply(self, run: Run) -> None:
        k = self.column
        out = run.out
        if k not in out.columns:
            return
        if k in run.stripped:            # after a value map: only what it left
            st, res, taken = run.stripped[k], out[k], run.by_value[k]
        else:
            st = out[k].astype("string").str.strip()
            res, taken = st, pd.Series(False, index=out.index)
        hits = pd.Series(False, index=out.index)
        for rx, value in self.patterns:
            m = contains(st, rx, self.ignore_case) & ~taken & ~hits
            res = res.mask(m, value)
            hits |= m
        out[k] = res
        run.by_pattern[k] = hits

    def provenance(self) -> dict[str, str]:
        return {self.column: f"patterns ({len(self.patterns)})"}


@dataclass(frozen=True)
class LoginFailedStep(Step):
    """Built in: a `login` whose outcome is `failure` is its own canonical action,
    `login_failed`."""

    kind: ClassVar[str] = "login_failed"
    order: ClassVar[int] = 80
    per_column: ClassVar[bool] = False

    def apply(self, run: Run) -> None:
        out = run.out
        if "action" not in out.columns or "outcome" not in out.columns:
            return
        failed = (out["action"].astype("string") == "login") & \
            (out["outcome"].astype("string").str.strip().str.lower() == "failure")
        if failed.any():
            out["action"] = out["action"].astype("string").mask(failed.fillna(False),
                                                                "login_failed")

    def provenance(self) -> dict[str, str]:
        return {"action": "a failed login becomes login_failed"}


@step_kind
@dataclass(frozen=True)
class ConstantsStep(Step):
    """`constants`: a fixed value for a column that is absent or empty."""

    kind: ClassVar[str] = "constants"
    order: ClassVar[int] = 90
    value: str | int | float | bool = ""

    @classmethod
    def parse_column(cls, col, spec, where, key) -> Step:
        if not isinstance(spec, (str, int, float, bool)):
            raise ConfigError(f"expected a plain value (got {spec!r})", file=where.file, key=key)
        if isinstance(spec, str):
            _allowed(where.table, col, spec, where.file, key)
        return cls(where.table, col, spec)

    def apply(self, run: Run) -> None:
        out, k = run.out, self.column
        if k in out.columns:
            out[k] = out[k].where(~blank(out[k]), str(self.value))
        else:
            out[k] = pd.Series(str(self.value), index=out.index, dtype="string")

    def provenance(self) -> dict[str, str]:
        return {self.column: f"constant '{self.value}' where empty"}

    def outputs(self, header: list[str]) -> list[str]:
        return [self.column]


BUILT_IN: dict[str, type[Step]] = {"keep_raw": KeepRawStep, "login_failed": LoginFailedStep}


def built_in_steps(table: str, keep_raw: bool) -> list[Step]:
    """The steps every access_log pipeline has besides the declared ones."""
    if table != "access_log":
        return []
    return ([KeepRawStep(table, RAW_ACTION)] if keep_raw else []) + \
        [LoginFailedStep(table, "action")]


# --- checks shared by the kinds ----------------------------------------------------------------

def expect_table(v, file, key) -> dict:
    if not isinstance(v, dict):
        raise ConfigError("expected a table", file=file, key=key)
    return v


def expect_str(v, file, key) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"expected a string (got {v!r})", file=file, key=key)
    return v


def _string_pair(spec, keys: tuple[str, str], file, key) -> None:
    """A table of exactly these two string keys (the json and extract column specs)."""
    expect_table(spec, file, key)
    for sk, sv in spec.items():
        if sk not in keys:
            raise ConfigError(f"unknown key (expected {', '.join(keys)})", file=file,
                              key=f"{key}.{sk}")
        expect_str(sv, file, f"{key}.{sk}")
    if set(spec) != set(keys):
        raise ConfigError(f"expected both '{keys[0]}' and '{keys[1]}'", file=file, key=key)


def _canon(table: str, col: str, file: str, key: str) -> None:
    if col not in TABLES[table].names:
        raise ConfigError(f"'{col}' is not a column of the canonical table '{table}' (expected one "
                          f"of {', '.join(TABLES[table].names)})", file=file, key=key)


def _allowed(table: str, col: str, value: str, file: str, key: str) -> None:
    allowed = TABLES[table].column(col).allowed
    if allowed and value not in allowed:
        raise ConfigError(f"'{value}' is not an allowed {col} (expected one of "
                          f"{', '.join(allowed)})", file=file, key=key)


__all__ = ["STEP_KINDS", "Step", "Run", "Where", "step_kind", "from_record", "built_in_steps",
           "ALL_COLUMNS"]
