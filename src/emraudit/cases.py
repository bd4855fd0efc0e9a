"""Cases: findings grouped into incidents for review, with stable ids, risk, a review queue,
dispositions and an append-only history.

Grouping rule (issue 16 "Incidents, not accesses"): one case is one incident, every finding
of one user whose first event falls on one site-local day, whatever detector raised it and
however many patients it touched. An export of six prints, the no-relation findings of the
same accesses and an off-hours finding of that night are one case listing every detector
that fired, every patient and every event. Feed-gap cases (kind `feed_gap`, see
`emraudit.feeds`) hold a unit whose care relations explain far too little, instead of a case
per access of its staff.

The case id is deterministic (`case_id_for`), so rescans never duplicate a case. A *resolved*
case that receives findings it did not hold before is reopened (status open, `reopened`
true, a "reopened" history row naming the scan), its previous disposition kept in the
history.

Severity = the highest severity of the case's findings, raised one level when two or more
distinct detectors agree, and one more level when the user is a repeat offender (another case
of the user whose latest disposition is "confirmed", or this very case when it was confirmed
and is now reopened), capped at critical. Risk (`emraudit.risk`) orders the review queue; each
scan admits at most its budget of new or reopened cases to the queue (`queued`), highest risk
first; the others stay open, stored and counted, below the budget.

Allowlisted findings (`suppressed_by` set) are stored and attached to their case but never
count towards it; a case with only suppressed findings has status "suppressed" and is not in
the review queue. When unsuppressed findings arrive later, it becomes open.

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
from itertools import chain
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from emraudit.errors import UserError
from emraudit.fastops import local_days, text_fields
from emraudit.model import SEVERITIES, SEVERITY_RANK, patient_list
from emraudit.risk import FLAGS, case_risk, finding_flags, flag_lists, queue_order
from emraudit.store import Store, case_history, cases, findings as findings_t, insert_many, \
    now_utc

DISPOSITIONS = ("confirmed", "false_positive", "justified", "training")
STATUSES = ("open", "resolved", "suppressed", "retracted")
KINDS = ("incident", "feed_gap")
CASE_COLUMNS = [c.name for c in cases.columns]
# fields whose change is recorded as an "updated" history row
_TRACKED = ("status", "severity", "detectors", "n_findings", "n_events")
# fields compared to decide whether a rescan changed the case at all
_COMPARED = ("severity", "score", "detectors", "items", "first_seen", "last_seen",
             "n_findings", "n_events", "summary", "status", "patients", "top_finding",
             "severity_base", "severity_reasons", "risk", "risk_factors")
# fields set from the user's record when a case is made (not compared: a later change of
# department does not rewrite the incident)
_USER_FIELDS = ("department", "role")
_CHUNK = 500
_SHOWN = 5      # candidates named when a case-id prefix is ambiguous


class CaseNotFound(UserError):
    """No case with that id (or id prefix)."""


class CaseConflict(UserError):
    """The case changed since the caller read it (optimistic concurrency)."""

    exit_code = 4


# -- grouping ---------------------------------------------------------------------------------
def case_id_for(kind: str, user_id: str, other: str) -> str:
    """Stable case id: the same (kind, user, day or unit) always gives the same id."""
    h = hashlib.sha1(f"{kind}\x1f{user_id}\x1f{other}".encode("utf-8")).hexdigest()
    return "C" + h[:15]


def _local_day(start: pd.Series, tz: str | None) -> pd.Series:
    """The site-local day of each finding's `start`. Not fastops.local_days alone: `start`
    is ISO text (the findings contract), parsed first; text that does not parse, and every
    value when no timezone is given, keeps its first ten characters (the day it was written
    in), which local_days, taking timestamps, cannot do."""
    start = start.fillna("").astype(str)
    if tz is None:
        return start.str[:10]   # ISO strings written in the site's timezone
    ts = pd.to_datetime(start, utc=True, format="ISO8601", errors="coerce")
    ok = ts.notna()
    out = start.str[:10].copy()
    if ok.any():
        out[ok] = local_days(ts[ok], tz).astype(str).to_numpy()
    return out


def assign_cases(findings: pd.DataFrame, tz: str | None = None) -> pd.DataFrame:
    """Columns `case_kind`, `case_user`, `case_day`, `case_id` for each finding: the
    incident of its user on the site-local day of its first event.

    Pure function (used by the scan and by `tune`/`detectors diff` to count cases).
    `tz`: the site timezone; when None the day is read from the ISO start string, which the
    pipeline writes in the site's timezone.
    """
    idx = findings.index
    if findings.empty:
        return pd.DataFrame({c: pd.Series(dtype="object", index=idx) for c in
                             ("case_kind", "case_user", "case_day", "case_id")})
    user = findings["user_id"].astype("string").fillna("").astype(str)
    day = _local_day(findings["start"], tz)
    pairs = pd.DataFrame({"u": user.to_numpy(), "d": day.to_numpy()})
    codes, uniq = pd.factorize(pairs["u"] + "\x1f" + pairs["d"])
    ids = np.asarray([case_id_for("incident", *k.split("\x1f", 1)) for k in uniq],
                     dtype=object)
    return pd.DataFrame({"case_kind": "incident", "case_user": user, "case_day": day,
                         "case_id": ids[codes] if len(codes) else []}, index=idx)


def count_cases(findings: pd.DataFrame, tz: str | None = None) -> int:
    """How many cases these findings would open (suppressed findings open none)."""
    if findings.empty:
        return 0
    active = findings
    if "suppressed_by" in findings:
        active = findings[findings["suppressed_by"].isna()]
    return int(assign_cases(active, tz)["case_id"].nunique()) if len(active) else 0


CASE_CHUNK = 2_000     # cases recomputed together (update_cases)
_CASE_COLUMNS = ("case_kind", "case_user", "case_day", "case_id")    # assign_cases's


def annotate(findings: pd.DataFrame, tz: str | None = None) -> pd.DataFrame:
    """A copy of the scan's findings with `case_id` (their incident) and `risk_flags` (the
    facts `emraudit.risk` weighs): what is written to the store once, before the cases."""
    out = findings.copy()
    # the incident columns too: update_cases reads them instead of assigning again
    assigned = assign_cases(findings, tz)
    for col in _CASE_COLUMNS:
        out[col] = assigned[col].astype(object).to_numpy() if len(findings) else \
            pd.Series(dtype=object)
    if "risk_flags" not in findings:    # a partition's worker took them (emraudit.packed)
        out["risk_flags"] = flag_lists(finding_flags(findings)) if len(findings) else []
    return out


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
    if not len(pairs):
        return {}
    k = pairs["k"].to_numpy(dtype=object)
    v = pairs["v"].tolist()
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]).tolist()
    return {k[a]: v[a:b] for a, b in zip(starts, starts[1:] + [len(v)])}


def _distinct_events(case_ids: pd.Series, event_ids: pd.Series, cases_: pd.Index
                     ) -> dict[str, int]:
    """case id -> how many distinct event ids its findings cite (a night of a bulk user's
    hundreds of thousands: one set per case, not a frame row per event id)."""
    per: dict[str, list] = {c: [] for c in cases_}
    for c, v in zip(case_ids.tolist(), event_ids.tolist()):
        per.setdefault(c, []).append(_event_list(v))
    return {c: len(set(map(str, chain.from_iterable(lists)))) for c, lists in per.items()}


def _flags_of(v: Any) -> set[str]:
    if isinstance(v, str):
        try:
            v = json.loads(v) if v else []
        except ValueError:
            return set()
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return set()
    return {str(x) for x in v}


def _case_patients(b: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(case id, patient) pairs of the findings in `b`: each finding's `patient_id` and,
    for one that concerns several (a spread night), every one of its `patient_ids`."""
    keys = b["case_id"]
    pid = b["patient_id"].astype("string").fillna("").astype(str)
    if "patient_ids" not in b:
        return keys, pid
    many = [patient_list(v) for v in b["patient_ids"]]
    has = np.fromiter((m is not None for m in many), dtype=bool, count=len(many))
    if not has.any():
        return keys, pid
    lists = [m for m in many if m is not None]
    extra_k = np.repeat(keys.to_numpy()[has], [len(m) for m in lists])
    extra_p = [p for m in lists for p in m]
    return (pd.concat([keys, pd.Series(extra_k, dtype=object)], ignore_index=True),
            pd.concat([pid, pd.Series(extra_p, dtype=object)], ignore_index=True))


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
    fl = [_flags_of(v) for v in (b["risk_flags"] if "risk_flags" in b
                                  else [None] * len(b))]
    for name in FLAGS:
        b["f_" + name] = [name in f for f in fl]
    g = b.groupby("case_id", sort=True)
    base_rank = g["rank"].max()
    score = g["score_n"].max()
    n_find = g.size()
    anyflag = g[["f_" + n for n in FLAGS]].any()
    dets = _lists(b["case_id"], b["detector"].astype(str))
    items = _lists(b["case_id"], b["rectification_item"].fillna("").astype(str))
    pats = _lists(*_case_patients(b))
    first = b.sort_values(["case_id", "ts_start"], kind="stable", na_position="last") \
        .groupby("case_id")["start"].first()
    last = b.sort_values(["case_id", "ts_end"], kind="stable", na_position="first") \
        .groupby("case_id")["end_s"].last()
    n_events = _distinct_events(b["case_id"], b["event_ids"], n_find.index)
    top = b.sort_values(["case_id", "rank", "score_n", "finding_id"],
                        ascending=[True, False, False, True]).groupby("case_id")[
        ["summary", "finding_id"]].first()
    all_sup = (~m.groupby("case_id")["active"].any()).to_dict()
    base_rank, score, n_find = base_rank.to_dict(), score.to_dict(), n_find.to_dict()
    first, last = first.to_dict(), last.to_dict()
    top_summary, top_id = top["summary"].to_dict(), top["finding_id"].to_dict()
    anyflag = anyflag.to_dict("index")
    out = {}
    for cid in n_find:          # one per case
        base = SEVERITIES[int(base_rank[cid])]
        detectors = dets.get(cid, [])
        steps, reasons, text = 0, [], []
        if len(detectors) >= 2:
            steps += 1
            reasons.append({"reason": "detectors_agree", "n": len(detectors)})
            text.append(f"{len(detectors)} detectors agree")
        rep = prior.get(cid, 0)
        if rep > 0:
            steps += 1
            reasons.append({"reason": "repeat_offender", "n": rep})
            text.append(f"repeat offender: {rep} earlier confirmed case{'s' if rep > 1 else ''}")
        severity = SEVERITIES[min(SEVERITY_RANK[base] + steps, len(SEVERITIES) - 1)]
        n = int(n_find[cid])
        summary = str(top_summary[cid])
        if n > 1:
            summary += f" (+{n - 1} more finding{'s' if n > 2 else ''})"
        if text:
            summary += f" Severity raised from {base} to {severity}: {'; '.join(text)}."
        patients = pats.get(cid, [])
        flags = anyflag[cid]
        risk, factors = case_risk(
            severity, special=flags["f_special"], lookup=flags["f_lookup"],
            output=flags["f_output"], n_patients=len(patients), n_events=int(n_events[cid]),
            n_detectors=len(detectors), prior_confirmed=rep)
        out[cid] = {
            "severity": severity, "score": round(float(score[cid]), 6),
            "detectors": json.dumps(detectors), "items": json.dumps(items.get(cid, [])),
            "first_seen": str(first[cid]), "last_seen": str(last[cid]),
            "n_findings": n, "n_events": int(n_events[cid]), "summary": summary,
            "patients": json.dumps(patients, ensure_ascii=False),
            "patient_id": patients[0] if len(patients) == 1 else None,
            "top_finding": str(top_id[cid]), "severity_base": base,
            "severity_reasons": json.dumps(reasons), "risk": risk,
            "risk_factors": json.dumps(factors, sort_keys=True),
            "all_suppressed": bool(all_sup[cid]), "reasons_text": text,
        }
    return out


