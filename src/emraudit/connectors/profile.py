"""Connector profiles: how one EMR's log columns and values map onto the canonical tables.

A profile is TOML data (see `src/emraudit/profiles/connectors/*.toml`, each documented by its
comments). Like a pySigma processing pipeline it is a list of declared steps, each kind a
class registered under its profile key (`emraudit.connectors.steps`), applied in this order
to every batch, all vectorized (Series.map, str ops, one pass per step):

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
reason ("unknown action 'xxx'"): nothing is silently guessed. Which steps produce each
canonical column is `provenance(table)`; the steps themselves, as data, are `records(table)`
(stored for every ingestion run by `emraudit.connectors.provenance`); per batch counts of how
each action was mapped go to the batch notes.

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

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from emraudit.connectors.steps import (RAW_ACTION, STEP_KINDS, ColumnsStep, Run, Step, Where,
                                       built_in_steps, expect_str, expect_table)
from emraudit.errors import ConfigError, SourceError
from emraudit.model import TABLES

PROFILE_KEYS = {"description", "encoding", "delimiter", "format", "watermark"}
OPTION_KEYS = {"ignore_case", "keep_raw", "optional"}


@dataclass
class TableRules:
    """The steps for one canonical table, in pipeline order, and the section's options."""

    table: str
    steps: list[Step] = field(default_factory=list)
    ignore_case: bool = True
    keep_raw: bool = True
    optional: list[str] = field(default_factory=list)   # source columns that may be absent

    @classmethod
    def build(cls, table: str, declared: list[Step], **options) -> "TableRules":
        rules = cls(table, **options)
        steps = declared + built_in_steps(table, rules.keep_raw)
        rules.steps = sorted(steps, key=lambda s: s.order)    # stable: profile order within
        return rules

    @property
    def columns_step(self) -> ColumnsStep | None:
        return next((s for s in self.steps if isinstance(s, ColumnsStep)), None)

    @property
    def values(self) -> dict[str, dict[str, str]]:
        """Each column's exact value map (trimmed, lower-cased unless `ignore_case = false`)."""
        return {s.column: s.mapping for s in self.steps if s.kind == "values"}

    def apply(self, df: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
        run = Run(df, df if self.columns_step is not None else df.copy())
        for step in self.steps:
            step.apply(run)
        if notes is not None and "action" in run.by_value and len(run.stripped["action"]):
            notes.append(_action_note(run))
        return run.out   # extra source columns are kept as they are (DESIGN: never break a read)


def _action_note(run: Run) -> str:
    st, mapped = run.stripped["action"], run.by_value["action"]
    via = run.by_pattern.get("action", pd.Series(False, index=st.index))
    left = int((~mapped & ~via & st.notna()).sum())
    return f"action: {int(mapped.sum())} by value map, {int(via.sum())} by pattern, {left} unmapped"


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
        return self.tables.get(table) or TableRules.build(table, [])

    # --- the source columns a table needs --------------------------------------------------
    def source_columns(self, table: str) -> dict[str, str]:
        """Every source column the profile reads for `table`, keyed by the profile key naming it."""
        need: dict[str, str] = {}
        for step in self.rules(table).steps:
            need.update(step.reads())
        return need

    def check_columns(self, table: str, source_columns: list[str], where: str, *,
                      list_found: bool = True) -> None:
        """Raise when the profile names a column the source lacks, or a required canonical
        column cannot be produced. `where` names the source (file or table) for the message.
        `list_found`: name the source's columns in the message (a database's; a file's first
        line is its content — a wrong path may be any file — so only counted)."""
        have = set(source_columns)

        def found() -> str:
            if list_found:
                return ", ".join(list(source_columns)[:30]) or "(no columns)"
            return f"{len(source_columns)} column(s) in its first line, not shown"
        for key, col in self.source_columns(table).items():
            if col not in have:
                raise ConfigError(f"maps to column '{col}', which {where} does not have "
                                  f"(it has: {found()})", file=self.file, key=key)
        produced = set(self.output_columns(table, source_columns))
        missing = [c for c in TABLES[table].required if c not in produced and c != "event_id"]
        if missing:
            raise SourceError(f"missing required column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(m) for m in missing)} for table '{table}' "
                              f"after applying profile '{self.name}' (the source has: "
                              f"{found()})", file=where)

    def output_columns(self, table: str, source_columns: list[str]) -> list[str]:
        """The columns a batch with these source columns has once the steps ran."""
        r = self.rules(table)
        header = list(source_columns)
        cols = r.columns_step.rename(header) if r.columns_step else header
        for step in r.steps:
            cols += step.outputs(header)
        if r.keep_raw and table == "access_log" and "action" in cols:
            cols.append(RAW_ACTION)       # last: it copies whatever produced the action
        return list(dict.fromkeys(cols))

    def provenance(self, table: str) -> dict[str, str]:
        """Which steps produce each canonical column, in order (an audit trail of the
        mapping): `{"action": "his-zh: column '操作类型' → values map (37 words)"}`."""
        chains: dict[str, list[str]] = {}
        for step in self.rules(table).steps:
            for col, what in step.provenance().items():
                chains.setdefault(col, []).append(what)
        return {col: f"{self.name}: {' → '.join(parts)}" for col, parts in chains.items()}

    def records(self, table: str) -> list[dict]:
        """The table's steps as plain data, in pipeline order (see `steps.from_record`)."""
        return [s.record() for s in self.rules(table).steps]

    def digest(self, table: str) -> str:
        """A fingerprint of the profile's name and the table's steps: equal digests, equal
        mapping."""
        text = json.dumps([self.name, table, self.records(table)], sort_keys=True,
                          ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # --- applying ----------------------------------------------------------------------------
    def apply(self, table: str, df: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
        """Map a frame of raw source columns (strings) onto canonical names and values."""
        return self.rules(table).apply(df, notes)


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
            expect_table(val, file, top)
            for k, v in val.items():
                if k not in PROFILE_KEYS:
                    raise ConfigError(f"unknown key (expected one of {', '.join(sorted(PROFILE_KEYS))})",
                                      file=file, key=f"profile.{k}")
                expect_str(v, file, f"profile.{k}")
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
        prof.tables[top] = _parse_table(top, expect_table(val, file, top), file)
    return prof


def _parse_table(table: str, sec: dict, file: str) -> TableRules:
    """A table's section: its options and, key by key in the file's order, its steps."""
    ignore_case = sec.get("ignore_case", True) is not False
    optional = sec.get("optional", [])
    where = Where(table, file, ignore_case,
                  tuple(optional) if isinstance(optional, list) else ())
    declared: list[Step] = []
    options: dict = {}
    for k, v in sec.items():
        key = f"{table}.{k}"
        if k == "optional":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError("expected a list of source column names", file=file, key=key)
            options[k] = list(v)
            continue
        if k in ("ignore_case", "keep_raw"):
            if not isinstance(v, bool):
                raise ConfigError(f"expected true or false (got {v!r})", file=file, key=key)
            options[k] = v
            continue
        kind = STEP_KINDS.get(k)
        if kind is None:
            keys = sorted(set(STEP_KINDS) | OPTION_KEYS)
            raise ConfigError(f"unknown key (expected one of {', '.join(keys)})",
                              file=file, key=key)
        declared += kind.parse(expect_table(v, file, key), where)
    return TableRules.build(table, declared, **options)


__all__ = ["ConnectorProfile", "TableRules", "load_profile", "parse_profile",
           "builtin_profiles"]
