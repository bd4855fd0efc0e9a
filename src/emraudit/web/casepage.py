"""The case page of the review app: the static report's case view, plus the work on it.

The evidence (who, whom, when, the raw log lines with their source references, the
explanations tried, the activity charts, the user's earlier cases, the history) is built by
`emraudit.reports.render.case_view` exactly as for the static page, from the case's live
findings whatever scan found them. Added here: links inside the app, the assignment, the
comments, the version the disposition form expects, and what an allowlist entry can cover.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit.cases import find_case
from emraudit.config import Config
from emraudit.lake import Lake
from emraudit.reports.i18n import Lang
from emraudit.dates import parse_day
from emraudit.errors import UserError
from emraudit.rectification import STATUSES, STATUS_WORDS, status_of
from emraudit.reports.labels import DISPOSITION, RECTIFICATION, label
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _json_list, _s
from emraudit.reports.render import case_view, load_cases
from emraudit.store import Store, case_comments
from emraudit.web.queue import assignments, case_patients

ALLOW_DAYS = 90     # the default expiry offered for an allowlist entry
MAX_MEASURE = 4000  # characters of a measure taken
NOTICE_FORMATS = {"html": ".html", "docx": ".docx"}


def read_case(store: Store, case_ref: str) -> dict:
    with store.engine.connect() as c:
        return find_case(c, case_ref)


def comments(store: Store, case_id: str) -> list[dict]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(case_comments).where(case_comments.c.case_id == case_id)
                         .order_by(case_comments.c.id)).mappings().all()
    return [dict(r) for r in rows]


def add_comment(store: Store, case_id: str, by: str, text: str) -> None:
    from emraudit.store import now_utc
    text = (text or "").strip()
    if not text:
        raise UserError("the comment is empty")
    if len(text) > 4000:
        raise UserError("the comment is too long (at most 4000 characters)")
    with store.begin() as c:
        c.execute(case_comments.insert().values(case_id=case_id, by=by, at=now_utc(),
                                                text=text))


def assign(store: Store, case_id: str, assignee: str | None, by: str) -> str | None:
    """Assign the case (None or '' unassigns); returns the previous assignee."""
    from emraudit.store import case_assignments, now_utc, upsert
    before = assignments(store, [case_id]).get(case_id, {}).get("assignee")
    with store.begin() as c:
        if assignee:
            upsert(c, case_assignments, {"case_id": case_id, "assignee": assignee,
                                         "assigned_by": by, "at": now_utc()}, ["case_id"])
        else:
            c.execute(case_assignments.delete().where(case_assignments.c.case_id == case_id))
    return before


def allow_scopes(row: dict, masker: Masker, lang: Lang) -> list[tuple[str, str]]:
    """(form value, label) for what an allowlist entry of this case may cover: one of its
    patients (by position, so the page never carries an unmasked id) or one detector."""
    from emraudit.reports.labels import detector_info
    out = [(f"patient:{i}", lang.gettext("this patient: %(p)s", p=masker.pid(p)))
           for i, p in enumerate(case_patients(row))]
    out += [(f"detector:{d}", lang.gettext("this detector: %(d)s",
                                           d=detector_info(d, lang)["name"]))
            for d in _json_list(row.get("detectors"))]
    return out


def resolve_scope(row: dict, scope: str) -> dict:
    """The allowlist keyword (patient= or detector=) a form's scope value stands for."""
    kind, _, value = (scope or "").partition(":")
    if kind == "patient":
        pats = case_patients(row)
        if value.isdigit() and int(value) < len(pats):
            return {"patient": pats[int(value)]}
    elif kind == "detector" and value in [str(d) for d in _json_list(row.get("detectors"))]:
        return {"detector": value}
    raise UserError(f"allowlist scope {scope!r} is not one of this case's patients or "
                    "detectors")


# -- rectification and notices ----------------------------------------------------------------
def today_in(tz: str) -> date:
    return pd.Timestamp.now(tz=tz).date()


def refuse_unless_problem(row: dict, lang: Lang, act: str) -> None:
    """A UserError in the reader's language when the case is not a confirmed problem (what
    `emraudit.rectification.not_a_problem` says on the command line); `act`: rectify or
    notice."""
    if status_of(row) is not None:
        return
    _ = lang.gettext
    if row.get("status") != "resolved":
        raise UserError(_("This case is not verified yet: record the verification first. Only "
                          "a confirmed problem is rectified.") if act == "rectify" else
                        _("This case is not verified yet: record the verification first. "
                          "Only a confirmed problem gets a notice."))
    disp = label(DISPOSITION, str(row.get("disposition") or ""), lang)
    raise UserError(_("This case was verified as %(disposition)s: only confirmed problems (or "
                      "those handled by training) are rectified.", disposition=disp)
                    if act == "rectify" else
                    _("This case was verified as %(disposition)s: only confirmed problems (or "
                      "those handled by training) get a notice.", disposition=disp))


