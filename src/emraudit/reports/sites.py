"""The regional summary: the sites (hospitals) of one store compared, for a hospital group
(医联体/医共体) or a regional health commission.

One row per site: its accesses (events in the lake), the share of its patient accesses the
care relations explain (as the scans measured it: their feed health, dimension `site`),
its findings and cases, cases per 10,000 accesses, and its open and overdue problems of the
ledger (overdue: past the 整改时限 and not rectified, as the ledger decides it). Sites are
sorted by cases per 10,000 accesses, highest first. Nothing is judged again here: findings,
cases and explained shares are what the scans stored.

A finding's site is the site of its first event; a case's site is the site of its earliest
finding (a case without findings, such as a feed-gap case, and findings stored before
sites existed, are of `[site] id`). Written as a self-contained HTML page and a CSV (UTF-8
with BOM, for Excel); no patient data.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit.config import Config
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.reports import files
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.ledger import LedgerContext, ledger_rows, neutralize, problem_cases
from emraudit.reports.masking import Masker
from emraudit.store import Store, cases, feed_health, findings, scans

log = logging.getLogger("emraudit.reports")

COLUMNS = [
    ("site_id", N_("Site")),
    ("accesses", N_("Accesses")),
    ("explained_share", N_("Explained share (%)")),
    ("findings", N_("Findings")),
    ("cases", N_("Cases")),
    ("cases_per_10k", N_("Cases per 10,000 accesses")),
    ("open_items", N_("Open ledger items")),
    ("overdue_items", N_("Overdue ledger items")),
]


def _days(start, end, tz: str) -> tuple[str | None, str | None]:
    """The period as first day and the day after its last ('YYYY-MM-DD'), or (None, None)."""
    if start is None and end is None:
        return None, None
    if start is None or end is None:
        raise UserError("give both --from and --to, or neither (every stored day)")
    from emraudit.dates import period
    lo, hi = period(start, end, tz)
    return lo.strftime("%Y-%m-%d"), (hi + pd.Timedelta(days=1)).strftime("%Y-%m-%d")


def _in_period(col, a: str | None, b: str | None):
    return sa.true() if a is None else sa.and_(col >= a, col < b)


def case_sites(store: Store, default: str) -> pd.Series:
    """case id -> its site: the site of its earliest live finding (ties: finding id)."""
    with store.engine.connect() as c:
        res = c.execute(sa.select(findings.c.case_id, findings.c.site_id, findings.c.start,
                                  findings.c.finding_id)
                        .where(findings.c.retracted_scan.is_(None),
                               findings.c.case_id.is_not(None)))
        df = pd.DataFrame(res.fetchall(), columns=["case_id", "site_id", "start", "fid"])
    if df.empty:
        return pd.Series(dtype=object)
    df = df.sort_values(["case_id", "start", "fid"]).drop_duplicates("case_id")
    return pd.Series(df["site_id"].fillna(default).to_numpy(dtype=object),
                     index=df["case_id"].to_numpy(dtype=object))


def site_case_ids(store: Store, site: str, default: str) -> list[str]:
    """The ids of the cases of one site (`cases list --site`)."""
    s = case_sites(store, default)
    return s.index[s == site].tolist()


def _accesses(lake: Lake, committed: set[str], a: str | None, b: str | None,
              tz: str, default: str) -> pd.Series:
    lo = pd.Timestamp(a).tz_localize(tz) if a else None
    hi = pd.Timestamp(b).tz_localize(tz) if b else None
    ev = lake.read_events(committed, lo, hi, columns=["ts", "site_id"])
    site = ev["site_id"].astype("string").fillna(default) if "site_id" in ev.columns \
        else pd.Series(default, index=ev.index, dtype="string")
    return site.value_counts()


def _explained(store: Store, a: str | None, b: str | None) -> pd.DataFrame:
    """Per site: patient accesses judged and explained, from the feed health of committed
    scans whose days fall in the period, newest first, each day counted once."""
    with store.engine.connect() as c:
        res = c.execute(
            sa.select(feed_health.c.scan_id, feed_health.c.value, feed_health.c.accesses,
                      feed_health.c.explained, feed_health.c.first_day,
                      feed_health.c.last_day)
            .join(scans, scans.c.scan_id == feed_health.c.scan_id)
            .where(feed_health.c.dimension == "site", scans.c.status == "committed")
            .order_by(scans.c.started.desc()))
        df = pd.DataFrame(res.fetchall(), columns=["scan_id", "site_id", "accesses",
                                                   "explained", "first_day", "last_day"])
    if df.empty:
        return pd.DataFrame(columns=["accesses", "explained"])
    if a is not None:
        df = df[(df["first_day"] >= a) & (df["last_day"] < b)]
    taken: list[tuple[str, str]] = []
    keep = []
    for scan_id, first, last in df[["scan_id", "first_day", "last_day"]] \
            .drop_duplicates("scan_id").itertuples(index=False):   # per scan, not per event
        if any(not (last < f or first > l) for f, l in taken):
            continue                       # its days were counted by a newer scan
        taken.append((first, last))
        keep.append(scan_id)
    return df[df["scan_id"].isin(keep)].groupby("site_id")[["accesses", "explained"]].sum()


def build_sites(config: Config, store: Store, lake: Lake, start=None, end=None,
                lang: Lang | None = None) -> dict:
    """The regional summary's rows and period."""
    default = config.site.id
    a, b = _days(start, end, config.tz)
    accesses = _accesses(lake, store.committed_runs(), a, b, config.tz, default)
    with store.engine.connect() as c:
        f = pd.DataFrame(c.execute(
            sa.select(findings.c.site_id).where(findings.c.retracted_scan.is_(None),
                                                findings.c.suppressed_by.is_(None),
                                                _in_period(findings.c.start, a, b)))
            .fetchall(), columns=["site_id"])
        cs = pd.DataFrame(c.execute(
            sa.select(cases.c.case_id).where(cases.c.status.not_in(["suppressed",
                                                                    "retracted"]),
                                             _in_period(cases.c.first_seen, a, b)))
            .fetchall(), columns=["case_id"])
    by_case = case_sites(store, default)
    n_findings = f["site_id"].fillna(default).value_counts()
    n_cases = cs["case_id"].map(by_case).fillna(default).value_counts()
    # the ledger as it stands today (its open and overdue problems), decided by its rules
    problems = problem_cases(store)
    lang = lang or Lang(config.reports.lang)
    ctx = LedgerContext.load(config, store, lake, lang, Masker(enabled=True), set())
    rows_l = ledger_rows(problems, ctx)
    ledger = pd.DataFrame({"site_id": problems["case_id"].map(by_case).fillna(default)
                           if len(problems) else pd.Series(dtype=object),
                           "overdue": [r["_overdue"] for r in rows_l]})
    open_items = ledger["site_id"].value_counts()
    overdue = ledger.loc[ledger["overdue"].astype(bool), "site_id"].value_counts()
    shares = _explained(store, a, b)
    sites = sorted(set(accesses.index) | set(n_findings.index) | set(n_cases.index)
                   | set(open_items.index) | set(shares.index) | {default}
                   if len(accesses) or len(n_findings) or len(n_cases) else {default})
    rows = []
    for s in sites:                                    # per site: a handful of rows
        n_acc = int(accesses.get(s, 0))
        n_case = int(n_cases.get(s, 0))
        judged = int(shares["accesses"].get(s, 0)) if len(shares) else 0
        rows.append({
            "site_id": str(s), "accesses": n_acc,
            "explained_share": (round(100.0 * int(shares["explained"].get(s, 0)) / judged, 1)
                                if judged else None),
            "findings": int(n_findings.get(s, 0)), "cases": n_case,
            "cases_per_10k": round(10_000.0 * n_case / n_acc, 2) if n_acc else None,
            "open_items": int(open_items.get(s, 0)), "overdue_items": int(overdue.get(s, 0)),
        })
    rows.sort(key=lambda r: (-(r["cases_per_10k"] if r["cases_per_10k"] is not None
                               else -1.0), r["site_id"]))
    return {"rows": rows, "from": a or "", "to": ((pd.Timestamp(b) - pd.Timedelta(days=1))
                                                   .strftime("%Y-%m-%d") if b else ""),
            "today": ctx.today.isoformat()}


