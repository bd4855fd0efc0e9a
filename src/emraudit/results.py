"""A scan's results in the store: findings and their cases, decided once and written once.

The scan hands over what the detectors found (allowlist applied); this module gives each
finding its case and risk facts, writes the findings in batches (their case id included:
one write, no second update), retracts what a rescan of the same days no longer produced,
updates the cases from what is now stored, and admits the night's budget of them to the
review queue. Reports only read what this wrote (DESIGN.md: data moves forward).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import pandas as pd
import sqlalchemy as sa

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from emraudit.cases import (admit_to_queue, annotate, prior_case_ids, update_cases,
                            update_feed_gap_cases)
from emraudit.model import patient_list
from emraudit.packed import args_text, events_text, evidence_text
from emraudit.state import save_state
from emraudit.store import feed_health, findings as findings_t, now_utc, upsert

BATCH = 5_000          # findings per INSERT batch: bounded memory for the encoded rows


@dataclass
class Saved:
    new_findings: int
    retracted: int
    cases: pd.DataFrame            # the touched cases (cases.update_cases)
    admitted: int                  # cases this scan admitted to the review queue
    below_budget: int              # cases this scan left below the budget
    feed_gaps: pd.DataFrame | None = None   # the units held as feed-gap cases


def _json_text(values: pd.Series, **kw) -> list[str]:
    return [json.dumps(v, **kw) for v in values]


def _ids_text(v) -> str | None:
    """A finding's patient list as the store keeps it (JSON text; None when it has none)."""
    v = patient_list(v)
    return json.dumps(v, ensure_ascii=False) if v else None


def _finding_rows(df: pd.DataFrame, scan_id: str, first_scan: dict[str, str],
                  now) -> Iterator[dict]:
    """Store rows of the findings, encoded one batch at a time (columns, then rows)."""
    for lo in range(0, len(df), BATCH):
        part = df.iloc[lo:lo + BATCH]
        fid = part["finding_id"].astype(str).tolist()
        sup = part["suppressed_by"] if "suppressed_by" in part else \
            pd.Series([None] * len(part), index=part.index)
        cols = {
            "finding_id": fid, "detector": part["detector"].astype(str).tolist(),
            "severity": part["severity"].astype(str).tolist(),
            "score": pd.to_numeric(part["score"], errors="coerce").fillna(0.0)
            .astype(float).tolist(),
            "user_id": part["user_id"].astype(str).tolist(),
            "patient_id": part["patient_id"].astype("string").fillna("").astype(str).tolist(),
            "start": part["start"].tolist(), "end": part["end"].tolist(),
            "event_ids": [events_text(v) for v in part["event_ids"]],
            "rectification_item": part["rectification_item"].astype(str).tolist(),
            "summary": part["summary"].astype(str).tolist(),
            # objects from a single-process scan, compressed text from a partition's
            # worker (emraudit.packed): the same text either way
            "evidence": [evidence_text(v) for v in part["evidence"]],
            "message_id": [m if isinstance(m, str) else None for m in part["message_id"]]
            if "message_id" in part else [None] * len(part),
            "message_args": [args_text(a) for a in part["message_args"]]
            if "message_args" in part else [None] * len(part),
            "suppressed_by": [int(v) if pd.notna(v) else None for v in sup],
            "case_id": part["case_id"].tolist(),
            "site_id": [s if isinstance(s, str) else None for s in part["site_id"]]
            if "site_id" in part else [None] * len(part),
            "risk_flags": _json_text(part["risk_flags"]),
            "patient_ids": [_ids_text(v) for v in part["patient_ids"]]
            if "patient_ids" in part else [None] * len(part),
        }
        names = list(cols)
        for values in zip(*(cols[c] for c in names)):
            row = dict(zip(names, values))
            f = row["finding_id"]
            row.update(first_scan=first_scan.get(f, scan_id), last_scan=scan_id,
                       retracted_scan=None, updated=now)
            if f not in first_scan:
                row["created"] = now
            yield row


def store_findings(conn: sa.Connection, found: pd.DataFrame, scan_id: str, ran: list[str],
                   window_start: pd.Timestamp, window_end: pd.Timestamp,
                   days: list[str] | None = None) -> tuple[int, int]:
    """Upsert findings by id, in batches; retract earlier findings of the window that this
    scan no longer produced. `found` carries `case_id` and `risk_flags` (cases.annotate).

    Returns (new findings, retracted findings).
    """
    now = now_utc()
    ids = found["finding_id"].astype(str).tolist() if len(found) else []
    first_scan: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        for fid, fs in conn.execute(
                sa.select(findings_t.c.finding_id, findings_t.c.first_scan)
                .where(findings_t.c.finding_id.in_(part))):
            first_scan[fid] = fs
    fresh: list[dict] = []
    known: list[dict] = []
    n_new = 0
    for row in _finding_rows(found, scan_id, first_scan, now):
        (fresh if "created" in row else known).append(row)
        if len(fresh) + len(known) >= BATCH:
            n_new += len(fresh)
            _flush(conn, fresh, known)
    n_new += len(fresh)
    _flush(conn, fresh, known)
    ws, we = window_start.isoformat(), window_end.isoformat()
    stale = sa.and_(findings_t.c.detector.in_(ran), findings_t.c.start >= ws,
                    findings_t.c.end < we, findings_t.c.retracted_scan.is_(None),
                    findings_t.c.last_scan != scan_id)
    candidates = conn.execute(sa.select(findings_t.c.finding_id, findings_t.c.start,
                                        findings_t.c.end).where(stale)).fetchall()
    # only findings lying wholly in scanned days: a day outside the set was not re-detected
    covered = set(days) if days is not None else None
    gone = [r.finding_id for r in candidates
            if covered is None or (r.start[:10] in covered and r.end[:10] in covered)]
    for i in range(0, len(gone), 500):
        conn.execute(findings_t.update().where(findings_t.c.finding_id.in_(gone[i:i + 500]))
                     .values(retracted_scan=scan_id, updated=now))
    return n_new, len(gone)


