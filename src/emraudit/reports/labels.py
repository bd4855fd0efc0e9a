"""Labels for codes shown in reports (severity, status, disposition, action, role, item).

Each label is an English source string marked with `N_` so that the catalog extraction sees
it; it is translated where shown (`Lang.gettext`). The rectification items keep their
official Chinese wording in every language, with an English gloss beside it.
"""

from __future__ import annotations

from emraudit.model import RECTIFICATION_ITEMS
from emraudit.reports.i18n import N_, Lang

SEVERITY = {"critical": N_("critical"), "high": N_("high"), "medium": N_("medium"),
            "low": N_("low")}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
STATUS = {"open": N_("open"), "resolved": N_("resolved"), "suppressed": N_("suppressed"),
          "reopened": N_("reopened"), "retracted": N_("retracted")}
DISPOSITION = {"confirmed": N_("confirmed"), "false_positive": N_("false positive"),
               "justified": N_("justified"), "training": N_("training")}
SCAN_STATUS = {"running": N_("running"), "committed": N_("completed"), "failed": N_("failed"),
               "interrupted": N_("interrupted")}
HISTORY_ACTION = {"opened": N_("opened"), "resolved": N_("resolved"),
                  "reopened": N_("reopened"), "updated": N_("updated"),
                  "rectified": N_("rectification"), "notice": N_("notice given")}
# the rectification (整改) of a confirmed problem, apart from its verification
RECTIFICATION = {"pending": N_("to rectify"), "in_progress": N_("rectifying"),
                 "done": N_("rectified")}
ACTION = {
    "view": N_("view"), "query": N_("query"), "create": N_("create"), "update": N_("update"),
    "delete": N_("delete"), "sign": N_("sign"), "print": N_("print"), "export": N_("export"),
    "copy": N_("copy"), "download": N_("download"), "login": N_("login"),
    "logout": N_("logout"), "login_failed": N_("failed login"),
    "break_glass": N_("break the glass"),
}
ROLE = {
    "physician": N_("physician"), "nurse": N_("nurse"), "technician": N_("technician"),
    "pharmacist": N_("pharmacist"), "trainee": N_("trainee"),
    "medical_records": N_("medical records"), "quality_control": N_("quality control"),
    "insurance": N_("insurance office"), "admin": N_("administration"), "it": N_("IT"),
    "other": N_("other"),
}
# the canonical tables, as a report names them
TABLE = {"access_log": N_("access log"), "users": N_("staff"), "patients": N_("patients"),
         "care_relations": N_("care relations"), "patient_contacts": N_("patient contacts"),
         "shifts": N_("duty roster"), "workstations": N_("workstations"),
         "departments": N_("departments"), "grants": N_("access grants"),
         "roles": N_("role definitions")}
USER_STATUS = {"active": N_("active"), "leave": N_("on leave"),
               "terminated": N_("terminated")}
KIND = {"patient": N_("patient case"), "account": N_("account case"),
        "incident": N_("incident"), "feed_gap": N_("feed gap")}
# the points of emraudit.risk, as a reviewer reads them
RISK_FACTOR = {"severity": N_("severity"), "special_patient": N_("protected patient"),
               "lookup": N_("name look-up before opening"),
               "output": N_("records left the system"), "breadth": N_("patients touched"),
               "volume": N_("events"), "detectors": N_("detectors agreeing"),
               "history": N_("earlier confirmed cases")}
# emraudit.feeds: the unit a feed-gap case is about
FEED_DIMENSION = {"department": N_("department"), "ward": N_("ward"), "role": N_("role"),
                  "source": N_("source"), "site": N_("site")}
PATIENT_FLAGS = {"vip": N_("VIP"), "employee": N_("employee"), "sensitive": N_("sensitive"),
                 "watch": N_("sealed record"), "deceased": N_("deceased")}

# kinds of care relation (model.RELATION_KINDS) and of roster blocks (model.SHIFT_KINDS)
RELATION_KIND = {
    "admission": N_("admission"), "outpatient": N_("outpatient visit"),
    "consult": N_("consult"), "order": N_("order"), "appointment": N_("appointment"),
    "care_team": N_("care team"), "transfer": N_("transfer"), "document": N_("document"),
    "access_request": N_("access request"),
}
SHIFT_KIND = {"duty": N_("on duty"), "leave": N_("on leave"), "surgery": N_("in surgery"),
              "offsite": N_("offsite")}