# -- store access -----------------------------------------------------------------------------
def _chunks(items: list, n: int = _CHUNK) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _select_in(conn: sa.Connection, table: sa.Table, col: str, values: list,
               columns: list[str] | None = None, extra=None) -> pd.DataFrame:
    cols = [table.c[c] for c in columns] if columns else [table]
    frames = []
    for chunk in _chunks(sorted(set(values))):
        cond = table.c[col].in_(chunk)
        res = conn.execute(sa.select(*cols).where(cond if extra is None
                                                  else sa.and_(cond, extra)))
        frames.append(pd.DataFrame(res.fetchall(), columns=list(res.keys())))
    if not frames:
        return pd.DataFrame(columns=columns or [c.name for c in table.columns])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


_FINDING_FIELDS = ["finding_id", "detector", "severity", "score", "user_id", "patient_id",
                   "start", "end", "event_ids", "rectification_item", "summary",
                   "patient_ids", "suppressed_by", "risk_flags", "case_id"]


def prior_case_ids(conn: sa.Connection, finding_ids: Iterable[str]) -> dict[str, Any]:
    """finding id -> the case it belongs to in the store now (before this scan writes)."""
    prior = _select_in(conn, findings_t, "finding_id", [str(f) for f in finding_ids],
                       ["finding_id", "case_id"])
    return dict(zip(prior["finding_id"], prior["case_id"]))


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


