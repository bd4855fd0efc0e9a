"""A finding's structured evidence rendered as readable, escaped HTML, in the reader's language.

Evidence is a JSON object whose shape each detector chooses (explanations tried and why each
held or failed, thresholds, baselines, counts). It is rendered generically, but in words: every
key has a label in both languages (`KEY_LABELS`), code values (actions, roles, rules, units,
relation kinds …) are labelled by the table of their key (`VALUE_LABELS`), times are written
for reading, numbers rounded, and keys that only matter to the detector's internals
(`HIDDEN`) are left out. The explanations tried and an anomaly's drivers get their own compact
tables. Every string is escaped and scrubbed of patient names and ids (`Masker.scrub`).
"""

from __future__ import annotations

import math
import re

from markupsafe import Markup, escape

from emraudit.reports.explanations import explanation_text
from emraudit.reports.i18n import N_, Lang
from emraudit.reports.labels import (ACTION, CONTACT_RELATION, DUTY_BASIS, EXPLANATION_LABELS,
                                     FAMILY_BASIS, PATIENT_FLAGS, RELATION_KIND, ROLE,
                                     SHIFT_KIND, USER_STATUS, label, peer_group_label)
from emraudit.reports.masking import Masker
from emraudit.reports.text import number, when

# every evidence key of the built-in detectors, so each reads as words in both languages
KEY_LABELS = {
    # shared
    "accesses": N_("accesses"), "actions": N_("actions"), "day": N_("day"),
    "date": N_("day"), "events": N_("events"), "patients": N_("patients"),
    "department": N_("department"), "ward": N_("ward"), "role": N_("role"),
    "user": N_("user"), "thresholds": N_("thresholds"), "threshold": N_("threshold"),
    "required": N_("threshold applied"), "value": N_("value"), "unit": N_("unit"),
    "days": N_("days"), "window_minutes": N_("window (minutes)"), "reason": N_("reason"),
    "kind": N_("kind"), "result": N_("result"), "detail": N_("why"), "why": N_("why"),
    "explanation": N_("explanation"), "explanations": N_("explanations tried"),
    "explanations_tried": N_("explanations tried"), "tried": N_("explanations tried"),
    "baseline": N_("baseline"), "observed": N_("observed"), "count": N_("count"),
    "found": N_("found"), "median": N_("median"), "peer_median": N_("peers' median"),
    "ratio": N_("ratio"), "limit": N_("limit"), "features": N_("features compared"),
    "floor": N_("fixed floor"), "own_baseline": N_("the user's own usual level"),
    "peer_percentile": N_("peers' level"), "group": N_("peer group"),
    "peer_group": N_("peer group"), "duty": N_("duty hours"), "start": N_("start"),
    "end": N_("end"), "at": N_("time"), "location": N_("location"), "status": N_("status"),
    "places": N_("places"), "modules": N_("modules"), "patient_name": N_("patient name"),
    "patient_id": N_("patient id"),
    # care.no_relationship
    "patient_flags": N_("patient flags"), "query_lookup": N_("name search before opening"),
    "event_ids": N_("events"), "min_accesses": N_("fewest accesses for a finding"),
    "medium_accesses": N_("accesses for medium severity"),
    "high_accesses": N_("accesses for high severity"),
    "critical_accesses": N_("accesses for critical severity"),
    "grace_before_days": N_("grace before a relation (days)"),
    "grace_after_days": N_("grace after a relation (days)"),
    "lookback_days": N_("prior treatment look-back (days)"),
    "patient_relations": N_("the patient's relations"), "more": N_("more"),
    "explanations_for": N_("reasons checked for the access"),
    "first": N_("first access"), "last": N_("last access"),
    "spread_patients": N_("patients above which a day is one finding"),
    "spread_high_patients": N_("patients for high severity"),
    "spread_critical_patients": N_("patients for critical severity"),
    # snooping
    "explained": N_("a legitimate reason found"), "explained_by": N_("explained by"),
    "name_lookup_then_open": N_("opened right after a name search"),
    "employee_user_id": N_("coworker's account"), "same_department": N_("same department"),
    "own_record": N_("own record"), "edited": N_("edited"), "vip": N_("VIP patient"),
    "sealed": N_("sealed record"), "watch_team": N_("team allowed to read it"),
    "deceased_date": N_("date of death"), "days_after_death": N_("days after death"),
    "threshold_days": N_("days after death that count"),
    "family_basis": N_("why family"), "declared_relation": N_("declared relation"),
    "surname": N_("surname"), "surname_share_percent": N_("share of people with this surname (%)"),
    "surname_common": N_("common surname"),
    # break the glass
    "pattern": N_("pattern"), "reason_given": N_("reason given"),
    "justify_hours": N_("justification period (hours)"),
    "relations_looked_for": N_("relations looked for"),
    "accesses_after": N_("accesses afterwards"), "outputs_after": N_("printed or exported"),
    "btg_count": N_("break-the-glass events"), "patient_days": N_("patient-days of access"),
    "rate_per_100_patient_days": N_("rate per 100 patient-days"),
    "min_count": N_("fewest events"), "floor_rate": N_("floor rate"),
    "peer_percentile_rate": N_("peers' rate"), "peer_required": N_("peers' threshold"),
    # bulk viewing and export
    "distinct_patients": N_("distinct patients"),
    "peak_distinct_patients": N_("most patients in one window"),
    "peak_window_end": N_("that window ended at"),
    "explained_patient_share": N_("share of the user's own patients"),
    "explained_required": N_("threshold when most patients are the user's own"),
    "outputs": N_("printed or exported"), "basis": N_("decided by"),
    "inferred": N_("usual working hours"), "active_days": N_("days active"),
    "duty_hours": N_("usual hours"), "office_hours": N_("office hours"),
    "workdays": N_("workdays"), "records": N_("records output"),
    "peak_records_in_window": N_("most records in one window"),
    "min_patients": N_("fewest patients"), "rule": N_("rule that fired"),
    "required_unrelated": N_("threshold for patients without a care relation"),
    "peak_unrelated_in_window": N_("most records of such patients in one window"),
    "unrelated_records": N_("records of patients without a care relation"),
    "unrelated_patients": N_("patients without a care relation"),
    "unrelated_share": N_("share without a care relation"), "imaging": N_("imaging exported"),
    "severity_raised_by": N_("severity raised by"),
    # account use
    "account": N_("account"), "acting": N_("person acting"),
    "trainee_under_supervisor_account": N_("trainee under the supervisor's login"),
    "allow_supervisor_in_trainee_session": N_("supervisor allowed in a trainee's session"),
    "min_events": N_("fewest events"), "interleavings": N_("times interleaved"),
    "first_pattern": N_("first interleaving"), "place": N_("place"),
    "workstation": N_("workstation"), "ip": N_("IP address"), "session_id": N_("session"),
    "event_id": N_("event"), "shared_hosts_excluded": N_("shared terminals excluded"),
    "ip_ranges": N_("IP ranges"), "workstations": N_("workstations"),
    "min_interleavings": N_("fewest interleavings"),
    "move_minutes": N_("minutes to move between places"), "place_level": N_("place level"),
    "access_until": N_("access ended"), "days_after": N_("days after"),
    "grace_days": N_("grace (days)"), "hops": N_("moves"), "from": N_("from"), "to": N_("to"),
    "from_at": N_("left at"), "to_at": N_("arrived at"),
    "from_workstation": N_("from workstation"), "to_workstation": N_("to workstation"),
    "minutes": N_("minutes taken"), "needed_minutes": N_("minutes needed"),
    "default_travel_minutes": N_("travel time between places (minutes)"),
    "campus_travel_minutes": N_("travel times between campuses (minutes)"),
    "end_date": N_("end date"), "end_grace_days": N_("grace after the end date (days)"),
    "idle_days": N_("days without activity"),
    "last_activity_before": N_("last activity before"), "dormant_days": N_("days that count "
                                                                          "as dormant"),
    "block": N_("absence"), "edge_minutes": N_("margin at the edges (minutes)"),
    "addresses": N_("addresses used"), "patient_events": N_("patient record events"),
    "night_events": N_("events at night"), "off_duty_events": N_("events off duty"),
    "duty_basis": N_("duty decided by"), "output_events": N_("print or export events"),
    "networks": N_("the hospital's networks"),
    "min_patient_events": N_("fewest patient record events"),
    "night_hours": N_("night hours"),
    # anomalies
    "model": N_("model"), "threshold_percentile": N_("flagged above percentile"),
    "max_per_day": N_("most findings a day"), "training_window": N_("baseline days"),
    "drivers": N_("what was unusual"), "events_total": N_("events that day"),
    "event_ids_listed": N_("events listed"), "feature_values": N_("the day's figures"),
    "feature": N_("figure"), "peer_p99": N_("peers' 99th percentile"),
    "own_median": N_("own median"), "own_days": N_("own baseline days"),
    "event_count": N_("events"), "method": N_("method"), "score_kind": N_("score"),
    "similarity": N_("mean similarity"), "neighbours": N_("most similar colleagues"),
    "user_id": N_("user"), "shared_patients": N_("patients shared"),
    "window_patients": N_("patients in the window"),
    "patients_no_neighbour_touched": N_("patients no similar colleague opened"),
    "patients_nobody_else_touched": N_("patients nobody else opened"),
    "patients_listed": N_("patients listed"), "users_scored": N_("users scored"),
    "max_similarity": N_("highest similarity that counts"),
    "min_percentile": N_("flagged above percentile"), "graph_days": N_("days of history"),
    # the access-rights checks (emraudit.detectors.rights*, the class check on
    # care.no_relationship)
    "class_grants": N_("sensitive-class grants"), "classes": N_("sensitive classes"),
    "granted": N_("with a grant"), "missing": N_("without a grant"),
    "classes_without_grant": N_("classes without a grant"),
    "care_explanations": N_("care relation found"), "problems": N_("problems"),
    "refs": N_("rows it rests on"), "unusual_features": N_("unusual figures"),
    "max_per_100k_events": N_("most findings per 100,000 events"),
    "events_listed": N_("events listed"), "month": N_("month"),
    "min_workstations": N_("fewest workstations at once"),
    "min_days": N_("fewest active days judged"),
    "min_share": N_("share of days that counts"), "days_shared": N_("days used at once"),
    "grant": N_("grant"), "grant_id": N_("grant"), "granted_by": N_("granted by"),
    "granted_at": N_("granted at"), "approved_by": N_("approved by"),
    "expires_at": N_("expires at"), "revoked_at": N_("revoked at"),
    "permission": N_("permission"), "record_class": N_("record class"), "scope": N_("scope"),
    "via": N_("held through"), "peers": N_("peers"), "peer_share": N_("share of peers holding it"),
    "min_peers": N_("fewest peers to compare"),
    "max_peer_share": N_("largest share of peers that counts"),
    "unused_days": N_("days unused that count"), "last_used": N_("last used"),
    "watched_since": N_("watched since"), "policy": N_("approval policy"),
    "require_approval": N_("rights that need approval"),
    "four_eyes": N_("approver other than the granter"),
    "needs_approval": N_("this grant needs approval"), "grants": N_("grants"),
    "left": N_("left on"), "sensitive_classes": N_("sensitive classes"),
    "dated_by": N_("dated by"), "definition": N_("role definition"),
    "description": N_("description"), "permissions": N_("permissions"),
    "holders_sample": N_("holders (first 50)"),
}
# internals of a detector, not a reviewer's business (or said elsewhere on the page)
HIDDEN = {"score", "surname_bits", "label_en", "label_zh", "text", "item", "item_rule",
          "peer_tail_p", "own_tail_p", "baseline_rank", "judged_after_window_start",
          "explanation_detail", "explained_rule", "threshold_rank",
          "refs"}
