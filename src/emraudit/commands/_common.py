"""Options and helpers shared by the CLI verbs."""

from __future__ import annotations

import click

from emraudit.config import Config, load_config

config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False),
    help="Path to emraudit.toml.", envvar="EMRAUDIT_CONFIG", show_envvar=True)


def get_config(path: str) -> Config:
    return load_config(path)