def _cell(v):
    return "—" if v is None else v


def csv_bytes(rows: list[dict], lang: Lang) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([lang.gettext(h) for _, h in COLUMNS])
    for r in rows:
        w.writerow([neutralize("" if r[k] is None else r[k]) for k, _ in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def write_sites(config: Config, store: Store, lake: Lake, start=None, end=None, *,
                out: Path | None = None, lang: str | None = None) -> tuple[Path, Path]:
    """Write the regional summary's HTML and CSV; returns both paths."""
    from emraudit.reports.render import Fmt, _csp, _static

    lg = Lang(lang or config.reports.lang)
    model = build_sites(config, store, lake, start, end, lg)
    name = f"sites-{model['from']}-{model['to']}.html" if model["from"] else \
        f"sites-{model['today']}.html"
    out = files.output_path(out, config.reports_dir, "sites", name)
    env = make_env(lg)
    js = _static("report.js")
    html = env.get_template("sites.html").render(
        site=config.site.name, css=_static("report.css"), csp=_csp(js), masked=True,
        scan={}, window=(model["from"], model["to"]), generated=Fmt(config.tz).now(),
        head=[(k, lg.gettext(h)) for k, h in COLUMNS],
        rows=[{k: _cell(v) for k, v in r.items()} for r in model["rows"]],
        today=model["today"])
    files.write_text(out, html)
    path_csv = out.with_suffix(".csv")
    files.write_bytes(path_csv, csv_bytes(model["rows"], lg))
    log.info("regional summary written: %s (%d sites)", out.name, len(model["rows"]))
    return out, path_csv


__all__ = ["write_sites", "build_sites", "case_sites", "site_case_ids", "COLUMNS"]
