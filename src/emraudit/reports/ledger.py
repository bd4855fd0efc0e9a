"""The problem ledger (问题台账): every open problem with the four clarities (四个明确).

The rectification plan asks for a ledger that makes four things clear for each problem: the
item, the measure, the person responsible and the deadline. One row per case that is a
problem, whatever scan found it: cases still awaiting verification and confirmed problems
(confirmed, or handled by training) not yet rectified; with `include_rectified`, the
rectified ones too. Cases verified as justified or false positives, suppressed or retracted
are not problems.

- item: the rectification items of the case's findings, in the plan's own wording;
- measure: the detectors' suggested measure (or the item's generic one) and, apart, the
  measure actually taken (recorded with `emraudit cases rectify`);
- responsible: the head of the user's department (`emraudit.reports.departments`);
- deadline: the day the case was opened plus `[ledger.deadline_days]` for its severity
  (critical 7, high 15, medium 30, low 60 by default).

发现时间 is the first access of the case, not the day of the scan. 核实结论 (verification)
and 整改状态 (待整改 → 整改中 → 已整改) are separate columns: confirming is not rectifying.

Written as XLSX, CSV (UTF-8 with BOM, for Excel) and a self-contained HTML page. Patient
ids and names are masked (Masker) unless unmasked on request.

Spreadsheet formula injection: a cell whose text starts with = + - @ (or a tab or carriage
return) is prefixed with an apostrophe, in the CSV and in the XLSX, and XLSX cells are always
written as text, never as formulas.
"""

from __future__ import annotations

import csv
import io
from copy import copy
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.lake import Lake
from emraudit.reports import data, files
from emraudit.reports.departments import Departments
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.labels import (DISPOSITION, RECTIFICATION, ROLE, SEVERITY,
                                     SEVERITY_RANK, detector_info, item_info, label)
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _csp, _json_list, _s, _static
from emraudit.reports.text import case_sentences
from emraudit.store import Store, cases

log = logging.getLogger("emraudit.reports")

COLUMNS = [
    ("no", N_("No.")),
    ("case_id", N_("Case")),
    ("item", N_("Rectification item")),
    ("description", N_("Problem description")),
    ("detected_by", N_("Found by rule")),
    ("severity", N_("Severity")),
    ("staff", N_("Staff involved (ID / name / department)")),
    ("role", N_("Role")),
    ("patient", N_("Patient")),
    ("found", N_("Found")),
    ("opened", N_("Case opened")),
    ("evidence", N_("Evidence (events and source)")),
    ("verification", N_("Verification")),
    ("measure", N_("Rectification measure")),
    ("measure_taken", N_("Measure taken")),
    ("department", N_("Responsible department")),
    ("responsible", N_("Responsible person")),
    ("deadline", N_("Deadline")),
    ("status", N_("Rectification status")),
    ("done_on", N_("Rectified on")),
    ("overdue", N_("Overdue")),
]
LEDGER_WIDTHS = [6, 18, 22, 50, 20, 8, 24, 10, 16, 17, 12, 40, 12, 40, 30, 14, 16, 12,
                 10, 12, 8]
GENERIC_MEASURE = {
    "8": N_("Investigate the disclosure, recover copies, hold the staff accountable and "
            "retrain the department on patient privacy."),
    "9": N_("Verify the access with the user and department head; restrict access rights to "
            "the patients in the user's care and retrain on EMR access rules."),
    "6": N_("Review the altered records with the medical records office and restore the "
            "original versions."),
}
PROBLEM = ("confirmed", "training")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
MAX_PATIENTS_SHOWN = 3
MAX_EVENTS_LISTED = 20


