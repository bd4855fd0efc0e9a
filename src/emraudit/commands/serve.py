"""`emraudit serve`: the review app in a browser, on 127.0.0.1:8080 unless told otherwise."""

from __future__ import annotations

import ipaddress

import click

from emraudit.commands._common import config_option, get_config


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback should sit behind a TLS "
                   "proxy (then pass --secure-cookies).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--secure-cookies", is_flag=True,
              help="Mark the session cookie Secure (the app is reached over HTTPS).")
def serve_cmd(config_path, host, port, secure_cookies) -> None:
    """Serve the review app: the open-case queue, case pages with the disposition form,
    search, downloads and the audit trail, for the accounts of `emraudit users`.

    Runs until interrupted. The access log is off (URLs can name accounts and cases); every
    login, view, unmask, disposition and export goes to the audit trail instead."""
    import uvicorn

    from emraudit.store import Store
    from emraudit.web import create_app
    from emraudit.web.accounts import list_users

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    users = list_users(store)
    if users.empty:
        click.echo("no accounts yet: add one with `emraudit users add NAME --role officer`",
                   err=True)
    if not _loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines; put the "
                   "app behind HTTPS and use --secure-cookies", err=True)
    app = create_app(cfg, store=store, secure_cookies=secure_cookies)
    click.echo(f"emraudit review app on http://{host}:{port}/ (store {store.safe_url}); "
               "Ctrl-C stops it")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                server_header=False, proxy_headers=False)


def register(group: click.Group) -> None:
    group.add_command(serve_cmd)
