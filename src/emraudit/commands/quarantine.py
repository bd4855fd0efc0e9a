"""`emraudit quarantine`: the rows ingest could not accept, with where they came from and why."""

from __future__ import annotations

import click
import sqlalchemy as sa

from emraudit.commands._common import config_option, get_config


@click.command("quarantine")
@config_option
@click.option("--source", default=None, help="Only this source.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Rows to list (0 = all).")
@click.option("--raw", "show_raw", is_flag=True,
              help="Also print the raw row (may contain patient data: recorded in the audit "
                   "trail).")
@click.option("--summary", is_flag=True, help="Counts per source and reason instead of rows.")
def quarantine_cmd(config_path: str, source: str | None, limit: int, show_raw: bool,
                   summary: bool) -> None:
    """List quarantined rows: source, source reference (file:line or table:key) and reason.
    The raw row is printed only with --raw."""
    from emraudit.store import Store, quarantine

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    if show_raw and not summary:
        from emraudit.commands._common import record_unmask
        record_unmask(store, "quarantine --raw", source)
    where = quarantine.c.source == source if source else sa.true()
    with store.engine.connect() as c:
        total = c.execute(sa.select(sa.func.count()).select_from(quarantine).where(where)).scalar()
        if summary:
            # group by the reason's first words so "unknown action 'x'" and 'y' stay apart
            rows = c.execute(sa.select(quarantine.c.source, quarantine.c.reason,
                                       sa.func.count().label("n"))
                             .where(where).group_by(quarantine.c.source, quarantine.c.reason)
                             .order_by(sa.desc("n")).limit(limit or None)).fetchall()
            click.echo(f"{'source':20} {'rows':>8}  reason")
            for r in rows:
                click.echo(f"{str(r.source)[:20]:20} {r.n:>8,}  {r.reason}")
            click.echo(f"\n{total:,} quarantined row(s)")
            return
        stmt = sa.select(quarantine).where(where).order_by(quarantine.c.id)
        if limit:
            stmt = stmt.limit(limit)
        rows = c.execute(stmt).fetchall()
    if not rows:
        if source and source not in cfg.sources:
            from emraudit.errors import UserError
            raise UserError(f"unknown source '{source}' (configured: "
                            f"{', '.join(cfg.sources) or 'none'})", file=str(cfg.path))
        click.echo("no quarantined rows" + (f" for source '{source}'" if source else ""))
        return
    width = min(max(len("source_ref"), *(len(str(r.source_ref or "")) for r in rows)), 80)
    click.echo(f"{'source':20} {'source_ref':{width}} reason")
    for r in rows:
        click.echo(f"{str(r.source)[:20]:20} {str(r.source_ref or '')[:width]:{width}} {r.reason}")
        if show_raw and r.raw:
            click.echo(f"{'':20} raw: {r.raw}")
    if limit and total > len(rows):
        click.echo(f"\n{len(rows)} of {total:,} shown (use --limit 0 for all)")


def register(group: click.Group) -> None:
    group.add_command(quarantine_cmd)
