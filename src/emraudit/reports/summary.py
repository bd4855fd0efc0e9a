"""The period summary for the institution's stage reports to the health commission.

One HTML page and one XLSX workbook for a period: cases and people involved per
rectification item, detector and department; dispositions, rectification and the
completion rate; the top recurring patterns (staff with several cases, detector ×
department pairs); and the trend by week. Cases count in the period of their first finding.
No patient data.

Confirming a problem is not rectifying it: the completion rate (整改完成率) is the share of
confirmed problems (confirmed, or handled by training) whose rectification is recorded as
done (`emraudit cases rectify`).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.dates import period
from emraudit.lake import Lake
from emraudit.reports import charts, data, files
from emraudit.reports.i18n import Lang, make_env
from emraudit.reports.labels import (DISPOSITION, RECTIFICATION, ROLE, SEVERITY, STATUS,
                                     detector_info, item_info, label)
from emraudit.reports.ledger import PROBLEM
from emraudit.reports.page import Fmt, _csp, _json_list, _s, _static
from emraudit.store import Store, cases

log = logging.getLogger("emraudit.reports")


def _read_cases(store: Store, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    a, b = lo.strftime("%Y-%m-%d"), (hi + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    return store.read_table(cases, sa.and_(cases.c.first_seen >= a, cases.c.first_seen < b))


def _group(df: pd.DataFrame, key: str, label_of) -> list[dict]:
    if df.empty:
        return []
    g = df.groupby(key, sort=False).agg(cases=("case_id", "nunique"),
                                        people=("user_id", "nunique"),
                                        confirmed=("problem", "sum"),
                                        rectified=("rectified", "sum")).reset_index()
    g = g.sort_values(["cases", key], ascending=[False, True])
    top = max(1, int(g["cases"].max()))
    return [{"key": r[key], "label": label_of(r[key]), "cases": int(r["cases"]),
             "people": int(r["people"]), "confirmed": int(r["confirmed"]),
             "rectified": int(r["rectified"]),
             "pct": round(100.0 * r["cases"] / top, 1)} for r in g.to_dict("records")]


def period_cases(config: Config, store: Store, lake: Lake, lo: pd.Timestamp,
                 hi: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every case whose first finding falls in the period, the active ones: not
    suppressed, not retracted), with the columns the period's reports group by:
    `department` and `role` (the case's own, else the users table's), `problem` and
    `rectified` (0/1), `det_list`, `item_list`, `week` (its Monday)."""
    df = _read_cases(store, lo, hi)
    if len(df):
        users = data.snapshot(lake, store.committed_runs(), "users")
        known = {} if users is None or not len(users) else \
            {str(u): r for u, r in zip(users["user_id"], users.to_dict("records"))}
        for col in ("department", "role"):
            own = df[col].map(_s) if col in df.columns else pd.Series("", index=df.index)
            ref = df["user_id"].astype(str).map(lambda u, c=col: _s(known.get(u, {}).get(c)))
            df[col] = own.where(own != "", ref).where(lambda x: x != "", "—")
        df["problem"] = ((df["status"] == "resolved")
                         & df["disposition"].isin(PROBLEM)).astype(int)
        df["rectified"] = (df["problem"].astype(bool)
                           & (df["rectification_status"] == "done")).astype(int)
        df["det_list"] = df["detectors"].map(lambda s: [str(x) for x in _json_list(s)])
        df["item_list"] = df["items"].map(lambda s: [str(x) for x in _json_list(s)])
        df["week"] = pd.to_datetime(df["first_seen"].str[:10]).dt.to_period("W-SUN") \
            .map(lambda p: p.start_time.strftime("%Y-%m-%d"))
    active = df[~df["status"].isin(["suppressed", "retracted"])] if len(df) else df
    return df, active


