"""Options and helpers shared by the CLI verbs."""

from __future__ import annotations

import click

from emraudit.config import Config, load_config

config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False),
    help="Path to emraudit.toml.", envvar="EMRAUDIT_CONFIG", show_envvar=True)


def get_config(path: str) -> Config:
    from emraudit.reports import files
    cfg = load_config(path)
    files.set_group(cfg.reports.group)     # who may read the report files this verb writes
    return cfg
