"""Canonical tables: the schema every connector produces and every detector consumes.

This module is the contract of DESIGN.md "Canonical tables". It declares each table's columns
(name, kind, required, allowed values) and validates a frame against them in one vectorized
pass: ids become strings, times become timezone-aware in the site timezone, enumerations are
normalized, and rows that cannot be coerced go to quarantine with the reason. Loose values are
quarantined too, never cut to fit: a negative or fractional count, a yes/no field that says
neither, a nested JSON object or list where a single value belongs, a control character
(NUL, ESC …) in an id. Unknown extra columns are kept untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from emraudit.access_rights import (normalize_classes, normalize_permissions,
                                    normalize_scope)
from emraudit.fastops import blank_text, duplicated_text, text_missing_where, trimmed_ids
from emraudit.timeparse import parse_timestamps

ACTIONS = (
    "view", "query", "create", "update", "delete", "sign", "print", "export", "copy",
    "download", "login", "logout", "login_failed", "break_glass",
)
PATIENT_ACTIONS = ("view", "query", "create", "update", "delete", "sign", "print", "export",
                   "copy", "download", "break_glass")
OUTPUT_ACTIONS = ("print", "export", "copy", "download")
ROLES = ("physician", "nurse", "technician", "pharmacist", "trainee", "medical_records",
         "quality_control", "insurance", "admin", "it", "other")
USER_STATUSES = ("active", "leave", "terminated")
RELATION_KINDS = ("admission", "outpatient", "consult", "order", "appointment", "care_team",
                  "transfer", "document", "access_request")
SHIFT_KINDS = ("duty", "leave", "surgery", "offsite")
OUTCOMES = ("success", "failure")
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
RECTIFICATION_ITEMS = {
    "8": "（八）泄露患者隐私问题",
    "9": "（九）电子病历系统管理不到位问题",
    "6": "（六）医疗文书书写、管理不规范问题",
}

# Words seen in HIS staff masters, mapped onto the normalized roles. Matching is on the
# lower-cased, stripped value; anything unmatched becomes "other" and keeps `role_raw`.
ROLE_SYNONYMS = {
    "physician": "physician", "doctor": "physician", "md": "physician", "attending": "physician",
    "resident": "physician", "医生": "physician", "医师": "physician", "主治医师": "physician",
    "住院医师": "physician", "主任医师": "physician", "副主任医师": "physician",
    "nurse": "nurse", "rn": "nurse", "护士": "nurse", "护师": "nurse", "护士长": "nurse",
    "technician": "technician", "tech": "technician", "技师": "technician", "医技": "technician",
    "pharmacist": "pharmacist", "药师": "pharmacist", "药剂师": "pharmacist",
    "trainee": "trainee", "student": "trainee", "intern": "trainee", "进修生": "trainee",
    "实习生": "trainee", "规培": "trainee",
    "medical_records": "medical_records", "records": "medical_records", "病案室": "medical_records",
    "病案": "medical_records",
    "quality_control": "quality_control", "qc": "quality_control", "质控科": "quality_control",
    "质控": "quality_control",
    "insurance": "insurance", "医保办": "insurance", "医保": "insurance",
    "admin": "admin", "administrator": "admin", "医务处": "admin", "行政": "admin",
    "it": "it", "信息科": "it", "vendor": "it", "工程师": "it",
    "other": "other",
}
USER_STATUS_SYNONYMS = {
    "active": "active", "在职": "active", "正常": "active", "1": "active",
    "leave": "leave", "休假": "leave", "停薪": "leave",
    "terminated": "terminated", "离职": "terminated", "停用": "terminated", "inactive": "terminated",
    "disabled": "terminated", "0": "terminated",
}
TRUE_WORDS = {"1", "true", "t", "yes", "y", "是", "x"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "否"}

# control characters an id must not hold (RE2): C0 but the line-ending whitespace an export
# may leave at a value's edges, DEL and C1; whitespace inside an id is refused on the trimmed
# value
_ID_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_ID_INNER_SPACE = r"[\t\n\r]"
# text that may be a JSON object or list (confirmed by parsing it)
_NESTED_START = r"^\s*[\[{]"


@dataclass(frozen=True)
class Column:
    """One canonical column: `kind` is id|str|ts|int|bool|enum."""

    name: str
    kind: str = "str"
    required: bool = False
    allowed: tuple[str, ...] | None = None
    default: object = None
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    doc: str = ""

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


# the site (hospital) of every row: one store can audit many hospitals of a group or a region
SITE_ID = "site_id"
SITE_DOC = ("the hospital (site) the row belongs to; [sources.X] site or [site] id when "
            "absent or blank. Care relations and rosters apply within their site")


def _c(name, kind="str", required=False, allowed=None, default=None, doc=""):
    return Column(name, kind, required, allowed, default, doc)


ACCESS_LOG = TableSchema("access_log", (
    _c("event_id", "id", doc="unique id; derived from source and row when absent"),
    _c("ts", "ts", True, doc="when"),
    _c("user_id", "id", True, doc="the account used (工号 / login)"),
    _c("patient_id", "id", doc="the patient whose record was touched"),
    _c("action", "enum", True, ACTIONS, doc="canonical action"),
    _c("action_raw", "str", doc="the source's own word for it"),
    _c("module", "str", doc="part of the record (病历, 医嘱, 影像 …)"),
    _c("workstation", "str"), _c("ip", "str"), _c("session_id", "str"),
    _c("record_count", "int", default=1, doc="records in one print/export"),
    _c("encounter_id", "id"), _c("facility", "str"),
    _c("acting_user_id", "id", doc="the person acting when recorded apart from the account"),
    _c("outcome", "enum", allowed=OUTCOMES, default="success"),
    _c("reason", "str", doc="reason given (break-the-glass, access request)"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("event_id",), doc="one row per access to the EMR")

USERS = TableSchema("users", (
    _c("user_id", "id", True), _c("name"), _c("role", "enum", allowed=ROLES, default="other"),
    _c("department"), _c("ward"),
    _c("status", "enum", allowed=USER_STATUSES, default="active"),
    _c("start_date", "ts"), _c("end_date", "ts"), _c("access_until", "ts"),
    _c("supervisor_id", "id"), _c("patient_id", "id"), _c("address"), _c("phone"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("user_id",), doc="staff master")

PATIENTS = TableSchema("patients", (
    _c("patient_id", "id", True), _c("name"), _c("sex"), _c("birth_date", "ts"), _c("address"),
    _c("phone"),
    _c("vip", "bool", default=False), _c("sensitive", "bool", default=False),
    _c("watch", "bool", default=False, doc="records sealed after an incident (封存)"),
    _c("watch_team", "str", doc="user ids allowed to read a sealed record, separated by ';'"),
    _c("deceased_date", "ts"), _c("employee_user_id", "id"),
    _c("sensitive_class", "str", doc="record classes needing a grant of their own: "
       "psychiatric, infectious, reproductive, minor, vip, sealed (精神, 传染病/HIV, 生殖, "
       "未成年, VIP, 封存), several separated by ';'; other words kept as written"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("patient_id",), doc="patient master")

CARE_RELATIONS = TableSchema("care_relations", (
    _c("patient_id", "id", True), _c("user_id", "id"), _c("department"), _c("ward"),
    _c("kind", "enum", True, RELATION_KINDS), _c("start", "ts", True), _c("end", "ts"),
    _c("encounter_id", "id"),
    _c("sensitive_class", "str", doc="record classes of this encounter (a psychiatric "
       "admission of an otherwise ordinary patient), as on patients"),
    _c("site_id", "id", doc=SITE_DOC),
), doc="time-bounded care relationships; empty user_id relates the department or ward")

PATIENT_CONTACTS = TableSchema("patient_contacts", (
    _c("patient_id", "id", True), _c("name"), _c("relation"), _c("phone"), _c("address"),
    _c("site_id", "id", doc=SITE_DOC),
), doc="next of kin and contacts")

SHIFTS = TableSchema("shifts", (
    _c("user_id", "id", True), _c("start", "ts", True), _c("end", "ts", True),
    _c("kind", "enum", allowed=SHIFT_KINDS, default="duty"), _c("ward"), _c("location"),
    _c("site_id", "id", doc=SITE_DOC),
), doc="duty roster, leave, surgery and offsite blocks")

WORKSTATIONS = TableSchema("workstations", (
    _c("workstation", "str", True), _c("ip"), _c("department"), _c("campus"), _c("location"),
    _c("site_id", "id", doc=SITE_DOC),
), doc="where terminals are")

DEPARTMENTS = TableSchema("departments", (
    _c("department", "str", True, doc="the department's name, as users.department gives it"),
    _c("parent", "str", doc="the department it belongs to (大科, 职能部门 …)"),
    _c("head_user_id", "id", doc="the head's account (科主任 / 负责人)"),
    _c("head_name", "str", doc="the head's name"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("department",), doc="departments and their heads: the 责任人 of the problem ledger")

GRANTS = TableSchema("grants", (
    _c("grant_id", "id", doc="unique id; derived from the row's content when absent"),
    _c("user_id", "id", doc="the account granted (empty when the grant is to a role)"),
    _c("role", "str", doc="with user_id: the user is given this role; alone: the role is "
       "given the permission"),
    _c("permission", "str", doc="read, write, print, export, break_glass, grant, all "
       "(several separated by ';'); other words kept as written"),
    _c("record_class", "str", doc="sensitive classes the grant reaches (as "
       "patients.sensitive_class); empty: ordinary records"),
    _c("scope", "str", doc="own (the holder's department or ward), all (the whole "
       "hospital) or a department's name"),
    _c("department", "str", doc="the department the grant was made for (the holder's post "
       "then)"),
    _c("granted_at", "ts", True, doc="when it was granted (授权时间)"),
    _c("granted_by", "id", doc="who granted it (授权人)"),
    _c("approved_by", "id", doc="who approved it (审批人)"),
    _c("revoked_at", "ts", doc="when it was revoked (撤销时间); empty: still held"),
    _c("expires_at", "ts", doc="when it lapses by itself (有效期至)"),
    _c("reason", "str", doc="why it was granted (授权原因)"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("grant_id",), doc="access rights granted to accounts and roles, with who granted "
   "and approved them")

ROLES_TABLE = TableSchema("roles", (
    _c("role", "str", True, doc="the role's name (the normalized role where a synonym "
       "matches, e.g. 医师 -> physician; otherwise as written)"),
    _c("permissions", "str", doc="what every holder of the role may do, as "
       "grants.permission"),
    _c("record_class", "str", doc="sensitive classes the role reaches, as "
       "grants.record_class"),
    _c("scope", "str", doc="as grants.scope"),
    _c("approved_by", "id", doc="who approved the role's definition"),
    _c("description", "str"),
    _c("site_id", "id", doc=SITE_DOC),
), key=("role", "permissions", "record_class", "scope"), doc="what each role may do (one "
   "row per role, or several: they add up); users hold their users.role and the roles "
   "granted to them")

TABLES: dict[str, TableSchema] = {t.name: t for t in (
    ACCESS_LOG, USERS, PATIENTS, CARE_RELATIONS, PATIENT_CONTACTS, SHIFTS, WORKSTATIONS,
    DEPARTMENTS, GRANTS, ROLES_TABLE)}
REFERENCE_TABLES = tuple(n for n in TABLES if n != "access_log")

# Enum-like access-log columns that validation hands on as plain strings, whatever dtype the
# connector produced (the scan codes them when it loads events: CODED_EVENT_COLUMNS).
CATEGORICAL = ("action", "outcome", "module", "facility")

# Event columns a scan holds dictionary-coded (pandas categoricals with sorted categories): a
# day of 10 million events repeats a few thousand users, terminals and actions, and filters
# and takes then move 4-byte codes instead of strings. Not event_id (unique) nor ts.
CODED_EVENT_COLUMNS = ("user_id", "patient_id", "action", "module", "workstation", "ip",
                       "session_id", "encounter_id", "facility", "acting_user_id", "outcome",
                       "reason", "_source", "site_id")

EVENT_ID_FIELDS = ("ts", "user_id", "patient_id", "action", "action_raw", "module",
                   "workstation", "ip", "session_id", "record_count", "encounter_id",
                   "acting_user_id")

SOURCE_REF = "_source_ref"   # "file:line" or "table:key": where the raw row came from
SOURCE = "_source"           # the source name (config section)


@dataclass
class Validated:
    """The outcome of validating one batch: what was accepted and what was quarantined."""

    accepted: pd.DataFrame
    quarantine: pd.DataFrame  # columns: source, source_ref, reason, raw
    read: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"read": self.read, "accepted": len(self.accepted),
                "quarantined": len(self.quarantine), "duplicates": self.duplicates}


def _blank(s: pd.Series) -> pd.Series:
    """True where a value is missing or only whitespace."""
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return pd.Series(blank_text(s), index=s.index)
    return s.isna()


def to_id(s: pd.Series) -> pd.Series:
    """Ids are strings: 1234.0 read as a float becomes '1234'; blanks become missing."""
    if pd.api.types.is_float_dtype(s):
        out = s.astype("Int64").astype("string")
    elif pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        out = s.astype("string")
    else:
        return pd.Series(pd.arrays.ArrowStringArray(trimmed_ids(s)), index=s.index)
    return out.mask(out == "", pd.NA)


def _plain_ints(s: pd.Series, default: int) -> pd.Series | None:
    """A text column of plain integers (or missing) parsed by Arrow in one cast; None when
    any value needs the general route (blanks, '1.0', spaces, words)."""
    if not (pd.api.types.is_string_dtype(s) and hasattr(s.array, "__arrow_array__")):
        return None
    try:
        arr = pa.array(s.array).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return None
    return pd.Series(arr.fill_null(default).to_numpy(), index=s.index, dtype="int64")


def to_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(False).astype(bool)
    st = s.astype("string").str.strip().str.lower()
    return st.isin(TRUE_WORDS).fillna(False).astype(bool)


def _not_yes_no(s: pd.Series) -> pd.Series:
    """Where a yes/no value is neither (a blank is no)."""
    if pd.api.types.is_bool_dtype(s):
        return pd.Series(False, index=s.index)
    st = s.astype("string").str.strip().str.lower()
    known = st.isin(TRUE_WORDS | FALSE_WORDS).fillna(False) | st.isna() | (st == "")
    return ~known.astype(bool)


def _text_array(s: pd.Series) -> pa.Array | None:
    """A text column as one Arrow array (None for typed columns: numbers, times)."""
    if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
        return None
    arr = s.array.__arrow_array__() if hasattr(s.array, "__arrow_array__") else \
        pa.array(s.astype("string"), type=pa.large_string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(arr, pattern), False), dtype=bool)


def _value_bytes(arr: pa.Array) -> np.ndarray | None:
    """The UTF-8 bytes of all of a string array's values, one numpy view (no copy); None
    for other layouts."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    _, offsets, data = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    off = np.frombuffer(offsets, dtype=width, count=len(arr) + 1,
                        offset=arr.offset * np.dtype(width).itemsize)
    if data is None or off[-1] == off[0]:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[off[0]:off[-1]]


