"""Rectification (整改) of confirmed problems, kept apart from their verification (核实).

A reviewer's disposition says whether a case is a real problem (核实结论: confirmed,
justified, false positive, training). Only a confirmed problem (or one handled by training)
is rectified, and confirming is not rectifying: the rectification has its own status,
待整改 (pending) → 整改中 (in progress) → 已整改 (done), with the measure actually taken, the
day it was taken and who recorded it. Each change is versioned like a disposition
(`emraudit.cases.change_case`) and appended to the case's history. The command line
(`emraudit cases rectify`) and the review app call the functions here.

Notices (告知书) given to a user are recorded in the same history (`record_notice`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

from emraudit.cases import _history, change_case
from emraudit.dates import parse_day
from emraudit.errors import UserError
from emraudit.store import Store

STATUSES = ("pending", "in_progress", "done")
# the campaign's own words are accepted too
STATUS_WORDS = {"待整改": "pending", "整改中": "in_progress", "已整改": "done",
                "in-progress": "in_progress"}
# the dispositions that make a case a problem to rectify
PROBLEM_DISPOSITIONS = ("confirmed", "training")


def normalize_status(value: str) -> str:
    v = (value or "").strip()
    v = STATUS_WORDS.get(v, v.lower())
    if v not in STATUSES:
        raise UserError(f"--status: unknown rectification status '{value}' (expected "
                        f"{', '.join(STATUSES)}, or 待整改, 整改中, 已整改)")
    return v


def status_of(row: dict) -> str | None:
    """The rectification status a case is in: None when it is not (or not yet) a problem to
    rectify (open for verification, justified, false positive), else pending, in_progress
    or done."""
    if row.get("status") != "resolved" or row.get("disposition") not in PROBLEM_DISPOSITIONS:
        return None
    s = row.get("rectification_status")
    return s if isinstance(s, str) and s in STATUSES else "pending"


def not_a_problem(row: dict, act: str) -> str:
    """Why `act` (rectify, give a notice) does not apply to this case."""
    cid = row["case_id"]
    if row.get("status") != "resolved":
        return (f"case {cid} is not verified yet: record the verification first "
                f"(`emraudit cases resolve {cid} --disposition confirmed …`); only a "
                f"confirmed problem is there to {act}")
    return (f"case {cid} was verified as {row.get('disposition')}: only confirmed or "
            f"training cases are there to {act}")


def rectify_case(store: Store, case_ref: str, status: str, *, by: str,
                 measure: str | None = None, day: str | date | None = None,
                 note: str | None = None, tz: str = "Asia/Shanghai", now: Any = None,
                 expected_version: int | None = None) -> dict:
    """Record the rectification of a confirmed case; returns the updated case row.

    `done` needs the measure actually taken; `day` (ISO, default today in the site's
    timezone) is when it was taken, never in the future. The status may go back (a measure
    found wanting); every change is in the history."""
    status = normalize_status(status)
    by = (by or "").strip()
    if not by:
        raise UserError("--by is required: who records the rectification")
    measure = (measure or "").strip() or None
    if status == "done" and not measure:
        raise UserError("--measure is required with --status done: the measure actually "
                        "taken (e.g. 'talked to the user; access rights narrowed; retrained')")
    today = pd.Timestamp(now if now is not None else datetime.now().astimezone())
    today = (today.tz_localize("UTC") if today.tzinfo is None else today).tz_convert(tz).date()
    when = parse_day(day, "--date") if isinstance(day, str) else (day or today)
    if when > today:
        raise UserError(f"--date {when.isoformat()} is in the future")

    def change(row: dict, at: datetime) -> tuple[dict, list[dict]]:
        if status_of(row) is None:
            raise UserError(not_a_problem(row, "rectify"))
        values = {"rectification_status": status, "rectification_date": when.isoformat(),
                  "rectification_by": by}
        if measure:
            values["rectification_measure"] = measure
        # data, not a sentence: the measure and note as given, the day in brackets
        told = "; ".join(x for x in (measure, (note or "").strip()) if x) + \
            f" [{when.isoformat()}]"
        return values, [_history(row["case_id"], at, "rectified", by=by,
                                 field="rectification_status",
                                 old=row.get("rectification_status") or "pending",
                                 new=status, note=told)]

    return change_case(store, case_ref, change, now=now, expected_version=expected_version,
                       doing="recording the rectification")


def record_notice(store: Store, case_ref: str, *, by: str, to: str, copy_to: str,
                  path: str, now: Any = None) -> dict:
    """Append 'notice given' to a case's history: to whom, the copy, and the file."""
    by = (by or "").strip()
    if not by:
        raise UserError("--by is required: who gives the notice")

    def change(row: dict, at: datetime) -> tuple[dict, list[dict]]:
        if status_of(row) is None:
            raise UserError(not_a_problem(row, "give a notice for"))
        note = "; ".join(x for x in (to, copy_to, path) if x)    # to; copy to; file
        return {}, [_history(row["case_id"], at, "notice", by=by, note=note)]

    return change_case(store, case_ref, change, now=now, doing="recording the notice")


__all__ = ["STATUSES", "PROBLEM_DISPOSITIONS", "normalize_status", "status_of", "not_a_problem",
           "rectify_case", "record_notice"]