def rectify_request(form, row: dict, lang: Lang, tz: str) -> dict:
    """The rectification a posted form asks for (status, measure, day), checked; a mistake
    is a UserError in the reader's language."""
    _ = lang.gettext
    refuse_unless_problem(row, lang, "rectify")
    given = str(form.get("status", "")).strip()
    status = STATUS_WORDS.get(given, given)
    if status not in STATUSES:
        raise UserError(_("Choose the rectification status: %(choices)s.", choices=", ".join(
            label(RECTIFICATION, s, lang) for s in STATUSES)))
    measure = str(form.get("measure", "")).strip()
    if status == "done" and not measure:
        raise UserError(_("Say what measure was actually taken: it is required when the "
                          "problem is rectified."))
    if len(measure) > MAX_MEASURE:
        raise UserError(_("The measure is too long (at most %(n)s characters).",
                          n=MAX_MEASURE))
    text = str(form.get("date", "")).strip()
    today = today_in(tz)
    if not text:
        day = today
    else:
        try:
            day = parse_day(text, "date")
        except UserError:
            raise UserError(_("The date %(date)s is not a day: give it as year-month-day, "
                              "e.g. %(example)s.", date=text, example=today.isoformat())
                            ) from None
        if day > today:
            raise UserError(_("The date %(date)s is in the future: give the day the measure "
                              "was taken.", date=text))
    return {"status": status, "measure": measure or None, "day": day}


def notice_dir(config: Config) -> Path:
    return config.reports_dir / "notices"


def notices(config: Config, case_id: str) -> list[str]:
    """The notices written for this case (file names in the reports' notices folder)."""
    folder = notice_dir(config)
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.glob(f"notice-{case_id}-*")
                   if notice_file(config, case_id, p.name) is not None), reverse=True)


def notice_file(config: Config, case_id: str, name: str) -> Path | None:
    """The file of one of this case's notices by its name, None unless it is one."""
    suffixes = "|".join(s[1:] for s in NOTICE_FORMATS.values())
    if not re.fullmatch(rf"notice-{re.escape(case_id)}-\d{{8}}\.({suffixes})", name or ""):
        return None
    path = notice_dir(config) / name
    return path if path.is_file() else None


def rectification_view(config: Config, store: Store, lake: Lake, row: dict, lang: Lang,
                       masker: Masker) -> dict:
    """The case's 整改状态 as the ledger has it (status, measure taken, day, responsible
    person, deadline), and what the forms offer."""
    from emraudit.reports.ledger import rows_for_cases
    state = status_of(row)
    listed = state is not None or row.get("status") == "open"   # a row of the ledger
    lr = rows_for_cases(config, store, lake, [row["case_id"]], lang=lang,
                        masker=masker)[0] if listed else {}
    refusal = ""
    if state is None:
        try:
            refuse_unless_problem(row, lang, "rectify")
        except UserError as err:
            refusal = str(err)
    return {
        "applies": state is not None, "refusal": refusal, "listed": listed,
        "state": state or "",
        "status": label(RECTIFICATION, state, lang) if state else "",
        "measure": masker.scrub(row.get("rectification_measure")) if state else "",
        "date": _s(row.get("rectification_date")) if state else "",
        "by": _s(row.get("rectification_by")) if state else "",
        "suggested": lr.get("measure", ""), "responsible": lr.get("responsible", ""),
        "deadline": str(lr.get("deadline") or ""), "overdue": bool(lr.get("_overdue")),
        "statuses": [(s, label(RECTIFICATION, s, lang)) for s in STATUSES],
        "today": today_in(config.tz).isoformat(),
    }


def case_model(config: Config, store: Store, lake: Lake, row: dict, lang: Lang,
               masker: Masker) -> dict:
    """The view of one stored case with the review app's additions."""
    cid = row["case_id"]
    fmt = Fmt(config.tz)
    ld = load_cases(config, store, lake, [cid], lang, masker)
    stored = next((c for c in ld.cases if c["case_id"] == cid), row)
    masker.learn_patients(ld.ref.patients, case_patients(stored))
    view = case_view(stored, ld, config, lang, masker, fmt, set(), "")
    view["href"] = f"/cases/{cid}"
    for e in view["earlier"]:
        e["href"] = f"/cases/{e['id']}"
    a = assignments(store, [cid]).get(cid)
    view["assignee"] = _s(a["assignee"]) if a else ""
    view["assigned"] = {"by": _s(a["assigned_by"]), "at": fmt.minute(a["at"])} if a else None
    view["comments"] = [{"by": c["by"], "at": fmt.minute(c["at"]),
                         "text": masker.scrub(c["text"])} for c in comments(store, cid)]
    view["version"] = int(stored.get("version") or row.get("version") or 1)
    view["user_id_raw"] = _s(stored.get("user_id"))
    view["dispositions"] = [(d, label(DISPOSITION, d, lang)) for d in
                            ("confirmed", "justified", "false_positive", "training")]
    view["allow_scopes"] = allow_scopes(stored, masker, lang)
    view["allow_until"] = (pd.Timestamp.now(tz=config.tz) + pd.Timedelta(days=ALLOW_DAYS)) \
        .strftime("%Y-%m-%d")
    view["rect"] = rectification_view(config, store, lake, stored, lang, masker)
    view["notices"] = notices(config, cid)
    return view