def _may_hold_control(arr: pa.Array) -> bool:
    """Whether any value may hold a control character: a byte below 0x20, DEL, or a C1
    character (C2 80..C2 9F in UTF-8). One pass over the bytes: the clean column (nearly
    always) needs no regex."""
    b = _value_bytes(arr)
    if b is None:
        return True
    if not len(b):
        return False
    if (b < 0x20).any() or (b == 0x7F).any():
        return True
    lead = np.flatnonzero(b[:-1] == 0xC2)
    return bool(len(lead) and (b[lead + 1] < 0xA0).any())


def id_control_chars(raw: pd.Series, trimmed: pd.Series) -> np.ndarray:
    """Ids holding a control character (NUL, ESC, …; a tab or line break inside): a byte
    scan of the column, and only when it finds one an Arrow regex over the raw values and
    one over the trimmed ones."""
    arr = _text_array(raw)
    if arr is None or not len(arr) or not _may_hold_control(arr):
        return np.zeros(len(raw), dtype=bool)
    bad = _matches(arr, _ID_CONTROL)
    inner = _text_array(trimmed)
    if inner is not None:
        bad |= _matches(inner, _ID_INNER_SPACE)
    return bad


def _control_reason(raw: pd.Series, column: str):
    """Per failing row: which control character, never the id itself."""
    import re
    rx = re.compile("[\x00-\x1f\x7f-\x9f]")

    def why(mask: pd.Series) -> pd.Series:
        def one(v) -> str:
            text = str(v).strip(" ") if v is not None else ""
            m = rx.search(text)
            code = f"U+{ord(m.group(0)):04X}" if m else "a control character"
            return f"control character {code} in '{column}'"
        return raw[mask].map(one).astype("string")
    return why


