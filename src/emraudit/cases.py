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
_SHOWN = 5      # candidates named when a case-id prefix is ambiguous


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


def _lists(keys: pd.Series, values: pd.Series) -> dict[str, list[str]]:
    """key -> sorted distinct non-empty values (one pass over the distinct pairs)."""
    pairs = pd.DataFrame({"k": keys.values, "v": values.values}).drop_duplicates()
    pairs = pairs[pairs["v"] != ""].sort_values(["k", "v"])
    out: dict[str, list[str]] = {}
    for k, v in zip(pairs["k"], pairs["v"]):
        out.setdefault(k, []).append(v)
    return out


def _aggregate_all(members: pd.DataFrame, prior: dict[str, int]) -> dict[str, dict]:
    """The case fields of every case in `members` (one row per finding, with `case_id`),
    computed in one vectorized pass. Suppressed findings count only in a case that has
    nothing else. `prior`: case id -> the user's earlier confirmed cases (repeat offender)."""
    m = members.copy()
    m["active"] = m["suppressed_by"].isna()
    has_active = m.groupby("case_id")["active"].transform("any")
    b = m[m["active"] | ~has_active].copy()
    b["rank"] = b["severity"].map(SEVERITY_RANK).fillna(0).astype(int)
    b["score_n"] = pd.to_numeric(b["score"], errors="coerce").fillna(0.0)
    start = b["start"].fillna("").astype(str)
    end = b["end"].fillna("").astype(str)
    b["end_s"] = end.where(end != "", start)
    b["ts_start"] = pd.to_datetime(start, utc=True, format="ISO8601", errors="coerce")
    b["ts_end"] = pd.to_datetime(b["end_s"], utc=True, format="ISO8601", errors="coerce")
    g = b.groupby("case_id", sort=True)
    base_rank = g["rank"].max()
    score = g["score_n"].max()
    n_find = g.size()
    dets = _lists(b["case_id"], b["detector"].astype(str))
    items = _lists(b["case_id"], b["rectification_item"].fillna("").astype(str))
    first = b.sort_values(["case_id", "ts_start"], kind="stable", na_position="last") \
        .groupby("case_id")["start"].first()
    last = b.sort_values(["case_id", "ts_end"], kind="stable", na_position="first") \
        .groupby("case_id")["end_s"].last()
    ev = pd.DataFrame({"case_id": b["case_id"].values,
                       "e": [[str(x) for x in _event_list(v)] for v in b["event_ids"]]})
    ex = ev.explode("e").dropna().drop_duplicates()
    n_events = ex.groupby("case_id").size().reindex(n_find.index, fill_value=0)
    top = b.sort_values(["case_id", "rank", "score_n", "finding_id"],
                        ascending=[True, False, False, True]).groupby("case_id")["summary"] \
        .first()
    all_sup = (~m.groupby("case_id")["active"].any()).to_dict()
    base_rank, score, n_find = base_rank.to_dict(), score.to_dict(), n_find.to_dict()
    first, last, n_events, top = first.to_dict(), last.to_dict(), n_events.to_dict(), \
        top.to_dict()
    out = {}
    for cid in n_find:
        base = SEVERITIES[int(base_rank[cid])]
        detectors = dets.get(cid, [])
        steps, reasons = 0, []
        if len(detectors) >= 2:
            steps += 1
            reasons.append(f"{len(detectors)} detectors agree")
        rep = prior.get(cid, 0)
        if rep > 0:
            steps += 1
            reasons.append(f"repeat offender: {rep} earlier confirmed "
                           f"case{'s' if rep > 1 else ''}")
        severity = SEVERITIES[min(SEVERITY_RANK[base] + steps, len(SEVERITIES) - 1)]
        n = int(n_find[cid])
        summary = str(top[cid])
        if n > 1:
            summary += f" (+{n - 1} more finding{'s' if n > 2 else ''})"
        if reasons:
            summary += f" Severity raised from {base} to {severity}: {'; '.join(reasons)}."
        out[cid] = {
            "severity": severity, "score": round(float(score[cid]), 6),
            "detectors": json.dumps(detectors), "items": json.dumps(items.get(cid, [])),
            "first_seen": str(first[cid]), "last_seen": str(last[cid]),
            "n_findings": n, "n_events": int(n_events[cid]), "summary": summary,
            "all_suppressed": bool(all_sup[cid]),
            "severity_base": base, "severity_reasons": reasons,
        }
    return out


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
    moved_from = {c for f, c in prior_case.items()
                  if isinstance(c, str) and c and c != target.get(f)}
    # cases whose findings this scan retracted (a rescan no longer produced them)
    retracted = {r[0] for r in conn.execute(
        sa.select(findings_t.c.case_id).distinct().where(
            findings_t.c.retracted_scan == scan_id, findings_t.c.case_id.is_not(None)))}
    touched = sorted(set(new["case_id"]) | moved_from | retracted)

    result: list[dict] = []
    pending = touched
    for _ in range(5):
        done, pending = _process(conn, pending, new, at, scan_id)
        result += done
        if not pending:
            break
    else:
        raise CaseConflict(f"case {pending[0]} kept changing under the scan; run it again")
    # keep stored findings pointing at their case
    changes = [{"b_fid": f, "b_cid": c} for f, c in zip(new["finding_id"], new["case_id"])
               if f in prior_case and (not isinstance(prior_case[f], str)
                                       or prior_case[f] != c)]
    if changes:
        conn.execute(findings_t.update().where(findings_t.c.finding_id == sa.bindparam("b_fid"))
                     .values(case_id=sa.bindparam("b_cid")), changes)
    out = pd.DataFrame([r for r in result if r is not None])
    return out if len(out) else _empty_result()


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(columns=CASE_COLUMNS + ["change", "new_findings", "severity_base",
                                                "severity_reasons"])