# inside lists of objects (hops, drivers, first pattern) the events are on the events table
_HIDDEN_IN_LISTS = HIDDEN | {"event_ids", "peer_group"}

UNIT = {"patients": N_("patients"), "patients_per_day": N_("patients per day"),
        "records_per_window": N_("records per window")}
RULE = {"after_leaving.departed": N_("left and still holds grants"),
        "after_leaving.terminated": N_("terminated and still holds grants"),
        "after_leaving.expired": N_("access ended and grants still held"),
        "after_leaving.transferred": N_("moved and kept the former department's grant"),
        "beyond_role.peers": N_("a right few peers hold"),
        "beyond_role.role_class": N_("a role reaching a sensitive class unapproved"),
        "generic.name": N_("generic account name"),
        "generic.shared": N_("used from several workstations at once"),
        "outside_grant": N_("sensitive record read outside the grant"),
        "unapproved": N_("grant not properly approved"),
        "unapproved.role": N_("role given without proper approval"),
        "unused.last": N_("unused since its last use"), "unused.never": N_("never used"),
        "all_outputs": N_("all records printed or exported"),
        "unrelated_outputs": N_("records of patients without a care relation")}
PATTERN = {"no_relation_after": N_("no care relation followed the break-the-glass"),
           "rate_above_peers": N_("break-the-glass rate above peers")}