def nested_json(s: pd.Series) -> np.ndarray:
    """Values that are a JSON object or list (a nested value where a single one belongs):
    an Arrow regex finds the few candidates, which are then parsed."""
    arr = _text_array(s)
    if arr is None or not len(arr):
        return np.zeros(len(s), dtype=bool)
    b = _value_bytes(arr)
    if b is not None and not ((b == 0x7B).any() or (b == 0x5B).any()):   # no { nor [
        return np.zeros(len(s), dtype=bool)
    cand = _matches(arr, _NESTED_START)
    if not cand.any():
        return cand
    for i in np.flatnonzero(cand):
        try:
            cand[i] = isinstance(json.loads(str(s.iloc[i])), (dict, list))
        except ValueError:
            cand[i] = False
    return cand


def _normalize_enum(col: Column, s: pd.Series) -> pd.Series:
    st = s.astype("string").str.strip()
    lowered = st.str.lower()
    if col.name == "role":
        mapped = lowered.map(ROLE_SYNONYMS)
        return mapped.where(mapped.notna() | st.isna(), "other").fillna(col.default or "other")
    if col.name == "status":
        mapped = lowered.map(USER_STATUS_SYNONYMS)
        return mapped.where(mapped.notna(), lowered)
    return lowered


_HEX = np.array([f"{i:02x}" for i in range(256)], dtype="U2")


