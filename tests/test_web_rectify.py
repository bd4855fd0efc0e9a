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


def _unchanged(cfg, cid):
    row = _case(cfg, cid)
    assert row["rectification_status"] is None and row["rectification_measure"] is None
    assert _history(cfg, cid, "rectified") == [] and _trail(cfg, "rectify") == []


def test_mistakes_in_the_form_are_told_in_the_readers_language(web_site):
    cid = _open_cases(web_site)[0]
    c, tok = session(web_site, "rev1")
    _decide(c, tok, cid)
    future = (TODAY + pd.Timedelta(days=3)).isoformat()
    zh = {  # form -> what the 400 page says (Chinese: rev1's language is the site's)
        ("done", "", "2026-01-05"): "请填写实际采取的整改措施",
        ("已整改", "  ", ""): "请填写实际采取的整改措施",
        ("in_progress", "m", "2026-02-30"): "日期 2026-02-30 无法识别",
        ("in_progress", "m", "05/01/2026"): "日期 05/01/2026 无法识别",
        ("in_progress", "m", "yesterday"): "日期 yesterday 无法识别",
        ("in_progress", "m", future): f"日期 {future} 晚于今天",
        ("fixed", "m", ""): "请选择整改状态：待整改, 整改中, 已整改",
        ("", "m", ""): "请选择整改状态",
    }
    for (status, measure, day), said in zh.items():
        r = c.post(f"/cases/{cid}/rectify", data={"status": status, "measure": measure,
                                                  "date": day, "csrf_token": tok})
        assert r.status_code == 400, (status, day, r.status_code)
        assert 'id="error"' in r.text and said in r.text, (status, day, r.text[-800:])
        assert "Traceback" not in r.text
    _unchanged(web_site, cid)
    _to_english(c, tok)
    en = {("done", "", ""): "Say what measure was actually taken",
          ("in_progress", "m", "2026-13-01"): "The date 2026-13-01 is not a day",
          ("in_progress", "m", future): f"The date {future} is in the future"}
    for (status, measure, day), said in en.items():
        r = c.post(f"/cases/{cid}/rectify", data={"status": status, "measure": measure,
                                                  "date": day, "csrf_token": tok})
        assert r.status_code == 400 and said in r.text, (status, day, r.text[-800:])
    _unchanged(web_site, cid)


def test_only_a_confirmed_problem_is_rectified_or_noticed(web_site):
    ids = _open_cases(web_site)
    fp, just, unverified = ids[0], ids[1], ids[2]
    c, tok = session(web_site, "off1")
    _decide(c, tok, fp, "false_positive")
    _decide(c, tok, just, "justified")
    form = {"status": "in_progress", "measure": "m", "csrf_token": tok}
    for cid, said in ((fp, "此案件的核实结论为“误报”"), (just, "此案件的核实结论为“有正当理由”"),
                      (unverified, "此案件尚未核实")):
        page = c.get(f"/cases/{cid}").text
        assert 'id="rectify-form"' not in page and 'id="notice-form"' not in page
        assert said in page                                  # why, on the page itself
        r = c.post(f"/cases/{cid}/rectify", data=form)
        assert r.status_code == 400 and said in r.text and "需要整改" in r.text
        r = c.post(f"/cases/{cid}/notice", data={"format": "html", "csrf_token": tok})
        assert r.status_code == 400 and said in r.text and "出具告知书" in r.text
        _unchanged(web_site, cid)
        assert _history(web_site, cid, "notice") == []
    assert _trail(web_site, "notice") == []
    _to_english(c, tok)
    r = c.post(f"/cases/{fp}/rectify", data=form)
    assert r.status_code == 400 and "This case was verified as false positive" in r.text


