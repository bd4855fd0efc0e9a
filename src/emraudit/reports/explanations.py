"""The explanation engine's verdicts in words, per language.

For each access the engine (emraudit.detectors.explain) records which legitimate reasons held
and the facts behind each verdict as data: the relation found, the grace periods, the ward
the user was on duty on, the user's role. This module says them in the reader's language:
`explanation_text(entry, lang, masker)` for one {explanation, result, detail} entry of a
finding's evidence, `relation_text` for one care relation. Findings stored before the facts
were data carry an English text instead: it is shown as it is (scrubbed) in English and left
out in Chinese.
"""

from __future__ import annotations

from emraudit.detectors.message import Clause, Message
from emraudit.reports.i18n import N_, Lang
from emraudit.reports.masking import Masker
from emraudit.reports.text import as_lang, render

RELATION = Message(N_("%(kind)s %(start)s – %(end)s"),
                   clauses=(Clause("department", N_(", %(department)s")),
                            Clause("ward", N_(", ward %(ward)s")),
                            Clause("user", N_(", staff %(user)s"))))
RELATION_OPEN = Message(N_("%(kind)s since %(start)s (ongoing)"), clauses=RELATION.clauses)
NO_RELATIONS = N_("none on file")
MORE = N_("(+%(more)s more)")

HELD = {
    "duty_ward": Message(N_("on duty on ward %(ward)s; the patient: %(where)s")),
    "prior_treatment": Message(N_("treated this patient within the last %(days)s days")),
    "documentation": Message(N_("documented on this patient (create, update or sign) within "
                                "%(hours)s h or in the same encounter")),
    "worked_on_ward": Message(N_("worked on ward %(ward)s within %(hours)s h (explained "
                                 "accesses to other patients there)")),
    "break_glass": Message(N_("broke the glass on this patient within %(hours)s h before")),
    "record_role": Message(N_("%(role)s, within its office hours")),
}
FAILED = {
    "own_relation": Message(N_("no relation of this user active then (grace: %(before)s days "
                               "before, %(after)s days after)")),
    "unit_relation": Message(N_("the user's department %(department)s / ward %(ward)s had no "
                                "relation active then; the patient's relations: "
                                "%(relations)s")),
    "duty_ward": Message(N_("on duty on ward %(ward)s, but the patient was not there")),
    "no_duty": Message(N_("no duty shift on a ward at that time")),
    "request_relation": Message(N_("no consult, order, appointment or access request (grace: "
                                   "%(before)s days before, %(after)s days after)")),
    "prior_treatment": Message(N_("no treatment of this patient within %(days)s days before")),
    "documentation": Message(N_("no create, update or sign on this patient within %(hours)s h "
                                "or in the same encounter")),
    "documentation_off": Message(N_("not used (documentation_explains = false)")),
    "worked_on_ward": Message(N_("no explained work on the patient's ward within %(hours)s "
                                 "h")),
    "break_glass": Message(N_("no break-the-glass within %(hours)s h before")),
    "record_role": Message(N_("%(role)s, but outside its office hours")),
    "not_record_role": Message(N_("%(role)s is not a records role")),
}


def relation_text(rel, lang: Lang | str, masker: Masker) -> str:
    """One care relation: kind, dates, department, ward, staff member."""
    lang = as_lang(lang)
    if not isinstance(rel, dict):
        return lang.gettext(NO_RELATIONS)
    return render(RELATION if rel.get("end") else RELATION_OPEN, rel, lang, masker)


def _relations(rels, more, lang: Lang, masker: Masker) -> str:
    rels = [r for r in (rels or []) if isinstance(r, dict)]
    if not rels:
        return lang.gettext(NO_RELATIONS)
    sep = "；" if lang.code == "zh" else "; "
    out = sep.join(relation_text(r, lang, masker) for r in rels)
    if isinstance(more, int) and more > 0:
        out += " " + lang.gettext(MORE, more=more)
    return out


def explanation_text(entry: dict, lang: Lang | str, masker: Masker) -> str:
    """Why one explanation held or failed, in words ('' when nothing is known)."""
    lang = as_lang(lang)
    name, held = str(entry.get("explanation", "")), entry.get("result") == "held"
    d = entry.get("detail")
    if isinstance(d, str):          # stored before the facts were data: English text
        return masker.scrub(d) if lang.code == "en" else ""
    if not isinstance(d, dict) or not d:
        return ""
    if held:
        if "relation" in d and name != "duty_ward":
            return relation_text(d["relation"], lang, masker)
        msg = HELD.get(name)
        if msg is None:
            return ""
        args = dict(d)
        if name == "duty_ward":
            args["where"] = relation_text(d.get("relation"), lang, masker)
        return render(msg, args, lang, masker)
    args = {"before": d.get("grace_before_days"), "after": d.get("grace_after_days"), **d}
    if name == "unit_relation":
        args["relations"] = _relations(d.get("patient_relations"), d.get("more"), lang, masker)
        return render(FAILED[name], args, lang, masker)
    if name == "duty_ward":
        return render(FAILED["duty_ward" if d.get("ward") else "no_duty"], args, lang, masker)
    if name == "documentation" and d.get("off"):
        return render(FAILED["documentation_off"], args, lang, masker)
    if name == "record_role":
        key = "record_role" if d.get("record_role") else "not_record_role"
        return render(FAILED[key], args, lang, masker)
    msg = FAILED.get(name)
    return render(msg, args, lang, masker) if msg else ""


__all__ = ["explanation_text", "relation_text"]
