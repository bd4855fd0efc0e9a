"""The review app on a PostgreSQL store: login, a disposition shown by `cases show`, two
reviewers at once, the audit trail's chain and append-only guard, racing trail writers."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from emraudit.cases import list_cases
from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store
from test_web_accounts_cli import check_chain_and_tampering
from web_helpers import add_accounts, session
from web_site import cheap_hashes, scan, write_site  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_site(tmp_path, pg_url, cheap_hashes):
    cfg = write_site(tmp_path / "site", store_url=pg_url)
    scan(cfg)
    add_accounts(Store(load_config(cfg).store_url))
    return cfg


def test_review_app_on_postgresql(pg_site):
    store = Store(load_config(pg_site).store_url)
    assert store.engine.dialect.name == "postgresql"
    cid = str(list_cases(store, status="open")["case_id"].iloc[0])
    a, ta = session(pg_site, "rev1")
    b, tb = session(pg_site, "rev2")
    page = a.get(f"/cases/{cid}").text
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    r = a.post(f"/cases/{cid}/disposition", data={"disposition": "confirmed", "note": "PG",
                                                  "version": version, "csrf_token": ta},
               follow_redirects=False)
    assert r.status_code == 303
    r = b.post(f"/cases/{cid}/disposition", data={"disposition": "justified", "note": "late",
                                                  "version": version, "csrf_token": tb})
    assert r.status_code == 409
    res = CliRunner().invoke(main, ["cases", "show", cid, "--config", str(pg_site),
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert (shown["disposition"], shown["reviewer"], shown["note"]) == ("confirmed", "rev1",
                                                                        "PG")
    o, otok = session(pg_site, "off1")
    assert o.post(f"/cases/{cid}/assign", data={"assignee": "rev2", "csrf_token": otok},
                  follow_redirects=False).status_code == 303
    assert cid in o.get("/cases?status=all&assignee=rev2").text
    res = CliRunner().invoke(main, ["audit", "verify", "--config", str(pg_site)])
    assert res.exit_code == 0 and "intact" in res.output


def test_audit_trail_on_postgresql(tmp_path, pg_url):
    (tmp_path / "emraudit.toml").write_text(
        f'[store]\nurl = "{pg_url}"\n[sources.access_log]\npath = "a.csv"\n', encoding="utf-8")
    cfg = str(tmp_path / "emraudit.toml")
    check_chain_and_tampering(Store(load_config(cfg).store_url), cfg)


def test_racing_trail_writers_on_postgresql(pg_url):
    from concurrent.futures import ThreadPoolExecutor

    from emraudit.web import trail
    store = Store(pg_url)
    with ThreadPoolExecutor(4) as pool:
        seqs = list(pool.map(lambda i: trail.record(store, f"u{i}", "case_view"), range(40)))
    assert sorted(seqs) == list(range(1, 41)) and trail.verify(store).ok
