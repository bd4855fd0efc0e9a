"""The detector contract: declarations, parameters, the context detectors read, findings.

A detector is declared, not hard-wired (DESIGN.md, STYLE.md): a class with an id, English and
Chinese names, the rectification item it evidences, a default severity, the tables it needs,
its parameters (type, default, unit, doc, range), a triage note and its known false positives.
It registers itself with `@register`. `run(ctx)` is a pure function of the frames in `ctx`: no
file or database access inside. It returns a findings frame built with `findings_frame()`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from emraudit.detectors.message import Message
from emraudit.fastops import iso_strings
from emraudit.model import (FINDING_COLUMNS, RECTIFICATION_ITEMS, SEVERITIES, SEVERITY_RANK,
                            finding_to_json, patient_list)


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a detector, documented where it is declared."""

    name: str
    type: type
    default: Any
    doc: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    # lists: the type of each element; tables: the type of each value (bool, int, float or
    # str). Unset: the type shared by the default's elements, if it has any.
    items: type | None = None

    def check(self, value: Any) -> Any:
        """Return the value coerced to the declared type, or raise ValueError saying why.
        Strict: no coercion from strings, nor from booleans to numbers."""
        t = self.type
        if t in (bool, int, float, str):
            value = _scalar(t, value)
        elif t is list:
            if not isinstance(value, list):
                raise ValueError(f"expected a list, got {value!r}")
            kind = self.items or _shared_type(self.default)
            if kind is not None:
                value = [_scalar(kind, v, f" in {value!r}") for v in value]
        elif t is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a table, got {value!r}")
            kind = self.items or _shared_type(list((self.default or {}).values()))
            if kind is not None:
                value = {k: _scalar(kind, v, f" for {k!r}") for k, v in value.items()}
        if self.min is not None and isinstance(value, (int, float)) and value < self.min:
            raise ValueError(f"must be at least {self.min}, got {value!r}")
        if self.max is not None and isinstance(value, (int, float)) and value > self.max:
            raise ValueError(f"must be at most {self.max}, got {value!r}")
        if self.choices is not None:
            vals = value if isinstance(value, list) else [value]
            bad = [v for v in vals if v not in self.choices]
            if bad:
                raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, "
                                 f"got {bad[0]!r}")
        return value


def _scalar(t: type, value: Any, where: str = "") -> Any:
    """`value` as a `t` (bool, int, float or str), strictly, or ValueError."""
    if t is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}{where}")
    elif t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}{where}")
    elif t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}{where}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}{where}")
        value = float(value)
    elif t is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}{where}")
    return value


def _shared_type(values) -> type | None:
    """The one scalar type of a non-empty default's elements (int where ints and floats mix
    means float), or None."""
    kinds = {type(v) for v in values or ()}
    if kinds == {int, float}:
        return float
    if len(kinds) == 1 and next(iter(kinds)) in (bool, int, float, str):
        return next(iter(kinds))
    return None


@dataclass(frozen=True)
class Section:
    """The parameters of work several detectors share (the explanation engine, the duty
    schedule), declared once by the module that does the work: a `[name]` table of the
    detector profile, validated like a detector's, handed to every detector through
    `ctx.section(name)`. A detector whose table held one of them before names it in its
    `moved` declaration: the old key stays a deprecated alias."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


def section_values(name: str, given: dict[str, dict]) -> dict[str, Any]:
    """A section's parameters in force: its declared defaults, then those `given` for it."""
    return {**SECTIONS[name].defaults(), **given.get(name, {})}


# every declared section, by name (declared where the work is done: detectors/explain.py,
# detectors/schedule.py)
SECTIONS: dict[str, Section] = {}


def declare_section(section: Section) -> Section:
    if SECTIONS.get(section.name, section) is not section:
        raise TypeError(f"section {section.name!r} declared twice")
    SECTIONS[section.name] = section
    return section