def _row_hashes(df: pd.DataFrame, source: str) -> list[np.ndarray]:
    """Two 64-bit row hashes, equal to `hash_pandas_object` of (source, fields…, ts) under two
    keys. Each column is factorized once and only its distinct values are hashed (twice)."""
    from pandas.core.util.hashing import combine_hash_arrays, hash_array
    parts = [(np.zeros(len(df), dtype=np.intp), np.array([source], dtype=object))]
    for c in (c for c in EVENT_ID_FIELDS if c in df.columns and c != "ts"):
        codes, uniq = pd.factorize(df[c].astype("string").fillna("\x00"))
        parts.append((codes, np.asarray(uniq, dtype=object)))
    ts = None
    if "ts" in df.columns:
        ts = (df["ts"].dt.tz_convert("UTC").astype("int64").to_numpy()
              if isinstance(df["ts"].dtype, pd.DatetimeTZDtype)
              else np.asarray(df["ts"].astype("string").fillna("\x00"), dtype=object))
    out = []
    for key in ("emraudit-evt-001", "emraudit-evt-002"):
        def columns(key=key):
            for codes, uniq in parts:
                yield hash_array(uniq, hash_key=key, categorize=False)[codes]
            if ts is not None:
                yield hash_array(ts, hash_key=key)
        out.append(combine_hash_arrays(columns(), len(parts) + (ts is not None)))
    return out


