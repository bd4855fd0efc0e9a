"""`emraudit.toml`: load, validate, resolve paths.

The file is validated with strict pydantic models that forbid unknown keys and never coerce
(`"no"` is not a boolean, `"35"` not a number), so a typo or a wrong type is an error naming
the file and the key, never a silent fall-back to a default. A key that does not apply to a
source's connector, a configuration without any source, and ranges (office hours within the
day, start before end) are errors too. Relative paths resolve against the config file's
folder. Detector overrides are checked at load time against the detector declarations (see
`emraudit.detectors.profile`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, \
    model_validator

from emraudit.errors import ConfigError
from emraudit.model import TABLES


class _Strict(BaseModel):
    # strict: no coercion from strings to numbers or booleans, nor numbers to booleans
    model_config = ConfigDict(extra="forbid", strict=True)


def _whole_numbers(v, what: str) -> tuple[int, ...]:
    """A TOML array of whole numbers (strict: not "8", not 8.0, not true) as a tuple."""
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"expected {what}, got {v!r}")
    bad = [x for x in v if isinstance(x, bool) or not isinstance(x, int)]
    if bad:
        raise ValueError(f"expected {what}, got {bad[0]!r} in {list(v)!r}")
    return tuple(v)


_SITE_ID_RULE = r"^[^\x00-\x1f\x7f]{1,64}$"    # an id: 1-64 characters, no control ones


class SiteConfig(_Strict):
    name: str = "Hospital"
    # the site (hospital) id of rows whose source gives none: one store may audit many
    # hospitals, each row carrying its site_id (docs/SITES.md)
    id: str = Field(default="default", pattern=_SITE_ID_RULE)
    timezone: str = "Asia/Shanghai"
    office_hours: tuple[int, int] = (8, 18)   # hours [start, end) for users without a roster
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday=0
    # the hospital's own address ranges (CIDR); access from elsewhere is a signal of its own
    networks: list[str] = []

    @field_validator("networks")
    @classmethod
    def _cidr(cls, v: list[str]) -> list[str]:
        import ipaddress
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"not a network: {n!r} (expected CIDR such as "
                                 "10.0.0.0/8)") from None
        return v

    @field_validator("office_hours", mode="before")
    @classmethod
    def _hours(cls, v) -> tuple[int, int]:
        what = "[start, end] in whole hours, e.g. [8, 18]"
        hours = _whole_numbers(v, what)
        if len(hours) != 2:
            raise ValueError(f"expected {what}, got {list(hours)!r}")
        start, end = hours
        if not (0 <= start < end <= 24):
            raise ValueError(f"expected 0 <= start < end <= 24, got {list(hours)!r}")
        return hours

    @field_validator("workdays", mode="before")
    @classmethod
    def _days(cls, v) -> tuple[int, ...]:
        what = "weekdays 0 (Monday) to 6 (Sunday), e.g. [0, 1, 2, 3, 4]"
        days = _whole_numbers(v, what)
        if not days or any(not 0 <= d <= 6 for d in days) or len(set(days)) != len(days):
            raise ValueError(f"expected distinct {what}, got {list(days)!r}")
        return days

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(v)
        except Exception as exc:  # noqa: BLE001 - any failure means an unknown zone
            raise ValueError(f"unknown timezone '{v}' (expected an IANA name such as "
                             "Asia/Shanghai)") from exc
        return v


class StoreConfig(_Strict):
    url: str = "sqlite:///emraudit.db"
    lake: str = Field(default="lake", min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        try:
            make_url(v)
        except ArgumentError:
            raise ValueError("expected a database URL such as sqlite:///emraudit.db or "
                             "postgresql+psycopg://user@host/db") from None
        return v


# which source keys each connector reads: any other key set for it is a mistake
_CONNECTOR_KEYS = {
    "csv": {"path", "encoding", "delimiter"},
    "jsonl": {"path", "encoding"},
    "fhir": {"path", "encoding"},
    "sql": {"url", "password_env", "query", "sql_table", "watermark"},
}
_SOURCE_SPECIFIC = set().union(*_CONNECTOR_KEYS.values())


class SourceConfig(_Strict):
    connector: str = "csv"            # a kind of emraudit.connectors.connector_kinds()
    table: str | None = None          # canonical table; defaults to the section name
    path: str | None = None           # csv/jsonl/fhir: a file, a folder or a glob
    url: str | None = None            # sql: SQLAlchemy URL, may contain {password}
    password_env: str | None = None   # sql: environment variable holding the password
    query: str | None = None          # sql: a read-only SELECT
    sql_table: str | None = None      # sql: a table name (validated, never pasted)
    watermark: str | None = None      # sql: column that grows (id or time) for incremental reads
    profile: str = "canonical"
    encoding: str | None = None       # csv: utf-8, utf-8-sig, gb18030 …; detected when absent
    delimiter: str | None = None      # csv: detected when absent
    batch_rows: int = Field(default=500_000, gt=0)
    expected_daily: bool | None = None  # coverage: warn on days with no events
    enabled: bool = True
    # the site of this source's rows that carry no site_id (one hospital's feed in a
    # region); default: [site] id
    site: str | None = Field(default=None, pattern=_SITE_ID_RULE)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import codecs
        try:
            name = codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (expected e.g. utf-8, utf-8-sig, "
                             "gb18030, gbk)") from None
        if name.startswith(("utf-16", "utf-32")):
            raise ValueError("UTF-16/UTF-32 files are not supported: save the export as "
                             "UTF-8 or GB18030")
        return v

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, v: str | None) -> str | None:
        if v is None or v in ("\\t", "tab", "TAB") or (len(v) == 1 and v.isascii()):
            return v
        raise ValueError(f"expected one ASCII character (or \"tab\"), got {v!r}")

    @model_validator(mode="after")
    def _keys_of_connector(self):
        # a plugin's kind (entry point) reads what it reads: any of these keys
        keys = _CONNECTOR_KEYS.get(self.connector, _SOURCE_SPECIFIC)
        wrong = sorted((self.model_fields_set & _SOURCE_SPECIFIC) - keys)
        if wrong:
            raise ValueError(f"'{wrong[0]}' does not apply to the {self.connector} connector "
                             f"(its keys: {', '.join(sorted(keys))})")
        return self

    @field_validator("connector")
    @classmethod
    def _connector(cls, v: str) -> str:
        from emraudit.connectors import connector_kinds   # built-ins and installed plugins
        if v not in connector_kinds():
            raise ValueError(f"unknown connector {v!r} (expected one of "
                             f"{', '.join(sorted(connector_kinds()))})")
        return v


class ReportsConfig(_Strict):
    dir: str = "reports"
    lang: Literal["zh", "en"] = "zh"
    mask_patients: bool = True
    # older keys, still read: one deadline for every severity when [ledger.deadline_days]
    # is not given, and the responsible person when [ledger] default_responsible is not
    deadline_days: int = Field(default=30, gt=0)
    responsible: str | None = None
    group: str | None = None          # a group that may read report files (2750/0640)


class LedgerDeadlines(BaseModel):
    """Days to rectify a problem, by its severity, counted from the day its case opened."""

    model_config = ConfigDict(extra="forbid", strict=True)
    critical: int = Field(default=7, gt=0)
    high: int = Field(default=15, gt=0)
    medium: int = Field(default=30, gt=0)
    low: int = Field(default=60, gt=0)


class LedgerConfig(BaseModel):
    """The problem ledger's 责任人 and 整改时限 (emraudit.reports.ledger)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    deadline_days: LedgerDeadlines = LedgerDeadlines()
    # department -> the person responsible when the departments table names no head for it
    responsible: dict[str, str] = {}
    # when neither the department, its parents nor `responsible` name anyone
    default_responsible: str | None = None
    # days a user has to explain in writing after a notice (告知书)
    notice_reply_days: int = Field(default=5, gt=0, le=90)