class Detector:
    """Base class. Subclasses set the class attributes and implement `run`.

    What a detector declares, so the scan needs no word about any one detector:
    - what it is and evidences: `id`, `name_en`/`name_zh`, `item`, `severity`, `kind`, the
      prose a reviewer reads (`description`, `note`, `false_positives`, their `_zh`, `measure_*`)
      and the sentences of its findings (`messages`);
    - what it reads: the tables it `needs` (skipped without them) and `uses`, the events
      before the window (`lookback_days`, or `effective_lookback_days()` from its params),
      the shared work it reads from ctx.memo (`shares`), and how it divides (`partition_key`);
    - what it keeps between scans: `state_tables`, the store tables (emraudit.state) read into
      ctx.baseline before it runs and saved from ctx.outputs when the scan commits, and
      `baseline_days()`, how far before the window's end it reads them;
    - its parameters (`params`), and the sample's planted cases it must catch (`catches`).
    """

    id: ClassVar[str]
    name_en: ClassVar[str]
    name_zh: ClassVar[str]
    item: ClassVar[str]                       # "8", "9" or "6": the default rectification item
    severity: ClassVar[str] = "medium"        # default severity
    needs: ClassVar[tuple[str, ...]] = ("access_log",)   # tables without which it is skipped
    uses: ClassVar[tuple[str, ...]] = ()      # optional tables that sharpen it
    params: ClassVar[tuple[Param, ...]] = ()
    lookback_days: ClassVar[int] = 0          # history before the scan window it needs
    # the store tables holding what it keeps from one scan to the next (emraudit.state names
    # each one's loader and saver): before the detectors run the scan reads each table an
    # enabled detector declares into ctx.baseline[table], reaching `baseline_days()` before
    # the window's end; what a detector leaves in ctx.outputs[table] is saved when the scan
    # commits. The detector itself never touches the store.
    state_tables: ClassVar[tuple[str, ...]] = ()
    # keys its profile table held before they moved to a section of shared parameters, as
    # old key -> "section.param" (care's explanation settings are now [explain] ones): a
    # profile that still sets one sets the section's parameter, with a deprecation note
    moved: ClassVar[dict[str, str]] = {}
    # shared computations (SHARED_WORK names) this detector reads from ctx.memo: a scan that
    # divides the detectors among processes computes them once, before forking those that
    # use them
    shares: ClassVar[tuple[str, ...]] = ()
    # True when a finding may rest on look-back events only: a judgement deferred from the
    # previous scan because its evidence could not exist yet (btg.unjustified waits for a care
    # relation up to a day after the break-the-glass). Such a detector keeps the rule itself:
    # each deferred judgement is made exactly once, with a deterministic key.
    judges_late: ClassVar[bool] = False
    # True when findings are about the state of reference tables (rights held now, as of the
    # window's end) rather than events: they may list no event at all. Such a detector keys
    # and dates each finding by what it is about (a grant and its granted_at), so every
    # scan reproduces the same finding until the state changes.
    judges_state: ClassVar[bool] = False
    # The key this detector's work divides on (docs/PARTITIONS.md): "user" (each account's
    # events plus the broadcast reference tables and population statistics suffice),
    # "patient", "user_day", or "global" (needs every event at once: one partition). A
    # detector that does not say is global: always correct, never divided.
    partition_key: ClassVar[str] = "global"
    kind: ClassVar[str] = "rule"              # rule | anomaly
    enabled_by_default: ClassVar[bool] = True # False: opt-in (too noisy to run unasked)
    description: ClassVar[str] = ""           # what it looks for, one paragraph
    note: ClassVar[str] = ""                  # triage note shown to the reviewer
    false_positives: ClassVar[tuple[str, ...]] = ()
    description_zh: ClassVar[str] = ""        # the same three in Chinese (reports in zh)
    note_zh: ClassVar[str] = ""
    false_positives_zh: ClassVar[tuple[str, ...]] = ()
    # the sentences its findings name by message_id (emraudit.detectors.message)
    messages: ClassVar[dict[str, Message]] = {}
    measure_zh: ClassVar[str] = ""            # suggested rectification measure (ledger)
    measure_en: ClassVar[str] = ""
    # the sample hospital's planted violation kinds (`truth.csv` violation) it is expected to
    # catch, as the first detector (None: the kind named by its own id) and as another one;
    # `emraudit eval` and the collection test derive their expectations from these
    catches: ClassVar[tuple[str, ...] | None] = None
    also_catches: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **overrides: Any):
        values = {p.name: p.default for p in self.params}
        known = {p.name: p for p in self.params}
        for k, v in overrides.items():
            if k not in known:
                raise KeyError(k)
            values[k] = known[k].check(v)
        self.p = _Params(values)
        # the shared sections' parameters set by the profile (DetectorSetting.instantiate);
        # read through self.section(name), as a detector reads ctx.section(name) when it runs
        self.sections: dict[str, dict] = {}

    def section(self, name: str) -> dict[str, Any]:
        return section_values(name, self.sections)

    @classmethod
    def planted_kinds(cls) -> tuple[str, ...]:
        """The planted violation kinds it is the first detector expected to catch."""
        return (cls.id,) if cls.catches is None else cls.catches

    def effective_lookback_days(self) -> int:
        """Days of history before the window this instance needs (may depend on params)."""
        return self.lookback_days

    def baseline_days(self) -> int:
        """Days of stored state (`state_tables`) before the window's end this instance reads
        (may depend on params); the scan loads the most any enabled detector asks for."""
        return 0

    def run(self, ctx: "Context") -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    # partitioned scans (emraudit.engine): what this detector compares one partition's users
    # with, computed from every partition before any of them is judged ----------------------
    def population_prepare(self, ctx: "Context") -> None:
        """In the scan's own process, before the partitions are read: put in
        ctx.population what every partition needs from the store (ctx.baseline)."""

    def population_part(self, ctx: "Context") -> dict[str, Any]:
        """One partition's part of the population statistics this detector compares with
        (peer baselines, feed shares, features), by key."""
        return {}

    def population_combine(self, key: str, parts: list[Any]) -> Any:
        """A statistic of the whole population from every partition's part (default:
        frames and series concatenated, lists joined, numbers added)."""
        return combine_parts(parts)

    def population_finish(self, ctx: "Context") -> None:
        """In the scan's own process, once ctx.population holds the combined statistics:
        decisions over the whole population (a model fitted on every user, a daily alert
        budget), left in ctx.population, ctx.outputs and ctx.notes."""

    # helpers for subclasses -------------------------------------------------------------
    def findings(self, rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
        return findings_frame(self.id, rows, default_item=self.item,
                              default_severity=self.severity)

    @classmethod
    def declaration(cls) -> dict:
        """The declaration as plain data (for `emraudit detectors`, docs and reports)."""
        return {
            "id": cls.id, "name_en": cls.name_en, "name_zh": cls.name_zh, "item": cls.item,
            "item_text": RECTIFICATION_ITEMS.get(cls.item, ""), "severity": cls.severity,
            "kind": cls.kind, "enabled_by_default": cls.enabled_by_default,
            "needs": list(cls.needs), "uses": list(cls.uses),
            "lookback_days": cls.lookback_days, "shares": list(cls.shares),
            "state_tables": list(cls.state_tables),
            "partition_key": cls.partition_key,
            "description": cls.description,
            "note": cls.note, "false_positives": list(cls.false_positives),
            "description_zh": cls.description_zh, "note_zh": cls.note_zh,
            "false_positives_zh": list(cls.false_positives_zh),
            "messages": sorted(cls.messages),
            "measure_zh": cls.measure_zh, "measure_en": cls.measure_en,
            "catches": list(cls.planted_kinds()), "also_catches": list(cls.also_catches),
            "params": [{"name": p.name, "type": p.type.__name__, "default": p.default,
                        "doc": p.doc, "unit": p.unit, "min": p.min, "max": p.max,
                        "choices": list(p.choices) if p.choices else None}
                       for p in cls.params],
        }


class _Params(dict):
    """Parameter values, readable as attributes: `self.p.grace_days`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Context:
    """What a detector may read. Built by the scan pipeline; detectors never do I/O.

    `events` holds the access log for the scan window *and* the look-back before it, sorted
    by `ts`, with a boolean `in_window`. Findings must involve at least one in-window event.
    Reference tables are None when not loaded. `memo` shares work between detectors (the
    care-relation explanations, the duty schedule) within one scan.
    """

    events: pd.DataFrame
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    tz: str = "Asia/Shanghai"
    users: pd.DataFrame | None = None
    patients: pd.DataFrame | None = None
    care_relations: pd.DataFrame | None = None
    patient_contacts: pd.DataFrame | None = None
    shifts: pd.DataFrame | None = None
    workstations: pd.DataFrame | None = None
    departments: pd.DataFrame | None = None
    grants: pd.DataFrame | None = None
    roles: pd.DataFrame | None = None
    office_hours: tuple[int, int] = (8, 18)
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    baseline: dict[str, Any] = field(default_factory=dict)  # stored state (features, models)
    memo: dict[str, Any] = field(default_factory=dict)
    detector_params: dict[str, dict] = field(default_factory=dict)  # id -> params in force
    # section name -> its parameters set by the profile ([explain], [schedule]); read through
    # ctx.section(name), which adds the declared defaults
    sections: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # state a detector wants persisted by the pipeline after the scan commits (e.g. the
    # "user_day_features" frame, fitted "models" rows); the detector never writes it itself
    outputs: dict[str, Any] = field(default_factory=dict)
    site_name: str = ""
    site_id: str = "default"         # [site] id: the site of rows stored without one
    networks: tuple[str, ...] = ()   # [site] networks: the hospital's own address ranges
    # statistics of the whole population (every partition of a site), computed before the
    # detectors run on one partition of the events (emraudit.engine.population); empty when
    # ctx.events is every event, and the detectors then compute them from ctx.events
    population: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        if name == "access_log":
            return self.events
        return getattr(self, name)

    def has(self, name: str) -> bool:
        t = self.table(name)
        return t is not None

    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def section(self, name: str) -> dict[str, Any]:
        """The parameters in force of a shared engine's section (`[explain]`, `[schedule]`):
        its declared defaults, then what the profile set (ctx.sections)."""
        return section_values(name, self.sections)

    @property
    def window_events(self) -> pd.DataFrame:
        return self.events[self.events["in_window"]]

    @property
    def partitioned(self) -> bool:
        """ctx.events is one partition of the events; population statistics are given."""
        return bool(self.population)

    def history_bounds(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """First and last event time of the whole history loaded (every partition)."""
        h = self.population.get("history")
        if h is not None:
            return h["first"], h["last"]
        ts = self.events["ts"] if self.events is not None and len(self.events) else None
        return (None, None) if ts is None else (ts.min(), ts.max())

    def first_event_day(self, since: pd.Timestamp | None = None) -> str | None:
        """The site-local day of the first event at or after `since` (of every partition)."""
        h = self.population.get("history")
        if h is not None:
            lo = since.tz_convert(self.tz).strftime("%Y-%m-%d") if since is not None else ""
            days = [d for d in h["days"] if d >= lo]
            return days[0] if days else None
        ts = self.events["ts"] if self.events is not None else None
        if ts is None or not len(ts):
            return None
        if since is not None:
            ts = ts[(ts >= since).to_numpy()]
            if not len(ts):
                return None
        return ts.min().tz_convert(self.tz).strftime("%Y-%m-%d")


# Work several detectors share through ctx.memo (the care-relation explanations, the duty
# schedule, the household pairs), by name. Registered where it is defined; a parallel scan
# runs the entries the enabled detectors declare in `shares` before it forks the processes
# that run them, so each inherits the result.
SHARED_WORK: dict[str, Callable[[Context], Any]] = {}
# shared work that reads only the reference tables (no events): a partitioned scan does it
# once and hands its ctx.memo entries to every partition
REFERENCE_WORK: set[str] = set()


def shared_work(name: str, references_only: bool = False) -> Callable:
    def deco(fn: Callable[[Context], Any]) -> Callable[[Context], Any]:
        SHARED_WORK[name] = fn
        if references_only:
            REFERENCE_WORK.add(name)
        return fn
    return deco


def combine_parts(parts: list[Any]) -> Any:
    """Every partition's part of a statistic put together: frames and series concatenated
    (in partition order), lists joined, numbers added, dicts combined key by key."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, (pd.DataFrame, pd.Series)):
        return pd.concat(parts, ignore_index=isinstance(first, pd.DataFrame))
    if isinstance(first, dict):
        return {k: combine_parts([p.get(k) for p in parts]) for k in first}
    if isinstance(first, list):
        return [x for p in parts for x in p]
    return sum(parts)


def site_keys(ctx: "Context", *frames: pd.DataFrame | None):
    """`key(frame, col)`: the ids of `col`, qualified by each row's site when the scan holds
    more than one site (events or reference rows; a row stored without site_id is of
    ctx.site_id), so that a relation or a shift at one hospital never meets an access at
    another; with one site, the column itself (the same codes, the same path)."""
    default = getattr(ctx, "site_id", "default")
    seen = set()
    for df in (ctx.events, *frames):
        if df is not None and len(df):
            col = df["site_id"] if "site_id" in df.columns else pd.Series([pd.NA])
            seen.update(str(v) for v in col.dropna().unique())   # categories: by code
            seen.update([default] if col.isna().any() else [])
    def plain(df, col):
        return df[col]

    def qualified(df, col):
        return site_qualified(df, col, default)

    key = plain if len(seen) <= 1 else qualified
    key.by_site = key is qualified
    return key


def site_qualified(df: pd.DataFrame, col: str, default: str) -> pd.Series:
    """The ids of `col` as "site\x1fid" (a row without site_id is of `default`)."""
    site = (df["site_id"].astype("string").fillna(default) if "site_id" in df.columns
            else pd.Series(default, index=df.index, dtype="string"))
    return site + "\x1f" + df[col].astype("string")


def finding_id(detector_id: str, key: str) -> str:
    """Deterministic id: the same detector and key always give the same id."""
    return "F" + hashlib.sha1(f"{detector_id}\x1f{key}".encode("utf-8")).hexdigest()[:19]


def _iso(ts: Any) -> str:
    if ts is None or (isinstance(ts, float) and np.isnan(ts)) or ts is pd.NaT:
        return ""
    return pd.Timestamp(ts).isoformat()


def _iso_column(col: pd.Series) -> list[str]:
    """`_iso` of every value: a datetime column with column operations (a night of tens of
    thousands of findings), anything else value by value."""
    if len(col) and pd.api.types.is_datetime64_any_dtype(col.dtype):
        out = iso_strings(col)
        out[col.isna().to_numpy()] = ""
        return out.tolist()
    return [_iso(t) for t in col]


def findings_frame(detector_id: str, rows: pd.DataFrame | list[dict], *,
                   default_item: str, default_severity: str) -> pd.DataFrame:
    """Normalize a detector's output to the findings contract.

    `rows` needs `key` (what makes the finding unique for this detector, e.g.
    "user|patient|day"), `user_id`, `event_ids` (list), `start`, `end`, and either
    `message_id` with `message_args` (dict) — the sentence as data; `summary` is then its
    English rendering — or a ready `summary` (third-party detectors); optional `patient_id`,
    `patient_ids` (a list, for a finding that concerns several patients), `severity`,
    `score`, `rectification_item`, `evidence` (dict).
    """
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if df.empty:
        return empty_findings()
    missing = [c for c in ("key", "user_id", "event_ids", "start", "end") if c not in df.columns]
    if "summary" not in df.columns and "message_id" not in df.columns:
        missing.append("summary or message_id")
    if missing:
        raise ValueError(f"{detector_id}: findings lack {missing}")
    if "message_id" in df.columns:
        df["message_args"] = ([a if isinstance(a, dict) else {} for a in df["message_args"]]
                              if "message_args" in df.columns else [{} for _ in range(len(df))])
        if "summary" not in df.columns:
            from emraudit.reports.text import english_summary
            df["summary"] = [english_summary(m, a) for m, a in
                             zip(df["message_id"], df["message_args"])]
    out = pd.DataFrame({
        "finding_id": [finding_id(detector_id, str(k)) for k in df["key"]],
        "detector": detector_id,
        # rows that set no severity (one kind of finding in a detector that sets it for
        # another) take the default, never NaN
        "severity": (df["severity"].where(df["severity"].notna(), default_severity)
                     if "severity" in df else default_severity),
        "score": pd.to_numeric(df["score"], errors="coerce").fillna(0.0).astype(float)
        if "score" in df else 1.0,
        "user_id": df["user_id"].astype("string"),
        "patient_id": (df["patient_id"].astype("string").fillna("")
                       if "patient_id" in df else ""),
        "start": _iso_column(df["start"]),
        "end": _iso_column(df["end"]),
        "event_ids": [sorted(map(str, e)) for e in df["event_ids"]],
        "rectification_item": (df["rectification_item"].astype(str)
                               if "rectification_item" in df else default_item),
        "summary": df["summary"].astype(str),
        "evidence": df["evidence"] if "evidence" in df else [{} for _ in range(len(df))],
        "message_id": (df["message_id"].astype(object).where(df["message_id"].notna(), None)
                       if "message_id" in df else None),
        "message_args": df["message_args"] if "message_args" in df else None,
        # every patient of a finding that names more than one (care.no_relationship's
        # spread night); None on the others, whose patient is `patient_id`
        "patient_ids": ([_id_list(v) for v in df["patient_ids"]] if "patient_ids" in df
                        else None),
    })
    bad = ~out["severity"].isin(SEVERITIES)
    if bad.any():
        raise ValueError(f"{detector_id}: unknown severity {out.loc[bad, 'severity'].iloc[0]!r}")
    out = out.drop_duplicates("finding_id", keep="last")
    return out.sort_values(["start", "finding_id"]).reset_index(drop=True)


def _id_list(v) -> list[str] | None:
    """A detector's patient list as the contract keeps it: distinct ids, sorted."""
    ids = patient_list(v)
    return sorted(set(ids)) if ids else None


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in FINDING_COLUMNS})


def raise_severity(sev: str | pd.Series, steps: int | pd.Series = 1) -> Any:
    """Severity `steps` levels higher, capped at critical (works on scalars and Series)."""
    if isinstance(sev, pd.Series):
        rank = sev.map(SEVERITY_RANK).fillna(0).astype(int) + steps
        return rank.clip(upper=len(SEVERITIES) - 1).map(dict(enumerate(SEVERITIES)))
    return SEVERITIES[min(SEVERITY_RANK[sev] + int(steps), len(SEVERITIES) - 1)]
