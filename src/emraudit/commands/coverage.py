"""`emraudit coverage`: per source and day, events, field shares and gaps."""

from __future__ import annotations

import click

from emraudit.commands._common import config_option, get_config


@click.command("coverage")
@config_option
@click.option("--source", default=None, help="Only this source.")
@click.option("--gaps-only", is_flag=True, help="Only days with no or few events.")
def coverage_cmd(config_path: str, source: str | None, gaps_only: bool) -> None:
    """How complete each source's log is: events per day, the share of rows with each
    optional field (ip, workstation, patient_id …), and days with no events (gaps) or far
    fewer than usual (low) inside the source's span."""
    from emraudit.coverage import coverage_report, format_report
    from emraudit.errors import UserError
    from emraudit.store import Store

    cfg = get_config(config_path)
    if source and source not in cfg.sources:
        raise UserError(f"unknown source '{source}' (configured: "
                        f"{', '.join(cfg.sources) or 'none'})", file=str(cfg.path))
    report = coverage_report(Store(cfg.store_url), cfg, source)
    if gaps_only and not report.empty:
        report = report[report["status"] != "ok"]
    click.echo(format_report(report))


def register(group: click.Group) -> None:
    group.add_command(coverage_cmd)
