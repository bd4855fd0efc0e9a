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


def masker_for(cfg: Config, store, *, unmask: bool, command: str, target: str | None = None):
    """The masking every CLI output goes through (emraudit.reports.masking.Masker): on when
    [reports] mask_patients is, unless --unmask — which is then recorded in the audit trail
    (who, on which host, with which command and target)."""
    from emraudit.reports.masking import Masker
    masker = Masker(enabled=cfg.reports.mask_patients and not unmask)
    if unmask and cfg.reports.mask_patients:
        record_unmask(store, command, target)
    return masker


def record_unmask(store, command: str, target: str | None = None) -> None:
    """An explicit request for raw patient ids from the command line, in the audit trail."""
    import getpass
    import socket

    from emraudit.web.trail import record
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        import os
        who = f"uid {os.getuid()}"
    record(store, f"cli:{who}@{socket.gethostname()}", "unmask", target=target,
           detail={"command": command, "via": "command line"})


def teach_patients(masker, cfg: Config, store, ids, texts=()) -> None:
    """Let `masker` scrub these patients (and any patient `texts` name by id) from free text:
    their ids and, from the stored patients table, their names."""
    if not masker.enabled:
        return
    from emraudit.lake import Lake
    from emraudit.reports.masking import id_tokens
    ids = {str(i) for i in ids if i is not None and str(i)}
    wanted = set(ids)
    for t in texts:
        if isinstance(t, str):
            wanted |= id_tokens(t)
    patients = Lake(cfg.lake_dir, cfg.tz).read_snapshot(
        "patients", store.committed_runs(), key="patient_id", values=sorted(wanted))
    masker.learn_patients(patients, ids)
    masker.learn_mentioned(patients, texts)
    users = Lake(cfg.lake_dir, cfg.tz).read_snapshot("users", store.committed_runs())
    if users is not None and "name" in users:
        masker.keep(users["name"])


def scrub_failures(cfg: Config, items: list) -> None:
    """A failed detector's `message` or source's `error` is an exception's text: it may
    quote a patient's id or name, so it goes through the masking like every output (in
    place; nothing to do, and nothing read, when nothing failed)."""
    failed = [x for x in items if getattr(x, "message", None) or getattr(x, "error", None)]
    if not failed or not cfg.reports.mask_patients:
        return
    from emraudit.store import Store
    store = Store(cfg.store_url)
    masker = masker_for(cfg, store, unmask=False, command="messages")
    texts = [getattr(x, "message", "") or getattr(x, "error", "") for x in failed]
    teach_patients(masker, cfg, store, [], texts)
    for x in failed:
        for attr in ("message", "error"):
            if getattr(x, attr, None):
                setattr(x, attr, masker.scrub(getattr(x, attr)))
