"""The notice (告知书) to a user whose case was confirmed, with a copy to their department head.

Printable (HTML with print styles, or DOCX): what was seen (the accesses, their times and
terminals, the patients masked), the rule it breaks (the campaign's item and the rule behind
it), what is expected of the user from now on, and how to explain if there was a reason
(by when, to whom, with what). Users who are told what was seen repeat it far less often.

Only a confirmed problem gets a notice (`emraudit.rectification.status_of`); giving one is
recorded in the case's history. Patients are masked unless asked otherwise; the user is named
(the notice is addressed to them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from emraudit.cases import find_case
from emraudit.config import Config
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.rectification import not_a_problem, status_of
from emraudit.reports import data, files, word
from emraudit.reports.departments import Departments
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.labels import ACTION, ROLE, detector_info, item_info, label
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _json_list, _s, _static
from emraudit.reports.text import case_sentence
from emraudit.store import Store, findings

log = logging.getLogger("emraudit.reports")

MAX_EVENTS = 50
# the rule behind each rectification item, as a user should read it
RULES = {
    "9": N_("Staff open a patient's electronic medical record only when their work for that "
            "patient needs it and within the rights they were given; no one lends their "
            "account, key or password, or logs in with another person's. (National campaign "
            "for medical quality and safety 2025-2026, item (9): inadequate management of the "
            "electronic medical record system.)"),
    "8": N_("Medical institutions and their staff protect patients' privacy: medical records "
            "are not disclosed for purposes other than care, teaching or research, and patient "
            "images and record information are not kept, photographed, copied or passed on. "
            "(Provisions on the management of medical records, article 6; national campaign "
            "2025-2026, item (8): leaks of patient privacy.)"),
    "6": N_("Medical documents are never forged or altered. (National campaign 2025-2026, "
            "item (6): non-standard writing and management of medical documents.)"),
}
EXPECTED = {
    "9": (N_("Open a patient's record only when your work for that patient needs it, and only "
             "within the rights you were given."),
          N_("Never lend your account, key or password, never leave a session open for others, "
             "and never use another person's account.")),
    "8": (N_("Do not keep, photograph, copy, print, export or pass on patient records or images "
             "beyond what care requires."),),
    "6": (N_("Correct records only through the record system's amendment process, under your own "
             "name."),),
}
ALWAYS = N_("When you are unsure whether you may open a record, ask your department head first.")


@dataclass
class Notice:
    model: dict
    case_id: str
    to: str
    copy_to: str


def build_notice(config: Config, store: Store, lake: Lake, case_ref: str, lang: Lang,
                 masker: Masker, *, by: str, today: date | None = None) -> Notice:
    """Everything the notice says, as plain data."""
    _ = lang.gettext
    with store.engine.connect() as c:
        row = find_case(c, case_ref)
    if status_of(row) is None:
        raise UserError(not_a_problem(row, "give a notice for"))
    cid, uid = row["case_id"], _s(row["user_id"])
    committed = store.committed_runs()
    users = data.snapshot(lake, committed, "users")
    u = {}
    if users is not None and len(users):
        hit = users[users["user_id"].astype(str) == uid]
        u = hit.iloc[-1].to_dict() if len(hit) else {}
    dept = _s(row.get("department")) or _s(u.get("department"))
    head = Departments(data.snapshot(lake, committed, "departments"), config) \
        .responsible(dept, not_user=uid)
    fnd = store.read_findings(findings.c.case_id == cid)
    ids = sorted({str(e) for ev in fnd["event_ids"] for e in ev}) if len(fnd) else []
    days = data.days_between(_s(row.get("first_seen")), _s(row.get("last_seen")))
    ev = data.read_events_by_id(lake, committed, days, ids, [uid]) \
        if ids and days else pd.DataFrame()
    pats = [str(p) for p in _json_list(row.get("patients"))] or \
        ([_s(row.get("patient_id"))] if _s(row.get("patient_id")) else [])
    if len(ev) and "patient_id" in ev.columns:
        pats = sorted(set(pats) | set(ev["patient_id"].dropna().astype(str)))
    masker.learn_patients(data.snapshot(lake, committed, "patients"), pats)
    fmt = Fmt(config.tz)
    events = [{"time": fmt.ts(r.get("ts")), "action": label(ACTION, _s(r.get("action")), lang),
               "module": _s(r.get("module")),
               "where": _s(r.get("workstation")) or _s(r.get("ip")),
               "patient": masker.pid(r.get("patient_id"))}
              for r in (ev.to_dict("records") if len(ev) else [])]
    actions = ev["action"].astype(str).value_counts() if len(ev) else pd.Series(dtype=int)
    items = [str(i) for i in _json_list(row.get("items"))] or \
        sorted({str(i) for i in fnd.get("rectification_item", [])})
    today = today or pd.Timestamp(datetime.now(timezone.utc)).tz_convert(config.tz).date()
    reply_by = today + timedelta(days=config.ledger.notice_reply_days)
    name = _s(u.get("name"))
    to = f"{name} ({uid})" if name else uid
    dets = [str(d) for d in _json_list(row.get("detectors"))]
    expected = [_(e) for i in items for e in EXPECTED.get(i, ())] + [_(ALWAYS)]
    model = {
        "number": f"{cid}-{today:%Y%m%d}", "site": config.site.name,
        "to": to, "department": dept,
        "role": label(ROLE, _s(row.get("role")) or _s(u.get("role")), lang),
        "copy_to": head.person,
        "copy_department": head.department if head.source in ("head", "parent") else "",
        "first": fmt.minute(row.get("first_seen")), "last": fmt.minute(row.get("last_seen")),
        "n_events": int(row.get("n_events") or len(ids)), "n_patients": len(pats),
        "actions": ", ".join(_("%(action)s %(n)s times", action=label(ACTION, a, lang), n=n)
                             for a, n in actions.items()),
        "summary": case_sentence(row, fnd.to_dict("records") if len(fnd) else [], lang,
                                 masker),
        "found_by": [detector_info(d, lang)["name"] for d in dets],
        "events": events[:MAX_EVENTS], "more_events": max(0, len(events) - MAX_EVENTS),
        "items": [item_info(i, lang)["zh"] for i in items],
        "rules": [_(RULES[i]) for i in items if i in RULES],
        "expected": list(dict.fromkeys(expected)),
        "reply_by": reply_by.isoformat(), "reply_to": head.person or _("your department head"),
        "today": today.isoformat(), "by": by, "case_id": cid, "masked": masker.enabled,
    }
    return Notice(model, cid, to, head.person)


def write_docx(m: dict, lang: Lang) -> bytes:
    _ = lang.gettext
    title = _("Notice on access to electronic medical records")
    doc = word.new_document(title=title, lang=lang.code)
    word.title(doc, title, _("No. %(n)s", n=m["number"]))
    for line in _addressing(m, lang):
        word.para(doc, line)
    word.heading(doc, _("1. What was seen"), 2)
    word.para(doc, _seen(m, lang), indent=True)
    word.table(doc, [_("time"), _("action"), _("module"), _("workstation"), _("patient")],
               [[e["time"], e["action"], e["module"], e["where"], e["patient"]]
                for e in m["events"]], widths=[4, 2.5, 3, 3.5, 3])
    if m["more_events"]:
        word.para(doc, _("… and %(n)s more accesses.", n=m["more_events"]), muted=True)
    word.heading(doc, _("2. The rule"), 2)
    word.para(doc, "；".join(m["items"]), bold=True)
    for r in m["rules"]:
        word.para(doc, r, indent=True)
    word.heading(doc, _("3. What is expected of you"), 2)
    word.bullets(doc, m["expected"])
    word.heading(doc, _("4. How to explain"), 2)
    word.para(doc, _explain(m, lang), indent=True)
    for line in _signatures(m, lang):
        word.para(doc, line)
    return word.to_bytes(doc)


def _addressing(m: dict, lang: Lang) -> list[str]:
    _ = lang.gettext
    out = [_("To: %(to)s, %(department)s", to=m["to"], department=m["department"] or "—")]
    if m["copy_to"] and m["copy_department"]:
        out.append(_("Copy to: %(who)s, head of %(department)s", who=m["copy_to"],
                     department=m["copy_department"]))
    elif m["copy_to"]:
        out.append(_("Copy to: %(who)s", who=m["copy_to"]))
    return out


def _seen(m: dict, lang: Lang) -> str:
    return lang.gettext(
        "The audit of the electronic medical record system's access log found %(n)s "
        "accesses by your account between %(first)s and %(last)s, concerning %(p)s patients "
        "(%(actions)s), that the records do not explain: %(why)s. This was verified and "
        "confirmed.", n=m["n_events"], first=m["first"], last=m["last"],
        p=m["n_patients"], actions=m["actions"] or "—", why=", ".join(m["found_by"]) or "—")


def _explain(m: dict, lang: Lang) -> str:
    return lang.gettext(
        "If you had a legitimate reason for these accesses (a consultation, being on duty for "
        "the patient, authorised teaching or research), explain it in writing to %(who)s by "
        "%(date)s, with what supports it (consult request, duty roster, authorisation). "
        "Without an explanation by then, the facts above are taken as accepted.",
        who=m["reply_to"], date=m["reply_by"])


def _signatures(m: dict, lang: Lang) -> list[str]:
    _ = lang.gettext
    return [_("Issued by: %(by)s, %(site)s, %(date)s", by=m["by"], site=m["site"],
              date=m["today"]),
            _("Received (signature and date): ____________________"),
            _("Department head (signature and date): ____________________")]


def notice_name(number: str, suffix: str = ".html") -> str:
    """The file name of a notice in `<reports dir>/notices` (its number: case id and day)."""
    return f"notice-{number}{suffix}"


def write_notice(config: Config, store: Store, lake: Lake, case_ref: str, *, by: str,
                 out: Path | None = None, unmask: bool = False,
                 today: date | None = None, lang: Lang | None = None,
                 suffix: str = ".html") -> Path:
    """Write the notice (HTML, or DOCX when `out` or, without `out`, `suffix` ends in
    .docx) in `lang` (default the reports' language) and record it in the case's history;
    returns the path."""
    from emraudit.rectification import record_notice

    if not (by or "").strip():
        raise UserError("--by is required: who gives the notice")
    lang = lang or Lang(config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    n = build_notice(config, store, lake, case_ref, lang, masker, by=by.strip(), today=today)
    m = n.model
    out = files.output_path(out, config.reports_dir, "notices",
                            notice_name(m["number"], suffix))
    if out.suffix.lower() == ".docx":
        files.write_bytes(out, write_docx(m, lang))
    else:
        html = make_env(lang).get_template("notice.html").render(
            css=_static("report.css"), n=m, addressing=_addressing(m, lang),
            seen=_seen(m, lang), explain=_explain(m, lang), signatures=_signatures(m, lang))
        files.write_text(out, html)
    record_notice(store, n.case_id, by=by.strip(), to=n.to, copy_to=n.copy_to,
                  path=str(out))
    log.info("notice written for a confirmed case")
    return out


__all__ = ["build_notice", "write_notice", "write_docx", "notice_name"]
