"""The self-inspection report (自查整改报告) a hospital sends to the health commission.

`emraudit report self-inspection --from D --to D` writes it as DOCX (python-docx: to edit,
stamp and send) and as an HTML page with the same content and the same chart images. It
covers the cases whose first finding falls in the period (as the period summary does, whose
figures it reuses) and what the store says of them now:

1. the scope: sources, days and events audited, coverage gaps, reference tables loaded;
2. the problems found: by rectification item （八）/（九）, detector, department and role;
3. trends: cases per week by item, verification and rectification progress, departments;
4. typical cases, masked;
5. causes, by the kind of detector that found them;
6. measures and their status: rectification, the measures taken and those suggested;
7. repeat offenders;
8. what remains open: cases to verify, problems not rectified, overdue, by department.

Staff are named (who looked is the point); patients are masked unless asked otherwise.
"""

from __future__ import annotations

import base64
import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.dates import period
from emraudit.lake import Lake
from emraudit.model import REFERENCE_TABLES
from emraudit.reports import data, figures, files, word
from emraudit.reports.departments import Departments
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.labels import (DISPOSITION, RECTIFICATION, ROLE, SEVERITY, TABLE,
                                     SEVERITY_RANK, detector_info, item_info, label)
from emraudit.reports.ledger import deadline_days, local_time
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _csp, _json_list, _s, _static
from emraudit.reports.summary import build_summary, period_cases
from emraudit.reports.text import case_sentences
from emraudit.store import Store, ingest_runs, scans

log = logging.getLogger("emraudit.reports")

SECTIONS = (("scope", N_("Scope of the self-inspection")),
            ("found", N_("Problems found")),
            ("trend", N_("Trends")),
            ("typical", N_("Typical cases")),
            ("causes", N_("Causes")),
            ("measures", N_("Measures and their status")),
            ("repeat", N_("Repeat offenders")),
            ("open", N_("What remains open")))
# the cause a kind of detector points at, by the family of its id
CAUSES = {
    "care": N_("Access rights wider than care needs: staff can open the records of patients "
               "they do not treat."),
    "snoop": N_("Curiosity about colleagues, relatives, neighbours and well-known patients: "
                "weak awareness of patient privacy."),
    "cred": N_("Accounts and passwords lent, shared or left usable: logins used by others, "
               "off duty or after access should have ended."),
    "bulk": N_("Viewing many records without a business need, or outside working hours."),
    "copy": N_("Printing, exporting and copying records without control."),
    "btg": N_("Emergency access (break the glass) used without an emergency."),
    "anomaly": N_("Behaviour far from the user's own history and from colleagues in the same "
                  "role."),
}
TYPICAL_CASES = 5
TOP_DEPARTMENTS = 10
NUMERALS = "一二三四五六七八九十"


def numbered(i: int, text: str, lang: Lang) -> str:
    return f"{NUMERALS[i - 1]}、{text}" if lang.code == "zh" else f"{i}. {text}"


def _day(v, tz: str) -> date | None:
    t = local_time(v, tz)
    return t.date() if t is not None else None


def _patients(row: dict) -> list[str]:
    return [str(p) for p in _json_list(row.get("patients"))] or \
        ([_s(row.get("patient_id"))] if _s(row.get("patient_id")) else [])