def _user_fields(users: pd.DataFrame | None, user_ids: Iterable[str]) -> dict[str, dict]:
    """user -> {department, role} from the staff master (empty when not loaded)."""
    if users is None or not len(users):
        return {}
    return text_fields(users, "user_id", user_ids, _USER_FIELDS)


# -- the scan's entry point -------------------------------------------------------------------
def update_cases(conn: sa.Connection, findings: pd.DataFrame, scan_id: str, now: Any, *,
                 tz: str | None = None, users: pd.DataFrame | None = None,
                 prior_case: dict[str, Any] | None = None) -> pd.DataFrame:
    """Open, update or reopen the cases of these findings, inside the caller's transaction.

    `findings`: the scan's findings in the contract's shape, optionally with `suppressed_by`
    (from `emraudit.allow.apply_allowlist`), `case_id` and `risk_flags` (`annotate`; computed
    here when absent). The frame is not modified. `prior_case`: finding id -> its case before
    this scan (`prior_case_ids`), read here when not given, i.e. when the findings are not
    stored yet; `emraudit.results.save_scan_results` writes the findings first and passes it.
    `users`: the staff master, for the department and role a new case records.

    Returns the touched cases (store columns plus `change`: opened | reopened | updated |
    unchanged, `new_findings`, `severity_reasons_text`). Idempotent: the same findings again
    change nothing and append no history.
    """
    at = _dt(now)
    if findings is None:
        findings = pd.DataFrame(columns=_FINDING_FIELDS[:-2])
    new = findings if "case_id" in findings and "risk_flags" in findings \
        else annotate(findings, tz)
    # only what the cases are built from (not the evidence): a narrow copy of a night
    new = new[[c for c in new.columns if c in _FINDING_FIELDS or c in _CASE_COLUMNS]].copy()
    if not set(_CASE_COLUMNS) <= set(new.columns) or new["case_id"].isna().any():
        assigned = assign_cases(new, tz)
        new["case_id"] = new["case_id"].where(new["case_id"].notna(), assigned["case_id"])
        new = new.drop(columns=[c for c in _CASE_COLUMNS if c != "case_id" and c in new]) \
            .join(assigned.drop(columns=["case_id"]))
    if "suppressed_by" not in new:
        new["suppressed_by"] = None
    new["suppressed_by"] = new["suppressed_by"].astype(object).where(
        new["suppressed_by"].notna(), None)
    new = new.drop_duplicates("finding_id", keep="last")

    if prior_case is None:
        prior_case = prior_case_ids(conn, new["finding_id"].astype(str).tolist())
    target = dict(zip(new["finding_id"], new["case_id"]))
    moved_from = {c for f, c in prior_case.items()
                  if isinstance(c, str) and c and c != target.get(f)}
    # cases whose findings this scan retracted (a rescan no longer produced them)
    retracted = {r[0] for r in conn.execute(
        sa.select(findings_t.c.case_id).distinct().where(
            findings_t.c.retracted_scan == scan_id, findings_t.c.case_id.is_not(None)))}
    touched = sorted(set(new["case_id"]) | moved_from | retracted)
    profile = _user_fields(users, new["case_user"].unique()) if len(new) else {}

    result: list[dict] = []
    produced = set(new["finding_id"])
    # cases a chunk at a time: a case's members and its aggregation's temporaries are built
    # for CASE_CHUNK cases, not for every finding of a night at once (at 694,000 findings
    # that was 1.6 GB over the store stage)
    chunk_of = {c: i // CASE_CHUNK for i, c in enumerate(touched)}
    rows_of = new.groupby(new["case_id"].map(chunk_of), sort=False).indices if len(new) \
        else {}
    for k in range(0, len(touched), CASE_CHUNK):
        idx = rows_of.get(k // CASE_CHUNK)
        part = new.iloc[idx] if idx is not None else new.iloc[:0]
        pending = touched[k:k + CASE_CHUNK]
        for _ in range(5):
            done, pending = _process(conn, pending, part, at, scan_id, prior_case, profile,
                                     produced)
            result += done
            if not pending:
                break
        else:
            raise CaseConflict(f"case {pending[0]} kept changing under the scan; run it again")
    out = pd.DataFrame([r for r in result if r is not None])
    return out if len(out) else _empty_result()


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(columns=CASE_COLUMNS + ["change", "new_findings",
                                                "severity_reasons_text"])


def _process(conn: sa.Connection, cids: list[str], new: pd.DataFrame, at: datetime,
             scan_id: str, prior_case: dict[str, Any], profile: dict[str, dict],
             produced: set[str] | None = None) -> tuple[list[dict], list[str]]:
    """Recompute and write these cases; returns (results, cases a reviewer changed under
    us, to be read again and redone). `new`: this scan's findings of these cases (at
    least); `produced`: the ids of all of this scan's findings (default: `new`'s)."""
    if not cids:
        return [], []
    rows = {r["case_id"]: dict(r) for r in _select_in(
        conn, cases, "case_id", cids).to_dict("records")}
    rows = {k: {c: (None if _isna(v) else v) for c, v in r.items()} for k, r in rows.items()}
    # the cases' other members: not retracted, and not written by this scan (those are in
    # `new`; reading them back would read a night's findings twice)
    stored = _select_in(conn, findings_t, "case_id", cids, _FINDING_FIELDS + ["retracted_scan"],
                        extra=sa.and_(findings_t.c.retracted_scan.is_(None),
                                      sa.or_(findings_t.c.last_scan.is_(None),
                                             findings_t.c.last_scan != scan_id)))
    stored = stored[stored["retracted_scan"].isna()].drop(columns="retracted_scan")
    # findings produced now replace their stored version; those that moved elsewhere leave
    stored = stored[~stored["finding_id"].isin(
        produced if produced is not None else set(new["finding_id"]))]
    mine = new[new["case_id"].isin(set(cids))]
    members = pd.concat([stored, mine[[c for c in _FINDING_FIELDS if c in mine]]],
                        ignore_index=True)
    members["suppressed_by"] = members["suppressed_by"].astype(object).where(
        members["suppressed_by"].notna(), None)
    is_fresh = [prior_case.get(f) != c for f, c in zip(mine["finding_id"], mine["case_id"])]
    fresh = mine[pd.Series(is_fresh, index=mine.index, dtype=bool)
                 & mine["suppressed_by"].isna()]
    n_fresh = fresh.groupby("case_id").size().to_dict()
    first_rows = mine.drop_duplicates("case_id")
    info = {c: {"kind": k, "user": u, "day": d} for c, k, u, d in zip(
        first_rows["case_id"], first_rows["case_kind"], first_rows["case_user"],
        first_rows["case_day"])}
    user_of = {c: (rows[c]["user_id"] if c in rows else info[c]["user"])
               for c in cids if c in rows or c in info}
    confirmed = confirmed_cases(conn, [u for u in set(user_of.values()) if u])
    prior = {}
    for c, u in user_of.items():
        row = rows.get(c)
        reopening = bool(row and row["status"] == "resolved" and n_fresh.get(c, 0))
        mine_conf = confirmed.get(u, set())
        prior[c] = len(mine_conf - {c}) + (1 if c in mine_conf and (
            reopening or (row is not None and row["status"] != "resolved")) else 0)
    aggs = _aggregate_all(members, prior) if len(members) else {}

    results, conflicts, inserts, hist = [], [], [], []
    for cid in cids:            # one per case
        row = rows.get(cid)
        agg = aggs.get(cid)
        n_new = int(n_fresh.get(cid, 0))
        if row is not None and row.get("kind") == "feed_gap":
            continue                          # kept by emraudit.feeds, never by findings
        if agg is None:                      # nothing left in the case
            if row is None:
                continue
            upd = {"n_findings": 0, "n_events": 0, "detectors": "[]", "items": "[]"}
            if row["status"] in ("open", "suppressed"):
                upd["status"] = "retracted"   # nothing left to review
            upd = {k: v for k, v in upd.items() if row.get(k) != v}
            res = _result(row, "unchanged", 0, []) if not upd else \
                _write(conn, row, upd, at, scan_id, "updated", 0, [])
        elif row is None:
            kind = str(info[cid]["kind"])
            status = "suppressed" if agg["all_suppressed"] else "open"
            values = {k: v for k, v in agg.items() if k in CASE_COLUMNS}
            # every insert names the same columns (one executemany): a user missing from
            # the staff master has no department or role, not absent keys
            values.update(dict.fromkeys(_USER_FIELDS))
            values.update(profile.get(str(info[cid]["user"]), {}))
            values.update({
                "case_id": cid, "kind": kind, "user_id": str(info[cid]["user"]),
                "day": str(info[cid]["day"]),
                "status": status, "reopened": False, "version": 1, "created": at,
                "updated": at, "disposition": None, "reviewer": None, "note": None,
                "resolved_at": None, "queued": False})
            inserts.append(values)
            note = f"{agg['n_findings']} finding(s) by " \
                   f"{', '.join(json.loads(agg['detectors']))}"
            if status == "suppressed":
                ids = sorted({int(x) for x in members.loc[members["case_id"] == cid,
                                                          "suppressed_by"].dropna()})
                note += "; all suppressed by allowlist " + ", ".join(f"#{i}" for i in ids)
            hist.append(_history(cid, at, "opened", by="scan", field="status", new=status,
                                 note=note, scan_id=scan_id))
            res = _result(values, "opened", n_new, agg["reasons_text"])
        else:
            upd: dict[str, Any] = {}
            for k in _COMPARED + ("patient_id",):
                if k == "status":
                    continue
                v, old = agg[k], row.get(k)
                if k in ("score", "risk"):
                    if old is None or abs(float(old) - float(v)) > 1e-9:
                        upd[k] = v
                elif old != v:
                    upd[k] = v
            for k, v in profile.get(str(row.get("user_id")), {}).items():
                if row.get(k) is None and v is not None:
                    upd[k] = v
            change = "updated"
            if row["status"] == "resolved" and n_new:
                upd.update({"status": "open", "reopened": True, "disposition": None,
                            "reviewer": None, "note": None, "resolved_at": None,
                            "queued": False})
                change = "reopened"
            elif row["status"] in ("open", "retracted") and agg["all_suppressed"]:
                upd["status"] = "suppressed"
            elif row["status"] in ("suppressed", "retracted") and not agg["all_suppressed"]:
                upd["status"] = "open"
            res = _result(row, "unchanged", 0, agg["reasons_text"]) if not upd else \
                _write(conn, row, upd, at, scan_id, change, n_new, agg["reasons_text"])
        if res is False:
            conflicts.append(cid)
        else:
            results.append(res)
    insert_many(conn, cases, inserts)
    insert_many(conn, case_history, hist)
    return results, conflicts


def _isna(v: Any) -> bool:
    try:
        return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and np.isnan(v))
    except TypeError:
        return False


def _write(conn, row: dict, updates: dict, at: datetime, scan_id: str, change: str,
           n_new: int, reasons: list) -> dict | bool:
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
    return _result(merged, change, n_new, reasons)


def _result(row: dict, change: str, n_new: int, reasons: list) -> dict:
    out = {c: row.get(c) for c in CASE_COLUMNS}
    out.update(change=change, new_findings=n_new, severity_reasons_text=list(reasons))
    return out


# -- feed gaps ---------------------------------------------------------------------------------
_GAP_TEXT = {
    "department": "its admission feed or department codes look incomplete",
    "ward": "its ward codes or bed moves look incomplete",
    "role": "this role's work is not in the care relations (no orders, consults or rosters)",
    "source": "this source's user or patient ids do not match the reference tables",
}


def feed_gap_case_id(dimension: str, value: str) -> str:
    return case_id_for("feed_gap", dimension, value)


def update_feed_gap_cases(conn: sa.Connection, held: pd.DataFrame, shares: pd.DataFrame,
                          scan_id: str, now: Any) -> pd.DataFrame:
    """One open case per unit whose no-relation accesses this scan held (emraudit.feeds),
    with its figures; a resolved one reopens when accesses after its resolution are held.
    Returns the touched cases like update_cases."""
    at = _dt(now)
    if held is None or not len(held):
        return _empty_result()
    sh = shares.set_index(["dimension", "value"]) if shares is not None and len(shares) \
        else None
    results, inserts, hist = [], [], []
    for r in held.to_dict("records"):            # one per gap unit: a handful
        dim, val = str(r["dimension"]), str(r["value"])
        cid = feed_gap_case_id(dim, val)
        fig = sh.loc[(dim, val)].to_dict() if sh is not None and (dim, val) in sh.index \
            else {}
        share, others = fig.get("share"), fig.get("others_share")
        summary = (f"care relations explain {100 * float(share or 0):.0f}% of {dim} {val}'s "
                   f"accesses against {100 * float(others or 0):.0f}% elsewhere; "
                   f"{_GAP_TEXT.get(dim, 'its feed looks incomplete')} "
                   f"({int(r['held'])} unexplained accesses by {int(r['users'])} users to "
                   f"{int(r['patients'])} patients held as one case)")
        start, end = pd.Timestamp(r["start"]).isoformat(), pd.Timestamp(r["end"]).isoformat()
        values = {
            "severity": "medium", "score": round(1.0 - float(share or 0), 6),
            "detectors": json.dumps(["care.no_relationship"]), "items": json.dumps(["9"]),
            "n_findings": 0, "n_events": int(r["held"]), "summary": summary,
            "patients": "[]", "department": val if dim == "department" else None,
            "role": val if dim == "role" else None, "severity_base": "medium",
            "severity_reasons": json.dumps([{"reason": "feed_gap", "dimension": dim,
                                             "value": val, "share": share,
                                             "others_share": others,
                                             "held": int(r["held"]), "users": int(r["users"]),
                                             "patients": int(r["patients"]),
                                             "top_users": r.get("top_users") or [],
                                             "scan_id": scan_id}], ensure_ascii=False),
            "risk": None, "risk_factors": "{}",
        }
        row = conn.execute(sa.select(cases).where(cases.c.case_id == cid)).mappings().first()
        if row is None:
            values.update({"case_id": cid, "kind": "feed_gap", "user_id": None, "day": None,
                           "first_seen": start, "last_seen": end, "status": "open",
                           "reopened": False, "version": 1, "created": at, "updated": at,
                           "queued": True, "queued_scan": scan_id})
            inserts.append(values)
            hist.append(_history(cid, at, "opened", by="scan", field="status", new="open",
                                 note=summary, scan_id=scan_id))
            results.append(_result(values, "opened", 0, []))
            continue
        row = dict(row)
        values["first_seen"] = min(str(row.get("first_seen") or start), start)
        values["last_seen"] = max(str(row.get("last_seen") or end), end)
        upd = {k: v for k, v in values.items() if row.get(k) != v}
        change = "updated"
        resolved_at = row.get("resolved_at")
        if row["status"] == "resolved" and resolved_at is not None and \
                pd.Timestamp(r["end"]) > pd.Timestamp(_dt(resolved_at)):
            upd.update({"status": "open", "reopened": True, "disposition": None,
                        "reviewer": None, "note": None, "resolved_at": None})
            change = "reopened"
        if not upd:
            results.append(_result(row, "unchanged", 0, []))
            continue
        res = _write(conn, row, upd, at, scan_id, change, int(change == "reopened"), [])
        if res is False:
            raise CaseConflict(f"case {cid} changed under the scan; run it again")
        results.append(res)
    if inserts:
        conn.execute(cases.insert(), inserts)
    if hist:
        conn.execute(case_history.insert(), hist)
    return pd.DataFrame(results)


# -- the review queue -------------------------------------------------------------------------
def admit_to_queue(conn: sa.Connection, touched: pd.DataFrame, scan_id: str,
                   quota: int) -> dict[str, int]:
    """Admit at most `quota` of the cases this scan opened or reopened (or gave new
    findings while still waiting below the budget) to the review queue, highest risk first.

    The rest stay open, stored and counted, below the budget; a case already in the queue
    stays there until it is resolved. Returns {"admitted": n, "below_budget": m}."""
    if touched is None or not len(touched):
        return {"admitted": 0, "below_budget": 0}
    t = touched[(touched["status"] == "open") & (touched["kind"] != "feed_gap")]
    waiting = t["queued"].map(lambda v: not bool(v) if not _isna(v) else True)
    arriving = t[waiting & ((t["change"].isin(["opened", "reopened"]))
                            | (t["new_findings"].fillna(0).astype(int) > 0))]
    if not len(arriving):
        return {"admitted": 0, "below_budget": 0}
    order = queue_order(arriving["risk"].fillna(0.0).tolist(), arriving["case_id"].tolist())
    ids = arriving["case_id"].tolist()
    chosen = [ids[i] for i in order[:max(quota, 0)]]
    rows = [{"b_cid": cid, "b_rank": rank + 1} for rank, cid in enumerate(chosen)]
    if rows:
        conn.execute(cases.update().where(cases.c.case_id == sa.bindparam("b_cid"))
                     .values(queued=True, queue_rank=sa.bindparam("b_rank"),
                             queued_scan=scan_id), rows)
    return {"admitted": len(chosen), "below_budget": len(ids) - len(chosen)}


def review_queue(store: Store, limit: int | None = None) -> list[str]:
    """Ids of the open cases in the review queue: feed gaps first (a data problem to fix
    before anyone is judged), then by risk, highest first, ties by id."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(cases.c.case_id, cases.c.kind, cases.c.risk)
                         .where(cases.c.status == "open", cases.c.queued.is_(True))).fetchall()
    rows = sorted(rows, key=lambda r: (r.kind != "feed_gap", -(r.risk or 0.0), r.case_id))
    ids = [r.case_id for r in rows]
    return ids if limit is None else ids[:limit]


def queue_counts(store: Store) -> dict[str, int]:
    """Open cases in the review queue, below the budget, and feed gaps."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(cases.c.kind, cases.c.queued, sa.func.count())
                         .where(cases.c.status == "open")
                         .group_by(cases.c.kind, cases.c.queued)).fetchall()
    out = {"queued": 0, "below_budget": 0, "feed_gaps": 0}
    for kind, queued, n in rows:
        if kind == "feed_gap":
            out["feed_gaps"] += int(n)
        elif queued:
            out["queued"] += int(n)
        else:
            out["below_budget"] += int(n)
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
    """Record a reviewer's disposition (the verification, 核实结论) through `change_case`.

    A case verified again after new findings reopened it starts its rectification over: a
    measure recorded as done before does not cover what came after it."""
    if disposition not in DISPOSITIONS:
        raise UserError(f"unknown disposition '{disposition}' (expected one of "
                        f"{', '.join(DISPOSITIONS)})")
    if not (by or "").strip():
        raise UserError("--by is required: the reviewer's name")

    def change(row: dict, at: datetime) -> tuple[dict, list[dict]]:
        values = {"status": "resolved", "disposition": disposition, "reviewer": by,
                  "note": note, "resolved_at": at, "reopened": row["reopened"]}
        hist = [_history(row["case_id"], at, "resolved", by=by, field="disposition",
                         old=row["disposition"], new=disposition, note=note)]
        if row["status"] == "open" and row.get("rectification_status") not in (None, "pending"):
            values["rectification_status"] = "pending"
            hist.append(_history(row["case_id"], at, "rectified", by=by,
                                 field="rectification_status",
                                 old=row["rectification_status"], new="pending",
                                 note="verified again after new findings: rectification "
                                      "starts over"))
        return values, hist

    return change_case(store, case_ref, change, now=now, expected_version=expected_version,
                       retries=retries, doing="resolving")


