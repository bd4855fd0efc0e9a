"""`emraudit notice CASE`: the printable notice (告知书) for a confirmed case."""

from __future__ import annotations

import click

from emraudit.commands._common import config_option, get_config


@click.command("notice")
@config_option
@click.argument("case")
@click.option("--by", "by", required=True, help="Who gives the notice (recorded).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="File to write: .html (default) or .docx (default "
                   "reports/notices/notice-<case>-<date>.html).")
@click.option("--unmask", is_flag=True, help="Show patient ids unmasked.")
def notice_cmd(config_path, case, by, out, unmask) -> None:
    """Write the notice to the user of a confirmed case, with a copy to their department
    head: what was seen, the rule, what is expected, how to explain. Giving it is recorded
    in the case's history. Exit 2 for a case that is not a confirmed problem."""
    from emraudit.lake import Lake
    from emraudit.reports.notice import write_notice
    from emraudit.store import Store

    cfg = get_config(config_path)
    path = write_notice(cfg, Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz), case, by=by,
                        out=out, unmask=unmask)
    click.echo(str(path))


def register(group: click.Group) -> None:
    group.add_command(notice_cmd)
