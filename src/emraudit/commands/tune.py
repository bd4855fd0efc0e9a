"""`emraudit tune`: what a detector would raise with other parameter values, on stored data."""

from __future__ import annotations

import json

import click

from emraudit import progress
from emraudit.commands._common import config_option, get_config
from emraudit.progress import quiet_option


@click.command("tune")
@config_option
@click.argument("detector")
@click.argument("param")
@click.argument("values", nargs=-1)
@click.option("--range", "range_", metavar="START:STOP:STEP",
              help="Values from START to STOP (both included) by STEP, e.g. 5:30:5.")
@click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True,
              help="Replay the last N stored days.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False),
              help="truth.csv (event_id, violation, case_key) to score against, as "
                   "`emraudit eval`.")
@click.option("--chart", type=click.Path(dir_okay=False),
              help="Write the curve as a self-contained SVG to this file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@quiet_option
def tune_cmd(config_path, detector, param, values, range_, days, truth, chart, fmt,
             quiet) -> None:
    """Replay the stored events of the last N days with DETECTOR's PARAM set to each of
    VALUES (or --range), and print for each value the findings and cases it would raise, the
    cases it would stop (gone) or start (new) raising against the value in force, and, where
    reviewers' dispositions (confirmed = true, false_positive = false) or a truth file
    exist, precision and recall. Nothing is written to the store.

    Dispositions score cases (recall over the confirmed cases relevant to this detector);
    a truth file scores findings (precision) and planted violations of the kinds the
    detector finds (recall).

    \b
    Examples:
      emraudit tune --config emraudit.toml bulk.off_hours min_patients 5 10 20 40
      emraudit tune --config emraudit.toml bulk.off_hours min_patients
          --range 5:40:5 --truth truth.csv --chart min_patients.svg
    """
    from emraudit.detectors.profile import resolve_detectors, tunable_params
    from emraudit.detectors.registry import check_id
    from emraudit.errors import UserError
    from emraudit.tune import (chart_svg, format_sweep, make_replay, parse_value,
                               range_values, read_truth, stored_labels, sweep)

    cfg = get_config(config_path)
    settings = resolve_detectors(cfg.detectors, cfg.path)
    detector = check_id(detector, "DETECTOR")
    declared = tunable_params(settings[detector].cls)
    if param not in declared:
        raise UserError(f"detector {detector} has no parameter '{param}' (known: "
                        f"{', '.join(declared) or 'none'})")
    vals = [parse_value(declared[param], v) for v in values]
    if range_:
        vals += range_values(declared[param], range_)
    if not vals:
        raise UserError("give the values to try (VALUES… or --range START:STOP:STEP)")
    truth_df = read_truth(truth) if truth else None
    with progress.showing(quiet):
        res = sweep(detector, param, vals, settings,
                    lambda variants: make_replay(cfg, variants, days),
                    labels=lambda rp: stored_labels(cfg, detector, rp.window_start,
                                                    rp.window_end),
                    truth=truth_df)
    if chart:
        with open(chart, "w", encoding="utf-8") as fh:
            fh.write(chart_svg(res))
    if fmt == "json":
        click.echo(json.dumps(res, ensure_ascii=False, indent=1, default=str))
    else:
        click.echo(format_sweep(res))
        if chart:
            click.echo(f"chart: {chart}")


def register(group: click.Group) -> None:
    group.add_command(tune_cmd)
