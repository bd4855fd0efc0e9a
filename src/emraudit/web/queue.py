"""The review queue: every open case whatever scan found it, highest risk first, filtered
and paged.

Cases come from `emraudit.cases.list_cases` (status, detector, item and severity filtered in
SQL); the department (the case's own, else the user's in the staff master) and the assignee
(`case_assignments`) are joined here and filtered after. The order is the case's risk where
the store has one, then severity, score and recency, so the queue reads the same before and
after a store gains risk scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import sqlalchemy as sa

from emraudit.cases import STATUSES, list_cases
from emraudit.errors import UserError
from emraudit.model import SEVERITIES
from emraudit.reports.labels import SEVERITY, STATUS, detector_info, item_info, label
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _json_list, _s
from emraudit.reports.render import Ref
from emraudit.reports.text import case_sentences
from emraudit.store import Store, case_assignments

PAGE_SIZE = 50
ITEMS = ("8", "9", "6")
UNASSIGNED = "-"


@dataclass
class Filters:
    """The queue's filters as they come from the query string (blank: no filter)."""

    status: str = "open"
    item: str = ""
    detector: str = ""
    department: str = ""
    severity: str = ""
    assignee: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params) -> "Filters":
        f = cls(**{k: str(params.get(k, "") or "").strip()
                   for k in ("item", "detector", "department", "severity", "assignee")},
                status=str(params.get("status", "open") or "open"))
        if f.status not in STATUSES + ("all",):
            raise UserError(f"status: expected one of {', '.join(STATUSES)} or all, "
                            f"got {f.status!r}")
        if f.item and f.item not in ITEMS:
            raise UserError(f"item: expected 8 or 9, got {f.item!r}")
        if f.severity and f.severity not in SEVERITIES:
            raise UserError(f"severity: expected one of {', '.join(SEVERITIES)}, "
                            f"got {f.severity!r}")
        try:
            f.page = max(1, int(params.get("page", 1) or 1))
        except ValueError:
            raise UserError(f"page: expected a number, got {params.get('page')!r}") from None
        return f

    def query(self, **change) -> str:
        """The query string of these filters with `change` applied (for links)."""
        from urllib.parse import urlencode
        d = {k: v for k, v in asdict(self).items() if v not in ("", None)}
        d.update({k: v for k, v in change.items()})
        d = {k: v for k, v in d.items() if v not in ("", None) and not (k == "page" and v == 1)
             and not (k == "status" and v == "open")}
        return urlencode(d)


def assignments(store: Store, case_ids=None) -> dict[str, dict]:
    """case id -> {assignee, assigned_by, at}."""
    stmt = sa.select(case_assignments)
    if case_ids is not None:
        stmt = stmt.where(case_assignments.c.case_id.in_(list(case_ids)[:1000]))
    with store.engine.connect() as c:
        return {r["case_id"]: dict(r) for r in c.execute(stmt).mappings()}


