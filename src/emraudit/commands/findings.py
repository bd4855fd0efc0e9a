"""`emraudit findings`: every stored finding, to stdout (the findings contract)."""

from __future__ import annotations

import csv
import json
import sys

import click

from emraudit.commands._common import config_option, get_config
from emraudit.model import FINDING_COLUMNS, finding_to_json


@click.command("findings")
@config_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--detector", help="Only this detector.")
@click.option("--include-retracted", is_flag=True,
              help="Also findings a later rescan no longer produced.")
def findings_cmd(config_path, fmt, detector, include_retracted) -> None:
    """Print every stored finding: JSON lines (one object a line) or CSV.

    This is the store's own export, for the systems that take findings further: patient
    ids, names in summaries and evidence are printed RAW, whatever [reports] mask_patients
    says. Reports, the ledger, the report folder's findings.jsonl and the other verbs mask
    them."""
    from emraudit.store import Store, findings

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    where = findings.c.detector == detector if detector else None
    df = store.read_findings(where, include_retracted=include_retracted)
    if fmt == "jsonl":
        for row in df.to_dict("records"):
            click.echo(finding_to_json(row))
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(FINDING_COLUMNS)
    for row in df.to_dict("records"):
        vals = []
        for c in FINDING_COLUMNS:
            v = row.get(c)
            if c == "event_ids":
                v = " ".join(v)
            elif c == "patient_ids":
                v = " ".join(v) if isinstance(v, list) else None
            elif c == "evidence":
                v = json.dumps(v, ensure_ascii=False, sort_keys=True)
            vals.append(_neutral(v))
        writer.writerow(vals)


def _neutral(v):
    """Spreadsheet formula injection: a cell starting with = + - @ is prefixed with '."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@"):
        return "'" + v
    return v


def register(group: click.Group) -> None:
    group.add_command(findings_cmd)