def _process(conn: sa.Connection, cids: list[str], new: pd.DataFrame, at: datetime,
             scan_id: str) -> tuple[list[dict], list[str]]:
    """Recompute and write these cases; returns (results, cases a reviewer changed under
    us, to be read again and redone)."""
    if not cids:
        return [], []
    rows = {r["case_id"]: dict(r) for r in _select_in(
        conn, cases, "case_id", cids).to_dict("records")}
    rows = {k: {c: (None if _isna(v) else v) for c, v in r.items()} for k, r in rows.items()}
    stored = _select_in(conn, findings_t, "case_id", cids, _FINDING_FIELDS + ["retracted_scan"])
    stored = stored[stored["retracted_scan"].isna()].drop(columns="retracted_scan")
    previously = stored.groupby("case_id")["finding_id"].agg(set).to_dict() \
        if len(stored) else {}
    # findings produced now replace their stored version; those that moved elsewhere leave
    stored = stored[~stored["finding_id"].isin(set(new["finding_id"]))]
    mine = new[new["case_id"].isin(set(cids))]
    members = pd.concat([stored, mine[[c for c in _FINDING_FIELDS if c in mine]]],
                        ignore_index=True)
    members["suppressed_by"] = members["suppressed_by"].astype(object).where(
        members["suppressed_by"].notna(), None)
    is_fresh = [f not in previously.get(c, ()) for f, c in
                zip(mine["finding_id"], mine["case_id"])]
    fresh = mine[pd.Series(is_fresh, index=mine.index, dtype=bool)
                 & mine["suppressed_by"].isna()]
    n_fresh = fresh.groupby("case_id").size().to_dict()
    first_rows = mine.drop_duplicates("case_id")
    info = {c: {"kind": k, "user": u, "patient": p, "day": d} for c, k, u, p, d in zip(
        first_rows["case_id"], first_rows["case_kind"], first_rows["case_user"],
        first_rows["case_patient"], first_rows["case_day"])}
    user_of = {c: (rows[c]["user_id"] if c in rows else info[c]["user"])
               for c in cids if c in rows or c in info}
    confirmed = confirmed_cases(conn, list(set(user_of.values())))
    prior = {}
    for c, u in user_of.items():
        row = rows.get(c)
        reopening = bool(row and row["status"] == "resolved" and n_fresh.get(c, 0))
        mine_conf = confirmed.get(u, set())
        prior[c] = len(mine_conf - {c}) + (1 if c in mine_conf and (
            reopening or (row is not None and row["status"] != "resolved")) else 0)
    aggs = _aggregate_all(members, prior) if len(members) else {}

    results, conflicts, inserts, hist = [], [], [], []
    for cid in cids:
        row = rows.get(cid)
        agg = aggs.get(cid)
        n_new = int(n_fresh.get(cid, 0))
        if agg is None:                      # nothing left in the case
            if row is None:
                continue
            upd = {"n_findings": 0, "n_events": 0, "detectors": "[]", "items": "[]"}
            if row["status"] in ("open", "suppressed"):
                upd["status"] = "retracted"   # nothing left to review
            upd = {k: v for k, v in upd.items() if row.get(k) != v}
            res = _result(row, "unchanged", 0, row.get("severity"), []) if not upd else \
                _write(conn, row, upd, at, scan_id, "updated", 0, row.get("severity"), [])
        elif row is None:
            kind = str(info[cid]["kind"])
            status = "suppressed" if agg["all_suppressed"] else "open"
            values = {k: v for k, v in agg.items() if k in CASE_COLUMNS}
            values.update({
                "case_id": cid, "kind": kind, "user_id": str(info[cid]["user"]),
                "patient_id": str(info[cid]["patient"]) if kind == "patient" else None,
                "day": str(info[cid]["day"]) if kind == "account" else None,
                "status": status, "reopened": False, "version": 1, "created": at,
                "updated": at, "disposition": None, "reviewer": None, "note": None,
                "resolved_at": None})
            inserts.append(values)
            note = f"{agg['n_findings']} finding(s) by " \
                   f"{', '.join(json.loads(agg['detectors']))}"
            if status == "suppressed":
                ids = sorted({int(x) for x in members.loc[members["case_id"] == cid,
                                                          "suppressed_by"].dropna()})
                note += "; all suppressed by allowlist " + ", ".join(f"#{i}" for i in ids)
            hist.append(_history(cid, at, "opened", by="scan", field="status", new=status,
                                 note=note, scan_id=scan_id))
            res = _result(values, "opened", n_new, agg["severity_base"],
                          agg["severity_reasons"])
        else:
            upd: dict[str, Any] = {}
            for k in _COMPARED:
                if k == "status":
                    continue
                v, old = agg[k], row.get(k)
                if k == "score":
                    if old is None or abs(float(old) - float(v)) > 1e-9:
                        upd[k] = v
                elif old != v:
                    upd[k] = v
            change = "updated"
            if row["status"] == "resolved" and n_new:
                upd.update({"status": "open", "reopened": True, "disposition": None,
                            "reviewer": None, "note": None, "resolved_at": None})
                change = "reopened"
            elif row["status"] in ("open", "retracted") and agg["all_suppressed"]:
                upd["status"] = "suppressed"
            elif row["status"] in ("suppressed", "retracted") and not agg["all_suppressed"]:
                upd["status"] = "open"
            res = _result(row, "unchanged", 0, agg["severity_base"], agg["severity_reasons"]) \
                if not upd else _write(conn, row, upd, at, scan_id, change, n_new,
                                       agg["severity_base"], agg["severity_reasons"])
        if res is False:
            conflicts.append(cid)
        else:
            results.append(res)
    if inserts:
        conn.execute(cases.insert(), inserts)
    if hist:
        conn.execute(case_history.insert(), hist)
    return results, conflicts


def _isna(v: Any) -> bool:
    try:
        return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and np.isnan(v))
    except TypeError:
        return False


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
    if ref:
        like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [r[0] for r in conn.execute(
            sa.select(cases.c.case_id).where(cases.c.case_id.like(like, escape="\\"))
            .order_by(cases.c.case_id).limit(_SHOWN + 1))]
        if len(found) == 1 and len(ref) >= 4:
            return dict(conn.execute(sa.select(cases).where(cases.c.case_id == found[0]))
                        .mappings().one())
        if len(found) == 1:
            raise CaseNotFound(f"case id '{ref}' is too short to name a case (it would be "
                               f"{found[0]}); give at least 4 characters")
        if found:
            more = ", …" if len(found) > _SHOWN else ""
            raise CaseNotFound(f"case id '{ref}' is ambiguous: "
                               f"{', '.join(found[:_SHOWN])}{more}; give more characters")
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
               user: str | None = None, since: str | None = None, item: str | None = None,
               severity: str | None = None) -> pd.DataFrame:
    """Cases for review, most severe and most recent first."""
    cond = []
    if item:
        cond.append(cases.c["items"].like(f'%"{item}"%'))
    if severity:
        cond.append(cases.c.severity == severity)
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