RAISED_BY = {"imaging": N_("imaging exported"),
             "unrelated_patients": N_("patients without a care relation")}
INACTIVE_REASON = {"departed": N_("departed or terminated"), "dormant": N_("long unused"),
                   "terminated": N_("terminated"), "expired": N_("time-limited access ended"),
                   "transferred": N_("moved to another department")}
DATED_BY = {"first_held": N_("the first time the role was held")}
PLACE_LEVEL = {"department": N_("department"), "location": N_("location"),
               "campus": N_("campus")}
MODEL = {"ecod": "ECOD", "copod": "COPOD", "iforest": "IForest", "hbos": "HBOS",
         "ensemble": N_("ensemble of models"), "cosine": N_("cosine similarity"),
         "svd": N_("similarity of SVD embeddings"), "similarity": N_("similarity"),
         "foreign": N_("patients of another care community")}
RESULT_WORDS = {"held": N_("held"), "failed": N_("failed")}
YES, NO = N_("yes"), N_("no")
MORE = N_("(+%(n)s more)")

# how the string values (or, for a dict, its keys) under a key read
from emraudit.reports.rights_text import (CLASS as _CLASS, PERMISSION as _PERMISSION,  # noqa: E402
                                          PROBLEM as _PROBLEM, SCOPE as _SCOPE, VIA as _VIA)