def change_case(store: Store, case_ref: str,
                change: Callable[[dict, datetime], tuple[dict, list[dict]]], *,
                now: Any = None, expected_version: int | None = None, retries: int = 5,
                doing: str = "changing") -> dict:
    """Apply a reviewer's change to one case: one short transaction, optimistic concurrency.

    `change(row, at)` gets the case as read and returns the new values and the history rows
    to append (it may raise UserError when the change does not apply to this case). The
    update is `… WHERE case_id = ? AND version = ?`. When another reviewer (or a scan)
    changed the case in between, it is read again and the change applied on top, so both
    changes are in the history and nothing is lost — unless `expected_version` is given, in
    which case a changed case raises CaseConflict. Returns the updated case row.
    """
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
                values, hist = change(dict(row), at)
                values = dict(values, version=row["version"] + 1, updated=at)
                res = conn.execute(cases.update().where(
                    cases.c.case_id == row["case_id"], cases.c.version == row["version"])
                    .values(**values))
                if res.rowcount == 0:
                    if expected_version is not None:
                        raise CaseConflict(f"case {row['case_id']} changed while {doing}; "
                                           "look at it again")
                    continue   # transaction ends; read again
                if hist:
                    conn.execute(case_history.insert(), hist)
                row.update(values)
                return row
        except sa.exc.OperationalError as exc:
            if "lock" in str(exc.orig).lower():
                raise CaseConflict(f"case {case_ref} is being updated by a running scan; "
                                   "try again in a moment") from None
            raise
    raise CaseConflict(f"case {case_ref} kept changing while {doing}; try again")


