"""`emraudit allow add|list|remove`: allowlist entries for known legitimate patterns."""

from __future__ import annotations

import json

import click

from emraudit.commands._common import config_option, get_config, masker_for, teach_patients
from emraudit.lock import writer_lock


@click.group("allow")
def allow_group() -> None:
    """Suppress known legitimate patterns (an approved research cohort, a ward's covering
    arrangement) with an expiry and a reason. Suppressed findings are still stored and
    counted; an expired or removed entry stops suppressing."""


@allow_group.command("add")
@config_option
@click.option("--user", required=True, help="The account the entry is for.")
@click.option("--patient", help="Only findings on this patient.")
@click.option("--department", help="Only findings on patients in the care of this "
                                   "department or ward at the time.")
@click.option("--detector", help="Only findings of this detector (or a family: care.*).")
@click.option("--until", required=True, help="Last day the entry applies (inclusive, in the "
                                             "site's timezone), e.g. 2025-12-31.")
@click.option("--reason", required=True, help="Why the pattern is legitimate.")
@click.option("--by", "by", required=True, help="Who approved it.")
def add_cmd(config_path, user, patient, department, detector, until, reason, by) -> None:
    """Add an entry: --user U and exactly one of --patient, --department, --detector."""
    from emraudit.allow import add_entry
    from emraudit.store import Store

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    with writer_lock(store, "allow add"):
        entry_id = add_entry(store, user=user, patient=patient, department=department,
                             detector=detector, until=until, reason=reason, by=by, tz=cfg.tz)
    masker = masker_for(cfg, store, unmask=False, command="allow add")
    scope = ("patient", masker.pid(patient)) if patient else ("department", department) \
        if department else ("detector", detector)
    click.echo(f"allowlist entry #{entry_id}: user {user}, {scope[0]} {scope[1]}, "
               f"until {until}")


@allow_group.command("list")
@config_option
@click.option("--all", "include_all", is_flag=True, help="Also expired and removed entries.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--unmask", is_flag=True, help="Show patient ids in full (recorded in the audit "
                                             "trail).")
def list_cmd(config_path, include_all, fmt, unmask) -> None:
    """The entries in force (with --all: every entry ever made), and how many stored findings
    each suppresses. Patient entries show the patient masked, as reports do."""
    from emraudit.allow import list_entries
    from emraudit.commands.cases import echo_table
    from emraudit.store import Store

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    df = list_entries(store, include_all=include_all, tz=cfg.tz)
    masker = masker_for(cfg, store, unmask=unmask, command="allow list")
    if len(df):
        patient = df["scope"] == "patient"
        teach_patients(masker, cfg, store, df.loc[patient, "value"], list(df["reason"]))
        df = df.assign(value=[masker.pid(v) if p else v for v, p in zip(df["value"], patient)],
                       reason=df["reason"].map(masker.scrub))
    if fmt == "json":
        cols = ["id", "user_id", "scope", "value", "until_day", "state", "reason",
                "created_by", "created", "removed", "removed_by", "suppressed"]
        from emraudit.commands.cases import _jsonable
        rows = [{c: _jsonable(r[c]) for c in cols} for r in df.to_dict("records")]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
        return
    if df.empty:
        click.echo("no allowlist entries" + ("" if include_all else " in force (--all shows "
                                             "expired and removed ones)"))
        return
    df = df.assign(id=df["id"].map(lambda i: f"#{i}"))
    cols = [("id", "id"), ("user_id", "user"), ("scope", "scope"), ("value", "value"),
            ("until_day", "until"), ("state", "state"), ("suppressed", "suppressed"),
            ("created_by", "by"), ("reason", "reason")]
    echo_table(df, cols)


@allow_group.command("remove")
@config_option
@click.argument("entry_id", type=str)
@click.option("--by", "by", required=True, help="Who removes it.")
def remove_cmd(config_path, entry_id, by) -> None:
    """Remove an entry (it stays on record, marked removed, and never suppresses again)."""
    from emraudit.allow import remove_entry
    from emraudit.errors import UserError
    from emraudit.store import Store

    try:
        num = int(entry_id.lstrip("#"))
    except ValueError:
        raise UserError(f"expected an entry number such as 3, got {entry_id!r}") from None
    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    with writer_lock(store, "allow remove"):
        remove_entry(store, num, by=by)
    click.echo(f"allowlist entry #{num} removed")


def register(group: click.Group) -> None:
    group.add_command(allow_group)
