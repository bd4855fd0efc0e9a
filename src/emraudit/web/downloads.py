"""Downloads: the problem ledger and the period summary, for the open queue or a period.

Built by the report modules' own public functions (`reports.ledger.rows_for_cases`,
`write_csv`, `write_xlsx`; `reports.summary.write_summary`) into a private temporary folder
and handed back as bytes, so a download is the same file `emraudit report` would write, with
the masking of the configuration. The open queue is every open case whatever scan found it;
a period is every case first seen in it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from emraudit.cases import list_cases
from emraudit.config import Config
from emraudit.lake import Lake
from emraudit.reports.i18n import Lang
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt
from emraudit.reports.render import case_view, load_cases
from emraudit.store import Store
from emraudit.web.queue import ordered
from emraudit.web.search import checked_period

PERIOD_DAYS = 400   # a downloaded ledger or summary covers at most this many days

MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "html": "text/html; charset=utf-8",
         "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def ledger_cases(store: Store, scope: str, tz: str, start: str = "", end: str = ""
                 ) -> list[str]:
    """The case ids of the open queue (scope "open") or of the cases first seen in a period
    (site-local days, as the period summary counts them), in queue order."""
    if scope == "open":
        df = list_cases(store, status="open")
    else:
        lo, hi = checked_period(start, end, tz, PERIOD_DAYS)
        df = list_cases(store, status="all")
        if len(df):
            day = df["first_seen"].fillna("").astype(str).str[:10]
            df = df[(day >= lo.strftime("%Y-%m-%d")) & (day <= hi.strftime("%Y-%m-%d"))]
    return ordered(df)["case_id"].astype(str).tolist() if len(df) else []


def ledger_file(config: Config, store: Store, lake: Lake, case_ids: list[str], lang: Lang,
                fmt_name: str, title: str) -> bytes:
    """The ledger of these cases as CSV or XLSX bytes."""
    from emraudit.reports import ledger
    masker = Masker(enabled=config.reports.mask_patients)
    ld = load_cases(config, store, lake, case_ids, lang, masker)
    fmt = Fmt(config.tz)
    by_id = {c["case_id"]: c for c in ld.cases}
    views = [case_view(by_id[c], ld, config, lang, masker, fmt, set(), "")
             for c in case_ids if c in by_id]
    rows = ledger.rows_for_cases(config, store, lake, case_ids, lang=lang, masker=masker,
                                 evidence={v["id"]: v["events"] for v in views})
    with tempfile.TemporaryDirectory(prefix="emraudit-ledger-") as tmp:
        path = Path(tmp) / f"ledger.{fmt_name}"
        if fmt_name == "csv":
            ledger.write_csv(path, rows, lang)
        else:
            ledger.write_xlsx(path, rows, lang, title=title)
        return path.read_bytes()


def summary_file(config: Config, store: Store, lake: Lake, start: str, end: str,
                 fmt_name: str) -> bytes:
    """The period summary as HTML or XLSX bytes (it holds no patient data)."""
    from emraudit.reports.summary import write_summary
    checked_period(start, end, config.tz, PERIOD_DAYS)
    with tempfile.TemporaryDirectory(prefix="emraudit-summary-") as tmp:
        html, xlsx = write_summary(config, store, lake, start, end,
                                   out=Path(tmp) / "summary.html")
        return (html if fmt_name == "html" else xlsx).read_bytes()
