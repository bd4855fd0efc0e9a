"""`emraudit coverage`: per source and day, events, field shares and gaps."""

from __future__ import annotations

import click

from emraudit.commands._common import config_option, get_config


@click.command("coverage")
@config_option
@click.option("--source", default=None, help="Only this source.")
@click.option("--gaps-only", is_flag=True, help="Only days with no or few events.")
@click.option("--units", is_flag=True,
              help="Every unit's explained share, not only the feed gaps.")
def coverage_cmd(config_path: str, source: str | None, gaps_only: bool, units: bool) -> None:
    """How complete each source's log is: events per day, the share of rows with each
    optional field (ip, workstation, patient_id …), and days with no events (gaps) or far
    fewer than usual (low) inside the source's span; then how much of each department's,
    ward's, role's and source's accesses the care relations explained in the last scan
    (feed gaps: units far below the rest, whose feed looks incomplete)."""
    from emraudit.coverage import coverage_report, format_report
    from emraudit.errors import UserError
    from emraudit.feeds import format_health
    from emraudit.reports.data import feed_health_rows
    from emraudit.store import Store

    cfg = get_config(config_path)
    if source and source not in cfg.sources:
        raise UserError(f"unknown source '{source}' (configured: "
                        f"{', '.join(cfg.sources) or 'none'})", file=str(cfg.path))
    store = Store(cfg.store_url)
    report = coverage_report(store, cfg, source)
    if gaps_only and not report.empty:
        report = report[report["status"] != "ok"]
    click.echo(format_report(report))
    click.echo("")
    click.echo(format_health(feed_health_rows(store), all_units=units))


def register(group: click.Group) -> None:
    group.add_command(coverage_cmd)