def list_cases(store: Store, *, status: str | None = "open", detector: str | None = None,
               user: str | None = None, since: str | None = None, item: str | None = None,
               severity: str | None = None, below_budget: bool = False) -> pd.DataFrame:
    """Cases for review: the queue first (feed gaps, then by risk), then the rest by risk.
    `below_budget`: only the open cases the nightly budget left out of the queue."""
    cond = []
    if item:
        cond.append(cases.c["items"].like(f'%"{item}"%'))
    if severity:
        cond.append(cases.c.severity == severity)
    if below_budget:
        status = "open"
        cond += [sa.or_(cases.c.queued.is_(None), cases.c.queued.is_(False)),
                 cases.c.kind != "feed_gap"]
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
    df["_queue"] = df["queued"].fillna(False).astype(bool) & (df["status"] == "open")
    df["_gap"] = df["kind"] == "feed_gap"
    df["_risk"] = pd.to_numeric(df["risk"], errors="coerce").fillna(-1.0)
    df["_rank"] = df["severity"].map(SEVERITY_RANK).fillna(-1)
    df = df.sort_values(["_queue", "_gap", "_risk", "_rank", "last_seen", "case_id"],
                        ascending=[False, False, False, False, False, True])
    return df.drop(columns=["_queue", "_gap", "_risk", "_rank"]).reset_index(drop=True)


def case_history_of(store: Store, case_id: str) -> pd.DataFrame:
    return store.read_table(case_history, case_history.c.case_id == case_id,
                            case_history.c.id)


def user_history(store: Store, user_id: str) -> pd.DataFrame:
    """All cases of one user with their dispositions (for the case page's 'earlier cases')."""
    df = store.read_table(cases, cases.c.user_id == user_id, cases.c.first_seen)
    return df