def derive_event_ids(df: pd.DataFrame, source: str) -> pd.Series:
    """Deterministic ids from the source name and the canonical fields of each row.

    Two 64-bit hashes with different keys give 128 bits, so collisions are negligible even
    over years of events; the same row from the same source always gets the same id.
    """
    if len(df) == 0:
        return pd.Series([], index=df.index, dtype="string")
    h1, h2 = _row_hashes(df, source)
    both = np.empty((len(df), 2), dtype=">u8")
    both[:, 0] = h1
    both[:, 1] = h2
    hexed = _HEX[both.view(np.uint8).reshape(len(df), 16)]   # (n, 16) two-char pieces
    ids = np.ascontiguousarray(hexed).view("U32").ravel()
    return pd.Series(ids, index=df.index, dtype="string")


def _raw_json(df: pd.DataFrame) -> pd.Series:
    """The quarantined rows as JSON text, for the officer reading the quarantine."""
    if df.empty:
        return pd.Series([], dtype="string")
    keep = [c for c in df.columns if c not in (SOURCE_REF, SOURCE)]
    # records end with "\n" (inside a value it is escaped); splitlines() would also cut at
    # the NEL, LS and separator characters a broken value may hold
    text = df[keep].astype("string").to_json(orient="records", lines=True, force_ascii=False)
    lines = text.rstrip("\n").split("\n")
    return pd.Series(lines, index=df.index, dtype="string")


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({"source": pd.Series(dtype="string"),
                         "source_ref": pd.Series(dtype="string"),
                         "reason": pd.Series(dtype="string"),
                         "raw": pd.Series(dtype="string")})


