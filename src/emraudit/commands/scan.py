"""`emraudit scan` (the nightly job) and `emraudit unlock`."""

from __future__ import annotations

import logging

import click

from emraudit.commands._common import config_option, get_config, scrub_failures
from emraudit import progress
from emraudit.dates import ISO_TIME, day_range
from emraudit.progress import quiet_option


def _setup_log(cfg) -> logging.Handler:
    """A log file beside the reports: counts and stages only, never patient data. The scan
    command removes it when it ends: a process that scans several configurations (tests, a
    library caller) must not write one hospital's log into another's folder, nor into a
    folder since removed."""
    import os
    cfg.reports_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.reports_dir / "emraudit.log"
    os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    root = logging.getLogger("emraudit")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _drop_log(handler: logging.Handler) -> None:
    logging.getLogger("emraudit").removeHandler(handler)
    handler.close()


@click.command("scan")
@config_option
@click.option("--since", type=ISO_TIME,
              help="Rescan from this day (inclusive), ISO: 2026-09-01 (or 2026-09-01T08:00).")
@click.option("--until", type=ISO_TIME,
              help="Rescan up to this day (inclusive): --since D --until D is that day.")
@click.option("--full", is_flag=True, help="Rescan every stored day.")
@click.option("--unmask", is_flag=True,
              help="Show patient names and ids unmasked in reports (recorded in the scan).")
@click.option("--no-ingest", is_flag=True, help="Scan stored events without reading sources.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default=None,
              help="Where detection runs: local worker processes or Apache Spark "
                   "(default: [engine] kind, else local).")
@click.option("--spark-master", default=None, metavar="URL",
              help="Spark master (local[2], yarn, k8s://…); default [engine] master.")
@quiet_option
def scan_cmd(config_path, since, until, full, unmask, no_ingest, engine, spark_master,
             quiet) -> None:
    """Ingest what is new, run every enabled detector, store findings and cases, write reports.

    Exit codes: 0 ran (whatever it found); 1 ran but some source or detector failed (named
    in the summary); 2 could not run (bad config, unwritable reports folder or store, a
    full disk); 4 another writer (scan, ingest, allow …) holds the store's lock.
    """
    from emraudit.scan import format_summary, run_scan
    from emraudit.storage import check_writable

    cfg = get_config(config_path)
    if unmask and cfg.reports.mask_patients:
        from emraudit.commands._common import record_unmask
        from emraudit.store import Store
        record_unmask(Store(cfg.store_url), "scan --unmask")
    if spark_master and (engine or cfg.engine.kind) != "spark":
        raise click.UsageError("--spark-master needs --engine spark (or [engine] kind = "
                               "\"spark\")")
    since, until = (w.text if w else None for w in (since, until))
    day_range(since, until, cfg.tz)       # an end before the start fails before the lock
    check_writable(cfg, reports=True)     # before the log file goes into the reports folder
    handler = _setup_log(cfg)
    try:
        log = logging.getLogger("emraudit.scan")
        log.info("scan started (config %s)", cfg.path)
        with progress.showing(quiet) as shown:
            # stage lines above the bars; the indented per-source and per-detector lines
            # are what the bars show
            res = run_scan(cfg, since=since, until=until, full=full, unmask=unmask,
                           skip_ingest=no_ingest, engine=engine, spark_master=spark_master,
                           echo=lambda m: None if m.startswith("  ") else shown.note(m))
        scrub_failures(cfg, [d for d in res.detectors if d.status == "failed"] + res.sources)
        click.echo(format_summary(res))
        log.info("scan %s finished: %d findings, %d cases touched, exit %d", res.scan_id,
                 res.findings, res.cases, res.exit_code)
    finally:
        _drop_log(handler)
    raise SystemExit(res.exit_code)


@click.command("unlock")
@config_option
@click.option("--force", is_flag=True,
              help="Remove the lock even though its holder still runs on this host.")
def unlock_cmd(config_path, force) -> None:
    """Remove a stale writer lock (after a writer crashed on another host). A lock whose
    holder still runs on this host is refused (exit 4) unless --force: removing it would let
    a second writer in beside the first."""
    from emraudit.lock import current_holder, describe, force_unlock
    from emraudit.store import Store

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    row = current_holder(store)
    if row is not None and force_unlock(store, force=force):
        click.echo(f"lock removed (it was held by {describe(row)})")
    else:
        click.echo("no lock was held")


def register(group: click.Group) -> None:
    group.add_command(scan_cmd)
    group.add_command(unlock_cmd)
