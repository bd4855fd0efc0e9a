"""Allowlists: known legitimate patterns, suppressed with an expiry and a reason.

An entry names one user and exactly one scope:

* `patient`    — that user's findings on that patient (a research coordinator's cohort);
* `detector`   — that user's findings from that detector (`care.no_relationship`), or from a
  family of detectors (`care.*`);
* `department` — that user's findings on patients who were in the care of that department
  or ward (a ward's covering arrangement): the patient's department or ward is taken from
  the care relations overlapping the finding's time (a relation row's `department` or
  `ward`), or from the finding's evidence keys `patient_department(s)`/`patient_ward(s)`.
  It is about the *patient's* department, not the user's own: a user's own department is
  where their access is expected anyway. Account-level findings (no patient) are never
  suppressed by a department entry.

An entry suppresses a finding only when the whole finding lies before its `until` (the end
of the given day in the site's timezone): an expired entry stops suppressing, and a removed
entry never suppresses, not even on a rescan of older days. Suppressed findings are stored,
counted and attached to a case with status "suppressed" (see `emraudit.cases`); they are
never dropped. When several entries match, the oldest (lowest id) is named.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pandas as pd
import sqlalchemy as sa

from emraudit.dates import parse as parse_when
from emraudit.packed import evidence_of
from emraudit.errors import UserError
from emraudit.store import Store, allowlist, findings as findings_t, now_utc

SCOPES = ("patient", "department", "detector")
_EVIDENCE_KEYS = ("patient_department", "patient_ward", "patient_departments",
                  "patient_wards")


def _s(v: Any) -> str:
    """A text cell as str; None and NaN (how pandas reads a missing string) as ''."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return ""
    return str(v)


def _utc(ts: Any) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def parse_until(value: str, tz: str) -> pd.Timestamp:
    """`2025-12-31` → the last instant of that day in the site's timezone (UTC); an ISO
    time is that instant (emraudit.dates: nothing but ISO is accepted)."""
    w = parse_when(value, "--until")
    t = w.end(tz) - pd.Timedelta(microseconds=1) if w.time is None else w.start(tz)
    return t.tz_convert("UTC")


def add_entry(store: Store, *, user: str, patient: str | None = None,
              department: str | None = None, detector: str | None = None, until: str,
              reason: str, by: str, tz: str = "Asia/Shanghai", now: Any = None) -> int:
    """Store a new entry; returns its id. Exactly one of patient, department, detector."""
    scopes = [s for s, v in (("patient", patient), ("department", department),
                             ("detector", detector)) if v]
    if len(scopes) != 1:
        raise UserError("give exactly one of --patient, --department or --detector")
    if not (user or "").strip():
        raise UserError("--user is required")
    if not (reason or "").strip():
        raise UserError("--reason is required: say why this pattern is legitimate")
    if not (by or "").strip():
        raise UserError("--by is required: who approved the entry")
    if detector:
        _check_detector(detector)
    at = _utc(now if now is not None else now_utc())
    end = parse_until(until, tz)
    if end < at:
        raise UserError(f"--until {until} is already past: the entry would never suppress")
    with store.begin() as c:
        res = c.execute(allowlist.insert().values(
            user_id=user.strip(), patient_id=patient or None, department=department or None,
            detector=detector or None, until=end.to_pydatetime(), reason=reason.strip(),
            created_by=by.strip(), created=at.to_pydatetime()))
        return int(res.inserted_primary_key[0])


def _check_detector(detector: str) -> None:
    from emraudit.detectors.registry import check_id
    check_id(detector, "--detector", families=True)


def remove_entry(store: Store, entry_id: int, *, by: str, now: Any = None) -> dict:
    """Mark an entry removed (kept for the record); it never suppresses again."""
    if not (by or "").strip():
        raise UserError("--by is required: who removed the entry")
    at = _utc(now if now is not None else now_utc())
    with store.begin() as c:
        row = c.execute(sa.select(allowlist).where(allowlist.c.id == entry_id)).mappings().first()
        if row is None:
            raise UserError(f"no allowlist entry #{entry_id} (see `emraudit allow list --all`)")
        if row["removed"] is not None:
            raise UserError(f"allowlist entry #{entry_id} was already removed by "
                            f"{row['removed_by']} on {row['removed']:%Y-%m-%d}")
        c.execute(allowlist.update().where(allowlist.c.id == entry_id)
                  .values(removed=at.to_pydatetime(), removed_by=by.strip()))
        return dict(row, removed=at, removed_by=by.strip())


