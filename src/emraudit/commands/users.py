"""`emraudit users add|list|disable|enable|passwd|role`: accounts of the review app.

Whoever can run these commands can read the configuration and the state database, so they
need no login of their own; each change is recorded in the audit trail as `cli:<os user>`.
Passwords come from a prompt (typed twice) or, for scripts, from `--password-stdin`; they are
never taken as arguments, where they would land in the shell history and the process list.
"""

from __future__ import annotations

import getpass
import sys

import click

from emraudit.commands._common import config_option, get_config

ROLE_CHOICE = click.Choice(["reviewer", "officer", "admin", "auditor"])
password_stdin = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of standard input.")


def cli_actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _store(config_path):
    from emraudit.store import Store
    return Store(get_config(config_path).store_url)


def _trail(store, action: str, name: str, **detail) -> None:
    from emraudit.web import trail
    trail.record(store, cli_actor(), action, target=name, detail=detail or None)


@click.group("users")
def users_group() -> None:
    """Accounts of the review app (`emraudit serve`) and their roles."""


@users_group.command("add")
@config_option
@click.argument("name")
@click.option("--role", required=True, type=ROLE_CHOICE,
              help="reviewer: decides cases; officer: also assigns, allowlists, unmasks and "
                   "downloads; admin: manages accounts; auditor: reads the audit trail.")
@password_stdin
def add_cmd(config_path, name, role, password_stdin) -> None:
    """Create an account."""
    from emraudit.web.accounts import add_user, check_name

    store = _store(config_path)
    check_name(name)
    user = add_user(store, name, role, _password(password_stdin))
    _trail(store, "user_add", user["username"], role=role)
    click.echo(f"account {user['username']} added ({role})")


@users_group.command("list")
@config_option
def list_cmd(config_path) -> None:
    """Every account with its role and state."""
    from emraudit.commands.cases import echo_table, when
    from emraudit.web.accounts import list_users

    df = list_users(_store(config_path))
    if df.empty:
        click.echo("no accounts (add one with `emraudit users add NAME --role …`)")
        return
    df = df.assign(state=["locked" if lk else ("active" if a else "disabled")
                          for a, lk in zip(df["active"].astype(bool),
                                           df["locked"].astype(bool))],
                   login=df["last_login"].map(when))
    echo_table(df, [("username", "account"), ("role", "role"), ("state", "state"),
                    ("failed", "failed logins"), ("login", "last login")])


def _set_active(config_path, name: str, active: bool) -> None:
    from emraudit.web.accounts import set_active

    store = _store(config_path)
    set_active(store, name, active)
    _trail(store, "user_enable" if active else "user_disable", name)
    click.echo(f"account {name} {'enabled' if active else 'disabled'}")


@users_group.command("disable")
@config_option
@click.argument("name")
def disable_cmd(config_path, name) -> None:
    """Disable an account and end its sessions (its history stays)."""
    _set_active(config_path, name, False)


@users_group.command("enable")
@config_option
@click.argument("name")
def enable_cmd(config_path, name) -> None:
    """Enable a disabled account again."""
    _set_active(config_path, name, True)


@users_group.command("passwd")
@config_option
@click.argument("name")
@password_stdin
def passwd_cmd(config_path, name, password_stdin) -> None:
    """Set a new password; this also unlocks a locked account and ends its sessions."""
    from emraudit.web.accounts import set_password

    store = _store(config_path)
    set_password(store, name, _password(password_stdin))
    _trail(store, "user_passwd", name)
    click.echo(f"password of {name} changed; the account is unlocked")


@users_group.command("role")
@config_option
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
def role_cmd(config_path, name, role) -> None:
    """Change an account's role."""
    from emraudit.web.accounts import set_role

    store = _store(config_path)
    set_role(store, name, role)
    _trail(store, "user_role", name, role=role)
    click.echo(f"account {name} is now {role}")


def register(group: click.Group) -> None:
    group.add_command(users_group)
