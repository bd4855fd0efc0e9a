"""Sentences and labels of the access-rights audit, in every report language.

A rights finding stores the rule that fired (`evidence.rule`), its message id (the detector's
id and the rule) and its arguments as data (`message_args`: ids, counts, dates and codes,
never words). Each rule's template is declared here and rendered, like every finding's
sentence, by emraudit.reports.text, which turns the codes (rights, classes, problems, roles)
into labels of the reader's language through the helpers below.
"""

from __future__ import annotations

from emraudit.access_rights import split_list
from emraudit.reports.i18n import N_, Np_, Lang

PERMISSION = {"read": N_("read"), "write": N_("write"), "print": N_("print"),
              "export": N_("export"), "break_glass": N_("break the glass"),
              "grant": N_("grant rights"), "all": N_("all permissions")}
CLASS = {"psychiatric": N_("psychiatric"), "infectious": N_("infectious disease/HIV"),
         "reproductive": N_("reproductive health"), "minor": N_("minors"),
         "vip": N_("VIP"), "sealed": N_("sealed")}
SCOPE = {"own": N_("own department"), "all": N_("whole hospital")}
VIA = {"role": N_("through role"), "role_grant": N_("grant to a role"),
       "grant": N_("own grant")}
PROBLEM = {
    "self_granted": N_("granted by the holder themselves"),
    "self_approved": N_("approved by the holder themselves"),
    "no_granter": N_("no record of who granted it"),
    "no_approval": N_("no approval, which the policy requires"),
    "same_person": N_("granted and approved by the same person"),
}

# rule -> template (or (singular, plural, count argument): English picks by the count);
# arguments are filled as %(name)s after the codes among them are labelled
MESSAGES: dict[str, str | tuple[str, str, str]] = {
    "beyond_role.peers": N_("%(user)s holds %(right)s (grant %(grant)s), which only "
                            "%(holders)s of %(peers)s peers (%(role)s, %(department)s) hold"),
    "beyond_role.role_class": N_("role %(role)s reaches %(classes)s records for its "
                                 "%(holders)s holders, and no approval of the role's "
                                 "definition is recorded"),
    "unused.last": N_("%(user)s has not used %(right)s (grant %(grant)s, granted "
                      "%(granted)s) for %(idle)s days, since %(last_used)s"),
    "unused.never": N_("%(user)s has not used %(right)s (grant %(grant)s, granted "
                       "%(granted)s) in the %(idle)s days the tool has watched"),
    "after_leaving.departed": Np_(
        "%(user)s left on %(left)s and still holds %(count)s grant",
        "%(user)s left on %(left)s and still holds %(count)s grants") + ("count",),
    "after_leaving.terminated": Np_(
        "%(user)s is terminated and still holds %(count)s grant",
        "%(user)s is terminated and still holds %(count)s grants") + ("count",),
    "after_leaving.expired": Np_(
        "%(user)s (%(role)s) had access until %(left)s and still holds %(count)s grant",
        "%(user)s (%(role)s) had access until %(left)s and still holds %(count)s grants")
    + ("count",),
    "after_leaving.transferred": N_("%(user)s now works in %(department)s and still holds "
                                    "%(right)s granted for %(old_department)s (grant "
                                    "%(grant)s)"),
    "generic.name": N_("%(user)s looks like a generic or shared account (%(match)s): used "
                       "on %(days)s days from %(workstations)s workstations"),
    "generic.shared": N_("%(user)s was used from %(min_workstations)s or more workstations "
                         "within %(minutes)s minutes on %(shared_days)s of %(days)s active "
                         "days"),
    "unapproved": N_("grant %(grant)s of %(right)s to %(holder)s: %(problems)s"),
    "unapproved.role": N_("grant %(grant)s of role %(role)s to %(holder)s: %(problems)s"),
    "outside_grant": Np_(
        "%(user)s accessed the record of patient %(patient)s (%(classes)s) %(count)s time on "
        "%(day)s (%(actions)s) without a grant for that class",
        "%(user)s accessed the record of patient %(patient)s (%(classes)s) %(count)s times on "
        "%(day)s (%(actions)s) without a grant for that class") + ("count",),
}


# a rule's message id is its detector's id and the rule ("rights.unused.last"): the rule's
# first word names the detector (generic -> rights.generic_account)
_DETECTOR_OF_RULE = {"generic": "rights.generic_account"}


def message_id(rule: str) -> str:
    head, _, rest = rule.partition(".")
    det = _DETECTOR_OF_RULE.get(head, "rights." + head)
    return det + ("." + rest if rest else "")


def rule_messages(detector_id: str) -> dict:
    """The `messages` a rights detector declares: one per rule of its own, the same
    templates as `sentence` (emraudit.reports.text renders them through ARG_KINDS)."""
    from emraudit.detectors.message import Message
    out = {}
    for rule, template in MESSAGES.items():
        mid = message_id(rule)
        if mid != detector_id and not mid.startswith(detector_id + "."):
            continue
        if isinstance(template, tuple):
            singular, plural, count = template
            out[mid] = Message((singular, plural), count=count)
        else:
            out[mid] = Message(template)
    return out


def _label(table: dict, code, lang) -> str:
    code = "" if code is None else str(code)
    return lang.gettext(table[code]) if code in table else code


def problem_text(code, lang) -> str:
    return _label(PROBLEM, code, lang)


def classes_text(value, lang) -> str:
    parts = split_list(value) if not isinstance(value, list) else value
    return "、".join(_label(CLASS, c, lang) for c in parts) if lang.code == "zh" else \
        ", ".join(_label(CLASS, c, lang) for c in parts)


def permissions_text(value, lang) -> str:
    """'read, print' from 'read;print' (labels of the language)."""
    joiner = "、" if lang.code == "zh" else ", "
    return joiner.join(_label(PERMISSION, p, lang) for p in split_list(value))


def right_text(right: dict, lang) -> str:
    """'read on psychiatric records (whole hospital)' from permission, class and scope."""
    perm = permissions_text(right.get("permission"), lang)
    cls = right.get("record_class") or ""
    if cls:
        out = lang.gettext(N_("%(permission)s on %(classes)s records"), permission=perm,
                           classes=classes_text(cls, lang))
    else:
        out = lang.gettext(N_("%(permission)s on ordinary records"), permission=perm)
    scope = right.get("scope") or ""
    if scope:
        where = _label(SCOPE, scope, lang) if scope in SCOPE else scope
        out += lang.gettext(N_(" (%(scope)s)"), scope=where)
    return out