VALUE_LABELS: dict[str, dict] = {
    "actions": ACTION, "role": ROLE, "status": USER_STATUS, "patient_flags": PATIENT_FLAGS,
    "family_basis": FAMILY_BASIS, "declared_relation": CONTACT_RELATION,
    "basis": DUTY_BASIS, "duty_basis": DUTY_BASIS, "duty": DUTY_BASIS,
    "kind": {**SHIFT_KIND, **RELATION_KIND}, "unit": UNIT, "rule": RULE,
    "pattern": PATTERN, "severity_raised_by": RAISED_BY, "reason": INACTIVE_REASON,
    "place_level": PLACE_LEVEL, "explained_by": EXPLANATION_LABELS,
    "explanation": EXPLANATION_LABELS, "model": MODEL, "method": MODEL, "score_kind": MODEL,
    "result": RESULT_WORDS,
    # the access-rights audit: sensitive-class codes and the care explanations found
    "classes": _CLASS, "classes_without_grant": _CLASS, "missing": _CLASS, "granted": _CLASS,
    "care_explanations": EXPLANATION_LABELS, "problems": _PROBLEM,
    "record_class": _CLASS, "permission": _PERMISSION, "scope": _SCOPE, "via": _VIA,
    "permissions": _PERMISSION, "sensitive_classes": _CLASS, "dated_by": DATED_BY,
    "require_approval": {**_PERMISSION, "sensitive": N_("sensitive classes")},
}
_FEATURE_KEYS = {"features", "feature", "feature_values", "unusual_features"}
# free text copied from the hospital's own data (a reason typed into the EMR, a surname):
# shown verbatim, in whatever language it was written, marked as such
RAW_KEYS = {"reason_given", "surname"}
_GROUP_KEYS = {"group", "peer_group"}
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
_HIGHLIGHT = re.compile(r"explan|threshold|baseline|limit|median|expected|required|rule")
_MAX_ITEMS = 50
# columns shown first in a list of objects (stable sort keeps the rest in their order)
_FIRST = ["explanation", "feature", "name", "kind", "result", "held", "value", "required"]


def key_label(key: str, lang: Lang) -> str:
    if key in KEY_LABELS:
        return lang.gettext(KEY_LABELS[key])
    return str(key).replace("_", " ")


def _h(v) -> str:
    """What Markup.format would put in a field: Markup as it is, anything else escaped.
    Pieces are joined as plain text and marked safe once: Markup.format runs a Python
    formatter per field, a third of the time of a case page."""
    return str(escape(v))


_NONE = '<span class="muted">—</span>'


def _feature(code, lang: Lang) -> str:
    from emraudit.detectors.anomaly.features import FEATURES
    info = FEATURES.get(str(code), {})
    return info.get(lang.code) or info.get("en") or str(code)


def _code_label(key: str | None, v: str, lang: Lang) -> str | None:
    """The label of a code value under `key`, or None when it is not a known code."""
    if key in _FEATURE_KEYS:
        return _feature(v, lang)
    table = VALUE_LABELS.get(key or "")
    if table is not None and v in table:
        return lang.gettext(table[v])
    if table is not None and ";" in v:          # a list kept as one cell: read;print
        parts = [p.strip() for p in v.split(";") if p.strip()]
        if parts and all(p in table for p in parts):
            return ("、" if lang.code == "zh" else ", ").join(lang.gettext(table[p])
                                                              for p in parts)
    return None


