"""`emraudit audit verify`: check that the review app's audit trail is intact."""

from __future__ import annotations

import click

from emraudit.commands._common import config_option, get_config


@click.group("audit")
def audit_group() -> None:
    """The audit trail of the review app (logins, views, unmasks, decisions, exports)."""


@audit_group.command("verify")
@config_option
def verify_cmd(config_path) -> None:
    """Recompute the hash chain of the audit trail. Exit 0 when intact, 1 when a row was
    changed, removed or inserted (each such row is named). Prints the newest hash: kept
    elsewhere, it also reveals rows cut off the end later."""
    import sys

    from emraudit.store import Store
    from emraudit.web.trail import verify

    res = verify(Store(get_config(config_path).store_url))
    for p in res.problems:
        click.echo(f"TAMPERED {p}")
    if res.ok:
        click.echo(f"audit trail intact: {res.rows} rows; newest hash {res.head}")
        return
    click.echo(f"audit trail NOT intact: {len(res.problems)} problem(s) in {res.rows} rows",
               err=True)
    sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(audit_group)
