"""The review app over HTTP (Starlette's TestClient): login, lock-out, CSRF, each role's
permissions, dispositions (persisting, shown by `cases show`, two reviewers at once),
masking and recorded unmasking, the queue's filters and pages, assignment, comments,
allowlisting, search, downloads, languages and the security headers."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cases import list_cases
from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store, allowlist, audit_trail, web_sessions
from emraudit.web import accounts, queue
from web_helpers import PW, case_ids, client, login, session, token
from web_site import cheap_hashes, web_master, web_site  # noqa: F401 - fixtures

PATIENT, PATIENT_NAME = "P0000001", "张三明"


def _store(cfg) -> Store:
    return Store(load_config(cfg).store_url)


def _trail(cfg, action=None) -> list[dict]:
    rows = _store(cfg).read_table(audit_trail, order_by=audit_trail.c.seq).to_dict("records")
    return [r for r in rows if action is None or r["action"] == action]


def _open(cfg) -> list[str]:
    return list(list_cases(_store(cfg), status="open")["case_id"])


def _vip_case(cfg) -> str:
    df = list_cases(_store(cfg), status="open")
    hit = df[df["detectors"].str.contains("snoop.vip") & (df["user_id"] == "U001")]
    return str(hit["case_id"].iloc[0])


# -- login, sessions, lock-out --------------------------------------------------------------
def test_anonymous_requests_go_to_login(web_site):
    c = client(web_site)
    r = c.get("/cases", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fcases"
    cid = _open(web_site)[0]
    assert c.get(f"/cases/{cid}", follow_redirects=False).headers["location"] \
        .startswith("/login")
    r = c.post(f"/cases/{cid}/disposition", data={"disposition": "confirmed", "note": "x",
                                                  "csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert list_cases(_store(web_site), status="resolved").empty


def test_login_form_and_session_cookie(web_site):
    c = client(web_site)
    r = c.get("/login")
    assert re.search(r'<input type="hidden" name="csrf_token" value="[0-9a-f]{64}">', r.text)
    r = login(c, "rev1")
    assert r.headers["location"] == "/cases"
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie"
              and v.startswith("emraudit_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Path=/" in cookie
    assert c.get("/cases").status_code == 200
    rows = _trail(web_site, "login")
    assert [(x["actor"], x["role"]) for x in rows] == [("rev1", "reviewer")]
    # a forged cookie (bad signature) is no session
    c2 = client(web_site)
    c2.cookies.set("emraudit_session", cookie.split(";")[0].split("=", 1)[1][:-2] + "xx")
    assert c2.get("/cases", follow_redirects=False).status_code == 303
    # the next page asked for before logging in is where the login leads
    c3 = client(web_site)
    r = c3.get("/login?next=/search")
    r = c3.post("/login", data={"username": "rev1", "password": PW, "csrf_token": token(r.text),
                                "next": "/search"}, follow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[-3000:])
    assert r.headers["location"] == "/search"
    r = c3.get("/login")
    r = c3.post("/login", data={"username": "rev1", "password": PW, "csrf_token": token(r.text),
                                "next": "//evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/cases"


def test_login_needs_its_csrf_token(web_site):
    c = client(web_site)
    c.get("/login")
    r = c.post("/login", data={"username": "rev1", "password": PW}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post("/login", data={"username": "rev1", "password": PW, "csrf_token": "0" * 64},
               follow_redirects=False)
    assert r.status_code == 403
    # a token without the matching login cookie (another browser's form) is refused too
    tok = token(client(web_site).get("/login").text)
    r = client(web_site).post("/login", data={"username": "rev1", "password": PW,
                                              "csrf_token": tok}, follow_redirects=False)
    assert r.status_code == 403


def test_failed_logins_are_slowed_then_lock_the_account(web_site):
    store = _store(web_site)
    c = client(web_site)
    for _ in range(accounts.FREE_FAILURES):
        r = login(c, "rev1", "wrong password!", expect=401)
    assert "login-error" in r.text
    # the next try comes too soon: refused without checking, even with the right password
    r = login(c, "rev1", PW, expect=429)
    # wait out each delay (the clock moved forward) until the account locks
    with store.engine.connect() as conn:
        user = accounts.get_user(conn, "rev1")
    t = user["last_failed"]
    for n in range(accounts.FREE_FAILURES, accounts.LOCK_AFTER):
        t = t + timedelta(seconds=accounts.delay_for(n) + 1)
        res = accounts.authenticate(store, "rev1", "wrong again!!", now=t)
    assert res.outcome == "locked"
    r = login(c, "rev1", PW, expect=403)       # locked: the right password is refused
    assert "locked" in r.text or "锁定" in r.text
    outcomes = [json.loads(x["detail"])["outcome"] for x in _trail(web_site, "login_failed")]
    assert outcomes[:4] == ["bad", "bad", "bad", "rate_limited"] and outcomes[-1] == "locked"
    # an admin's new password unlocks it
    res = CliRunner().invoke(main, ["users", "passwd", "rev1", "--password-stdin",
                                    "--config", str(web_site)], input="a brand new secret\n")
    assert res.exit_code == 0, res.output
    login(client(web_site), "rev1", "a brand new secret")


def test_unknown_accounts_and_one_address_trying_many(web_site, monkeypatch):
    from emraudit.web.security import ClientLimiter
    c = client(web_site)
    login(c, "nobody", PW, expect=401)
    app = c.app.state.review
    app.limiter = ClientLimiter(limit=3)
    for name in ("a1", "a2", "a3"):
        login(c, name, PW, expect=401)
    r = login(c, "rev2", PW, expect=429)   # this address is slowed down, whatever the name
    assert r.status_code == 429


def test_sessions_end_on_logout_idle_time_and_disable(web_site):
    c, tok = session(web_site, "rev1")
    r = c.post("/logout", data={"csrf_token": tok}, follow_redirects=False)
    assert r.headers["location"] == "/login"
    assert c.get("/cases", follow_redirects=False).status_code == 303
    c, tok = session(web_site, "rev1")
    store = _store(web_site)
    with store.begin() as conn:
        conn.execute(web_sessions.update().values(
            seen=sa.func.datetime("now", "-2 hours")))
    assert c.get("/cases", follow_redirects=False).status_code == 303     # idle too long
    c, tok = session(web_site, "rev2")
    res = CliRunner().invoke(main, ["users", "disable", "rev2", "--config", str(web_site)])
    assert res.exit_code == 0, res.output
    assert c.get("/cases", follow_redirects=False).status_code == 303
    login(client(web_site), "rev2", expect=401)


# -- CSRF and roles ---------------------------------------------------------------------------
def _posts(cid: str) -> list[tuple[str, dict]]:
    return [(f"/cases/{cid}/disposition", {"disposition": "confirmed", "note": "seen"}),
            (f"/cases/{cid}/assign", {"assignee": "rev1"}),
            (f"/cases/{cid}/comment", {"text": "hello"}),
            (f"/cases/{cid}/unmask", {}),
            ("/search/patient", {"patient_id": PATIENT}),
            ("/audit/verify", {}),
            ("/admin/users", {"op": "disable", "username": "rev2"}),
            ("/lang", {"lang": "en"}),
            ("/logout", {})]


def test_every_post_needs_a_valid_csrf_token(web_site):
    cid = _open(web_site)[0]
    for name in ("off1", "adm1"):
        c, tok = session(web_site, name)
        other = session(web_site, "rev1")[1]          # a token of another session
        for url, data in _posts(cid):
            for bad in (None, "", "f" * 64, other):
                form = dict(data) if bad is None else dict(data, csrf_token=bad)
                r = c.post(url, data=form, follow_redirects=False)
                assert r.status_code == 403, (name, url, bad, r.status_code)
    assert list_cases(_store(web_site), status="resolved").empty
    assert _store(web_site).read_table(allowlist).empty
    assert not _trail(web_site, "disposition") and not _trail(web_site, "user_disable")


ALLOWED = {  # role -> which of the requests below answer 2xx/3xx (the rest 403)
    "reviewer": {"queue", "case", "search", "decide", "comment"},
    "officer": {"queue", "case", "search", "decide", "comment", "assign", "unmask",
                "downloads", "ledger"},
    "admin": {"users"},
    "auditor": {"queue", "case", "search", "trail", "downloads", "ledger"},
}


def test_each_role_may_do_what_it_is_for_and_nothing_else(web_site):
    names = {"reviewer": "rev1", "officer": "off1", "admin": "adm1", "auditor": "aud1"}
    ids = _open(web_site)
    for i, (role, name) in enumerate(names.items()):
        c, tok = session(web_site, name)
        cid = ids[i]
        got = {
            "queue": c.get("/cases"), "case": c.get(f"/cases/{cid}"),
            "search": c.get("/search"), "trail": c.get("/audit"),
            "users": c.get("/admin/users"), "downloads": c.get("/downloads"),
            "ledger": c.get("/downloads/ledger.csv?scope=open"),
            "decide": c.post(f"/cases/{cid}/disposition", data={
                "disposition": "training", "note": "n", "csrf_token": tok},
                follow_redirects=False),
            "comment": c.post(f"/cases/{cid}/comment", data={"text": "t", "csrf_token": tok},
                              follow_redirects=False),
            "assign": c.post(f"/cases/{cid}/assign", data={"assignee": "rev1",
                                                           "csrf_token": tok},
                             follow_redirects=False),
            "unmask": c.post(f"/cases/{cid}/unmask", data={"csrf_token": tok}),
        }
        for what, r in got.items():
            expected_ok = what in ALLOWED[role]
            assert (r.status_code < 400) == expected_ok, (role, what, r.status_code)
            if not expected_ok:
                assert r.status_code == 403, (role, what, r.status_code)
        # the navigation offers only what the role may use
        nav = c.get("/search" if role != "admin" else "/admin/users").text
        assert ('href="/audit"' in nav) == (role == "auditor")
        assert ('href="/admin/users"' in nav) == (role == "admin")
        assert ('href="/downloads"' in nav) == (role in ("officer", "auditor"))
    resolved = list_cases(_store(web_site), status="resolved")
    assert sorted(resolved["reviewer"]) == ["off1", "rev1"]


# -- dispositions -----------------------------------------------------------------------------
def test_a_disposition_persists_and_shows_in_cases_show(web_site):
    c, tok = session(web_site, "rev1")
    cid = _vip_case(web_site)
    page = c.get(f"/cases/{cid}").text
    assert 'id="disposition-form"' in page and 'name="version"' in page
    r = c.post(f"/cases/{cid}/disposition", data={
        "disposition": "confirmed", "note": "夜间无故查看，已约谈", "csrf_token": tok},
        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/cases/{cid}?done=confirmed"
    page = c.get(r.headers["location"]).text
    assert 'id="recorded"' in page and "夜间无故查看，已约谈" in page
    res = CliRunner().invoke(main, ["cases", "show", cid, "--config", str(web_site),
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert (shown["status"], shown["disposition"], shown["reviewer"], shown["note"]) == \
        ("resolved", "confirmed", "rev1", "夜间无故查看，已约谈")
    assert shown["history"][-1]["action"] == "resolved" and shown["history"][-1]["by"] == "rev1"
    assert cid not in _open(web_site)
    rows = _trail(web_site, "disposition")
    assert [(x["actor"], x["target"], json.loads(x["detail"])["disposition"]) for x in rows] \
        == [("rev1", cid, "confirmed")]
    # a bad disposition or an empty note is a 400 naming the problem; nothing changes
    other = _open(web_site)[0]
    for data in ({"disposition": "guilty", "note": "x"}, {"disposition": "confirmed",
                                                           "note": "  "}):
        r = c.post(f"/cases/{other}/disposition", data=dict(data, csrf_token=tok))
        assert r.status_code == 400 and 'id="error"' in r.text
    assert other in _open(web_site)
    r = c.get("/cases/Cnosuchcase00000")
    assert r.status_code == 404


def test_two_reviewers_deciding_the_same_case_at_once(web_site):
    cid = _vip_case(web_site)
    a, ta = session(web_site, "rev1")
    b, tb = session(web_site, "rev2")
    va = re.search(r'name="version" value="(\d+)"', a.get(f"/cases/{cid}").text).group(1)
    vb = re.search(r'name="version" value="(\d+)"', b.get(f"/cases/{cid}").text).group(1)
    assert va == vb
    r = a.post(f"/cases/{cid}/disposition", data={"disposition": "confirmed", "note": "A",
                                                  "version": va, "csrf_token": ta},
               follow_redirects=False)
    assert r.status_code == 303
    r = b.post(f"/cases/{cid}/disposition", data={"disposition": "false_positive",
                                                  "note": "B", "version": vb,
                                                  "csrf_token": tb})
    assert r.status_code == 409
    assert "changed since you read it" in r.text
    res = json.loads(CliRunner().invoke(main, ["cases", "show", cid, "--config", str(web_site),
                                               "--format", "json"]).output)
    assert (res["disposition"], res["reviewer"]) == ("confirmed", "rev1")
    assert [h["by"] for h in res["history"] if h["action"] == "resolved"] == ["rev1"]
    # deciding again after reading the new version is recorded on top, both in the history
    vb = re.search(r'name="version" value="(\d+)"', b.get(f"/cases/{cid}").text).group(1)
    r = b.post(f"/cases/{cid}/disposition", data={"disposition": "false_positive",
                                                  "note": "B", "version": vb,
                                                  "csrf_token": tb}, follow_redirects=False)
    assert r.status_code == 303
    res = json.loads(CliRunner().invoke(main, ["cases", "show", cid, "--config", str(web_site),
                                               "--format", "json"]).output)
    assert [h["by"] for h in res["history"] if h["action"] == "resolved"] == ["rev1", "rev2"]


def test_justified_can_allowlist_with_an_expiry(web_site):
    cid = _vip_case(web_site)
    c, tok = session(web_site, "off1")
    page = c.get(f"/cases/{cid}").text
    assert PATIENT not in page                     # scopes are positions, not raw ids
    scope = re.search(r'<option value="(patient:\d+)"', page).group(1)
    form = {"disposition": "justified", "note": "会诊", "allowlist": "1", "allow_scope": scope,
            "allow_until": "2099-12-31", "csrf_token": tok}
    bad = c.post(f"/cases/{cid}/disposition", data=dict(form, allow_until="2001-01-01"))
    assert bad.status_code == 400 and cid in _open(web_site)
    bad = c.post(f"/cases/{cid}/disposition", data=dict(form, disposition="confirmed"))
    assert bad.status_code == 400
    r = c.post(f"/cases/{cid}/disposition", data=form, follow_redirects=False)
    assert r.status_code == 303
    entries = _store(web_site).read_table(allowlist).to_dict("records")
    assert len(entries) == 1
    e = entries[0]
    assert (e["user_id"], e["patient_id"], e["created_by"], e["reason"]) == \
        ("U001", PATIENT, "off1", "会诊")
    assert str(e["until"]).startswith("2099-12-31")
    assert [x["target"] for x in _trail(web_site, "allowlist")] == [cid]
    # a reviewer may decide "justified" but not allowlist
    other = _open(web_site)[0]
    c, tok = session(web_site, "rev1")
    r = c.post(f"/cases/{other}/disposition", data=dict(form, csrf_token=tok,
                                                        allow_scope="detector:x"))
    assert r.status_code == 403 and other in _open(web_site)


# -- masking ----------------------------------------------------------------------------------
def test_patients_are_masked_and_every_unmask_is_recorded(web_site):
    cid = _vip_case(web_site)
    c, tok = session(web_site, "rev1")
    for html in (c.get("/cases").text, c.get(f"/cases/{cid}").text,
                 c.get("/search/user?user_id=U001&from=2026-09-08&to=2026-09-09").text,
                 c.post("/search/patient", data={"patient_id": PATIENT, "csrf_token": tok,
                                                 "from": "2026-09-08",
                                                 "to": "2026-09-09"}).text):
        assert PATIENT_NAME not in html and "李小红" not in html
        assert "P0000002" not in html and "P0000003" not in html
    assert 'id="unmask"' not in c.get(f"/cases/{cid}").text
    assert c.post(f"/cases/{cid}/unmask", data={"csrf_token": tok}).status_code == 403
    r = c.post("/search/patient", data={"patient_id": PATIENT, "csrf_token": tok, "unmask": "1"})
    assert r.status_code == 403
    assert not _trail(web_site, "unmask")
    o, otok = session(web_site, "off1")
    page = o.get(f"/cases/{cid}").text
    assert PATIENT_NAME not in page and 'id="unmask"' in page
    page = o.post(f"/cases/{cid}/unmask", data={"csrf_token": otok}).text
    assert PATIENT_NAME in page and PATIENT in page
    page = o.post("/search/patient", data={"patient_id": PATIENT, "csrf_token": otok,
                                           "unmask": "1", "from": "2026-09-08",
                                           "to": "2026-09-09"}).text
    assert PATIENT_NAME in page
    rows = _trail(web_site, "unmask")
    assert [(x["actor"], x["target"]) for x in rows] == [("off1", cid), ("off1", PATIENT)]
    # the auditor reads the trail with patient ids masked
    a, _ = session(web_site, "aud1")
    trail_page = a.get("/audit").text
    assert "unmask" in trail_page and PATIENT not in trail_page and cid in trail_page


# -- the queue --------------------------------------------------------------------------------
def test_queue_filters_pages_and_order(web_site, monkeypatch):
    c, tok = session(web_site, "rev1")
    everything = case_ids(c.get("/cases").text)
    assert sorted(everything) == sorted(_open(web_site))
    df = list_cases(_store(web_site), status="open").set_index("case_id")
    assert df["severity"].nunique() >= 2          # the filter has something to tell apart
    for sev in ("critical", "high", "medium", "low"):
        got = case_ids(c.get(f"/cases?severity={sev}").text)
        assert set(got) == set(df.index[df["severity"] == sev])
    got = case_ids(c.get("/cases?item=8").text)
    assert set(got) == {i for i in df.index if '"8"' in df.loc[i, "items"]}
    got = case_ids(c.get("/cases?detector=snoop.vip").text)
    assert set(got) == {i for i in df.index if "snoop.vip" in df.loc[i, "detectors"]}
    got = case_ids(c.get("/cases?department=病案室").text)
    assert got and set(got) == set(df.index[df["user_id"] == "U003"])
    assert c.get("/cases?severity=grave").status_code == 400
    # order: highest risk (or severity where no risk is stored) first
    ranks = {"critical": 3, "high": 2, "medium": 1, "low": 0}
    sev = [ranks[df.loc[i, "severity"]] for i in everything]
    if "risk" not in df or df["risk"].isna().all():
        assert sev == sorted(sev, reverse=True)
    # pages
    monkeypatch.setattr(queue, "PAGE_SIZE", 5)
    p1, p2 = case_ids(c.get("/cases").text), case_ids(c.get("/cases?page=2").text)
    assert p1 == everything[:5] and p2 == everything[5:10]
    assert 'href="/cases?page=2"' in c.get("/cases").text
    # resolved cases leave the open queue and show under their status
    cid = everything[0]
    c.post(f"/cases/{cid}/disposition", data={"disposition": "training", "note": "n",
                                              "csrf_token": tok})
    assert cid not in case_ids(c.get("/cases").text)
    assert cid in case_ids(c.get("/cases?status=resolved").text)


def test_assignment_comments_and_next_case(web_site):
    ids = _open(web_site)
    o, otok = session(web_site, "off1")
    cid = case_ids(o.get("/cases").text)[0]
    r = o.post(f"/cases/{cid}/assign", data={"assignee": "rev2", "csrf_token": otok},
               follow_redirects=False)
    assert r.status_code == 303
    assert o.post(f"/cases/{cid}/assign", data={"assignee": "adm1",
                                                "csrf_token": otok}).status_code == 400
    assert case_ids(o.get("/cases?assignee=rev2").text) == [cid]
    assert cid not in case_ids(o.get("/cases?assignee=-").text)
    page = o.get(f"/cases/{cid}").text
    assert re.search(r'id="assignee">rev2', page)
    # the next case of rev1 skips the case assigned to rev2
    r1, t1 = session(web_site, "rev1")
    nxt = r1.get("/cases/next", follow_redirects=False).headers["location"]
    assert nxt != f"/cases/{cid}" and nxt.startswith("/cases/C")
    r2, t2 = session(web_site, "rev2")
    assert r2.get("/cases/next", follow_redirects=False).headers["location"] == f"/cases/{cid}"
    r = r1.post(f"/cases/{cid}/comment", data={"text": "<b>先核实排班</b>", "csrf_token": t1},
                follow_redirects=False)
    assert r.status_code == 303
    page = r1.get(f"/cases/{cid}").text
    assert "&lt;b&gt;先核实排班&lt;/b&gt;" in page and "<b>先核实排班</b>" not in page
    assert [x["action"] for x in _trail(web_site) if x["target"] == cid] \
        == ["assign", "case_view", "comment", "case_view"]
    assert len(ids) == len(_open(web_site))


# -- search and downloads ---------------------------------------------------------------------
def test_search_by_user_and_by_patient_link_into_cases(web_site):
    c, tok = session(web_site, "rev1")
    vip = _vip_case(web_site)
    page = c.get("/search/user?user_id=U001&from=2026-09-08&to=2026-09-09").text
    assert f'href="/cases/{vip}"' in page
    assert re.search(r'id="n-accesses">8<', page)             # 5 + 3 night-time views
    assert c.get("/search/user?user_id=U001&from=2026-01-01&to=2026-12-31").status_code == 400
    page = c.post("/search/patient", data={"patient_id": PATIENT, "from": "2026-09-01",
                                           "to": "2026-09-09", "csrf_token": tok}).text
    assert f'href="/cases/{vip}"' in page and 'id="access-table"' in page
    staff = re.search(r'<table id="staff-table">(.*?)</table>', page, re.S).group(1)
    assert "U001" in staff and "U003" in staff
    trail = _trail(web_site)
    assert ("search_user", "U001") in [(x["action"], x["target"]) for x in trail]
    assert ("search_patient", PATIENT) in [(x["action"], x["target"]) for x in trail]


def test_downloads_of_the_open_queue_and_a_period(web_site):
    import openpyxl
    c, tok = session(web_site, "off1")
    r = c.get("/downloads/ledger.csv?scope=open")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    text = r.content.decode("utf-8-sig")
    open_ids = _open(web_site)
    assert all(cid in text for cid in open_ids)
    assert PATIENT_NAME not in text and PATIENT not in text          # masked
    c.post(f"/cases/{open_ids[0]}/disposition", data={"disposition": "confirmed",
                                                      "note": "n", "csrf_token": tok})
    text = c.get("/downloads/ledger.csv?scope=open").content.decode("utf-8-sig")
    assert open_ids[0] not in text
    r = c.get("/downloads/ledger.xlsx?scope=period&from=2026-09-01&to=2026-09-30")
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    cells = " ".join(str(v) for row in wb.active.iter_rows(values_only=True) for v in row)
    assert all(cid in cells for cid in open_ids)                     # resolved one included
    r = c.get("/downloads/summary.xlsx?from=2026-09-01&to=2026-09-30")
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert c.get("/downloads/ledger.csv?scope=period&from=2026-09-30&to=2026-09-01") \
        .status_code == 400
    assert c.get("/downloads/other.txt").status_code == 404
    exports = [json.loads(x["detail"]) for x in _trail(web_site, "export")]
    assert [e["file"] for e in exports] == ["ledger.csv", "ledger.csv", "ledger.xlsx",
                                            "summary.xlsx"]
    assert exports[0]["cases"] == len(open_ids)


# -- pages ------------------------------------------------------------------------------------
def test_language_choice_and_security_headers(web_site):
    c, tok = session(web_site, "rev1")
    r = c.get("/cases")
    assert '<html lang="zh-CN">' in r.text and "审核队列" in r.text
    # the queue's case sentences in the account's language (emraudit.reports.text)
    assert "在无诊疗关系的情况下查阅患者 P0****06 的病历 6 次" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text and "http://" not in r.text and "https://" not in r.text
    r = c.post("/lang", data={"lang": "en", "next": "/cases", "csrf_token": tok},
               follow_redirects=False)
    assert r.headers["location"] == "/cases"
    page = c.get("/cases").text
    assert '<html lang="en">' in page and "Review queue" in page
    assert "opened the record of patient P0****06 6 times on 2026-09-07" in page
    cid = _vip_case(web_site)
    assert '<html lang="en">' in c.get(f"/cases/{cid}").text
    # the choice is the account's, not the browser's
    c2, _ = session(web_site, "rev1")
    assert '<html lang="en">' in c2.get("/cases").text
    assert '<html lang="zh-CN">' in session(web_site, "rev2")[0].get("/cases").text


def test_accounts_are_managed_by_admins_in_the_browser(web_site):
    c, tok = session(web_site, "adm1")
    page = c.get("/admin/users").text
    assert all(n in page for n in ("rev1", "off1", "aud1"))
    r = c.post("/admin/users", data={"op": "add", "username": "rev3", "role": "reviewer",
                                     "password": "short", "csrf_token": tok})
    assert r.status_code == 400 and "too short" in r.text
    r = c.post("/admin/users", data={"op": "add", "username": "rev3", "role": "reviewer",
                                     "password": "long enough secret", "csrf_token": tok},
               follow_redirects=False)
    assert r.status_code == 303
    login(client(web_site), "rev3", "long enough secret")
    c.post("/admin/users", data={"op": "role", "username": "rev3", "role": "auditor",
                                 "csrf_token": tok})
    assert accounts.list_users(_store(web_site)).set_index("username") \
        .loc["rev3", "role"] == "auditor"
    assert c.post("/admin/users", data={"op": "disable", "username": "adm1",
                                        "csrf_token": tok}).status_code == 400
    assert [x["action"] for x in _trail(web_site) if x["target"] == "rev3"] == \
        ["user_add", "user_role"]


def test_injected_markup_in_the_data_stays_text(web_site):
    """Account names and notes typed by people land in pages escaped."""
    c, tok = session(web_site, "rev1")
    cid = _open(web_site)[0]
    c.post(f"/cases/{cid}/disposition", data={"disposition": "training",
                                              "note": "<script>alert(1)</script>",
                                              "csrf_token": tok})
    page = c.get(f"/cases/{cid}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    r = c.get('/search/user?user_id=<img src=x onerror=alert(2)>')
    assert "<img src=x" not in r.text


def test_serve_binds_loopback_unless_told(web_site, monkeypatch):
    import uvicorn
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    res = CliRunner().invoke(main, ["serve", "--config", str(web_site)])
    assert res.exit_code == 0, res.output
    assert (seen["host"], seen["port"], seen["access_log"]) == ("127.0.0.1", 8080, False)
    res = CliRunner().invoke(main, ["serve", "--config", str(web_site), "--host", "0.0.0.0",
                                    "--port", "9000"])
    assert res.exit_code == 0 and "warning" in res.output
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 9000)