def _flush(conn: sa.Connection, fresh: list[dict], known: list[dict]) -> None:
    upsert(conn, findings_t, fresh, ["finding_id"])
    upsert(conn, findings_t, known, ["finding_id"])
    fresh.clear()
    known.clear()


def save_scan_results(conn: sa.Connection, found: pd.DataFrame, scan_id: str, *,
                      ran: list[str], window_start: pd.Timestamp, window_end: pd.Timestamp,
                      days: list[str] | None, tz: str, users: pd.DataFrame | None = None,
                      quota: int = 0, outputs: dict | None = None,
                      held_dir: Path | None = None, now: Any = None) -> Saved:
    """Findings, then their cases, then the queue, then what detectors left for the store
    (feed health, feed gaps, anomaly state): inside the caller's transaction."""
    outputs = outputs or {}
    now = now if now is not None else now_utc()
    found = annotate(found, tz)
    prior = prior_case_ids(conn, found["finding_id"].astype(str).tolist()) if len(found) \
        else {}
    n_new, n_gone = store_findings(conn, found, scan_id, ran, window_start, window_end, days)
    touched = update_cases(conn, found, scan_id, now, tz=tz, users=users, prior_case=prior)
    q = admit_to_queue(conn, touched, scan_id, quota)
    shares = outputs.get("feed_health")
    if shares is not None and len(shares):
        save_feed_health(conn, shares, scan_id)
    gaps = outputs.get("feed_gaps")
    if gaps is not None and len(gaps):
        gap_cases = update_feed_gap_cases(conn, gaps, shares, scan_id, now)
        touched = pd.concat([touched, gap_cases], ignore_index=True) if len(touched) \
            else gap_cases
        if held_dir is not None and outputs.get("feed_gap_events") is not None:
            write_held_events(held_dir, scan_id, outputs["feed_gap_events"])
    save_state(conn, outputs, scan_id)           # what detectors keep between scans
    return Saved(n_new, n_gone, touched, q["admitted"], q["below_budget"], gaps)


def mark_unmasked(conn: sa.Connection, scan_id: str) -> None:
    """Record on the scan that its reports were written with patients unmasked."""
    from emraudit.store import scans
    conn.execute(scans.update().where(scans.c.scan_id == scan_id).values(unmasked=True))


def save_feed_health(conn: sa.Connection, shares: pd.DataFrame, scan_id: str) -> None:
    rows = []
    for r in shares.to_dict("records"):
        rows.append({"scan_id": scan_id, "dimension": str(r["dimension"]),
                     "value": str(r["value"]), "accesses": int(r["accesses"]),
                     "explained": int(r["explained"]), "share": float(r["share"]),
                     "others_share": None if pd.isna(r["others_share"])
                     else float(r["others_share"]),
                     "users": int(r["users"]), "patients": int(r["patients"]),
                     "gap": bool(r["gap"]), "reason": str(r["reason"] or ""),
                     "first_day": r.get("first_day"), "last_day": r.get("last_day")})
    upsert(conn, feed_health, rows, ["scan_id", "dimension", "value"])


def write_held_events(folder: Path, scan_id: str, held: pd.DataFrame) -> Path:
    """The event ids a scan held in feed-gap cases, as Parquet (gap, event_id): millions of
    ids cost a fraction of a second here and would cost minutes as store rows."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scan_id}.parquet"
    tmp = path.with_suffix(".tmp")
    table = pa.table({"gap": pa.array(held["gap"].astype(str).tolist()),
                      "event_id": pa.array(held["event_id"].astype(str).tolist())})
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def held_events(folder: Path, gap: str) -> pd.DataFrame:
    """Every event id held for one gap ("dimension\x1fvalue"), across scans."""
    if not folder.exists():
        return pd.DataFrame(columns=["scan_id", "event_id"])
    frames = []
    for f in sorted(folder.glob("*.parquet")):
        t = pq.read_table(f, filters=[("gap", "=", gap)], columns=["event_id"]).to_pandas()
        frames.append(t.assign(scan_id=f.stem))
    return pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=["scan_id", "event_id"])


def review_quota(budget: int, days: list[str] | None) -> int:
    """Cases a scan may admit to the queue: the nightly budget for each day it covers (a
    first scan of a month's backlog admits a month's worth, a nightly scan one night's)."""
    return int(budget) * max(1, len(days or []))


__all__ = ["store_findings", "save_scan_results", "review_quota", "Saved"]