def list_entries(store: Store, *, include_all: bool = False, now: Any = None,
                 tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Entries with `scope`, `value`, `state` (active | expired | removed), `until_day` and
    `suppressed` (how many stored findings name the entry)."""
    at = _utc(now if now is not None else now_utc())
    df = store.read_table(allowlist, order_by=allowlist.c.id)
    cols = list(df.columns) + ["scope", "value", "state", "until_day", "suppressed"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    until = df["until"].map(_utc)
    df["scope"] = [("patient" if _s(p) else "department" if _s(d) else "detector")
                   for p, d in zip(df["patient_id"], df["department"])]
    df["value"] = [_s(p) or _s(d) or _s(x) for p, d, x in
                   zip(df["patient_id"], df["department"], df["detector"])]
    df["state"] = ["removed" if pd.notna(r) else "expired" if u < at else "active"
                   for r, u in zip(df["removed"], until)]
    df["until_day"] = [u.tz_convert(tz).strftime("%Y-%m-%d") for u in until]
    with store.engine.connect() as c:
        counts = dict(c.execute(sa.select(findings_t.c.suppressed_by, sa.func.count())
                                .where(findings_t.c.suppressed_by.is_not(None))
                                .group_by(findings_t.c.suppressed_by)).fetchall())
    df["suppressed"] = df["id"].map(lambda i: int(counts.get(i, 0)))
    if not include_all:
        df = df[df["state"] == "active"]
    return df.reset_index(drop=True)


def active_entries(conn_or_store: Any) -> pd.DataFrame:
    """Entries that have not been removed (expiry is checked per finding)."""
    stmt = sa.select(allowlist).where(allowlist.c.removed.is_(None)).order_by(allowlist.c.id)
    if isinstance(conn_or_store, Store):
        with conn_or_store.engine.connect() as c:
            res = c.execute(stmt)
            return pd.DataFrame(res.fetchall(), columns=list(res.keys()))
    res = conn_or_store.execute(stmt)
    return pd.DataFrame(res.fetchall(), columns=list(res.keys()))


def _finding_departments(evidence: Any) -> set[str]:
    if isinstance(evidence, bytes):             # packed by a partition (emraudit.packed)
        evidence = evidence_of(evidence)
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence) if evidence else {}
        except ValueError:
            return set()
    if not isinstance(evidence, dict):
        return set()
    out: set[str] = set()
    for k in _EVIDENCE_KEYS:
        v = evidence.get(k)
        if isinstance(v, str) and v:
            out.add(v)
        elif isinstance(v, (list, tuple)):
            out.update(str(x) for x in v if x)
    return out


def apply_allowlist(conn_or_store: Any, findings: pd.DataFrame, now: Any,
                    users: pd.DataFrame | None = None, *,
                    care_relations: pd.DataFrame | None = None,
                    entries: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return `findings` with a `suppressed_by` column: the matching entry's id, or None.

    Reads the allowlist only (never writes). `now`: entries removed at or before it are
    ignored (removal is immediate). `users` is accepted for the pipeline's convenience and
    not needed: entries name users by id. `care_relations` (the canonical table) lets a
    department entry see the patient's department or ward; without it only the finding's
    evidence is used. `entries` may be given instead of reading the store (tests, tuning).
    """
    out = findings.copy()
    out["suppressed_by"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    if out.empty:
        return out
    if entries is None:
        entries = active_entries(conn_or_store)
    if entries.empty:
        return out
    at = _utc(now)
    entries = entries[entries["removed"].isna()
                      | (entries["removed"].map(lambda r: _utc(r) > at if pd.notna(r)
                                                else True))]
    user = out["user_id"].astype("string").fillna("")
    patient = out["patient_id"].astype("string").fillna("") if "patient_id" in out \
        else pd.Series("", index=out.index, dtype="string")
    start = pd.to_datetime(out["start"], utc=True, format="ISO8601", errors="coerce")
    end_raw = out["end"].where(out["end"].astype(str) != "", out["start"])
    end = pd.to_datetime(end_raw, utc=True, format="ISO8601", errors="coerce").fillna(start)
    detector = out["detector"].astype(str)
    free = pd.Series(True, index=out.index)
    for e in entries.sort_values("id").to_dict("records"):
        until = _utc(e["until"])
        m = free & (user == _s(e["user_id"])) & (end <= until)
        if not m.any():
            continue
        pid, det, dept = _s(e.get("patient_id")), _s(e.get("detector")), \
            _s(e.get("department"))
        if pid:
            m &= patient == pid
        elif det:
            m &= detector.map(lambda x: fnmatch.fnmatchcase(x, det)) if "*" in det \
                else detector == det
        elif dept:
            m &= patient != ""
            m &= _department_match(out[m], dept, start[m], end[m],
                                   care_relations).reindex(out.index, fill_value=False)
        else:
            continue
        out.loc[m, "suppressed_by"] = int(e["id"])
        free &= ~m
    return out


def _department_match(sub: pd.DataFrame, dept: str, start: pd.Series, end: pd.Series,
                      care: pd.DataFrame | None) -> pd.Series:
    hit = pd.Series([dept in _finding_departments(ev) for ev in
                     (sub["evidence"] if "evidence" in sub else [None] * len(sub))],
                    index=sub.index, dtype=bool)
    if care is None or care.empty or hit.all():
        return hit
    cols = [c for c in ("department", "ward") if c in care]
    if not cols:
        return hit
    rel_mask = pd.Series(False, index=care.index)
    for c in cols:
        rel_mask |= care[c].astype("string").fillna("") == dept
    rel = care.loc[rel_mask, ["patient_id", "start", "end"]].copy()
    if rel.empty:
        return hit
    rel["patient_id"] = rel["patient_id"].astype(str)
    rel["r_start"] = pd.to_datetime(rel["start"], utc=True, errors="coerce")
    rel["r_end"] = pd.to_datetime(rel["end"], utc=True, errors="coerce")
    f = pd.DataFrame({"patient_id": sub["patient_id"].astype(str), "f_start": start,
                      "f_end": end, "row": sub.index})
    j = f.merge(rel[["patient_id", "r_start", "r_end"]], on="patient_id")
    ok = (j["r_start"].isna() | (j["r_start"] <= j["f_end"])) & \
         (j["r_end"].isna() | (j["r_end"] >= j["f_start"]))
    rows = set(j.loc[ok, "row"])
    return hit | pd.Series(sub.index.isin(list(rows)), index=sub.index)
