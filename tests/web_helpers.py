"""Helpers for the review app's HTTP tests: accounts of every role, logged-in clients."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from emraudit.config import load_config
from emraudit.store import Store
from emraudit.web import create_app
from emraudit.web.accounts import add_user

PW = "correct horse battery"
ACCOUNTS = {"rev1": "reviewer", "rev2": "reviewer", "off1": "officer", "adm1": "admin",
            "aud1": "auditor"}
HOME = {"reviewer": "/cases", "officer": "/cases", "auditor": "/cases", "admin": "/admin/users"}


def add_accounts(store: Store) -> None:
    for name, role in ACCOUNTS.items():
        add_user(store, name, role, PW)


def client(cfg_path) -> TestClient:
    return TestClient(create_app(load_config(cfg_path)), base_url="http://127.0.0.1")


def token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def login(c: TestClient, name: str, password: str = PW, *, expect: int = 303):
    r = c.get("/login")
    r = c.post("/login", data={"username": name, "password": password,
                               "csrf_token": token(r.text)}, follow_redirects=False)
    assert r.status_code == expect, (r.status_code, r.text[:500])
    return r


def session(cfg_path, name: str) -> tuple[TestClient, str]:
    """A client logged in as `name` and the CSRF token of its session."""
    c = client(cfg_path)
    login(c, name)
    r = c.get(HOME[ACCOUNTS[name]])
    assert r.status_code == 200, r.text[:500]
    return c, token(r.text)


def case_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)