def build_summary(config: Config, store: Store, lake: Lake, start: str, end: str,
                  lang: Lang) -> dict:
    lo, hi = period(start, end, config.tz)
    df, active = period_cases(config, store, lake, lo, hi)
    by_det = active.explode("det_list") if len(active) else active
    by_item = active.explode("item_list") if len(active) else active
    dnames: dict[str, str] = {}

    def dname(d):
        if d not in dnames:
            dnames[d] = detector_info(d, lang)["name"]
        return dnames[d]

    n = len(active)
    problems = int(active["problem"].sum()) if n else 0
    rectified = int(active["rectified"].sum()) if n else 0
    disp_rows = []
    if n:
        counts = active.assign(disposition=active["disposition"].fillna("")) \
            .groupby(["status", "disposition"]).size().reset_index(name="n")
        for r in counts.sort_values("n", ascending=False).to_dict("records"):
            text = label(STATUS, r["status"], lang)
            if r["disposition"]:
                text += " · " + label(DISPOSITION, r["disposition"], lang)
            disp_rows.append({"label": text, "n": int(r["n"])})
    repeat = []
    if n:
        per_user = active.groupby("user_id").agg(
            n=("case_id", "nunique"), department=("department", "first"),
            detectors=("det_list", lambda s: sorted({d for x in s for d in x})),
            confirmed=("disposition", lambda s: int((s == "confirmed").sum())))
        per_user = per_user[per_user["n"] >= 2].sort_values(["n", "confirmed"],
                                                            ascending=False).head(10)
        for uid, r in per_user.iterrows():
            repeat.append({"user": uid, "department": r["department"], "n": int(r["n"]),
                           "confirmed": int(r["confirmed"]),
                           "detectors": ", ".join(dname(d) for d in r["detectors"])})
    pairs = []
    if n:
        pc = by_det.groupby(["det_list", "department"]).agg(
            n=("case_id", "nunique"), people=("user_id", "nunique")).reset_index()
        pc = pc[pc["n"] >= 2].sort_values(["n", "people"], ascending=False).head(10)
        pairs = [{"detector": dname(r["det_list"]), "department": r["department"],
                  "n": int(r["n"]), "people": int(r["people"])} for r in pc.to_dict("records")]
    weeks = []
    trend = None
    if n:
        wk = active.groupby("week").agg(n=("case_id", "nunique"),
                                        rectified=("rectified", "sum"))
        all_weeks = pd.period_range(lo, hi, freq="W-SUN").start_time.strftime("%Y-%m-%d")
        weeks = [{"week": w, "n": int(wk["n"].get(w, 0)),
                  "rectified": int(wk["rectified"].get(w, 0))} for w in all_weeks]
        trend = charts.days_chart([w["week"] for w in weeks], [w["n"] for w in weeks], [],
                                  title=lang.gettext("Cases per week"),
                                  flagged_label="", median_label=lang.gettext("median"))
    rect_rows = []
    if problems:
        state = active.loc[active["problem"].astype(bool), "rectification_status"] \
            .where(lambda x: x.isin(list(RECTIFICATION)), "pending")
        rect_rows = [{"key": k, "label": label(RECTIFICATION, k, lang),
                      "n": int((state == k).sum())} for k in RECTIFICATION]
    sev = []
    if n:
        for s in ("critical", "high", "medium", "low"):
            sev.append({"label": label(SEVERITY, s, lang),
                        "n": int((active["severity"] == s).sum())})
    return {
        "from": lo.strftime("%Y-%m-%d"), "to": hi.strftime("%Y-%m-%d"),
        "kpi": {"cases": n, "people": int(active["user_id"].nunique()) if n else 0,
                "verified": int((active["status"] == "resolved").sum()) if n else 0,
                "confirmed": problems, "rectified": rectified,
                "rate": round(100.0 * rectified / problems, 1) if problems else None,
                "suppressed": int((df["status"] == "suppressed").sum()) if len(df) else 0,
                "open": int((active["status"] == "open").sum()) if n else 0},
        "item": _group(by_item, "item_list", lambda k: item_info(k, lang)["zh"]),
        "detector": _group(by_det, "det_list", dname),
        "department": _group(active, "department", lambda k: k),
        "role": _group(active, "role", lambda k: label(ROLE, k, lang)),
        "severity": sev, "dispositions": disp_rows, "repeat": repeat, "pairs": pairs,
        "rectification": rect_rows,
        "weeks": weeks, "trend": trend,
    }


def _xlsx(model: dict, lang: Lang, title: str) -> bytes:
    from openpyxl import Workbook
    from emraudit.reports.ledger import write_sheet

    _ = lang.gettext
    wb = Workbook()
    ws = wb.active
    ws.title = _("Overview")[:31]
    k = model["kpi"]
    write_sheet(ws, [_("measure"), _("value")], [
        [_("period"), f"{model['from']} – {model['to']}"], [_("cases"), k["cases"]],
        [_("staff involved"), k["people"]], [_("verified"), k["verified"]],
        [_("confirmed problems"), k["confirmed"]], [_("rectified"), k["rectified"]],
        [_("completion rate (%)"), "—" if k["rate"] is None else k["rate"]],
        [_("open"), k["open"]], [_("suppressed"), k["suppressed"]]], [28, 30])
    for name, rows in ((_("By rectification item"), model["item"]),
                       (_("By detector"), model["detector"]),
                       (_("By department"), model["department"]),
                       (_("By role"), model["role"])):
        write_sheet(wb.create_sheet(name[:31]),
                    [name, _("cases"), _("people"), _("confirmed"), _("rectified")],
                    [[r["label"], r["cases"], r["people"], r["confirmed"], r["rectified"]]
                     for r in rows], [40, 10, 10, 10, 10])
    write_sheet(wb.create_sheet(_("Dispositions")[:31]), [_("status"), _("cases")],
                [[r["label"], r["n"]] for r in model["dispositions"]], [30, 10])
    write_sheet(wb.create_sheet(_("Recurring patterns")[:31]),
                [_("account"), _("department"), _("cases"), _("confirmed"), _("detectors")],
                [[r["user"], r["department"], r["n"], r["confirmed"], r["detectors"]]
                 for r in model["repeat"]], [14, 20, 8, 10, 50])
    write_sheet(wb.create_sheet(_("Rectification")[:31]), [_("status"), _("cases")],
                [[r["label"], r["n"]] for r in model["rectification"]], [30, 10])
    write_sheet(wb.create_sheet(_("Weekly trend")[:31]),
                [_("week starting"), _("cases"), _("rectified")],
                [[w["week"], w["n"], w["rectified"]] for w in model["weeks"]], [14, 10, 10])
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_summary(config: Config, store: Store, lake: Lake, start: str, end: str, *,
                  out: Path | None = None) -> tuple[Path, Path]:
    """Write the summary HTML and XLSX; returns both paths."""
    lang = Lang(config.reports.lang)
    model = build_summary(config, store, lake, start, end, lang)
    out = files.output_path(out, config.reports_dir, "summaries",
                            f"summary-{model['from']}-{model['to']}.html")
    env = make_env(lang)
    js = _static("report.js")
    html = env.get_template("summary.html").render(
        site=config.site.name, css=_static("report.css"), csp=_csp(js), masked=True, scan={},
        window=(model["from"], model["to"]),
        generated=Fmt(config.tz).now(),
        s=model)
    files.write_text(out, html)
    xlsx = out.with_suffix(".xlsx")
    files.write_bytes(xlsx, _xlsx(model, lang, f"{config.site.name} {model['from']}–"
                                               f"{model['to']}"))
    log.info("summary written: %s (%d cases)", out.name, model["kpi"]["cases"])
    return out, xlsx


__all__ = ["write_summary", "build_summary"]