def test_csrf_and_roles(web_site):
    cid = _open_cases(web_site)[0]
    off, otok = session(web_site, "off1")
    _decide(off, otok, cid)
    rect = {"status": "in_progress", "measure": "m"}
    note = {"format": "html"}
    # no token, an empty one, another session's token: 403, nothing recorded
    rev_tok = session(web_site, "rev1")[1]
    for bad in (None, "", "f" * 64, rev_tok):
        for url, data in ((f"/cases/{cid}/rectify", rect), (f"/cases/{cid}/notice", note)):
            form = dict(data) if bad is None else dict(data, csrf_token=bad)
            r = off.post(url, data=form, follow_redirects=False)
            assert r.status_code == 403, (url, bad, r.status_code)
    # the auditor reads the case but neither rectifies nor issues notices; a reviewer
    # rectifies but issues no notice (an officer's job)
    aud, atok = session(web_site, "aud1")
    page = aud.get(f"/cases/{cid}").text
    assert 'id="rectification-block"' in page and 'id="rectify-form"' not in page
    assert 'id="notice-form"' not in page
    assert aud.post(f"/cases/{cid}/rectify", data=dict(rect, csrf_token=atok)).status_code \
        == 403
    assert aud.post(f"/cases/{cid}/notice", data=dict(note, csrf_token=atok)).status_code \
        == 403
    rev, rtok = session(web_site, "rev2")
    assert rev.post(f"/cases/{cid}/notice", data=dict(note, csrf_token=rtok)).status_code \
        == 403
    _unchanged(web_site, cid)
    assert _history(web_site, cid, "notice") == [] and _trail(web_site, "notice") == []
    r = rev.post(f"/cases/{cid}/rectify", data=dict(rect, csrf_token=rtok),
                 follow_redirects=False)
    assert r.status_code == 303 and _case(web_site, cid)["rectification_by"] == "rev2"
    # nobody logged in: to the login page
    from web_helpers import client
    r = client(web_site).post(f"/cases/{cid}/rectify", data=rect, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_a_stale_form_is_a_conflict(web_site):
    cid = _open_cases(web_site)[0]
    c, tok = session(web_site, "rev1")
    _decide(c, tok, cid)
    version = re.search(r'id="rectify-form".*?name="version" value="(\d+)"',
                        c.get(f"/cases/{cid}").text, re.S).group(1)
    form = {"status": "in_progress", "measure": "a", "version": version, "csrf_token": tok}
    assert c.post(f"/cases/{cid}/rectify", data=form, follow_redirects=False).status_code \
        == 303
    r = c.post(f"/cases/{cid}/rectify", data=dict(form, status="done", measure="b"))
    assert r.status_code == 409
    assert _case(web_site, cid)["rectification_status"] == "in_progress"


# -- notices ---------------------------------------------------------------------------------
def test_an_officer_issues_the_notice_in_chinese_and_in_english(web_site):
    cid = _open_cases(web_site)[0]
    c, tok = session(web_site, "off1")
    _decide(c, tok, cid)
    page = c.get(f"/cases/{cid}").text
    assert 'id="notice-form"' in page and "尚未出具告知书" in page
    r = c.post(f"/cases/{cid}/notice", data={"format": "html", "csrf_token": tok},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/cases/{cid}?done=notice#notices"
    page = c.get(r.headers["location"]).text
    assert 'id="notice-issued"' in page
    name = f"notice-{cid}-{TODAY:%Y%m%d}.html"
    assert f'href="/cases/{cid}/notices/{name}"' in page
    r = c.get(f"/cases/{cid}/notices/{name}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-disposition"].startswith("inline")
    assert "告知书" in r.text and "赵护士" in r.text and "rev1" not in r.text
    assert "off1" in r.text                                   # issued by
    assert "P0000001" not in r.text and "张三明" not in r.text    # patients masked
    r = c.get(f"/cases/{cid}/notices/{name}?download=1")
    assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
    hist = _history(web_site, cid, "notice")
    assert [h["by"] for h in hist] == ["off1"] and name in hist[0]["note"]
    assert [(t["actor"], t["target"], json.loads(t["detail"])["file"])
            for t in _trail(web_site, "notice")] == [("off1", cid, name)]
    # in English, as a Word document
    _to_english(c, tok)
    r = c.post(f"/cases/{cid}/notice", data={"format": "docx", "csrf_token": tok},
               follow_redirects=False)
    assert r.status_code == 303
    docx = f"notice-{cid}-{TODAY:%Y%m%d}.docx"
    page = c.get(f"/cases/{cid}").text
    assert f"/notices/{docx}" in page and f"/notices/{name}" in page
    r = c.get(f"/cases/{cid}/notices/{docx}")
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment")
    from docx import Document
    text = "\n".join(p.text for p in Document(io.BytesIO(r.content)).paragraphs)
    assert "Notice on access to electronic medical records" in text and "告知书" not in text
    assert len(_history(web_site, cid, "notice")) == 2
    # a bad format, a name that is not one of this case's notices
    r = c.post(f"/cases/{cid}/notice", data={"format": "pdf", "csrf_token": tok})
    assert r.status_code == 400 and "Choose the notice&#39;s format: html, docx" in r.text
    other = _open_cases(web_site)[0]
    for bad in (f"notice-{other}-{TODAY:%Y%m%d}.html", "..%2F..%2Femraudit.toml",
                f"notice-{cid}-{TODAY:%Y%m%d}.txt", f"notice-{cid}-20000101.html"):
        assert c.get(f"/cases/{cid}/notices/{bad}").status_code == 404, bad
    # viewing is an officer's too; each view is in the trail
    aud, _ = session(web_site, "aud1")
    assert aud.get(f"/cases/{cid}/notices/{name}").status_code == 403
    views = [t for t in _trail(web_site, "export") if t["target"] == cid]
    assert len(views) == 3


# -- the completion rate ---------------------------------------------------------------------
def test_completion_rate_counts_only_rectified_problems(web_site):
    from emraudit.reports.summary import build_summary
    config = load_config(web_site)
    lake = Lake(config.lake_dir, config.tz)

    def kpi():
        k = build_summary(config, _store(web_site), lake, "2026-09-01", "2026-09-30",
                          Lang("zh"))["kpi"]
        return k["confirmed"], k["rectified"], k["rate"]

    a, b = _open_cases(web_site)[:2]
    c, tok = session(web_site, "rev1")
    _decide(c, tok, a)
    _decide(c, tok, b)
    assert kpi() == (2, 0, 0.0)
    for status in ("in_progress", "pending"):                  # neither counts as done
        r = c.post(f"/cases/{a}/rectify", data={"status": status, "csrf_token": tok},
                   follow_redirects=False)
        assert r.status_code == 303
        assert kpi() == (2, 0, 0.0)
    c.post(f"/cases/{a}/rectify", data={"status": "done", "measure": "m", "csrf_token": tok})
    assert kpi() == (2, 1, 50.0)