def empty_table(table: str, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """An empty frame with the table's canonical columns and dtypes."""
    schema = TABLES[table]
    data = {}
    for c in schema.columns:
        if c.kind == "ts":
            data[c.name] = pd.Series(dtype=f"datetime64[ns, {tz}]")
        elif c.kind == "int":
            data[c.name] = pd.Series(dtype="int64")
        elif c.kind == "bool":
            data[c.name] = pd.Series(dtype=bool)
        else:
            data[c.name] = pd.Series(dtype="string")
    return pd.DataFrame(data)


def validate(table: str, df: pd.DataFrame, tz: str, source: str,
             site: str | None = None) -> Validated:
    """Coerce `df` (canonical column names, strings or typed) to the table's schema.

    `df` may carry `_source_ref` (where each row came from); it is kept on accepted rows and
    copied to the quarantine. Rows are quarantined, never dropped silently; duplicates (same
    event_id, or the same key within one site for keyed reference tables) are counted apart.
    `site`: the site of rows whose `site_id` is absent or blank (the ingest passes the
    source's or the configuration's); None leaves `site_id` as the source gave it.
    """
    schema = TABLES[table]
    n = len(df)
    if SOURCE_REF not in df.columns:
        df = df.assign(**{SOURCE_REF: source + ":" + pd.Series(np.arange(1, n + 1),
                                                                 index=df.index).astype("string")})
    original = df          # raw values, for the quarantine
    df = df.copy()
    reasons = pd.Series(pd.NA, index=df.index, dtype="string")

    def fail(mask: pd.Series, why):
        """`why`: a reason, or a function of the failing rows' mask giving one per row (so
        the text is only built for rows that fail)."""
        nonlocal reasons
        mask = mask.fillna(False) & reasons.isna()
        if mask.any():
            if callable(why):
                why = why(mask).reindex(reasons.index)
            reasons = reasons.mask(mask, why if isinstance(why, str) else why[mask])

    for col in schema.columns:
        if col.name not in df.columns:
            if col.required and not (col.name == "event_id"):
                raise KeyError(col.name)
            if col.default is not None:
                df[col.name] = col.default
            continue
        s = df[col.name]
        nested = nested_json(s)
        if nested.any():
            fail(pd.Series(nested, index=df.index),
                 f"'{col.name}' holds a nested JSON value (an object or a list), expected "
                 "a single value")
        if col.kind == "ts":
            parsed = parse_timestamps(s, tz)
            bad = parsed.isna() & ~_blank(s)
            fail(bad, lambda m: "unparseable time in '" + col.name + "': "
                 + s[m].astype("string").str.slice(0, 40))
            df[col.name] = parsed
        elif col.kind == "id":
            ids = to_id(s)
            control = id_control_chars(s, ids)
            if control.any():
                fail(pd.Series(control, index=df.index), _control_reason(s, col.name))
            df[col.name] = ids
        elif col.kind == "int":
            default = col.default if col.default is not None else 0
            fast = _plain_ints(s, default)
            if fast is None:
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna() & ~_blank(s)
                fail(bad, f"'{col.name}' is not a whole number")
                numf = num.astype("float64")
                frac = num.notna() & (np.floor(numf) != numf)
                fail(frac, lambda m: f"'{col.name}' is not a whole number ("
                     + s[m].astype("string").str.slice(0, 20) + ")")
                huge = num.notna() & ~frac & (numf.abs() >= 2.0 ** 53)
                fail(huge, f"'{col.name}' is too large to be a count")
                fast = num.where(~(frac | huge), default).fillna(default).astype("int64")
            # counts: a negative one is a broken export, not a count
            fail(pd.Series(fast < 0, index=df.index), lambda m: f"'{col.name}' is negative ("
                 + fast[m].astype("string") + ")")
            df[col.name] = fast
        elif col.kind == "bool":
            fail(_not_yes_no(s), lambda m: f"'{col.name}' is not yes/no ('"
                 + s[m].astype("string").str.slice(0, 20) + "')")
            df[col.name] = to_bool(s)
        elif col.kind == "enum":
            norm = _normalize_enum(col, s)
            if col.default is not None:
                norm = norm.fillna(col.default)
            if col.allowed:
                bad = ~norm.isin(col.allowed) & norm.notna()
                fail(bad, lambda m: f"unknown {col.name} '" + norm[m].astype("string").fillna("")
                     + "'")
            df[col.name] = norm.astype("string")
        else:
            st = s.astype("string")
            blank = blank_text(st)
            df[col.name] = text_missing_where(st, blank) if blank.any() else st
        if col.required and col.name != "event_id":
            fail(df[col.name].isna() & reasons.isna(), f"missing required '{col.name}'")

    if table == "access_log":
        if "outcome" in df.columns:
            df.loc[df["action"] == "login_failed", "outcome"] = "failure"
        needs_patient = df["action"].isin(PATIENT_ACTIONS) & (df["action"] != "break_glass")
        if "patient_id" not in df.columns:
            df["patient_id"] = pd.Series(pd.NA, index=df.index, dtype="string")
        fail(needs_patient & df["patient_id"].isna(),
             lambda m: "no patient for a patient action '"
             + df.loc[m, "action"].astype("string").fillna("") + "'")
        ev = df["event_id"] if "event_id" in df.columns else pd.Series(pd.NA, index=df.index,
                                                                         dtype="string")
        missing = ev.isna()
        if missing.any():
            ev = ev.copy()
            ev[missing] = derive_event_ids(df.loc[missing], source)
        df["event_id"] = ev.astype("string")
    if table in RIGHTS_NORMALIZED:
        df = _normalize_rights(table, df, fail, source)
    if table == "care_relations" and "end" in df.columns:
        fail(df["end"].notna() & (df["end"] < df["start"]), "care relation ends before it starts")
    if table == "shifts":
        fail(df["end"] <= df["start"], "shift ends before it starts")

    if site is not None:
        df[SITE_ID] = (df[SITE_ID].fillna(site) if SITE_ID in df.columns
                       else pd.Series(site, index=df.index, dtype="string"))

    bad = reasons.notna()
    quarantine = empty_quarantine()
    if bad.any():
        qdf = df.loc[bad]
        quarantine = pd.DataFrame({
            "source": source,
            "source_ref": qdf[SOURCE_REF].astype("string"),
            "reason": reasons[bad],
            "raw": _raw_json(original.loc[bad]),
        }).reset_index(drop=True)
    accepted = df.loc[~bad]
    duplicates = 0
    key = list(schema.key)
    if key and table != "access_log" and SITE_ID in accepted.columns:
        key = [SITE_ID] + key        # two hospitals may both have a user 1001
    if key and all(k in accepted.columns for k in key):
        dup = duplicated_text(accepted[key[0]]) if len(key) == 1 else \
            accepted.duplicated(subset=key, keep="first").to_numpy(dtype=bool)
        duplicates = int(dup.sum())
        accepted = accepted.loc[~dup]
    for c in CATEGORICAL:
        if c in accepted.columns and table == "access_log":
            accepted[c] = accepted[c].astype("string")
    return Validated(accepted.reset_index(drop=True), quarantine, read=n, duplicates=duplicates)


# the list-valued columns of the rights tables and how each is normalized
RIGHTS_NORMALIZED = {
    "patients": {"sensitive_class": normalize_classes},
    "care_relations": {"sensitive_class": normalize_classes},
    "grants": {"permission": normalize_permissions, "record_class": normalize_classes,
               "scope": normalize_scope, "role": None},
    "roles": {"permissions": normalize_permissions, "record_class": normalize_classes,
              "scope": normalize_scope, "role": None},
}
GRANT_ID_FIELDS = ("user_id", "role", "permission", "record_class", "scope", "department",
                   "granted_at")


def normalize_role_names(s: pd.Series) -> pd.Series:
    """Role names in grants and roles: a known synonym becomes the normalized role (医师 ->
    physician, so it meets users.role); any other name (精神科医护组) is kept as written."""
    st = s.astype("string").str.strip()
    mapped = st.str.lower().map(ROLE_SYNONYMS)
    return mapped.where(mapped.notna(), st).astype("string")


def _normalize_rights(table: str, df: pd.DataFrame, fail, source: str) -> pd.DataFrame:
    """Normalize the rights columns of `table` and check the rows' shape (a grant names a
    holder and what is granted; it is not revoked before it was granted)."""
    for col, fn in RIGHTS_NORMALIZED[table].items():
        if col in df.columns:
            df[col] = (fn or normalize_role_names)(df[col])
    if table != "grants":
        return df
    for c in ("user_id", "role", "permission"):
        if c not in df.columns:
            df[c] = pd.Series(pd.NA, index=df.index, dtype="string")
    fail(df["user_id"].isna() & df["role"].isna(), "a grant names neither a user nor a role")
    fail(df["permission"].isna() & (df["user_id"].isna() | df["role"].isna()),
         "a grant names no permission (nor a role given to a user)")
    if "revoked_at" in df.columns:
        fail(df["revoked_at"].notna() & (df["revoked_at"] < df["granted_at"]),
             "grant revoked before it was granted")
    gid = df["grant_id"] if "grant_id" in df.columns else pd.Series(pd.NA, index=df.index,
                                                                    dtype="string")
    missing = gid.isna()
    if missing.any():
        gid = gid.copy()
        gid[missing] = derive_row_ids(df.loc[missing], GRANT_ID_FIELDS, "G")
    df["grant_id"] = gid.astype("string")
    return df


def derive_row_ids(df: pd.DataFrame, fields: tuple[str, ...], prefix: str) -> pd.Series:
    """Deterministic ids from the content of a reference row (not its source or line): the
    same grant exported again, or read through another source, keeps its id."""
    from pandas.util import hash_pandas_object
    cols = [c for c in fields if c in df.columns]
    part = pd.DataFrame({c: (df[c].dt.tz_convert("UTC").astype("string")
                             if isinstance(df[c].dtype, pd.DatetimeTZDtype)
                             else df[c].astype("string")).fillna("\x00") for c in cols},
                        index=df.index)
    h1 = hash_pandas_object(part, index=False, hash_key="emraudit-row-001").to_numpy()
    h2 = hash_pandas_object(part, index=False, hash_key="emraudit-row-002").to_numpy()
    return pd.Series([f"{prefix}{a:016x}{b:016x}" for a, b in zip(h1, h2)], index=df.index,
                     dtype="string")


def code_event_columns(df: pd.DataFrame) -> pd.DataFrame:
    """CODED_EVENT_COLUMNS of an events frame as categoricals with lexically sorted
    categories (so sorting by them orders as strings do); in place, returns the frame."""
    for c in CODED_EVENT_COLUMNS:
        if c not in df.columns:
            continue
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            if cats.is_monotonic_increasing and cats.dtype == object:
                continue
            codes, cats = col.cat.codes.to_numpy(), cats.astype(str)
        else:
            codes, cats = pd.factorize(col.astype("string"), sort=False)
            cats = pd.Index(cats).astype(str)
        order = np.argsort(np.asarray(cats, dtype=object), kind="stable")
        remap = np.empty(len(cats) + 1, dtype=np.int32)
        remap[order] = np.arange(len(cats), dtype=np.int32)
        remap[-1] = -1
        codes = remap[np.where(codes < 0, len(cats), codes)]
        df[c] = pd.Categorical.from_codes(codes, categories=pd.Index(
            np.asarray(cats, dtype=object)[order], dtype=object))
    return df


def describe_schema() -> str:
    """A plain-text description of every table, for `emraudit schema` and the docs."""
    out = []
    for t in TABLES.values():
        out.append(f"{t.name}: {t.doc}")
        for c in t.columns:
            flags = "required" if c.required else "optional"
            allowed = f" one of {', '.join(c.allowed)}" if c.allowed else ""
            out.append(f"  {c.name:16} {c.kind:5} {flags}{allowed}{'  — ' + c.doc if c.doc else ''}")
    return "\n".join(out)


# json.dumps with arguments builds an encoder per call: a night's findings are encoded by one
_COMPACT = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str,
                            separators=(",", ":"))


