"""`emraudit schema`: the canonical tables, their columns and allowed values."""

from __future__ import annotations

import click


@click.command("schema")
def schema_cmd() -> None:
    """Print the canonical tables every connector profile maps onto."""
    from emraudit.model import describe_schema
    click.echo(describe_schema())


def register(group: click.Group) -> None:
    group.add_command(schema_cmd)
