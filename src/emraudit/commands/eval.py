"""`emraudit eval`: score the stored findings against a generated hospital's truth.csv."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from emraudit.commands._common import config_option, get_config
from emraudit.errors import UserError

TRUTH_COLUMNS = ("event_id", "violation", "case_key")


def read_truth(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UserError("truth file not found", file=str(path))
    try:
        truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"not a readable CSV: {exc}", file=str(path)) from None
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing)} (expected "
                        f"{', '.join(TRUTH_COLUMNS)})", file=str(path))
    return truth


def count_events(cfg, store, truth_path: Path) -> tuple[int, str]:
    """Events in the access log: from the lake when it holds any, else from the CSV."""
    from emraudit.lake import Lake
    lake = Lake(cfg.lake_dir, cfg.tz)
    ev = lake.read_events(store.committed_runs(), columns=["event_id"])
    if len(ev):
        return int(ev["event_id"].nunique()), "lake"
    candidates = []
    src = cfg.sources.get("access_log")
    if src is not None and src.connector == "csv" and src.path:
        candidates.append(cfg.resolve(src.path))
    candidates.append(truth_path.parent / "access_log.csv")
    for p in candidates:
        if p.is_file():
            import pyarrow.csv as pacsv
            try:
                t = pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
                    include_columns=["event_id"]))
                return t.num_rows, str(p)
            except Exception:  # noqa: BLE001 - another layout: count lines instead
                with open(p, "rb") as fh:
                    return max(sum(1 for _ in fh) - 1, 0), str(p)
    raise UserError("no events to compare with: the lake is empty and no access_log.csv was "
                    "found beside the truth file or in [sources.access_log]",
                    file=str(truth_path))


@click.command("eval")
@config_option
@click.option("--truth", "truth_path", required=True, type=click.Path(dir_okay=False),
              help="truth.csv written by `emraudit demo generate`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--show-missed", is_flag=True, help="List the case keys no finding covers.")
def eval_cmd(config_path, truth_path, fmt, show_missed):
    """Recall per planted violation kind, precision and false findings per 100,000 legitimate
    events per detector, matched through event ids."""
    from emraudit.evaluate import format_text, score
    from emraudit.store import Store
    cfg = get_config(config_path)
    truth = read_truth(Path(truth_path))
    store = Store(cfg.store_url)
    try:
        findings = store.read_findings()
        if findings.empty:
            findings = pd.DataFrame({"finding_id": [], "detector": [], "event_ids": []})
        n_events, source = count_events(cfg, store, Path(truth_path))
    finally:
        store.dispose()
    result = score(findings, truth, n_events)
    result["overall"]["events_from"] = source
    if not show_missed:
        for k in result["kinds"]:
            k.pop("missed")
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(format_text(result, show_missed))


def register(group: click.Group) -> None:
    group.add_command(eval_cmd)
