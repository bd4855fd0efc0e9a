"""`emraudit ingest`: read every source into the lake and print the counts."""

from __future__ import annotations

import click

from emraudit import progress
from emraudit.commands._common import config_option, get_config, scrub_failures
from emraudit.progress import quiet_option


@click.command("ingest")
@config_option
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@quiet_option
def ingest_cmd(config_path: str, sources: tuple[str, ...], quiet: bool) -> None:
    """Ingest what is new from every source: validate, quarantine bad rows, store events.

    Prints per source the rows read, accepted, quarantined and duplicate (they always add
    up). Exit 0 when every source was read, 1 when some source failed.
    """
    from emraudit.errors import UserError
    from emraudit.ingest import format_results, ingest
    from emraudit.lake import Lake
    from emraudit.store import Store

    cfg = get_config(config_path)
    unknown = [s for s in sources if s not in cfg.sources]
    if unknown:
        raise UserError(f"unknown source '{unknown[0]}' (configured: "
                        f"{', '.join(cfg.sources) or 'none'})", file=str(cfg.path))
    store = Store(cfg.store_url)
    with progress.showing(quiet):
        results = ingest(cfg, store, Lake(cfg.lake_dir, cfg.tz), only=list(sources) or None)
    scrub_failures(cfg, results)
    click.echo(format_results(results))
    if any(r.quarantined for r in results):
        click.echo(f"\nquarantined rows: emraudit quarantine --config {config_path}")
    raise SystemExit(1 if any(r.status == "failed" for r in results) else 0)


def register(group: click.Group) -> None:
    group.add_command(ingest_cmd)
