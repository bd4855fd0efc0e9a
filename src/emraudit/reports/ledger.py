"""The problem ledger (问题台账): one row per case, as CSV and XLSX.

The rectification plan asks for the four clarities (四个明确): the item, the measure, the
responsible party and the deadline. The ledger fills them with suggested defaults that staff
edit: the detector's suggested measure, the user's department as the responsible department,
`[reports] responsible` as the responsible person, and the deadline `[reports] deadline_days`
after the case was found.

Spreadsheet formula injection: a cell whose text starts with = + - @ (or a tab or carriage
return) is prefixed with an apostrophe, in the CSV and in the XLSX, and XLSX cells are always
written as text, never as formulas.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from emraudit.config import Config
from emraudit.reports import files
from emraudit.reports.i18n import N_, Lang

COLUMNS = [
    ("no", N_("No.")),
    ("item", N_("Rectification item")),
    ("description", N_("Problem description")),
    ("staff", N_("Staff involved (ID / name / department)")),
    ("patient", N_("Patient")),
    ("found", N_("Found")),
    ("evidence", N_("Evidence (events and source)")),
    ("measure", N_("Rectification measure")),
    ("department", N_("Responsible department")),
    ("responsible", N_("Responsible person")),
    ("deadline", N_("Deadline")),
    ("status", N_("Rectification status")),
    ("case_id", N_("Case")),
]
GENERIC_MEASURE = {
    "8": N_("Investigate the disclosure, recover copies, hold the staff accountable and "
            "retrain the department on patient privacy."),
    "9": N_("Verify the access with the user and department head; restrict access rights to "
            "the patients in the user's care and retrain on EMR access rules."),
    "6": N_("Review the altered records with the medical records office and restore the "
            "original versions."),
}
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value):
    """Spreadsheet formula injection: text starting with = + - @ gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in _DANGEROUS:
        return "'" + value
    return value


def ledger_rows(views: list[dict], config: Config, lang: Lang) -> list[dict]:
    """One row per case view (see render.case_view), in the views' order."""
    rows = []
    for n, v in enumerate(views, start=1):
        found_raw = v.get("found_raw")
        try:
            found = pd.Timestamp(found_raw)
            found = (found.tz_localize("UTC") if found.tzinfo is None else found) \
                .tz_convert(config.tz)
            found_day = found.date()
        except (ValueError, TypeError):
            found_day = date.today()
        deadline = found_day + timedelta(days=config.reports.deadline_days)
        measures = []
        for d in v["detectors"]:
            if d["measure"] and d["measure"] not in measures:
                measures.append(d["measure"])
        if not measures:
            for i in v["rect_items"]:
                generic = GENERIC_MEASURE.get(i["code"])
                if generic:
                    measures.append(lang.gettext(generic))
        u = v["user"]
        staff = " / ".join(x for x in (u["id"], u["name"], u["department"]) if x)
        pat = ""
        if v["patient"]:
            pat = " ".join(x for x in (v["patient"]["name"], v["patient"]["id"]) if x)
            if v["patient"]["flags"]:
                pat += " (" + ", ".join(f["label"] for f in v["patient"]["flags"]) + ")"
        detectors = ", ".join(d["name"] for d in v["detectors"])
        desc = v["summary"]
        if detectors:
            desc = f"[{detectors}] {desc}"
        when = v["first_seen"][:16]
        if v["last_seen"] and v["last_seen"][:16] != when:
            when += " – " + v["last_seen"][:16]
        desc += f" ({when})"
        evidence = lang.gettext("%(n)s events", n=v["events_total"])
        if v["event_lines"]:
            evidence += ": " + "; ".join(v["event_lines"])
            if v["events_total"] > len(v["event_lines"]):
                evidence += " …"
        rows.append({
            "no": n,
            "item": "；".join(i["zh"] for i in v["rect_items"]),
            "description": desc, "staff": staff, "patient": pat,
            "found": found_day, "evidence": evidence, "measure": "\n".join(measures),
            "department": u["department"], "responsible": config.reports.responsible or "",
            "deadline": deadline, "status": v["status"]["label"], "case_id": v["id"],
        })
    return rows


def headers(lang: Lang) -> list[str]:
    return [lang.gettext(h) for _, h in COLUMNS]


def _text(v) -> object:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return "" if v is None else v


def write_csv(path: Path, rows: list[dict], lang: Lang) -> None:
    """UTF-8 with BOM so that Excel opens the Chinese text correctly."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers(lang))
    for r in rows:
        w.writerow([neutralize(_text(r[k]) if not isinstance(r[k], int) else r[k])
                    for k, _ in COLUMNS])
    files.write_bytes(path, buf.getvalue().encode("utf-8-sig"))


def write_sheet(ws, head: list[str], rows: list[list], widths: list[int] | None = None) -> None:
    """A header row and data rows; text cells neutralized and typed as strings."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    ws.append([neutralize(h) for h in head])
    for cell in ws[1]:
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="37474F")
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    top = Alignment(wrap_text=True, vertical="top")     # one style object for every cell
    # rows are numbered here: ws.max_row (and ws[i]) scan every cell, quadratic in the rows
    for row_idx, r in enumerate(rows, start=2):
        for j, v in enumerate(r, start=1):
            cell = ws.cell(row=row_idx, column=j)
            if isinstance(v, str):
                cell.value = neutralize(v)
                cell.data_type = "s"
            elif isinstance(v, (date, datetime)):
                cell.value = v
                cell.number_format = "yyyy-mm-dd"
            else:
                cell.value = v
            cell.alignment = top
    ws.freeze_panes = "A2"
    if rows:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(head))}{len(rows) + 1}"
    for j, wdt in enumerate(widths or [], start=1):
        ws.column_dimensions[get_column_letter(j)].width = wdt


LEDGER_WIDTHS = [6, 22, 50, 24, 16, 12, 50, 40, 14, 12, 12, 14, 18]


def write_xlsx(path: Path, rows: list[dict], lang: Lang, *, title: str = "") -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = lang.gettext("Problem ledger")[:31]
    write_sheet(ws, headers(lang), [[r[k] for k, _ in COLUMNS] for r in rows], LEDGER_WIDTHS)
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    files.write_bytes(path, buf.getvalue())