def _scalar(v, lang: Lang, masker: Masker, key: str | None = None) -> Markup:
    if v is None:
        return Markup(_NONE)
    if isinstance(v, bool):
        return Markup(f'<span class="yes">{_h(lang.gettext(YES))}</span>') if v else \
            Markup(f'<span class="no">{_h(lang.gettext(NO))}</span>')
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return Markup(_NONE)
    if isinstance(v, (int, float)):
        return escape(number(v))
    s = str(v)
    if key in _GROUP_KEYS:
        return escape(peer_group_label(s, lang))
    coded = _code_label(key, s, lang)
    if coded is not None:
        if key == "result":
            return Markup(f'<span class="{"yes" if s == "held" else "no"}">{_h(coded)}</span>')
        return escape(coded)
    if _ISO.match(s):
        return escape(when(s))
    if key in RAW_KEYS:
        return Markup(f'<span class="raw">{_h(masker.scrub(s))}</span>')
    return escape(masker.scrub(s))


def _explanations(items: list, lang: Lang, masker: Masker) -> Markup:
    """The explanations tried: one row each, what it is, held or not, why in words."""
    head = "".join(f"<th>{_h(key_label(k, lang))}</th>" for k in ("explanation", "result",
                                                                    "detail"))
    rows = []
    for e in items:
        if not isinstance(e, dict):
            continue
        name = str(e.get("explanation", ""))
        why = explanation_text(e, lang, masker)
        rows.append(f"<tr><td>{_h(label(EXPLANATION_LABELS, name, lang))}</td>"
                    f"<td>{_h(_scalar(e.get('result'), lang, masker, 'result'))}</td>"
                    f"<td>{_h(why) if why else _NONE}</td></tr>")
    return Markup('<div class="ev-wrap"><table class="ev-list ev-expl"><thead><tr>' + head
                  + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _object_table(items: list, lang: Lang, masker: Masker, depth: int) -> str:
    keys: list[str] = []
    for x in items:
        keys += [k for k in x if k not in keys and k not in _HIDDEN_IN_LISTS]
    keys.sort(key=lambda k: _FIRST.index(k) if k in _FIRST else len(_FIRST))
    head = "".join(f"<th>{_h(key_label(k, lang))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_h(render_evidence(x.get(k), lang, masker, depth + 1, k))}"
                         "</td>" for k in keys) + "</tr>"
        for x in items)
    return ('<div class="ev-wrap"><table class="ev-list"><thead><tr>' + head
            + "</tr></thead><tbody>" + body + "</tbody></table></div>")


def render_evidence(obj, lang: Lang, masker: Masker, depth: int = 0,
                    key: str | None = None) -> Markup:
    """HTML for one evidence value under `key` (escaped; never raises on odd shapes)."""
    if isinstance(obj, dict):
        if not obj:
            return Markup(_NONE)
        rows = []
        for k, v in obj.items():
            k = str(k)
            if k in HIDDEN:
                continue
            # a dict keyed by codes (actions: counts, feature values) labels its keys; a
            # key that is no code of the table is a field (duty: {basis: …})
            coded = _code_label(key, k, lang) if (key in VALUE_LABELS or
                                                   key in _FEATURE_KEYS) else None
            if coded is not None:
                name, inner = coded, key
            else:
                name, inner = key_label(k, lang), k
            cls = ' class="hl"' if _HIGHLIGHT.search(k) and inner == k else ""
            rows.append(f"<tr{cls}><th>{_h(name)}</th>"
                        f"<td>{_h(render_evidence(v, lang, masker, depth + 1, inner))}</td>"
                        "</tr>")
        return Markup('<table class="ev">' + "".join(rows) + "</table>")
    if isinstance(obj, (list, tuple)):
        if not obj:
            return Markup(_NONE)
        if key in ("explanations", "explanations_tried") and all(isinstance(x, dict)
                                                                 for x in obj):
            return _explanations(list(obj), lang, masker)
        items = list(obj)[:_MAX_ITEMS]
        more = len(obj) - len(items)
        if all(isinstance(x, dict) for x in items) and depth < 4:
            out = _object_table(items, lang, masker, depth)
        else:
            sep = "、" if lang.code == "zh" else ", "
            out = sep.join(_h(render_evidence(x, lang, masker, depth + 1, key)) for x in items)
        if more > 0:
            out += f' <span class="muted">{_h(lang.gettext(MORE, n=more))}</span>'
        return Markup(out)
    return _scalar(obj, lang, masker, key)


def group_repeats(findings: list[dict]) -> list[dict]:
    """A case's findings by detector, in the order of each detector's first (most severe)
    finding: the first is shown whole, the others of the same detector (a VIP looked at on
    twelve days: twelve near-identical blocks) are collapsed under it."""
    groups: dict[str, dict] = {}
    for f in findings:
        g = groups.get(f["detector"])
        if g is None:
            groups[f["detector"]] = {"detector": f["detector"], "first": f, "rest": []}
        else:
            g["rest"].append(f)
    return list(groups.values())
