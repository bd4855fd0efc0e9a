"""The patient access report: every access to one patient's record in a period.

What a hospital hands a patient who asks who looked at their record, and where an
investigator starts after a complaint: for each access, who (role, department), when, what,
and the legitimate reason the explanation engine found for it (the care relation, the
consult, the order …) or that none was found, plus any finding that flagged it.

The explanation engine (`emraudit.detectors.explain.explain_accesses`) runs on a Context
built here from the lake: the patient's events over the period and the look-back the
engine needs (prior treatment), and the reference snapshots restricted to this patient.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.dates import period
from emraudit.detectors.explain import explanation_detail
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.reports import data, files
from emraudit.reports.explanations import explanation_text
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.labels import ACTION, EXPLANATION_LABELS, detector_info, label
from emraudit.reports.ledger import neutralize
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _csp, _s, _static
from emraudit.reports.render import Ref
from emraudit.store import Store, findings

log = logging.getLogger("emraudit.reports")



def _explain(config: Config, events: pd.DataFrame, ws: pd.Timestamp, we: pd.Timestamp,
             refs: dict) -> pd.DataFrame | None:
    """The explanation engine's verdict for each access to the patient, with the settings in
    force (the configuration is validated when loaded: its errors were reported there).

    This report is a question the scan never asked (every access to one patient, explained
    or not, for the patient's request), so it runs the engine on those accesses; it decides
    nothing the scan stored."""
    from emraudit.detectors.base import Context
    from emraudit.detectors.explain import explain_accesses
    from emraudit.detectors.profile import context_args, resolve_detectors

    settings = context_args(resolve_detectors(config.detectors, config.path))
    ev = events.copy()
    ev["in_window"] = ((ev["ts"] >= ws) & (ev["ts"] < we)).to_numpy()
    ctx = Context(events=ev, window_start=ws, window_end=we, tz=config.tz,
                  office_hours=tuple(config.site.office_hours),
                  workdays=tuple(config.site.workdays), **settings,
                  site_name=config.site.name, **refs)
    try:
        return explain_accesses(ctx)
    except Exception as exc:  # noqa: BLE001 - an engine failure must not hide the accesses
        # the type only: a message could quote a patient's data, which never goes to logs
        log.warning("explanation engine failed (%s); accesses listed without explanations",
                    type(exc).__name__)
        return None


def _about(patient_id: str):
    """The findings that concern this patient: its own, and the nights of several patients
    (`patient_ids`, JSON text) that name it."""
    quoted = json.dumps(str(patient_id), ensure_ascii=False)
    like = quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.or_(findings.c.patient_id == str(patient_id),
                  findings.c.patient_ids.like(f"%{like}%", escape="\\"))


def build_patient_report(config: Config, store: Store, lake: Lake, patient_id: str,
                         start: str, end: str, *, unmask: bool = False,
                         lang: Lang | None = None) -> dict:
    lang = lang or Lang(config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    fmt = Fmt(config.tz)
    lo, hi = period(start, end, config.tz)
    tz = config.tz
    ws, we = lo.tz_localize(tz), (hi + pd.Timedelta(days=1)).tz_localize(tz)
    lookback = int(config.scan.lookback_days)
    committed = store.committed_runs()
    days = pd.date_range(lo - pd.Timedelta(days=lookback), hi).strftime("%Y-%m-%d")
    ev = data.read_lake(lake, committed, days, None, [("patient_id", "==", str(patient_id))])
    refs = {}
    for t in ("users", "patients", "care_relations", "patient_contacts", "shifts",
              "workstations"):
        df = data.snapshot(lake, committed, t)
        if df is not None and t in ("patients", "care_relations", "patient_contacts") \
                and "patient_id" in df.columns:
            df = df[df["patient_id"].astype("string") == str(patient_id)].reset_index(drop=True)
        if df is not None and t == "shifts" and len(ev) and "user_id" in df.columns:
            df = df[df["user_id"].astype("string").isin(set(ev["user_id"].astype(str)))]
        refs[t] = df
    if not len(ev) and (refs["patients"] is None or not len(refs["patients"])):
        raise UserError(f"no such patient '{patient_id}': not in the patients table and no "
                        f"access to that id in the access log from {days[0]} to {days[-1]}")
    ref = Ref(refs["users"], refs["patients"], lang, masker)
    masker.learn_patients(refs["patients"], [patient_id])
    expl = _explain(config, ev, ws, we, refs) if len(ev) else None
    # no access at all: nothing to explain, which is not the engine being unavailable
    engine = expl is not None or not len(ev)
    if len(ev):
        ev = ev[(ev["ts"] >= ws) & (ev["ts"] < we)]
    by_event = {}
    if expl is not None and len(expl):
        for r in expl[["event_id", "explained", "explanation", "detail"]].to_dict("records"):
            by_event[str(r["event_id"])] = r
    flagged: dict[str, list[str]] = {}
    fdf = store.read_findings(_about(patient_id))
    for r in fdf.to_dict("records") if len(fdf) else []:
        for e in r["event_ids"]:
            flagged.setdefault(str(e), []).append(r["detector"])
    rows = []
    for r in ev.to_dict("records") if len(ev) else []:
        u = ref.user(r.get("user_id"))
        x = by_event.get(str(r["event_id"]))
        if x is None:
            explained, why, detail = None, "", ""
        else:
            explained = bool(x["explained"])
            key = _s(x.get("explanation"))
            why = label(EXPLANATION_LABELS, key, lang) if key else ""
            detail = explanation_text({"explanation": key, "result": "held",
                                       "detail": explanation_detail(x)}, lang, masker) \
                if explained else ""
        rows.append({
            "time": fmt.ts(r.get("ts")), "user": u["id"], "name": u["name"],
            "role": u["role_label"], "department": u["department"],
            "action": label(ACTION, _s(r.get("action")), lang), "module": _s(r.get("module")),
            "workstation": _s(r.get("workstation")), "ip": _s(r.get("ip")),
            "explained": explained, "explanation": why, "detail": detail,
            "flagged": ", ".join(sorted({detector_info(d, lang)["name"]
                                         for d in flagged.get(str(r["event_id"]), [])})),
            "source_ref": _s(r.get("_source_ref")),
        })
    staff: dict[str, dict] = {}
    for r in rows:
        s = staff.setdefault(r["user"], {"user": r["user"], "name": r["name"],
                                         "role": r["role"], "department": r["department"],
                                         "n": 0, "unexplained": 0, "first": r["time"],
                                         "last": r["time"], "flagged": False})
        s["n"] += 1
        s["unexplained"] += r["explained"] is False
        s["last"] = r["time"]
        s["flagged"] = s["flagged"] or bool(r["flagged"])
    return {
        "patient": ref.patient(patient_id), "from": lo.strftime("%Y-%m-%d"),
        "to": hi.strftime("%Y-%m-%d"), "rows": rows,
        "staff": sorted(staff.values(), key=lambda s: (-s["unexplained"], -s["n"], s["user"])),
        "n_unexplained": sum(1 for r in rows if r["explained"] is False)
        if engine else None,
        "engine": engine, "masked": masker.enabled,
    }


CSV_COLUMNS = [("time", N_("time")), ("user", N_("account")), ("name", N_("name")),
               ("role", N_("role")), ("department", N_("department")),
               ("action", N_("action")), ("module", N_("module")),
               ("workstation", N_("workstation")), ("ip", N_("IP")),
               ("explanation", N_("explanation found")), ("detail", N_("detail")),
               ("flagged", N_("flagged by")), ("source_ref", N_("source reference"))]


def write_patient_report(config: Config, store: Store, lake: Lake, patient_id: str,
                         start: str, end: str, *, out: Path | None = None,
                         unmask: bool = False) -> tuple[Path, Path]:
    """Write the HTML report and a CSV beside it; returns both paths."""
    lang = Lang(config.reports.lang)
    model = build_patient_report(config, store, lake, patient_id, start, end, unmask=unmask,
                                 lang=lang)
    tag = hashlib.sha1(str(patient_id).encode("utf-8")).hexdigest()[:10]
    out = files.output_path(out, config.reports_dir, "patients",
                            f"access-{tag}-{model['from']}-{model['to']}.html")
    env = make_env(lang)
    js = _static("report.js")
    html = env.get_template("patient.html").render(
        site=config.site.name, css=_static("report.css"), csp=_csp(js), masked=model["masked"],
        scan={}, window=(model["from"], model["to"]),
        generated=Fmt(config.tz).now(),
        r=model)
    files.write_text(out, html)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([lang.gettext(h) for _, h in CSV_COLUMNS])
    no = lang.gettext("none found")
    for r in model["rows"]:
        vals = dict(r, explanation=r["explanation"] or (no if r["explained"] is False else ""))
        w.writerow([neutralize(_s(vals[k])) for k, _ in CSV_COLUMNS])
    csv_path = out.with_suffix(".csv")
    files.write_bytes(csv_path, buf.getvalue().encode("utf-8-sig"))
    log.info("patient access report written: %d accesses", len(model["rows"]))
    return out, csv_path
