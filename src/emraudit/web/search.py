"""Search: by user, every record they opened; by patient, everyone who opened the record.

The patient side is the existing patient access report (`reports.patient`), served, with the
cases whose findings name the patient. The user side reads the user's events of the period
from the lake (filtered while reading) and their cases. Both link into the case pages. A
period is at most MAX_DAYS long and a page lists at most MAX_ROWS accesses, so one search
costs a bounded read whatever the hospital's size.
"""

from __future__ import annotations

import pandas as pd

from emraudit.cases import user_history
from emraudit.config import Config
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.reports import data
from emraudit.reports.i18n import Lang
from emraudit.reports.labels import ACTION, SEVERITY, STATUS, detector_info, label
from emraudit.reports.masking import Masker
from emraudit.dates import period
from emraudit.reports.page import Fmt, _json_list, _s
from emraudit.reports.render import Ref
from emraudit.reports.text import case_sentences
from emraudit.store import Store, findings

MAX_DAYS = 92
MAX_ROWS = 2000
DEFAULT_DAYS = 7


def default_period(store: Store, lake: Lake, start: str, end: str) -> tuple[str, str]:
    """The period asked for, else the last DEFAULT_DAYS days the lake holds."""
    if start and end:
        return start, end
    days = lake.days(store.committed_runs())
    last = pd.Timestamp(end) if end else (pd.Timestamp(days[-1]) if days
                                          else pd.Timestamp.now().normalize())
    first = pd.Timestamp(start) if start else last - pd.Timedelta(days=DEFAULT_DAYS - 1)
    return first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")


def checked_period(start: str, end: str, tz: str, max_days: int = MAX_DAYS
                   ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last day of an ISO period of at most `max_days` days."""
    lo, hi = period(start, end, tz, options=("from", "to"))
    if (hi - lo).days + 1 > max_days:
        raise UserError(f"the period is {(hi - lo).days + 1} days long: at most {max_days}")
    return lo, hi


def case_rows(df: pd.DataFrame, lang: Lang, fmt: Fmt, masker: Masker,
              store: Store) -> list[dict]:
    """Cases as rows that link into the app."""
    out = []
    records = df.to_dict("records") if len(df) else []
    said = case_sentences(store, records, lang, masker)   # in the app's language
    for r in records:
        sev = _s(r.get("severity"))
        out.append({"id": r["case_id"], "severity": sev,
                    "severity_label": label(SEVERITY, sev, lang),
                    "first_seen": fmt.minute(r.get("first_seen")),
                    "detectors": ", ".join(detector_info(d, lang)["name"]
                                           for d in _json_list(r.get("detectors"))),
                    "status": label(STATUS, _s(r.get("status")), lang),
                    "disposition": _s(r.get("disposition")),
                    "summary": said.get(str(r["case_id"]), "")})
    return out


def user_search(config: Config, store: Store, lake: Lake, user_id: str, start: str, end: str,
                lang: Lang, masker: Masker, ref: Ref) -> dict:
    user_id = (user_id or "").strip()
    if not user_id:
        raise UserError("give an account (user id) to search for")
    start, end = default_period(store, lake, start, end)
    lo, hi = checked_period(start, end, config.tz)
    fmt = Fmt(config.tz)
    days = pd.date_range(lo, hi).strftime("%Y-%m-%d")
    ev = data.read_lake(lake, store.committed_runs(), days, None,
                        [("user_id", "==", user_id)])
    fnd = store.read_findings(findings.c.user_id == user_id)
    case_of: dict[str, str] = {}
    det_of: dict[str, set] = {}
    for r in fnd.to_dict("records") if len(fnd) else []:
        for e in r["event_ids"]:
            case_of.setdefault(str(e), _s(r.get("case_id")))
            det_of.setdefault(str(e), set()).add(r["detector"])
    if len(ev):
        ev = ev.sort_values(["ts", "event_id"], kind="stable")
    n_total = len(ev)
    shown = ev.head(MAX_ROWS)
    masker.learn_patients(ref.patients, shown["patient_id"].dropna().astype(str).unique()
                          if len(shown) else [])
    rows = []
    for r in shown.to_dict("records") if len(shown) else []:
        eid = str(r["event_id"])
        rows.append({"time": fmt.ts(r.get("ts")),
                     "action": label(ACTION, _s(r.get("action")), lang),
                     "patient": masker.pid(r.get("patient_id")),
                     "module": _s(r.get("module")), "workstation": _s(r.get("workstation")),
                     "source_ref": _s(r.get("_source_ref")),
                     "flagged": ", ".join(sorted(detector_info(d, lang)["name"]
                                                 for d in det_of.get(eid, ()))),
                     "case": case_of.get(eid, "")})
    cases = user_history(store, user_id)
    if len(cases):
        cases = cases.sort_values("first_seen", ascending=False)
    return {"user": ref.user(user_id), "from": lo.strftime("%Y-%m-%d"),
            "to": hi.strftime("%Y-%m-%d"), "rows": rows, "n_total": n_total,
            "n_patients": int(ev["patient_id"].nunique()) if len(ev) else 0,
            "truncated": n_total > len(rows), "cases": case_rows(cases, lang, fmt, masker, store)}


def patient_cases(store: Store, patient_id: str) -> pd.DataFrame:
    """The cases whose findings name this patient."""
    from emraudit.reports.data import read_cases
    fnd = store.read_findings(findings.c.patient_id == str(patient_id))
    ids = sorted(set(fnd["case_id"].dropna().astype(str))) if len(fnd) else []
    df = read_cases(store, ids)
    return df.sort_values("first_seen", ascending=False) if len(df) else df


def patient_search(config: Config, store: Store, lake: Lake, patient_id: str, start: str,
                   end: str, lang: Lang, unmask: bool, patients: pd.DataFrame | None) -> dict:
    from emraudit.reports.patient import build_patient_report
    patient_id = (patient_id or "").strip()
    if not patient_id:
        raise UserError("give a patient id to search for")
    start, end = default_period(store, lake, start, end)
    checked_period(start, end, config.tz)
    model = build_patient_report(config, store, lake, patient_id, start, end, unmask=unmask,
                                 lang=lang)
    masker = Masker(enabled=model["masked"])
    masker.learn_patients(patients, [patient_id])
    model["cases"] = case_rows(patient_cases(store, patient_id), lang, Fmt(config.tz), masker,
                               store)
    model["truncated"] = len(model["rows"]) > MAX_ROWS
    model["rows"] = model["rows"][:MAX_ROWS]
    return model