def neutralize(value):
    """Spreadsheet formula injection: text starting with = + - @ gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in _DANGEROUS:
        return "'" + value
    return value


def _list(v) -> list[str]:
    return [str(x) for x in _json_list(v)]


def local_time(v, tz: str) -> pd.Timestamp | None:
    """A stored time (ISO text, or a UTC datetime SQLite returns without its zone)."""
    if _s(v) == "":
        return None
    try:
        t = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    return (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(tz)


def deadline_days(config: Config, severity: str) -> int:
    """Days to rectify, by severity: `[ledger.deadline_days]`, or the older single
    `[reports] deadline_days` when only that is set."""
    if "deadline_days" not in config.ledger.model_fields_set and \
            "deadline_days" in config.reports.model_fields_set:
        return int(config.reports.deadline_days)
    return int(getattr(config.ledger.deadline_days, severity,
                       config.ledger.deadline_days.medium))


def problem_cases(store: Store, *, include_rectified: bool = False,
                  include_below_budget: bool = False) -> pd.DataFrame:
    """The cases that are problems: open (awaiting verification), or confirmed / training
    and (unless `include_rectified`) not rectified; most severe and oldest first.

    An open case below the nightly review budget (`queued` false: stored and counted, not
    yet given to a reviewer) is listed only with `include_below_budget`: at 3% of a large
    hospital's accesses unexplained that is thousands a night, which no office verifies
    and a ledger handed upward must not pose as problems (the ledger says how many)."""
    opened = cases.c.status == "open"
    if not include_below_budget:
        opened = sa.and_(opened, sa.or_(cases.c.kind == "feed_gap",
                                        cases.c.queued.is_not(False)))
    cond = sa.or_(opened,
                  sa.and_(cases.c.status == "resolved", cases.c.disposition.in_(PROBLEM)))
    df = store.read_table(cases, cond)
    if df.empty:
        return df
    if not include_rectified:
        done = (df["status"] == "resolved") & (df["rectification_status"] == "done")
        df = df[~done]
    df = df.assign(_rank=df["severity"].map(SEVERITY_RANK).fillna(-1))
    df = df.sort_values(["_rank", "first_seen", "case_id"], ascending=[False, True, True])
    return df.drop(columns="_rank").reset_index(drop=True)


@dataclass
class LedgerContext:
    """What the rows need besides the cases: people, departments, masking, language."""

    config: Config
    lang: Lang
    masker: Masker
    users: dict[str, dict]               # user id -> the users table's row
    departments: Departments
    today: date
    sentences: dict[str, str] = field(default_factory=dict)   # case id -> 问题描述

    @classmethod
    def load(cls, config: Config, store: Store, lake: Lake, lang: Lang, masker: Masker,
             patient_ids, *, today: date | None = None,
             cases: pd.DataFrame | None = None) -> "LedgerContext":
        committed = store.committed_runs()
        users = data.snapshot(lake, committed, "users")
        patients = data.snapshot(lake, committed, "patients")
        masker.learn_patients(patients, patient_ids)
        if today is None:
            today = pd.Timestamp(datetime.now(timezone.utc)).tz_convert(config.tz).date()
        by_user = {str(r["user_id"]): r for r in users.to_dict("records")} \
            if users is not None and len(users) else {}
        # each problem's description: its case headline in the ledger's language
        sentences = case_sentences(store, cases.to_dict("records"), lang, masker) \
            if cases is not None and len(cases) else {}
        return cls(config, lang, masker, by_user,
                   Departments(data.snapshot(lake, committed, "departments"), config), today,
                   sentences)


def _event_line(e: dict) -> str:
    """One event of a case page's list (labels already in the report's language)."""
    where = e.get("workstation") or e.get("ip") or ""
    text = " ".join(x for x in (e.get("time", ""), e.get("action", ""), e.get("module", ""))
                    if x)
    return text + (f" @{where}" if where else "") + \
        (f" ({e['source_ref']})" if e.get("source_ref") else "")


def ledger_rows(problems: pd.DataFrame, ctx: LedgerContext,
                evidence: dict[str, list[dict]] | None = None) -> list[dict]:
    """One row per problem case, in the frame's order. `evidence`: case id -> its events
    as a case page lists them (time, action, module, workstation, source reference), where
    a caller has them loaded (a scan's report); other rows give counts and times only."""
    _ = ctx.lang.gettext
    tz = ctx.config.tz
    rows = []
    for n, r in enumerate(problems.to_dict("records"), start=1):
        cid = r["case_id"]
        uid = _s(r.get("user_id"))
        u = ctx.users.get(uid, {})
        dept = _s(r.get("department")) or _s(u.get("department"))
        role = _s(r.get("role")) or _s(u.get("role"))
        dets = _list(r.get("detectors"))
        infos = [detector_info(d, ctx.lang) for d in dets]
        items = [item_info(i, ctx.lang) for i in _list(r.get("items"))]
        measures = list(dict.fromkeys(d["measure"] for d in infos if d["measure"]))
        if not measures:
            measures = [_(GENERIC_MEASURE[i["code"]]) for i in items
                        if i["code"] in GENERIC_MEASURE]
        pats = _list(r.get("patients")) or ([_s(r.get("patient_id"))]
                                            if _s(r.get("patient_id")) else [])
        patient = ", ".join(ctx.masker.pid(p) for p in pats[:MAX_PATIENTS_SHOWN])
        if len(pats) > MAX_PATIENTS_SHOWN:
            patient += " " + _("and %(n)s more", n=len(pats) - MAX_PATIENTS_SHOWN)
        first, last = local_time(r.get("first_seen"), tz), local_time(r.get("last_seen"), tz)
        opened = local_time(r.get("created"), tz) or first
        sev = _s(r.get("severity")) or "low"
        deadline = (opened.date() if opened is not None else ctx.today) + \
            timedelta(days=deadline_days(ctx.config, sev))
        verified = _s(r.get("status")) == "resolved"
        disp = _s(r.get("disposition")) if verified else ""
        rect = (_s(r.get("rectification_status")) or "pending") if verified else "pending"
        ev = _("%(n)s events", n=int(r.get("n_events") or 0))
        if first is not None:
            ev += f" ({first:%Y-%m-%d %H:%M}" + \
                (f" – {last:%Y-%m-%d %H:%M})" if last is not None and last != first else ")")
        shown = (evidence or {}).get(cid) or []
        if shown:
            ev += ": " + "; ".join(_event_line(e) for e in shown[:MAX_EVENTS_LISTED]) + \
                (" …" if len(shown) > MAX_EVENTS_LISTED else "")
        who = ctx.departments.responsible(dept, not_user=uid)
        rows.append({
            "no": n, "case_id": cid,
            "item": "；".join(i["zh"] for i in items),
            "description": ctx.sentences.get(cid) or ctx.masker.scrub(r.get("summary")),
            "detected_by": ", ".join(d["name"] for d in infos),
            "severity": label(SEVERITY, sev, ctx.lang),
            "staff": " / ".join(x for x in (uid, _s(u.get("name")), dept) if x),
            "role": label(ROLE, role, ctx.lang),
            "patient": patient,
            "found": f"{first:%Y-%m-%d %H:%M}" if first is not None else "",
            "opened": opened.date() if opened is not None else None,
            "evidence": ev,
            "verification": label(DISPOSITION, disp, ctx.lang) if disp else _("to verify"),
            "measure": "\n".join(measures),
            "measure_taken": ctx.masker.scrub(r.get("rectification_measure")),
            "department": dept, "responsible": who.person,
            "deadline": deadline,
            "status": label(RECTIFICATION, rect, ctx.lang),
            "done_on": _s(r.get("rectification_date")) if rect == "done" else "",
            "overdue": _("yes") if rect != "done" and ctx.today > deadline else _("no"),
            # not columns: what the HTML page and the counts use
            "_status": rect, "_verified": bool(disp), "_overdue": rect != "done"
            and ctx.today > deadline, "_severity": sev, "_source": who.source,
        })
    return rows


def headers(lang: Lang) -> list[str]:
    return [lang.gettext(h) for _, h in COLUMNS]


def _text(v) -> object:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return "" if v is None else v


def csv_bytes(rows: list[dict], lang: Lang) -> bytes:
    """UTF-8 with BOM so that Excel opens the Chinese text correctly."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers(lang))
    for r in rows:
        w.writerow([neutralize(_text(r[k]) if not isinstance(r[k], int) else r[k])
                    for k, _ in COLUMNS])
    return buf.getvalue().encode("utf-8-sig")


def write_csv(path: Path, rows: list[dict], lang: Lang) -> None:
    files.write_bytes(path, csv_bytes(rows, lang))


def write_sheet(ws, head: list[str], rows: list[list], widths: list[int] | None = None) -> None:
    """A header row and data rows; text cells neutralized and typed as strings."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    ws.append([neutralize(h) for h in head])
    for cell in ws[1]:
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="37474F")
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    top = Alignment(wrap_text=True, vertical="top")
    # Two styles for every data cell (dates, the rest): each is set once through openpyxl
    # and its style array copied to the other cells. Setting the alignment on each cell
    # looked the style up again (hashing it): 10 of 30 s for a 10,000-problem ledger.
    styles: dict[bool, object] = {}
    # rows are numbered here: ws.max_row (and ws[i]) scan every cell, quadratic in the rows
    for row_idx, r in enumerate(rows, start=2):
        for j, v in enumerate(r, start=1):
            cell = ws.cell(row=row_idx, column=j)
            is_date = isinstance(v, (date, datetime))
            if isinstance(v, str):
                cell.value = neutralize(v)
                cell.data_type = "s"
            else:
                cell.value = v
            style = styles.get(is_date)
            if style is None:
                if is_date:
                    cell.number_format = "yyyy-mm-dd"
                cell.alignment = top
                styles[is_date] = cell._style
            else:
                cell._style = copy(style)
    ws.freeze_panes = "A2"
    if rows:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(head))}{len(rows) + 1}"
    for j, wdt in enumerate(widths or [], start=1):
        ws.column_dimensions[get_column_letter(j)].width = wdt


