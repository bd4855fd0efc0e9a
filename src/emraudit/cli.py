"""The `emraudit` command line: a click group whose verbs live in `emraudit.commands.*`.

Each module in `emraudit/commands/` defines its verbs and a `register(group)` function; they
are discovered here so that a feature adds its verbs without editing this file. User mistakes
(`UserError`) print one clear line and exit with its code (2), and so does a full, read-only
or forbidden disk or store (`emraudit.storage`); nothing else is caught.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from emraudit import __version__
from emraudit.errors import UserError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"emraudit: error: {err}", err=True)
            sys.exit(err.exit_code)
        except Exception as exc:
            from emraudit.storage import as_storage_error
            err = as_storage_error(exc)
            if err is None:
                raise
            click.echo(f"emraudit: error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emraudit")
def main():
    """Audit EMR access logs for privacy leaks: unrelated viewing, shared credentials,
    off-hours bulk viewing, bulk copying/export and snooping.

    Typical nightly use:  emraudit scan --config emraudit.toml
    """


def _register_commands(group: click.Group) -> None:
    import emraudit.commands as pkg
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"emraudit.commands.{mod.name}")
        module.register(group)


_register_commands(main)