class ScanConfig(_Strict):
    lookback_days: int = Field(default=35, ge=1)  # history loaded for baselines
    window_days: int = Field(default=1, ge=1)     # default scan window when nothing is new
    # processes the detectors are divided among (forked: they share the loaded events)
    workers: int = Field(default=2, ge=1, le=64)
    # below this many loaded events detectors run in the scan's own process (a fork costs
    # more than it saves on a small hospital or the sample)
    parallel_min_events: int = Field(default=500_000, ge=0)


class EngineConfig(_Strict):
    """How detection runs when a scan is too large for one process (emraudit.engine)."""

    kind: Literal["local", "spark"] = "local"   # local worker processes, or Apache Spark
    master: str | None = None         # spark: master URL (local[2], yarn, k8s://…, spark://…)
    # events per partition of the users (a worker holds one partition at a time); scans
    # with fewer than [scan] parallel_min_events events run in the scan's own process
    partition_events: int = Field(default=1_000_000, ge=1_000)
    scratch: str | None = None        # folder for workers' results (default: the system's)
    # local engine: most memory (MB, PSS of the scan's process and its workers) the tree may
    # hold before another worker starts; a worker always starts when none runs, so the
    # budget limits how many run at once, never whether the scan runs. Default: 70% of the
    # memory the system has available when the scan starts (engine/admission.py)
    memory_limit_mb: int | None = Field(default=None, ge=256)
    spark_conf: dict[str, str] = {}   # extra Spark settings (spark.executor.memory …)


class ReviewConfig(_Strict):
    # cases a scan admits to the review queue per night it covers, highest risk first; the
    # rest stay open, stored and counted below the budget (`cases list --below-budget`)
    budget: int = Field(default=30, ge=1, le=100_000)
    # case pages written with each scan's reports, highest risk first; any other case is
    # rendered on demand with `emraudit report case ID`
    max_pages: int = Field(default=2_000, ge=0, le=1_000_000)


