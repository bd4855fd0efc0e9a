"""`emraudit detectors [list|diff]`: what every detector looks for and the settings in force,
and what an edited profile would change before it is put in use."""

from __future__ import annotations

import json
import textwrap

import click

from emraudit import progress
from emraudit.commands._common import get_config
from emraudit.progress import quiet_option

optional_config = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    envvar="EMRAUDIT_CONFIG", show_envvar=True,
    help="Path to emraudit.toml (without it: the built-in default profile).")
format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]),
                             default="table", show_default=True)


def detector_listing(config_path: str | None) -> list[dict]:
    """Every registered detector: its declaration, enabled, severity and parameter values in
    force (declared default ← profile ← config overrides)."""
    from emraudit.detectors.profile import resolve_detectors

    if config_path:
        cfg = get_config(config_path)
        settings = resolve_detectors(cfg.detectors, cfg.path)
    else:
        settings = resolve_detectors({}, None)
    out = []
    for det_id, st in settings.items():
        d = st.cls.declaration()
        d["enabled"] = st.enabled
        d["default_severity"] = d["severity"]
        d["severity"] = st.severity or st.cls.severity
        for p in d["params"]:
            p["value"] = st.params.get(p["name"], p["default"])
            p["changed"] = p["value"] != p["default"]
        try:
            d["lookback_days"] = st.instantiate().effective_lookback_days()
        except Exception:  # noqa: BLE001 - a declaration is still worth listing
            pass
        out.append(d)
    return out


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def print_listing(items: list[dict]) -> None:
    for d in items:
        state = "enabled" if d["enabled"] else "DISABLED"
        sev = d["severity"] + ("" if d["severity"] == d["default_severity"]
                               else f" (default {d['default_severity']})")
        click.echo(f"{d['id']}  [{state}]  item {d['item']}  severity {sev}  ({d['kind']})")
        click.echo(f"  {d['name_en']} / {d['name_zh']}")
        needs = ", ".join(d["needs"]) + (f"; sharpened by {', '.join(d['uses'])}"
                                         if d["uses"] else "")
        click.echo(f"  needs {needs}; look-back {d['lookback_days']} days")
        for line in textwrap.wrap(d["description"], 92):
            click.echo(f"  {line}")
        for p in d["params"]:
            unit = f" {p['unit']}" if p["unit"] else ""
            mark = f"   (default {_fmt(p['default'])})" if p["changed"] else ""
            click.echo(f"    {p['name']} = {_fmt(p['value'])}{unit}{mark}")
            for line in textwrap.wrap(p["doc"], 84):
                click.echo(f"        {line}")
        click.echo("")
    on = sum(d["enabled"] for d in items)
    click.echo(f"{len(items)} detectors, {on} enabled")


@click.group("detectors", invoke_without_command=True)
@optional_config
@format_option
@click.pass_context
def detectors_group(ctx, config_path, fmt) -> None:
    """List every detector with its parameters in force (default), or compare profiles."""
    ctx.obj = {"config_path": config_path, "fmt": fmt}
    if ctx.invoked_subcommand is None:
        _list(config_path, fmt)


def _list(config_path, fmt) -> None:
    items = detector_listing(config_path)
    if fmt == "json":
        click.echo(json.dumps(items, ensure_ascii=False, indent=1, default=str))
    else:
        print_listing(items)


@detectors_group.command("list")
@optional_config
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None,
              help="table (default) or json.")
@click.pass_context
def list_cmd(ctx, config_path, fmt) -> None:
    """Every detector: id, names, item, severity, enabled, parameters in force, docs."""
    parent = ctx.obj or {}
    _list(config_path or parent.get("config_path"), fmt or parent.get("fmt") or "table")


@detectors_group.command("diff")
@click.argument("profile")
@optional_config
@click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True,
              help="Replay the last N stored days.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None,
              help="table (default) or json.")
@quiet_option
@click.pass_context
def diff_cmd(ctx, profile, config_path, days, fmt, quiet) -> None:
    """What PROFILE (a detector profile file or built-in name) would change against the
    settings in force, replayed on the last N days: findings and cases added and removed per
    detector, and the parameters that differ. Writes nothing to the store."""
    from emraudit.errors import UserError
    from emraudit.tune import diff_profiles, format_diff

    parent = ctx.obj or {}
    config_path = config_path or parent.get("config_path")
    fmt = fmt or parent.get("fmt") or "table"
    if not config_path:
        raise UserError("detectors diff needs --config FILE (the settings in force and the "
                        "stored events to replay)")
    cfg = get_config(config_path)
    with progress.showing(quiet):
        result = diff_profiles(cfg, _from_cwd(profile), days=days)
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    else:
        click.echo(format_diff(result))


def _from_cwd(profile: str) -> str:
    """A profile path typed on the command line is relative to the working directory (as
    the shell completed it), not to the config file's folder; a built-in name stays a name."""
    from pathlib import Path

    from emraudit.errors import ConfigError

    p = Path(profile)
    if p.suffix != ".toml" and "/" not in profile:
        return profile
    full = p.absolute()
    if not full.exists():
        raise ConfigError("detector profile not found (relative paths start from the "
                          "working directory)", file=str(full))
    return str(full)


def register(group: click.Group) -> None:
    group.add_command(detectors_group)