def dumps(obj) -> str:
    """Compact, stable JSON used for evidence and ids."""
    return _COMPACT.encode(obj)


# -- findings (DESIGN.md "Findings", a contract) ------------------------------------------------
# message_id / message_args (optional, added later): the sentence as data, rendered per
# language by emraudit.reports.text; `summary` is its English rendering (unmasked)
# site_id (added with multi-site): the site of the finding's first event ([site] id when it
# has none, and on findings stored before it: null)
# patient_ids (added with the spread night of care.no_relationship): every patient of a
# finding that concerns several (a list, sorted); null on the others, whose patient is
# patient_id
FINDING_COLUMNS = ["finding_id", "detector", "severity", "score", "user_id", "patient_id",
                   "start", "end", "event_ids", "rectification_item", "summary", "evidence",
                   "message_id", "message_args", "site_id", "patient_ids"]


def finding_to_json(row: dict) -> str:
    """One finding as the JSON line of findings.jsonl (the contract)."""
    out = {c: row.get(c) for c in FINDING_COLUMNS}
    for c in ("message_id", "message_args", "site_id"):  # absent on findings stored before
        if not isinstance(out[c], (str, dict)):
            out[c] = None
    out["patient_ids"] = patient_list(out["patient_ids"])
    return dumps(out)


def patient_list(v) -> list[str] | None:
    """A finding's `patient_ids` as a list of ids (stored as JSON text; a detector's list,
    tuple or array), None when it has none (None, NaN, empty)."""
    if isinstance(v, str):
        v = json.loads(v) if v else None
    if not isinstance(v, (list, tuple, np.ndarray)):
        return None
    out = [str(i) for i in v]
    return out or None