def write_xlsx(path: Path, rows: list[dict], lang: Lang, *, title: str = "",
               below_budget: int = 0) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = lang.gettext("Problem ledger")[:31]
    write_sheet(ws, headers(lang), [[r[k] for k, _ in COLUMNS] for r in rows], LEDGER_WIDTHS)
    if below_budget:            # the sheet stays one table; what it leaves out, beside it
        notes = wb.create_sheet(lang.gettext("Notes")[:31])
        notes.append([neutralize(lang.gettext(BELOW_BUDGET, n=below_budget))])
        notes.column_dimensions["A"].width = 120
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    files.write_bytes(path, buf.getvalue())


def counts(rows: list[dict]) -> dict:
    """The ledger's own totals: by rectification status, unverified and overdue."""
    by = {s: sum(1 for r in rows if r["_status"] == s) for s in ("pending", "in_progress",
                                                               "done")}
    return dict(by, total=len(rows), to_verify=sum(1 for r in rows if not r["_verified"]),
                overdue=sum(1 for r in rows if r["_overdue"]),
                no_responsible=sum(1 for r in rows if r["_source"] == "none"))


def html_page(rows: list[dict], ctx: LedgerContext, *, title: str = "",
              below_budget: int = 0) -> str:

    env = make_env(ctx.lang)
    js = _static("report.js")
    return env.get_template("ledger.html").render(
        site=ctx.config.site.name, css=_static("report.css"), csp=_csp(js),
        masked=ctx.masker.enabled, scan={}, window=("", ""),
        generated=Fmt(ctx.config.tz).now(), title=title,
        head=[(k, ctx.lang.gettext(h)) for k, h in COLUMNS], rows=rows, n=counts(rows),
        today=ctx.today.isoformat(),
        below=ctx.lang.gettext(BELOW_BUDGET, n=below_budget) if below_budget else "")


