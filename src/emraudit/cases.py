"""Cases: findings grouped for review, with stable ids, dispositions and an append-only history.

Grouping rule (issue 6 "Cases", issue 7 "Dispositions"):

* a patient-level finding (non-empty `patient_id`) belongs to the case of its
  (user, patient) pair — every detector that fires on that pair, in this scan or a later one,
  lands in the same case;
* an account-level finding (empty `patient_id`) belongs to the case of its
  (user, site-local day of the finding's start).

The case id is deterministic (`case_id_for`), so rescans never duplicate a case. A pair's
case gathers findings for as long as it lives; a *resolved* case that receives findings it did
not hold before is reopened (status open, `reopened` true, a "reopened" history row naming the
scan), its previous disposition kept in the history.

Severity = the highest severity of the case's findings, raised one level when two or more
distinct detectors agree, and one more level when the user is a repeat offender (another case
of the user whose latest disposition is "confirmed", or this very case when it was confirmed
and is now reopened), capped at critical.

Allowlisted findings (`suppressed_by` set) are stored and attached to their case but never
count towards it; a case with only suppressed findings has status "suppressed" and is not in
the review queue (`cases list --status suppressed` shows them). When unsuppressed findings
arrive later, it becomes open.

Findings a rescan no longer produces (`retracted_scan` set by the pipeline) leave their case;
an open or suppressed case left without findings gets status "retracted" (out of the review
queue); a resolved one keeps its disposition.

Every change is versioned (`version`, optimistic concurrency) and recorded in `case_history`,
which is only ever appended to. A rescan of the same data changes nothing and writes no
history.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from emraudit.detectors.base import SEVERITY_RANK
from emraudit.errors import UserError
from emraudit.model import SEVERITIES
from emraudit.store import Store, case_history, cases, findings as findings_t, now_utc

DISPOSITIONS = ("confirmed", "false_positive", "justified", "training")
STATUSES = ("open", "resolved", "suppressed", "retracted")
CASE_COLUMNS = [c.name for c in cases.columns]
# fields whose change is recorded as an "updated" history row
_TRACKED = ("status", "severity", "detectors", "n_findings", "n_events")
# fields compared to decide whether a rescan changed the case at all
_COMPARED = ("severity", "score", "detectors", "items", "first_seen", "last_seen",
             "n_findings", "n_events", "summary", "status")
_CHUNK = 500


class CaseNotFound(UserError):
    """No case with that id (or id prefix)."""


class CaseConflict(UserError):
    """The case changed since the caller read it (optimistic concurrency)."""

    exit_code = 4


# -- grouping ---------------------------------------------------------------------------------
def case_id_for(kind: str, user_id: str, other: str) -> str:
    """Stable case id: the same (kind, user, patient-or-day) always gives the same id."""
    h = hashlib.sha1(f"{kind}\x1f{user_id}\x1f{other}".encode("utf-8")).hexdigest()
    return "C" + h[:15]


def _local_day(start: pd.Series, tz: str | None) -> pd.Series:
    start = start.fillna("").astype(str)
    if tz is None:
        return start.str[:10]   # ISO strings written in the site's timezone
    ts = pd.to_datetime(start, utc=True, format="ISO8601", errors="coerce")
    return ts.dt.tz_convert(tz).dt.strftime("%Y-%m-%d").fillna(start.str[:10])


def assign_cases(findings: pd.DataFrame, tz: str | None = None) -> pd.DataFrame:
    """Columns `case_kind`, `case_user`, `case_patient`, `case_day`, `case_id` for each finding.

    Pure function (used by the scan and by `tune`/`detectors diff` to count cases).
    `tz`: the site timezone for the account-level day; when None the day is read from the
    ISO start string, which the pipeline writes in the site's timezone.
    """
    idx = findings.index
    if findings.empty:
        return pd.DataFrame({c: pd.Series(dtype="object", index=idx) for c in
                             ("case_kind", "case_user", "case_patient", "case_day", "case_id")})
    user = findings["user_id"].astype("string").fillna("").astype(str)
    patient = (findings["patient_id"].astype("string").fillna("").astype(str)
               if "patient_id" in findings else pd.Series("", index=idx))
    is_patient = patient.str.len() > 0
    day = _local_day(findings["start"], tz)
    kind = pd.Series(np.where(is_patient, "patient", "account"), index=idx)
    other = patient.where(is_patient, day)
    ids = [case_id_for(k, u, o) for k, u, o in zip(kind, user, other)]
    return pd.DataFrame({"case_kind": kind, "case_user": user,
                         "case_patient": patient.where(is_patient, ""),
                         "case_day": day.where(~is_patient, ""),
                         "case_id": ids}, index=idx)


def count_cases(findings: pd.DataFrame, tz: str | None = None) -> int:
    """How many cases these findings would open (suppressed findings open none)."""
    if findings.empty:
        return 0
    active = findings
    if "suppressed_by" in findings:
        active = findings[findings["suppressed_by"].isna()]
    return int(assign_cases(active, tz)["case_id"].nunique()) if len(active) else 0


# -- aggregation ------------------------------------------------------------------------------
def _event_list(v: Any) -> list:
    if isinstance(v, str):
        return json.loads(v) if v else []
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    return list(v)


def _aggregate(group: pd.DataFrame, repeat_confirmed: int) -> dict:
    """The case fields computed from its findings (suppressed ones excluded when any other)."""
    suppressed = group["suppressed_by"].notna()
    active = group[~suppressed]
    basis = active if len(active) else group
    ranks = basis["severity"].map(SEVERITY_RANK).fillna(0).astype(int)
    base = SEVERITIES[int(ranks.max())]
    detectors = sorted(set(basis["detector"].astype(str)))
    steps, reasons = 0, []
    if len(detectors) >= 2:
        steps += 1
        reasons.append(f"{len(detectors)} detectors agree")
    if repeat_confirmed > 0:
        steps += 1
        reasons.append(f"repeat offender: {repeat_confirmed} earlier confirmed "
                       f"case{'s' if repeat_confirmed > 1 else ''}")
    severity = SEVERITIES[min(SEVERITY_RANK[base] + steps, len(SEVERITIES) - 1)]
    events = set()
    for e in basis["event_ids"]:
        events.update(map(str, _event_list(e)))
    starts = pd.to_datetime(basis["start"], utc=True, format="ISO8601", errors="coerce")
    ends = pd.to_datetime(basis["end"].where(basis["end"].astype(str) != "", basis["start"]),
                          utc=True, format="ISO8601", errors="coerce")
    pos = pd.RangeIndex(len(basis))
    starts.index = ends.index = pos
    first = basis["start"].iloc[int(starts.idxmin())] if starts.notna().any() else ""
    last_i = int(ends.idxmax()) if ends.notna().any() else 0
    last = basis["end"].iloc[last_i] or basis["start"].iloc[last_i]
    score = pd.to_numeric(basis["score"], errors="coerce").fillna(0.0)
    order = basis.assign(_r=ranks.values, _s=score.values).sort_values(
        ["_r", "_s", "finding_id"], ascending=[False, False, True])
    top = order.iloc[0]
    summary = str(top["summary"])
    if len(basis) > 1:
        summary += f" (+{len(basis) - 1} more finding{'s' if len(basis) > 2 else ''})"
    if reasons:
        summary += f" Severity raised from {base} to {severity}: {'; '.join(reasons)}."
    items = sorted(set(basis["rectification_item"].dropna().astype(str)) - {""})
    return {
        "severity": severity, "score": round(float(score.max()), 6),
        "detectors": json.dumps(detectors), "items": json.dumps(items),
        "first_seen": str(first), "last_seen": str(last),
        "n_findings": int(len(basis)), "n_events": int(len(events)), "summary": summary,
        "all_suppressed": bool(len(active) == 0),
        "severity_base": base, "severity_reasons": reasons,
    }


# -- store access -----------------------------------------------------------------------------
def _chunks(items: list, n: int = _CHUNK) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _select_in(conn: sa.Connection, table: sa.Table, col: str, values: list,
               columns: list[str] | None = None) -> pd.DataFrame:
    cols = [table.c[c] for c in columns] if columns else [table]
    frames = []
    for chunk in _chunks(sorted(set(values))):
        res = conn.execute(sa.select(*cols).where(table.c[col].in_(chunk)))
        frames.append(pd.DataFrame(res.fetchall(), columns=list(res.keys())))
    if not frames:
        return pd.DataFrame(columns=columns or [c.name for c in table.columns])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


_FINDING_FIELDS = ["finding_id", "detector", "severity", "score", "user_id", "patient_id",
                   "start", "end", "event_ids", "rectification_item", "summary",
                   "suppressed_by", "case_id"]


def confirmed_cases(conn: sa.Connection, user_ids: list[str]) -> dict[str, set[str]]:
    """user -> ids of their cases whose latest disposition (from the history) is confirmed."""
    out: dict[str, set[str]] = {}
    for chunk in _chunks(sorted(set(user_ids))):
        rows = conn.execute(
            sa.select(cases.c.user_id, case_history.c.case_id, case_history.c.new,
                      case_history.c.id)
            .select_from(case_history.join(cases, cases.c.case_id == case_history.c.case_id))
            .where(cases.c.user_id.in_(chunk), case_history.c.action == "resolved",
                   case_history.c.field == "disposition")
            .order_by(case_history.c.id)).fetchall()
        latest: dict[str, tuple[str, str]] = {}
        for user, cid, new, _ in rows:
            latest[cid] = (user, new)
        for cid, (user, new) in latest.items():
            if new == "confirmed":
                out.setdefault(user, set()).add(cid)
    return out


def _dt(now: Any) -> datetime:
    """A UTC datetime (SQLite drops the offset, so everything is stored in UTC)."""
    ts = pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _history(case_id: str, at: datetime, action: str, *, by: str | None = None,
             field: str | None = None, old: Any = None, new: Any = None,
             note: str | None = None, scan_id: str | None = None) -> dict:
    return {"case_id": case_id, "at": at, "by": by, "action": action, "field": field,
            "old": None if old is None else str(old), "new": None if new is None else str(new),
            "note": note, "scan_id": scan_id}


# -- the scan's entry point -------------------------------------------------------------------
def update_cases(conn: sa.Connection, findings: pd.DataFrame, scan_id: str, now: Any, *,
                 tz: str | None = None) -> pd.DataFrame:
    """Open, update or reopen the cases of these findings, inside the caller's transaction.

    `findings`: the scan's findings in the contract's shape, optionally with `suppressed_by`
    (from `emraudit.allow.apply_allowlist`). A `case_id` column is set on this frame *in
    place*, so the caller may upsert the findings before or after this call; when they are
    already stored their `case_id` is updated here. (An upsert done after this call must not
    reset `case_id` to NULL: store the frame this function annotated.)

    Returns the touched cases (store columns plus `change`: opened | reopened | updated |
    unchanged, `new_findings`, `severity_base`, `severity_reasons`). Idempotent: the same
    findings again change nothing and append no history.
    """
    at = _dt(now)
    if findings is None:
        findings = pd.DataFrame(columns=_FINDING_FIELDS[:-2])
    assigned = assign_cases(findings, tz)
    findings["case_id"] = assigned["case_id"].astype(object).values
    new = findings.copy()
    if "suppressed_by" not in new:
        new["suppressed_by"] = None
    new = new.join(assigned.drop(columns=["case_id"]))
    new["suppressed_by"] = new["suppressed_by"].astype(object).where(
        new["suppressed_by"].notna(), None)
    new = new.drop_duplicates("finding_id", keep="last")

    fids = new["finding_id"].astype(str).tolist()
    prior = _select_in(conn, findings_t, "finding_id", fids, ["finding_id", "case_id"])
    prior_case = dict(zip(prior["finding_id"], prior["case_id"]))
    target = dict(zip(new["finding_id"], new["case_id"]))
    moved_from = {c for f, c in prior_case.items() if c and c != target.get(f)}
    # cases whose findings this scan retracted (a rescan no longer produced them)
    retracted = {r[0] for r in conn.execute(
        sa.select(findings_t.c.case_id).distinct().where(
            findings_t.c.retracted_scan == scan_id, findings_t.c.case_id.is_not(None)))}
    touched = sorted(set(new["case_id"]) | moved_from | retracted)

    result = []
    for cid in touched:
        result.append(_update_one(conn, cid, new, at, scan_id))
    # keep stored findings pointing at their case
    changes = [{"b_fid": f, "b_cid": c} for f, c in zip(new["finding_id"], new["case_id"])
               if f in prior_case and prior_case[f] != c]
    if changes:
        conn.execute(findings_t.update().where(findings_t.c.finding_id == sa.bindparam("b_fid"))
                     .values(case_id=sa.bindparam("b_cid")), changes)
    out = pd.DataFrame([r for r in result if r is not None])
    return out if len(out) else _empty_result()


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(columns=CASE_COLUMNS + ["change", "new_findings", "severity_base",
                                                "severity_reasons"])


def _update_one(conn: sa.Connection, cid: str, new: pd.DataFrame, at: datetime,
                scan_id: str, _tries: int = 5) -> dict | None:
    for _ in range(_tries):
        res = _try_update_one(conn, cid, new, at, scan_id)
        if res is not False:
            return res
    raise CaseConflict(f"case {cid} kept changing under the scan; run the scan again")


def _try_update_one(conn: sa.Connection, cid: str, new: pd.DataFrame, at: datetime,
                    scan_id: str) -> dict | None | bool:
    row = conn.execute(sa.select(cases).where(cases.c.case_id == cid)).mappings().first()
    row = dict(row) if row else None
    stored = _select_in(conn, findings_t, "case_id", [cid], _FINDING_FIELDS + ["retracted_scan"])
    stored = stored[stored["retracted_scan"].isna()].drop(columns="retracted_scan")
    mine = new[new["case_id"] == cid]
    previously_here = set(stored["finding_id"])
    # findings that moved elsewhere (same finding id, another case now) leave this case
    moved_away = set(new.loc[new["case_id"] != cid, "finding_id"])
    stored = stored[~stored["finding_id"].isin(moved_away | set(mine["finding_id"]))]
    members = pd.concat([stored, mine[[c for c in _FINDING_FIELDS if c in mine]]],
                        ignore_index=True)
    members["suppressed_by"] = members["suppressed_by"].astype(object).where(
        members["suppressed_by"].notna(), None)
    fresh_active = mine[~mine["finding_id"].isin(previously_here)
                        & mine["suppressed_by"].isna()]
    if members.empty:
        if row is None:
            return None
        agg = {"n_findings": 0, "n_events": 0, "detectors": "[]", "items": "[]"}
        if row["status"] in ("open", "suppressed"):
            agg["status"] = "retracted"   # nothing left to review
        updates = {k: v for k, v in agg.items() if row.get(k) != v}
        if not updates:
            return _result(row, "unchanged", 0, row.get("severity"), [])
        return _write(conn, row, updates, at, scan_id, "updated", 0,
                      row.get("severity"), [])

    kind = str(mine["case_kind"].iloc[0]) if len(mine) else str(row["kind"])
    user = str(row["user_id"] if row else mine["case_user"].iloc[0])
    confirmed = confirmed_cases(conn, [user]).get(user, set())
    currently_resolved = bool(row and row["status"] == "resolved")
    reopening = currently_resolved and len(fresh_active) > 0
    prior = len(confirmed - {cid}) + (1 if cid in confirmed and (reopening or (
        row is not None and row["status"] != "resolved")) else 0)
    agg = _aggregate(members, prior)

    if row is None:
        status = "suppressed" if agg["all_suppressed"] else "open"
        values = {k: v for k, v in agg.items() if k in CASE_COLUMNS}
        values.update({
            "case_id": cid, "kind": kind, "user_id": user,
            "patient_id": str(mine["case_patient"].iloc[0]) if kind == "patient" else None,
            "day": str(mine["case_day"].iloc[0]) if kind == "account" else None,
            "status": status, "reopened": False, "version": 1, "created": at, "updated": at,
        })
        conn.execute(cases.insert().values(**values))
        note = f"{agg['n_findings']} finding(s) by {', '.join(json.loads(agg['detectors']))}"
        if status == "suppressed":
            ids = sorted({int(x) for x in members["suppressed_by"].dropna()})
            note += "; all suppressed by allowlist " + ", ".join(f"#{i}" for i in ids)
        conn.execute(case_history.insert().values(**_history(
            cid, at, "opened", by="scan", field="status", new=status, note=note,
            scan_id=scan_id)))
        return _result(values, "opened", len(fresh_active), agg["severity_base"],
                       agg["severity_reasons"])

    updates: dict[str, Any] = {}
    for k in _COMPARED:
        if k == "status":
            continue
        v = agg[k]
        old = row.get(k)
        if k == "score":
            if old is None or abs(float(old) - float(v)) > 1e-9:
                updates[k] = v
        elif old != v:
            updates[k] = v
    change = "updated"
    if reopening:
        updates.update({"status": "open", "reopened": True, "disposition": None,
                        "reviewer": None, "note": None, "resolved_at": None})
        change = "reopened"
    elif row["status"] in ("open", "retracted") and agg["all_suppressed"]:
        updates["status"] = "suppressed"
    elif row["status"] in ("suppressed", "retracted") and not agg["all_suppressed"]:
        updates["status"] = "open"
    if not updates:
        return _result(row, "unchanged", 0, agg["severity_base"], agg["severity_reasons"])
    return _write(conn, row, updates, at, scan_id, change, len(fresh_active),
                  agg["severity_base"], agg["severity_reasons"])


def _write(conn, row: dict, updates: dict, at: datetime, scan_id: str, change: str,
           n_new: int, base: str | None, reasons: list) -> dict | bool:
    cid = row["case_id"]
    values = dict(updates, version=row["version"] + 1, updated=at)
    res = conn.execute(cases.update().where(cases.c.case_id == cid,
                                            cases.c.version == row["version"]).values(**values))
    if res.rowcount == 0:
        return False   # a reviewer changed it meanwhile: read again and redo
    hist = []
    if change == "reopened":
        note = (f"{n_new} new finding(s) from scan {scan_id}; previous disposition "
                f"{row.get('disposition')} by {row.get('reviewer')}")
        hist.append(_history(cid, at, "reopened", by="scan", field="status", old="resolved",
                             new="open", note=note, scan_id=scan_id))
    for k in _TRACKED:
        if k in updates and not (k == "status" and change == "reopened"):
            hist.append(_history(cid, at, "updated", by="scan", field=k, old=row.get(k),
                                 new=updates[k], scan_id=scan_id))
    if hist:
        conn.execute(case_history.insert(), hist)
    merged = dict(row)
    merged.update(values)
    return _result(merged, change, n_new, base, reasons)


def _result(row: dict, change: str, n_new: int, base: str | None, reasons: list) -> dict:
    out = {c: row.get(c) for c in CASE_COLUMNS}
    out.update(change=change, new_findings=n_new, severity_base=base,
               severity_reasons=list(reasons))
    return out


# -- reviewers --------------------------------------------------------------------------------
def find_case(conn: sa.Connection, case_ref: str) -> dict:
    """The case with this id, or the only one whose id starts with it."""
    ref = case_ref.strip()
    row = conn.execute(sa.select(cases).where(cases.c.case_id == ref)).mappings().first()
    if row:
        return dict(row)
    if len(ref) >= 4:
        rows = conn.execute(sa.select(cases).where(cases.c.case_id.like(ref + "%"))
                            .limit(2)).mappings().all()
        if len(rows) == 1:
            return dict(rows[0])
        if len(rows) > 1:
            raise CaseNotFound(f"case id '{ref}' is ambiguous: give more characters")
    raise CaseNotFound(f"no case '{ref}' in the store (see `emraudit cases list`)")


def resolve_case(store: Store, case_ref: str, disposition: str, note: str, by: str, *,
                 now: Any = None, expected_version: int | None = None,
                 retries: int = 5) -> dict:
    """Record a reviewer's disposition: one short transaction, optimistic concurrency.

    The update is `… WHERE case_id = ? AND version = ?`. When another reviewer (or a scan)
    changed the case in between, it is read again and the disposition applied on top, so both
    changes are in the history and nothing is lost — unless `expected_version` is given, in
    which case a changed case raises CaseConflict. Returns the updated case row.
    """
    if disposition not in DISPOSITIONS:
        raise UserError(f"unknown disposition '{disposition}' (expected one of "
                        f"{', '.join(DISPOSITIONS)})")
    if not (by or "").strip():
        raise UserError("--by is required: the reviewer's name")
    for _ in range(max(1, retries)):
        at = _dt(now if now is not None else now_utc())
        try:
            with store.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # a scan holding this very row must not hang a reviewer
                    conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
                row = find_case(conn, case_ref)
                if expected_version is not None and row["version"] != expected_version:
                    raise CaseConflict(
                        f"case {row['case_id']} changed since you read it (version "
                        f"{expected_version}, now {row['version']}, last change "
                        f"{row['updated']}); look at it again with `emraudit cases show`")
                values = {"status": "resolved", "disposition": disposition, "reviewer": by,
                          "note": note, "resolved_at": at, "reopened": row["reopened"],
                          "version": row["version"] + 1, "updated": at}
                res = conn.execute(cases.update().where(
                    cases.c.case_id == row["case_id"], cases.c.version == row["version"])
                    .values(**values))
                if res.rowcount == 0:
                    if expected_version is not None:
                        raise CaseConflict(f"case {row['case_id']} changed while resolving; "
                                           "look at it again")
                    continue   # transaction ends; read again
                conn.execute(case_history.insert().values(**_history(
                    row["case_id"], at, "resolved", by=by, field="disposition",
                    old=row["disposition"], new=disposition, note=note)))
                row.update(values)
                return row
        except sa.exc.OperationalError as exc:
            if "lock" in str(exc.orig).lower():
                raise CaseConflict(f"case {case_ref} is being updated by a running scan; "
                                   "try again in a moment") from None
            raise
    raise CaseConflict(f"case {case_ref} kept changing while resolving; try again")


def list_cases(store: Store, *, status: str | None = "open", detector: str | None = None,
               user: str | None = None, since: str | None = None) -> pd.DataFrame:
    """Cases for review, most severe and most recent first."""
    cond = []
    if status and status != "all":
        if status not in STATUSES:
            raise UserError(f"unknown status '{status}' (expected one of "
                            f"{', '.join(STATUSES)} or all)")
        cond.append(cases.c.status == status)
    if user:
        cond.append(cases.c.user_id == user)
    if detector:
        cond.append(cases.c.detectors.like(f'%"{detector}"%'))
    if since:
        cond.append(cases.c.last_seen >= since)
    df = store.read_table(cases, sa.and_(*cond) if cond else None)
    if df.empty:
        return df
    df["_rank"] = df["severity"].map(SEVERITY_RANK).fillna(-1)
    df = df.sort_values(["_rank", "last_seen", "case_id"], ascending=[False, False, True])
    return df.drop(columns="_rank").reset_index(drop=True)


def case_history_of(store: Store, case_id: str) -> pd.DataFrame:
    return store.read_table(case_history, case_history.c.case_id == case_id,
                            case_history.c.id)


def user_history(store: Store, user_id: str) -> pd.DataFrame:
    """All cases of one user with their dispositions (for the case page's 'earlier cases')."""
    df = store.read_table(cases, cases.c.user_id == user_id, cases.c.first_seen)
    return df
