"""`emraudit report scan|patient|summary|ledger|self-inspection|rights`: re-render a scan's
reports, the patient access report, the period summary, the problem ledger, the
self-inspection report and the access-rights report."""

from __future__ import annotations

import click

from emraudit.commands._common import config_option, get_config, record_unmask
from emraudit import progress
from emraudit.dates import ISO_TIME
from emraudit.progress import quiet_option


def _open(config_path):
    from emraudit.lake import Lake
    from emraudit.store import Store

    cfg = get_config(config_path)
    return cfg, Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)


def period_options(f):
    """--from and --to, ISO days (both inclusive)."""
    f = click.option("--to", "end", required=True, type=ISO_TIME,
                     help="Last day (inclusive).")(f)
    return click.option("--from", "start", required=True, type=ISO_TIME,
                        help="First day (ISO), e.g. 2026-09-01.")(f)


@click.group("report")
def report_group() -> None:
    """Write reports: a scan's folder, one patient's access report, a period summary."""


@report_group.command("scan")
@config_option
@click.option("--scan-id", help="The scan to render (default: the latest committed scan).")
@click.option("--unmask", is_flag=True,
              help="Show patient names and ids unmasked (recorded in the scan record).")
@quiet_option
def report_scan(config_path, scan_id, unmask, quiet) -> None:
    """Re-render reports/<scan-id>/ (dashboard, case pages, findings.jsonl, ledger) from
    the store, and point reports/latest at it."""
    from emraudit.errors import UserError
    from emraudit.reports import write_scan_reports
    from emraudit.reports.data import latest_scan_id, scan_row

    cfg, store, lake = _open(config_path)
    if scan_id is None:
        scan_id = latest_scan_id(store)
        if scan_id is None:
            raise UserError("no committed scan in the store yet (run `emraudit scan` first)")
    elif scan_row(store, scan_id) is None:
        raise UserError(f"no scan '{scan_id}' in the store (see the report folders' names)")
    from emraudit.lock import writer_lock
    if unmask and cfg.reports.mask_patients:
        record_unmask(store, "report scan --unmask", scan_id)
    with writer_lock(store, "report scan"), progress.showing(quiet):
        # a scan's folder and reports/latest are the scan's to write: not while one runs
        if unmask or not cfg.reports.mask_patients:
            from emraudit.results import mark_unmasked
            with store.begin() as c:
                mark_unmasked(c, scan_id)
        out = write_scan_reports(cfg, store, lake, scan_id, unmask=unmask)
    click.echo(str(out / "index.html"))


@report_group.command("case")
@config_option
@click.argument("case_id")
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (default: reports/cases/<case-id>.html).")
@click.option("--unmask", is_flag=True, help="Show patient names and ids unmasked.")
def report_case(config_path, case_id, out, unmask) -> None:
    """One case's page, on demand: for a case below the nightly review budget, resolved,
    or past [review] max_pages, which the scan's report lists without a page."""
    from pathlib import Path

    from emraudit.reports import files
    from emraudit.reports.render import write_case_page

    cfg, store, lake = _open(config_path)
    if unmask and cfg.reports.mask_patients:
        record_unmask(store, "report case --unmask", case_id)
    if out is None:
        folder = files.private_dir(cfg.reports_dir / "cases")
        out = folder / f"{case_id}.html"
    path = write_case_page(cfg, store, lake, case_id, Path(out), unmask=unmask)
    click.echo(str(path))


@report_group.command("patient")
@config_option
@click.argument("patient_id")
@period_options
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (a CSV is written beside it).")
@click.option("--unmask", is_flag=True, help="Show the patient's name and id unmasked.")
def report_patient(config_path, patient_id, start, end, out, unmask) -> None:
    """Every access to one patient's record in the period: who (role, department), when,
    what, and the explanation found for it (or that none was found)."""
    from emraudit.reports.patient import write_patient_report

    cfg, store, lake = _open(config_path)
    if unmask and cfg.reports.mask_patients:
        record_unmask(store, "report patient --unmask", patient_id)
    html, csv_path = write_patient_report(cfg, store, lake, patient_id, start, end, out=out,
                                          unmask=unmask)
    click.echo(str(html))
    click.echo(str(csv_path))


@report_group.command("summary")
@config_option
@period_options
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (the XLSX is written beside it).")
def report_summary(config_path, start, end, out) -> None:
    """The stage report for a period: cases and people per item, detector and department;
    dispositions and completion rate; recurring patterns; trend by week (HTML + XLSX)."""
    from emraudit.reports.summary import write_summary

    cfg, store, lake = _open(config_path)
    html, xlsx = write_summary(cfg, store, lake, start, end, out=out)
    click.echo(str(html))
    click.echo(str(xlsx))


