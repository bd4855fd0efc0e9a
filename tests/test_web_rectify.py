"""Rectification (整改) and notices (告知书) in the review app (issue 19 point 2, issue 18):
the form on the case page, `POST /cases/{id}/rectify` and `POST /cases/{id}/notice`, in
Chinese and in English; CSRF and roles; the reviewer's mistakes told in their language; the
case history, the audit trail, the problem ledger and the completion rate afterwards."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd
import sqlalchemy as sa

from emraudit.cases import list_cases
from emraudit.config import load_config
from emraudit.lake import Lake
from emraudit.reports.i18n import Lang
from emraudit.store import Store, audit_trail, case_history, cases
from web_helpers import session
from web_site import cheap_hashes, web_master, web_site  # noqa: F401 - fixtures


def _store(cfg) -> Store:
    return Store(load_config(cfg).store_url)


def _trail(cfg, action: str) -> list[dict]:
    rows = _store(cfg).read_table(audit_trail, order_by=audit_trail.c.seq).to_dict("records")
    return [r for r in rows if r["action"] == action]


def _history(cfg, cid: str, action: str) -> list[dict]:
    df = _store(cfg).read_table(case_history, case_history.c.case_id == cid,
                                order_by=case_history.c.id)
    return [r for r in df.to_dict("records") if r["action"] == action]


def _case(cfg, cid: str) -> dict:
    return _store(cfg).read_table(cases, cases.c.case_id == cid).to_dict("records")[0]


def _open_cases(cfg) -> list[str]:
    df = list_cases(_store(cfg), status="open")
    # the nurse's VIP case first: the one the tests confirm
    df = df.assign(_vip=~(df["detectors"].str.contains("snoop.vip") & (df["user_id"] == "U001")))
    return list(df.sort_values(["_vip", "case_id"])["case_id"])


def _decide(c, tok, cid, disposition="confirmed"):
    r = c.post(f"/cases/{cid}/disposition", data={"disposition": disposition, "note": "核实",
                                                  "csrf_token": tok}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]


def _to_english(c, tok):
    r = c.post("/lang", data={"lang": "en", "next": "/cases", "csrf_token": tok},
               follow_redirects=False)
    assert r.status_code == 303


def _ledger(cfg, tmp_path, lang="zh") -> dict[str, dict]:
    """The problem ledger's CSV for the store, rectified cases included: case -> row."""
    from emraudit.reports.ledger import write_ledger
    config = load_config(cfg)
    config.reports.lang = lang
    out = write_ledger(config, _store(cfg), Lake(config.lake_dir, config.tz), tmp_path,
                       include_rectified=True, stem=f"ledger-{lang}")
    rows = list(csv.reader(io.StringIO(out[1].read_bytes().decode("utf-8-sig"))))
    head = rows[0]
    return {r[1]: dict(zip(head, r)) for r in rows[1:]}


def _block(page: str, ident: str) -> str:
    m = re.search(rf'id="{ident}"[^>]*>(.*?)</dd>', page, re.S)
    assert m, ident
    return m.group(1)


TODAY = pd.Timestamp.now(tz="Asia/Shanghai").date()


# -- rectifying ------------------------------------------------------------------------------
def test_rectify_from_the_case_page_in_chinese_then_english(web_site, tmp_path):
    cid = _open_cases(web_site)[0]
    c, tok = session(web_site, "rev1")
    page = c.get(f"/cases/{cid}").text
    # an open case: not a problem to rectify yet, so no form, and the reason says why
    assert 'id="rectify-form"' not in page and "此案件尚未核实" in page
    assert _block(page, "rect-deadline") != "—"                 # the ledger's deadline
    _decide(c, tok, cid)
    page = c.get(f"/cases/{cid}").text
    assert 'id="rectify-form"' in page and 'id="notice-form"' not in page   # a reviewer
    assert _block(page, "rect-status").startswith("待整改")
    assert "整改时限" in page and "落实日期" in page and "责任人" in page

    # 整改中, in the campaign's own word, with the day it started
    r = c.post(f"/cases/{cid}/rectify", data={
        "status": "整改中", "measure": "已约谈当事人", "date": "2026-01-05", "csrf_token": tok},
        follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/cases/{cid}?done=rectified#rectification"
    page = c.get(r.headers["location"]).text
    assert 'id="rectified"' in page and "整改情况已记录" in page
    assert _block(page, "rect-status").startswith("整改中")
    assert _block(page, "rect-measure") == "已约谈当事人"
    assert _block(page, "rect-date") == "2026-01-05" and _block(page, "rect-by") == "rev1"
    row = _case(web_site, cid)
    assert (row["rectification_status"], row["rectification_measure"],
            row["rectification_date"], row["rectification_by"]) == \
        ("in_progress", "已约谈当事人", "2026-01-05", "rev1")
    hist = _history(web_site, cid, "rectified")
    assert [(h["by"], h["old"], h["new"]) for h in hist] == [("rev1", "pending", "in_progress")]
    assert "已约谈当事人" in hist[0]["note"] and "[2026-01-05]" in hist[0]["note"]
    trail = _trail(web_site, "rectify")
    assert [(t["actor"], t["target"], json.loads(t["detail"])["status"],
             json.loads(t["detail"])["date"]) for t in trail] == \
        [("rev1", cid, "in_progress", "2026-01-05")]
    ledger = _ledger(web_site, tmp_path)
    assert (ledger[cid]["整改状态"], ledger[cid]["已采取的整改措施"]) == ("整改中", "已约谈当事人")

    # then 已整改 in English, the date left to its default: today in the site's timezone
    _to_english(c, tok)
    page = c.get(f"/cases/{cid}").text
    assert '<html lang="en">' in page and "Record the rectification" in page
    assert _block(page, "rect-status").startswith("rectifying")
    r = c.post(f"/cases/{cid}/rectify", data={
        "status": "done", "measure": "access narrowed; retrained", "date": "",
        "csrf_token": tok}, follow_redirects=False)
    assert r.status_code == 303
    page = c.get(r.headers["location"]).text
    assert "Rectification recorded." in page
    assert _block(page, "rect-status").startswith("rectified")
    assert _block(page, "rect-date") == TODAY.isoformat()
    row = _case(web_site, cid)
    assert (row["rectification_status"], row["rectification_date"]) == \
        ("done", TODAY.isoformat())
    assert [h["new"] for h in _history(web_site, cid, "rectified")] == ["in_progress", "done"]
    assert len(_trail(web_site, "rectify")) == 2
    en = _ledger(web_site, tmp_path, "en")[cid]
    assert (en["Rectification status"], en["Measure taken"], en["Rectified on"]) == \
        ("rectified", "access narrowed; retrained", TODAY.isoformat())
    # the history on the page shows both changes
    assert page.count(">rectification<") >= 2


def test_the_ledger_columns_after_rectifying(web_site, tmp_path):
    cid = _open_cases(web_site)[0]
    c, tok = session(web_site, "off1")
    _decide(c, tok, cid)
    before = _ledger(web_site, tmp_path)[cid]
    assert (before["核实结论"], before["整改状态"], before["已采取的整改措施"]) == ("属实", "待整改", "")
    r = c.post(f"/cases/{cid}/rectify", data={
        "status": "已整改", "measure": "收回权限并培训", "date": "2026-01-06",
        "csrf_token": tok}, follow_redirects=False)
    assert r.status_code == 303
    after = _ledger(web_site, tmp_path)[cid]
    assert (after["核实结论"], after["整改状态"], after["已采取的整改措施"], after["整改完成日期"]) \
        == ("属实", "已整改", "收回权限并培训", "2026-01-06")