def _patient_ids(df: pd.DataFrame) -> set[str]:
    out: set[str] = set()
    for r in df.to_dict("records"):
        out.update(_list(r.get("patients")) or [_s(r.get("patient_id"))])
    return out - {""}


def rows_for_cases(config: Config, store: Store, lake: Lake, case_ids: list[str], *,
                   lang: Lang, masker: Masker,
                   evidence: dict[str, list[dict]] | None = None) -> list[dict]:
    """Ledger rows for these cases, in this order, whatever they are (the review app's
    downloads choose them: its queue, or a period)."""
    df = data.read_cases(store, case_ids)
    if len(df):
        order = {c: i for i, c in enumerate(case_ids)}
        df = df.assign(_o=df["case_id"].map(order)).sort_values("_o").drop(columns="_o")
    ctx = LedgerContext.load(config, store, lake, lang, masker, _patient_ids(df), cases=df)
    return ledger_rows(df, ctx, evidence)


def write_ledger(config: Config, store: Store, lake: Lake, folder: Path, *,
                 masker: Masker | None = None, include_rectified: bool = False,
                 include_below_budget: bool = False,
                 evidence: dict[str, list[dict]] | None = None, stem: str = "ledger",
                 today: date | None = None) -> list[Path]:
    """Write `<stem>.xlsx`, `.csv` and `.html` into `folder`; returns the three paths. The
    HTML and the XLSX say how many open cases below the review budget are not listed."""
    from emraudit.cases import queue_counts

    lang = Lang(config.reports.lang)
    masker = masker or Masker(enabled=config.reports.mask_patients)
    problems = problem_cases(store, include_rectified=include_rectified,
                             include_below_budget=include_below_budget)
    ctx = LedgerContext.load(config, store, lake, lang, masker, _patient_ids(problems),
                             today=today, cases=problems)
    rows = ledger_rows(problems, ctx, evidence)
    below = 0 if include_below_budget else queue_counts(store)["below_budget"]
    title = f"{config.site.name} {lang.gettext('Problem ledger')} {ctx.today.isoformat()}"
    out = [folder / f"{stem}.xlsx", folder / f"{stem}.csv", folder / f"{stem}.html"]
    write_xlsx(out[0], rows, lang, title=title, below_budget=below)
    write_csv(out[1], rows, lang)
    files.write_text(out[2], html_page(rows, ctx, title=title, below_budget=below))
    log.info("ledger written: %d problems (%d open cases below the review budget not "
             "listed)", len(rows), below)
    return out


BELOW_BUDGET = N_("%(n)s open cases below the nightly review budget are not listed: stored "
                  "and counted, not yet given to a reviewer (emraudit cases list "
                  "--below-budget; emraudit report ledger --include-below-budget lists them "
                  "too).")


__all__ = ["write_ledger", "ledger_rows", "rows_for_cases", "problem_cases", "neutralize",
           "write_sheet", "deadline_days", "LedgerContext"]