@report_group.command("self-inspection")
@config_option
@period_options
@click.option("--out", type=click.Path(dir_okay=False),
              help="DOCX file to write (the HTML page is written beside it; default "
                   "reports/self-inspection/self-inspection-<from>-<to>.docx).")
@click.option("--unmask", is_flag=True, help="Show patient ids unmasked.")
def report_self_inspection(config_path, start, end, out, unmask) -> None:
    """The self-inspection report (自查整改报告) for the health commission, as DOCX and HTML:
    scope and coverage, problems by item, detector, department and role, trend charts,
    typical cases (masked), causes, measures and their status, repeat offenders, and what
    remains open."""
    from emraudit.reports.self_inspection import write_self_inspection

    cfg, store, lake = _open(config_path)
    docx, html = write_self_inspection(cfg, store, lake, start, end, out=out, unmask=unmask)
    click.echo(str(docx))
    click.echo(str(html))


@report_group.command("ledger")
@config_option
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (the XLSX and CSV are written beside it; default "
                   "reports/ledger/ledger-<today>.html).")
@click.option("--include-rectified", is_flag=True, help="Also the problems already rectified.")
@click.option("--include-below-budget", is_flag=True,
              help="Also the open cases below the nightly review budget (not yet given to "
                   "a reviewer; counted, not listed, by default).")
@click.option("--unmask", is_flag=True, help="Show patient ids unmasked.")
def report_ledger(config_path, out, include_rectified, include_below_budget, unmask) -> None:
    """The problem ledger (问题台账) of every open problem, whatever scan found it, with the
    four clarities: the item, the measure, the person responsible and the deadline; its
    verification and rectification status apart (XLSX, CSV, HTML)."""
    import pandas as pd

    from emraudit.reports import files
    from emraudit.reports.ledger import write_ledger
    from emraudit.reports.masking import Masker

    cfg, store, lake = _open(config_path)
    out = files.output_path(out, cfg.reports_dir, "ledger",
                            f"ledger-{pd.Timestamp.now(tz=cfg.tz).date().isoformat()}.html")
    masker = Masker(enabled=cfg.reports.mask_patients and not unmask)
    for path in write_ledger(cfg, store, lake, out.parent, masker=masker, stem=out.stem,
                             include_rectified=include_rectified,
                             include_below_budget=include_below_budget):
        click.echo(str(path))


@report_group.command("rights")
@config_option
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (the XLSX is written beside it).")
@click.option("--lang", type=click.Choice(["zh", "en"]),
              help="Report language (default: [reports] lang).")
@click.option("--as-of", "as_of", type=ISO_TIME, help="Rights held at this day's end or "
              "time, e.g. 2026-09-30 (default: now).")
@click.option("--unmask", is_flag=True,
              help="Show patient ids in the findings unmasked (recorded with the snapshot).")
def report_rights(config_path, out, lang, as_of, unmask) -> None:
    """Who may read what: each department and role, the sensitive-class holders, the changes
    since the last rights report, and the rights problems as a ledger (HTML + XLSX)."""
    from emraudit.reports.rights import write_rights_report

    cfg, store, lake = _open(config_path)
    html, xlsx = write_rights_report(cfg, store, lake, out=out, lang=lang, as_of=as_of,
                                     unmask=unmask)
    click.echo(str(html))
    click.echo(str(xlsx))


@report_group.command("sites")
@config_option
@click.option("--from", "start", type=ISO_TIME, help="First day (ISO), e.g. 2026-09-01 "
              "(with --to; default: every stored day).")
@click.option("--to", "end", type=ISO_TIME, help="Last day (inclusive).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (the CSV is written beside it; default "
                   "reports/sites/sites-<from>-<to>.html).")
@click.option("--lang", type=click.Choice(["zh", "en"]),
              help="Report language (default: [reports] lang).")
def report_sites(config_path, start, end, out, lang) -> None:
    """The regional summary of a hospital group or region: per site, its accesses, the
    share the care relations explain, findings, cases, cases per 10,000 accesses, and its
    open and overdue ledger items, sorted by cases per 10,000 accesses (HTML + CSV)."""
    from emraudit.reports.sites import write_sites

    cfg, store, lake = _open(config_path)
    html, path_csv = write_sites(cfg, store, lake, start, end, out=out, lang=lang)
    click.echo(str(html))
    click.echo(str(path_csv))


def register(group: click.Group) -> None:
    group.add_command(report_group)