class Config(BaseModel):
    """The whole validated configuration, with the file it came from."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    site: SiteConfig = SiteConfig()
    store: StoreConfig = StoreConfig()
    sources: dict[str, SourceConfig] = {}
    detectors: dict[str, Any] = {}
    reports: ReportsConfig = ReportsConfig()
    scan: ScanConfig = ScanConfig()
    review: ReviewConfig = ReviewConfig()
    ledger: LedgerConfig = LedgerConfig()
    engine: EngineConfig = EngineConfig()

    @property
    def base(self) -> Path:
        return self.path.parent

    def resolve(self, p: str | os.PathLike) -> Path:
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else (self.base / p)

    @property
    def store_url(self) -> str:
        url = os.environ.get("EMRAUDIT_STORE_URL") or self.store.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///"):]
            if rel and rel != ":memory:" and not rel.startswith("file:"):   # a URI: as given
                url = "sqlite:///" + str(self.resolve(rel))
        return url

    @property
    def lake_dir(self) -> Path:
        return self.resolve(os.environ.get("EMRAUDIT_LAKE") or self.store.lake)

    @property
    def reports_dir(self) -> Path:
        return self.resolve(self.reports.dir)

    @property
    def tz(self) -> str:
        return self.site.timezone

    def source_table(self, name: str) -> str:
        return self.sources[name].table or name

    def source_site(self, name: str) -> str:
        """The site of a source's rows that name none."""
        return self.sources[name].site or self.site.id


def _format_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc)


# pydantic's error types in words a hospital's administrator reads
_EXPECTED = {
    "bool_type": "expected true or false", "int_type": "expected a whole number",
    "float_type": "expected a number", "string_type": "expected a string in quotes",
    "dict_type": "expected a table", "model_type": "expected a table",
    "tuple_type": "expected an array", "list_type": "expected an array",
}


def _explain(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"expected {err.get('ctx', {}).get('expected', 'one of the allowed values')}"
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "string_pattern_mismatch":     # the site ids
        return "expected a site id: 1 to 64 characters, no control characters"
    return err.get("msg", "invalid value").replace("Value error, ", "")


def _shown(err: dict) -> str:
    """' (got …)' after the message, unless the message quotes the value already or the
    value is a whole table."""
    value = err.get("input")
    if err.get("type") in ("extra_forbidden", "value_error") or isinstance(value, dict):
        return ""
    return f" (got {value!r})"


def parse_config(data: dict, path: Path) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("expected a TOML document of tables", file=str(path))
    try:
        cfg = Config(path=path, **data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more mistake(s))" if len(errors) > 1 else ""
        raise ConfigError(_explain(first) + _shown(first) + more,
                          file=str(path), key=_format_loc(first["loc"])) from None
    except TypeError as exc:
        raise ConfigError(str(exc), file=str(path)) from None
    if not cfg.sources:
        raise ConfigError("no source is configured: add a [sources.access_log] table with "
                          "the connector and the path or url of the access log",
                          file=str(path), key="sources")
    for name in cfg.sources:
        table = cfg.source_table(name)
        if table not in TABLES:
            raise ConfigError(f"unknown table '{table}' (expected one of {', '.join(TABLES)}; "
                              "name the section after a table or set table = …)",
                              file=str(path), key=f"sources.{name}")
        src = cfg.sources[name]
        if src.connector in ("csv", "jsonl", "fhir") and not src.path:
            raise ConfigError(f"the {src.connector} connector needs 'path'", file=str(path),
                              key=f"sources.{name}.path")
        if src.connector == "sql" and not src.url:
            raise ConfigError("the sql connector needs 'url'", file=str(path),
                              key=f"sources.{name}.url")
        if src.site is not None and table != "access_log" and \
                sum(cfg.source_table(n) == table for n in cfg.sources) > 1:
            # a reference table is one snapshot: a second source would replace this one's
            raise ConfigError(f"'site' on a {table} source needs it to be the table's only "
                              "source (each load replaces the table): read every site's "
                              f"{table} through one source with a site_id column",
                              file=str(path), key=f"sources.{name}.site")
        if src.connector == "sql" and not (src.query or src.sql_table):
            raise ConfigError("the sql connector needs 'query' or 'sql_table'", file=str(path),
                              key=f"sources.{name}")
    _check_detectors(cfg)
    return cfg


def _check_detectors(cfg: Config) -> None:
    """[detectors] overrides against the declarations (and the profile they name), so that a
    mistake there stops every command, not only the ones that run detectors."""
    from emraudit.detectors.profile import resolve_detectors
    resolve_detectors(cfg.detectors, cfg.path)


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file; every mistake is a ConfigError naming file and key."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("config file not found", file=str(p))
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not valid TOML: the file must be UTF-8", file=str(p)) from None
    return parse_config(data, p.resolve())


def default_config(base: Path) -> Config:
    """A config with every default, rooted at `base` (used by tests and `demo`)."""
    return Config(path=base / "emraudit.toml")