def case_patients(row: dict) -> list[str]:
    """The patients of a case: the incident's list, else the one patient of the case."""
    pats = [str(p) for p in _json_list(row.get("patients")) if _s(p)]
    if not pats and _s(row.get("patient_id")):
        pats = [_s(row.get("patient_id"))]
    return pats


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Highest risk first (severity where no risk is stored), then score and recency."""
    if df.empty:
        return df
    from emraudit.reports.labels import SEVERITY_RANK
    risk = pd.to_numeric(df["risk"], errors="coerce") if "risk" in df else None
    key = pd.DataFrame({
        "risk": risk.fillna(-1.0) if risk is not None else 0.0,
        "rank": df["severity"].map(SEVERITY_RANK).fillna(-1),
        "score": pd.to_numeric(df["score"], errors="coerce").fillna(0.0),
        "last": df["last_seen"].fillna("").astype(str), "id": df["case_id"].astype(str)},
        index=df.index)
    key = key.sort_values(["risk", "rank", "score", "last", "id"],
                          ascending=[False, False, False, False, True], kind="stable")
    return df.loc[key.index].reset_index(drop=True)


def _with_people(df: pd.DataFrame, store: Store, users: pd.DataFrame | None) -> pd.DataFrame:
    """`department_shown` (the case's department, else its user's) and `assignee`."""
    if df.empty:
        return df.assign(department_shown=pd.Series(dtype=object),
                         assignee=pd.Series(dtype=object))
    dept = {}
    if users is not None and len(users) and "department" in users:
        dept = dict(zip(users["user_id"].astype(str), users["department"].astype(object)))
    own = df["department"] if "department" in df else pd.Series(None, index=df.index)
    df = df.assign(department_shown=[_s(d) or _s(dept.get(str(u)))
                                     for d, u in zip(own, df["user_id"])])
    assigned = assignments(store)
    return df.assign(assignee=df["case_id"].map(
        lambda c: assigned.get(c, {}).get("assignee", "")))


def open_cases(store: Store, filters: Filters, users: pd.DataFrame | None) -> pd.DataFrame:
    """The filtered cases in queue order, with `department_shown` and `assignee`."""
    df = _with_people(list_cases(
        store, status=None if filters.status == "all" else filters.status,
        detector=filters.detector or None, item=filters.item or None,
        severity=filters.severity or None), store, users)
    if filters.department:
        df = df[df["department_shown"] == filters.department]
    if filters.assignee == UNASSIGNED:
        df = df[df["assignee"] == ""]
    elif filters.assignee:
        df = df[df["assignee"] == filters.assignee]
    return ordered(df)


def queue_model(store: Store, filters: Filters, ref: Ref, masker: Masker, fmt: Fmt,
                lang, users: pd.DataFrame | None, patients: pd.DataFrame | None) -> dict:
    """One page of the queue as plain rows, plus what the filter menus offer."""
    df = open_cases(store, filters, users)
    total = len(df)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(filters.page, pages)
    rows = df.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE].to_dict("records")
    masker.learn_patients(patients, [p for r in rows for p in case_patients(r)])
    said = case_sentences(store, rows, lang, masker)      # in the app's language
    out = []
    for r in rows:
        pats = case_patients(r)
        sev = _s(r.get("severity")) or "low"
        status = _s(r.get("status"))
        risk = pd.to_numeric(pd.Series([r.get("risk")]), errors="coerce").iloc[0]
        out.append({
            "id": r["case_id"], "severity": sev, "severity_label": label(SEVERITY, sev, lang),
            "risk": "" if pd.isna(risk) else f"{float(risk):.1f}",
            "user": ref.user(r.get("user_id")), "department": _s(r.get("department_shown")),
            "patient": masker.pid(pats[0]) if pats else "", "n_patients": len(pats),
            "detectors": [detector_info(d, lang)["name"]
                          for d in _json_list(r.get("detectors"))],
            "items": [item_info(str(i), lang) for i in _json_list(r.get("items"))],
            "first_seen": fmt.minute(r.get("first_seen")), "n_events": r.get("n_events") or 0,
            "status": label(STATUS, "reopened" if status == "open" and r.get("reopened") is True
                            else status, lang),
            "assignee": _s(r.get("assignee")), "summary": said.get(str(r["case_id"]), "")})
    # the menus offer what the cases of this status hold, whatever else is filtered
    every = _with_people(list_cases(
        store, status=None if filters.status == "all" else filters.status), store, users)
    detectors = sorted({str(d) for v in every.get("detectors", []) for d in _json_list(v)})
    depts = sorted({d for d in every.get("department_shown", []) if d})
    return {"rows": out, "total": total, "page": page, "pages": pages, "filters": filters,
            "detectors": [(d, detector_info(d, lang)["name"]) for d in detectors],
            "departments": depts,
            "severities": [(s, label(SEVERITY, s, lang)) for s in reversed(SEVERITIES)],
            "statuses": [(s, label(STATUS, s, lang)) for s in STATUSES],
            "items": [(i, item_info(i, lang)) for i in ("8", "9")]}


def next_case(store: Store, me: str, after: str | None = None) -> str | None:
    """The next open case to work: the highest risk one assigned to `me` or to nobody."""
    df = open_cases(store, Filters(), None)
    if df.empty:
        return None
    df = df[(df["assignee"] == "") | (df["assignee"] == me)]
    ids = [c for c in df["case_id"].astype(str) if c != after]
    return ids[0] if ids else None


__all__ = ["Filters", "queue_model", "open_cases", "next_case", "assignments"]