# how a patient is family of the user (snoop.family), and declared contacts' relations
FAMILY_BASIS = {"declared_contact": N_("a declared contact"),
                "same_surname": N_("the same surname"), "same_address": N_("the same address"),
                "same_phone": N_("the same phone number")}
CONTACT_RELATION = {"spouse": N_("spouse"), "parent": N_("parent"), "child": N_("child"),
                    "sibling": N_("sibling"), "guarantor": N_("guarantor"),
                    "emergency": N_("emergency contact"), "other": N_("other relation")}
# what decided whether an access was off duty (bulk.off_hours)
DUTY_BASIS = {"roster": N_("by the duty roster"),
              "inferred": N_("by the hours the user usually works"),
              "office_hours": N_("by office hours")}

# access-log fields whose fill rate the coverage card shows
FIELD = {"module": N_("module"), "workstation": N_("workstation"), "ip": N_("IP address"),
         "session_id": N_("session")}

# the explanation engine's names (emraudit.detectors.explain.EXPLANATIONS)
EXPLANATION_LABELS = {
    "own_relation": N_("own care relation"),
    "unit_relation": N_("the department or ward cares for the patient"),
    "duty_ward": N_("on duty on the patient's ward"),
    "request_relation": N_("consult, order, appointment or access request"),
    "prior_treatment": N_("treated the patient before"),
    "documentation": N_("documented on the patient"),
    "break_glass": N_("break the glass"),
    "record_role": N_("records role (medical records, quality control, insurance)"),
    "worked_on_ward": N_("worked on the patient's ward that shift"),
}

ITEM_GLOSS = {
    "8": "Item 8 — leaking patient privacy: staff retaining, photographing, copying or "
         "spreading patient images and medical record information",
    "9": "Item 9 — inadequate management of the electronic medical record system: unrelated "
         "staff freely viewing patient records; login keys and passwords lent to others",
    "6": "Item 6 — non-standard writing and management of medical documents: forged or "
         "altered records",
}
ITEM_SHORT = {"8": N_("Item 8: patient privacy leak"),
              "9": N_("Item 9: EMR system management"),
              "6": N_("Item 6: medical documents")}


def label(table: dict, code, lang: Lang) -> str:
    if code is None or str(code) == "" or str(code) == "nan":
        return ""
    try:
        return lang.gettext(table[code]) if code in table else str(code)
    except TypeError:       # unhashable: not a code
        return str(code)


def peer_group_label(group, lang: Lang) -> str:
    """A peer group key ("nurse|骨科", "nurse", "all") in words: role · department."""
    g = "" if group is None else str(group)
    if g in ("", "all"):
        return lang.gettext("all staff")
    role, _, dept = g.partition("|")
    return " · ".join(x for x in (label(ROLE, role, lang), dept) if x)


def item_info(code: str, lang: Lang) -> dict:
    code = str(code)
    return {"code": code, "zh": RECTIFICATION_ITEMS.get(code, code),
            "en": ITEM_GLOSS.get(code, ""),
            "short": lang.gettext(ITEM_SHORT[code]) if code in ITEM_SHORT else code}


def detector_info(det_id: str, lang: Lang) -> dict:
    """The declaration of a detector for display; a detector no longer installed still
    shows by id."""
    try:
        from emraudit.detectors.registry import get
        cls = get(det_id)
    except Exception:  # noqa: BLE001 - unknown or broken detector: show the id
        return {"id": det_id, "name": det_id, "name_zh": det_id, "name_en": det_id,
                "description": "", "note": "", "false_positives": [], "measure": "",
                "measure_zh": "", "measure_en": "", "item": "", "kind": ""}
    zh, en = cls.name_zh or cls.id, cls.name_en or cls.id
    mzh, men = cls.measure_zh or cls.measure_en, cls.measure_en or cls.measure_zh
    in_zh = lang.code == "zh"
    # a plug-in without Chinese prose shows its English rather than nothing
    return {"id": det_id, "name": zh if in_zh else en, "name_zh": zh,
            "name_en": en,
            "description": (cls.description_zh if in_zh else "") or cls.description,
            "note": (cls.note_zh if in_zh else "") or cls.note,
            "false_positives": list((cls.false_positives_zh if in_zh else ())
                                    or cls.false_positives),
            "measure": mzh if in_zh else men, "measure_zh": mzh,
            "measure_en": men, "item": cls.item, "kind": cls.kind}