# -- sections ---------------------------------------------------------------------------------
def _scope(config: Config, store: Store, lake: Lake, lo: pd.Timestamp,
           hi: pd.Timestamp, lang: Lang) -> dict:
    from emraudit.coverage import coverage_report

    a, b = lo.strftime("%Y-%m-%d"), hi.strftime("%Y-%m-%d")
    cov = coverage_report(store, config)
    if len(cov):
        cov = cov[(cov["day"].astype(str) >= a) & (cov["day"].astype(str) <= b)]
    # access-log sources: those configured, and those the store has coverage of (a source
    # since removed from the configuration still delivered events in the period)
    logs = [n for n in config.sources if config.source_table(n) == "access_log"]
    logs += sorted(set(cov["source"].astype(str)) - set(logs)) if len(cov) else []
    committed = store.committed_runs()
    snapshots = {t: lake.snapshot_file(t, committed) for t in REFERENCE_TABLES}
    per_source = []
    for name in list(config.sources) + [n for n in logs if n not in config.sources]:
        src = config.sources.get(name)
        table = config.source_table(name) if src else "access_log"
        row = {"name": name, "table": label(TABLE, table, lang),
               "connector": src.connector if src else "—",
               "profile": src.profile if src else "", "log": name in logs}
        if name in logs:
            part = cov[cov["source"] == name] if len(cov) else cov
            row.update(events=int(part["events"].sum()) if len(part) else 0,
                       days=int((part["events"] > 0).sum()) if len(part) else 0,
                       gaps=sorted(part.loc[part["status"] == "gap", "day"].astype(str))
                       if len(part) else [])
        else:       # a reference table: the rows of its latest snapshot
            f = snapshots.get(table)
            row.update(events=pq.ParquetFile(f).metadata.num_rows if f else 0, days=None,
                       gaps=[])
        per_source.append(row)
    log_cov = cov[cov["source"].isin(logs)] if len(cov) else cov
    loaded = [t for t, f in snapshots.items() if f is not None]
    end = (hi + pd.Timedelta(days=1)).tz_localize(config.tz).tz_convert("UTC")
    start = lo.tz_localize(config.tz).tz_convert("UTC")
    with store.engine.connect() as c:     # the scans whose window reaches into the period
        n_scans = c.execute(sa.select(sa.func.count()).select_from(scans).where(
            scans.c.status == "committed", scans.c.window_start < end.to_pydatetime(),
            scans.c.window_end > start.to_pydatetime())).scalar() or 0
        quarantined = c.execute(sa.select(sa.func.coalesce(sa.func.sum(
            ingest_runs.c.quarantined), 0)).where(
            ingest_runs.c.status == "committed", ingest_runs.c.started >= start.to_pydatetime(),
            ingest_runs.c.started < end.to_pydatetime())).scalar() or 0
    days = int((hi - lo).days) + 1
    covered = int(log_cov.loc[log_cov["events"] > 0, "day"].nunique()) if len(log_cov) else 0
    return {"sources": per_source, "period_days": days, "days_with_events": covered,
            "days_without": days - covered,
            "events": int(log_cov["events"].sum()) if len(log_cov) else 0,
            "gap_days": sorted({d for s in per_source for d in s["gaps"]}),
            "tables": [label(TABLE, t, lang) for t in loaded],
            "missing_tables": [label(TABLE, t, lang) for t in REFERENCE_TABLES
                               if t not in loaded],
            "scans": int(n_scans), "quarantined": int(quarantined)}


def _weekly(active: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> list[str]:
    return list(pd.period_range(lo, hi, freq="W-SUN").start_time.strftime("%Y-%m-%d"))


def _charts(active: pd.DataFrame, summary: dict, weeks: list[str], config: Config,
            lang: Lang) -> list[dict]:
    """Cases per week by item; verification and rectification progress; departments."""
    chart_lang = lang if lang.code == "en" or figures.cjk_font() else Lang("en")
    _ = chart_lang.gettext
    short = [w[5:] for w in weeks]
    out = []
    items = active.explode("item_list") if len(active) else active
    series = {}
    for code in sorted({c for c in items["item_list"].dropna()} if len(items) else []):
        info = item_info(code, chart_lang)
        per = items[items["item_list"] == code].groupby("week")["case_id"].nunique()
        series[info["zh"] if chart_lang.code == "zh" else info["short"]] = \
            [int(per.get(w, 0)) for w in weeks]
    out.append({"key": "weekly", "png": figures.stacked_bars(
        short, series or {_("cases"): [0] * len(weeks)}, title=_("Cases per week, by item"),
        ylabel=_("cases")), "caption": lang.gettext("Cases per week, by rectification item "
                                                     "(the week of their first finding)")})
    tz = config.tz
    ends = [(pd.Timestamp(w) + pd.Timedelta(days=7)).date() for w in weeks]
    first = [_day(v, tz) for v in active["first_seen"]] if len(active) else []
    confirmed = [_day(v, tz) if p else None for v, p in
                 zip(active["resolved_at"], active["problem"])] if len(active) else []
    rect = [date.fromisoformat(str(v)[:10]) if r and _s(v) else None for v, r in
            zip(active["rectification_date"], active["rectified"])] if len(active) else []

    def upto(days):
        return [sum(1 for d in days if d is not None and d < e) for e in ends]

    out.append({"key": "progress", "png": figures.lines(
        short, {_("cases"): upto(first), _("confirmed problems"): upto(confirmed),
                _("rectified"): upto(rect)}, title=_("Verification and rectification, "
                                                      "cumulative")),
        "caption": lang.gettext("Cases, confirmed problems and rectified problems, cumulative "
                                "at the end of each week")})
    top = summary["department"][:TOP_DEPARTMENTS]
    names = [d["label"] if figures.can_draw(d["label"]) else f"#{i + 1}"
             for i, d in enumerate(top)]
    out.append({"key": "departments", "png": figures.horizontal_bars(
        names, [d["cases"] for d in top], title=_("Cases by department"), xlabel=_("cases")),
        "caption": lang.gettext("Cases by department (the %(n)s with most)", n=len(top))})
    for c in out:
        c["data_uri"] = "data:image/png;base64," + base64.b64encode(c["png"]).decode("ascii")
    if chart_lang is not lang:
        for c in out:
            c["caption"] += " " + lang.gettext("(labelled in English: no CJK font is "
                                               "installed; install %(font)s)",
                                               font=figures.INSTALL_HINT)
    return out


def _typical(active: pd.DataFrame, users: dict, config: Config, lang: Lang,
             masker: Masker, fmt: Fmt, store: Store) -> list[dict]:
    if not len(active):
        return []
    conf = active[active["problem"] == 1]
    conf = conf.assign(_rank=conf["severity"].map(SEVERITY_RANK).fillna(-1))
    conf = conf.sort_values(["_rank", "score", "first_seen", "case_id"],
                            ascending=[False, False, True, True]).head(TYPICAL_CASES)
    out = []
    said = case_sentences(store, conf.to_dict("records"), lang, masker)
    for r in conf.to_dict("records"):
        u = users.get(str(r["user_id"]), {})
        pats = _patients(r)
        out.append({
            "case_id": r["case_id"], "when": fmt.minute(r.get("first_seen")),
            "user": " / ".join(x for x in (str(r["user_id"]), _s(u.get("name")),
                                          _s(r.get("department"))) if x and x != "—"),
            "role": label(ROLE, _s(r.get("role")), lang) if _s(r.get("role")) != "—" else "",
            "patients": ", ".join(masker.pid(p) for p in pats[:3]) +
            (" …" if len(pats) > 3 else ""),
            "detectors": ", ".join(detector_info(d, lang)["name"] for d in r["det_list"]),
            "items": "；".join(item_info(i, lang)["zh"] for i in r["item_list"]),
            "severity": label(SEVERITY, _s(r.get("severity")), lang),
            "summary": said.get(str(r["case_id"])) or masker.scrub(r.get("summary")),
            "verification": label(DISPOSITION, _s(r.get("disposition")), lang),
            "rectification": label(RECTIFICATION, _s(r.get("rectification_status"))
                                   or "pending", lang),
            "measure": masker.scrub(r.get("rectification_measure")),
        })
    return out


def _causes(active: pd.DataFrame, lang: Lang) -> list[dict]:
    if not len(active):
        return []
    fam = active[["case_id", "problem", "det_list"]].explode("det_list").dropna()
    fam["family"] = fam["det_list"].astype(str).str.split(".").str[0]
    per = fam.drop_duplicates(["case_id", "family"]).groupby("family").agg(
        cases=("case_id", "nunique"), confirmed=("problem", "sum")).reset_index()
    per = per.sort_values(["cases", "family"], ascending=[False, True])
    out = []
    for r in per.to_dict("records"):
        dets = sorted(set(fam.loc[fam["family"] == r["family"], "det_list"]))
        out.append({"family": r["family"],
                    "cause": lang.gettext(CAUSES[r["family"]]) if r["family"] in CAUSES
                    else ", ".join(detector_info(d, lang)["name"] for d in dets),
                    "detectors": ", ".join(detector_info(d, lang)["name"] for d in dets),
                    "cases": int(r["cases"]), "confirmed": int(r["confirmed"])})
    return out


def _measures(active: pd.DataFrame, summary: dict, lang: Lang, masker: Masker) -> dict:
    taken, suggested = [], []
    if len(active):
        prob = active[active["problem"] == 1]
        done = prob["rectification_measure"].map(_s)
        vc = done[done != ""].value_counts()
        taken = [{"measure": masker.scrub(m), "cases": int(n)} for m, n in vc.head(10).items()]
        pending = prob[prob["rectified"] == 0].explode("det_list").dropna(subset=["det_list"])
        per = pending.groupby("det_list")["case_id"].nunique().sort_values(ascending=False)
        seen = set()
        for det, n in per.items():
            m = detector_info(det, lang)["measure"]
            if m and m not in seen:
                seen.add(m)
                suggested.append({"detector": detector_info(det, lang)["name"], "measure": m,
                                  "cases": int(n)})
    return {"status": summary["rectification"], "rate": summary["kpi"]["rate"],
            "confirmed": summary["kpi"]["confirmed"],
            "rectified": summary["kpi"]["rectified"], "taken": taken,
            "suggested": suggested[:10]}


def _open(active: pd.DataFrame, config: Config, deps: Departments, today: date) -> dict:
    empty = {"to_verify": 0, "pending": 0, "in_progress": 0, "overdue": 0, "departments": []}
    if not len(active):
        return empty
    a = active.copy()
    a["to_verify"] = (a["status"] == "open").astype(int)
    state = a["rectification_status"].where(a["rectification_status"].isin(
        ["pending", "in_progress", "done"]), "pending")
    a["pending"] = ((a["problem"] == 1) & (state == "pending")).astype(int)
    a["in_progress"] = ((a["problem"] == 1) & (state == "in_progress")).astype(int)
    opened = [(_day(c, config.tz) or _day(f, config.tz)) for c, f in
              zip(a["created"], a["first_seen"])]
    due = [o + timedelta(days=deadline_days(config, _s(s) or "low")) if o else None
           for o, s in zip(opened, a["severity"])]
    unfinished = (a["to_verify"] + a["pending"] + a["in_progress"]) > 0
    a["overdue"] = [int(bool(u) and d is not None and today > d)
                    for u, d in zip(unfinished, due)]
    a = a[unfinished]
    per = a.groupby("department")[["to_verify", "pending", "in_progress", "overdue"]].sum()
    per = per.sort_values(["overdue", "to_verify", "pending"], ascending=False)
    rows = [{"department": d, "responsible": deps.responsible(d).person,
             **{k: int(v) for k, v in r.items()}} for d, r in per.iterrows()]
    return {"to_verify": int(a["to_verify"].sum()), "pending": int(a["pending"].sum()),
            "in_progress": int(a["in_progress"].sum()), "overdue": int(a["overdue"].sum()),
            "departments": rows}


def build_self_inspection(config: Config, store: Store, lake: Lake, start, end,
                          lang: Lang, masker: Masker, *, today: date | None = None) -> dict:
    """Everything the report shows, as plain data (the DOCX and the HTML render it)."""
    lo, hi = period(start, end, config.tz)
    summary = build_summary(config, store, lake, lo.strftime("%Y-%m-%d"),
                            hi.strftime("%Y-%m-%d"), lang)
    _, active = period_cases(config, store, lake, lo, hi)
    committed = store.committed_runs()
    users_df = data.snapshot(lake, committed, "users")
    users = {str(r["user_id"]): r for r in users_df.to_dict("records")} \
        if users_df is not None and len(users_df) else {}
    pids = {p for r in active.to_dict("records") for p in _patients(r)} if len(active) else set()
    masker.learn_patients(data.snapshot(lake, committed, "patients"), pids)
    today = today or pd.Timestamp(datetime.now(timezone.utc)).tz_convert(config.tz).date()
    fmt = Fmt(config.tz)
    weeks = _weekly(active, lo, hi)
    deps = Departments(data.snapshot(lake, committed, "departments"), config)
    return {
        "site": config.site.name, "from": lo.strftime("%Y-%m-%d"),
        "to": hi.strftime("%Y-%m-%d"), "today": today.isoformat(),
        "scope": _scope(config, store, lake, lo, hi, lang),
        "kpi": dict(summary["kpi"], patients=len(pids),
                    to_verify=int((active["status"] == "open").sum()) if len(active) else 0),
        "item": summary["item"], "detector": summary["detector"],
        "department": summary["department"], "role": summary["role"],
        "charts": _charts(active, summary, weeks, config, lang),
        "typical": _typical(active, users, config, lang, masker, fmt, store),
        "causes": _causes(active, lang),
        "measures": _measures(active, summary, lang, masker),
        "repeat": summary["repeat"],
        "open": _open(active, config, deps, today),
        "masked": masker.enabled,
    }


# -- writing --------------------------------------------------------------------------------
def _group_rows(rows: list[dict]) -> list[list]:
    return [[r["label"], r["cases"], r["people"], r["confirmed"], r["rectified"]] for r in rows]


def write_docx(m: dict, lang: Lang) -> bytes:
    """The report as a Word document."""
    _ = lang.gettext
    title = _("Self-inspection and rectification report on access to electronic medical "
              "records")
    doc = word.new_document(title=f"{m['site']} {title}", lang=lang.code)
    word.title(doc, f"{m['site']}\n{title}",
               _("Period %(start)s to %(end)s · written %(today)s", start=m["from"],
                 end=m["to"], today=m["today"]))
    word.para(doc, _("In line with the national rectification campaign for medical quality and "
                     "safety (2025-2026), items (8) on leaks of patient privacy and (9) on the "
                     "management of electronic medical record systems, the access logs of the "
                     "electronic medical record system from %(start)s to %(end)s were audited. "
                     "The findings and the rectification are reported below.",
                     start=m["from"], end=m["to"]), indent=True)
    heads = dict(SECTIONS)
    k, s = m["kpi"], m["scope"]
    group_head = [_("cases"), _("people"), _("confirmed"), _("rectified")]

    word.heading(doc, numbered(1, _(heads["scope"]), lang))
    word.para(doc, _("%(days)s days audited, %(covered)s with access-log events; %(events)s "
                     "events from %(n)s sources; %(scans)s nightly scans; %(q)s rows could "
                     "not be read and were quarantined.", days=s["period_days"],
                     covered=s["days_with_events"], events=f"{s['events']:,}",
                     n=len(s["sources"]), scans=s["scans"], q=f"{s['quarantined']:,}"),
              indent=True)
    word.table(doc, [_("source"), _("table"), _("connector"), _("events or rows"),
                     _("days"), _("days without events")],
               [[x["name"], x["table"], x["connector"], f"{x['events']:,}",
                 "—" if x["days"] is None else x["days"],
                 len(x["gaps"]) if x["log"] else "—"] for x in s["sources"]],
               widths=[3.5, 3, 2, 2.5, 1.5, 3])
    if s["gap_days"]:
        word.para(doc, _("Days without events (coverage gaps): %(days)s",
                         days=", ".join(s["gap_days"][:30])
                         + (" …" if len(s["gap_days"]) > 30 else "")))
    word.para(doc, _("Reference tables loaded: %(t)s; not loaded: %(m)s.",
                     t=", ".join(s["tables"]) or "—", m=", ".join(s["missing_tables"]) or "—"))

    word.heading(doc, numbered(2, _(heads["found"]), lang))
    word.para(doc, _("%(cases)s cases involving %(people)s staff and %(patients)s patients; "
                     "%(verified)s verified, of which %(confirmed)s confirmed as problems; "
                     "%(open)s still to verify.", cases=k["cases"], people=k["people"],
                     patients=k["patients"], verified=k["verified"],
                     confirmed=k["confirmed"], open=k["to_verify"]), indent=True)
    for key, name in (("item", N_("By rectification item")), ("detector", N_("By detector")),
                      ("department", N_("By department")), ("role", N_("By role"))):
        word.heading(doc, _(name), 2)
        word.table(doc, [_(name)] + group_head, _group_rows(m[key]), empty=_("none"),
                   widths=[7, 2, 2, 2, 2])

    word.heading(doc, numbered(3, _(heads["trend"]), lang))
    for i, c in enumerate(m["charts"], start=1):
        word.figure(doc, c["png"], _("Figure %(i)s. %(caption)s", i=i, caption=c["caption"]))

    word.heading(doc, numbered(4, _(heads["typical"]), lang))
    if not m["typical"]:
        word.para(doc, _("No case was confirmed in the period."))
    for i, t in enumerate(m["typical"], start=1):
        word.para(doc, _("Case %(i)s (%(id)s, %(severity)s)", i=i, id=t["case_id"],
                         severity=t["severity"]), bold=True)
        word.table(doc, ["", ""], [
            [_("when"), t["when"]], [_("staff"), t["user"] + (f" ({t['role']})"
                                                              if t["role"] else "")],
            [_("patients"), t["patients"]], [_("found by"), t["detectors"]],
            [_("rectification item"), t["items"]], [_("what was seen"), t["summary"]],
            [_("verification"), t["verification"]],
            [_("rectification"), t["rectification"] + (f": {t['measure']}" if t["measure"]
                                                         else "")]], widths=[3.5, 12.5])

    word.heading(doc, numbered(5, _(heads["causes"]), lang))
    word.table(doc, [_("cause"), _("found by"), _("cases"), _("confirmed")],
               [[c["cause"], c["detectors"], c["cases"], c["confirmed"]] for c in m["causes"]],
               empty=_("none"), widths=[7, 5, 2, 2])

    ms = m["measures"]
    word.heading(doc, numbered(6, _(heads["measures"]), lang))
    word.para(doc, _("%(confirmed)s confirmed problems, %(rectified)s rectified: completion "
                     "rate %(rate)s.", confirmed=ms["confirmed"], rectified=ms["rectified"],
                     rate="—" if ms["rate"] is None else f"{ms['rate']}%"), indent=True)
    word.table(doc, [_("rectification"), _("cases")],
               [[r["label"], r["n"]] for r in ms["status"]], empty=_("none"), widths=[8, 3])
    word.heading(doc, _("Measures taken"), 2)
    word.table(doc, [_("rectification measure"), _("cases")],
               [[t["measure"], t["cases"]] for t in ms["taken"]],
               empty=_("none recorded yet"), widths=[13, 3])
    word.heading(doc, _("Measures still to take"), 2)
    word.table(doc, [_("found by"), _("suggested measure"), _("cases")],
               [[x["detector"], x["measure"], x["cases"]] for x in ms["suggested"]],
               empty=_("none"), widths=[4, 10, 2])

    word.heading(doc, numbered(7, _(heads["repeat"]), lang))
    word.table(doc, [_("account"), _("department"), _("cases"), _("confirmed"), _("detectors")],
               [[r["user"], r["department"], r["n"], r["confirmed"], r["detectors"]]
                for r in m["repeat"]], empty=_("none"), widths=[2.5, 3, 1.5, 2, 7])

    o = m["open"]
    word.heading(doc, numbered(8, _(heads["open"]), lang))
    word.para(doc, _("%(v)s cases still to verify; %(p)s confirmed problems to rectify and %(i)s "
                     "being rectified; %(o)s past their deadline.", v=o["to_verify"],
                     p=o["pending"], i=o["in_progress"], o=o["overdue"]), indent=True)
    word.table(doc, [_("department"), _("responsible person"), _("to verify"), _("to rectify"),
                     _("rectifying"), _("overdue")],
               [[d["department"], d["responsible"], d["to_verify"], d["pending"],
                 d["in_progress"], d["overdue"]] for d in o["departments"]],
               empty=_("none"), widths=[3.5, 4, 2, 2, 2, 2])
    word.bullets(doc, next_steps(m, lang))
    if m["masked"]:
        word.para(doc, _("Patient ids are masked in this report."), muted=True)
    return word.to_bytes(doc)


def next_steps(m: dict, lang: Lang) -> list[str]:
    _ = lang.gettext
    o = m["open"]
    steps = []
    if o["to_verify"]:
        steps.append(_("Verify the %(n)s open cases with the staff and their department heads.",
                       n=o["to_verify"]))
    if o["pending"] or o["in_progress"]:
        steps.append(_("Complete the rectification of %(n)s confirmed problems by their "
                       "deadlines and record each measure taken.",
                       n=o["pending"] + o["in_progress"]))
    if o["overdue"]:
        steps.append(_("Follow up the %(n)s overdue items with the responsible persons.",
                       n=o["overdue"]))
    if m["scope"]["gap_days"]:
        steps.append(_("Close the gaps in the access-log feed so that every day is audited."))
    steps.append(_("Keep the nightly audit running and report again at the next stage."))
    return steps


def write_self_inspection(config: Config, store: Store, lake: Lake, start, end, *,
                          out: Path | None = None, unmask: bool = False,
                          today: date | None = None) -> tuple[Path, Path]:
    """Write the DOCX and the HTML page; returns (docx, html)."""
    lang = Lang(config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    m = build_self_inspection(config, store, lake, start, end, lang, masker, today=today)
    out = files.output_path(out, config.reports_dir, "self-inspection",
                            f"self-inspection-{m['from']}-{m['to']}.docx")
    docx_path, html_path = out.with_suffix(".docx"), out.with_suffix(".html")
    files.write_bytes(docx_path, write_docx(m, lang))
    env = make_env(lang)
    js = _static("report.js")
    files.write_text(html_path, env.get_template("self_inspection.html").render(
        site=config.site.name, css=_static("report.css"), csp=_csp(js), masked=m["masked"],
        scan={}, window=(m["from"], m["to"]), generated=Fmt(config.tz).now(), r=m,
        sections=[(key, numbered(i, lang.gettext(name), lang))
                  for i, (key, name) in enumerate(SECTIONS, start=1)],
        steps=next_steps(m, lang)))
    log.info("self-inspection report written: %d cases", m["kpi"]["cases"])
    return docx_path, html_path


__all__ = ["build_self_inspection", "write_self_inspection", "write_docx", "SECTIONS"]
