"""Sentences for reviewers, in their language: a finding's message rendered from its data.

Detectors store a finding's sentence as data: `message_id` (declared in the detector's
`messages`) and `message_args` (the facts). `finding_sentence(row, lang, masker)` is the one
function that turns a finding into the sentence a reviewer reads, wherever it is read: case
pages, dashboard, ledger, findings.jsonl, `emraudit cases`. Templates are gettext msgids
translated by the catalogs; arguments are formatted by *kind* (one vocabulary for every
message, `ARG_KINDS`): patient ids through the Masker, codes (roles, actions, patient flags)
through the label tables, numbers and times for reading.

The stored `summary` is the same sentence in English, unmasked (`english_summary`, called when
a finding is built). Findings stored before messages existed have only that summary: they are
shown as it in English and as a generic sentence in Chinese, never as English on a zh page.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

from emraudit.detectors.message import Clause, Message
from emraudit.reports.i18n import N_, Np_, Lang
from emraudit.reports.labels import (ACTION, CONTACT_RELATION, DUTY_BASIS, FAMILY_BASIS,
                                     PATIENT_FLAGS, RELATION_KIND, ROLE, SEVERITY, label,
                                     peer_group_label)
from emraudit.reports.masking import Masker

# how each argument is formatted, by name (one vocabulary across messages; an argument not
# listed is a number when it is one, else text scrubbed of patient names and ids)
ARG_KINDS: dict[str, str] = {
    "user": "id", "account": "id", "acting": "id", "coworker": "id",
    "patient": "patient",
    "day": "text", "department": "name", "ward": "name", "from": "name", "to": "name",
    "start": "time", "end": "time", "at": "time", "until": "date", "end_date": "date",
    "role": "role", "flags": "flags", "actions": "actions", "places": "names",
    "basis": "duty_basis", "family": "family_basis", "relation": "contact_relation",
    "group": "group", "drivers": "drivers", "percent": "percent", "kind": "relation_kind",
    # the access-rights audit (emraudit.reports.rights_text: codes put in words)
    "grant": "id", "holder": "id", "right": "right", "classes": "classes",
    "problems": "problems",
}

FALLBACK = Message(N_("%(detector)s: account %(user)s, patient %(patient)s"))
FALLBACK_ACCOUNT = Message(N_("%(detector)s: account %(user)s"))
MORE_FINDINGS = Np_(" (+%(num)s more finding)", " (+%(num)s more findings)")
RAISED = N_("; severity raised from %(from)s to %(to)s: %(reasons)s")
AGREE = Np_("%(num)s detector agrees", "%(num)s detectors agree")
REPEAT = Np_("repeat offender: %(num)s earlier confirmed case",
             "repeat offender: %(num)s earlier confirmed cases")
REPEAT_UNCOUNTED = N_("repeat offender (an earlier case of this account was confirmed)")
DRIVER = Message(N_("%(feature)s %(value)s (peers: median %(median)s, 99th percentile "
                    "%(p99)s)"))
DRIVER_OWN = Message(N_("%(feature)s %(value)s (peers: median %(median)s, 99th percentile "
                        "%(p99)s; own median %(own)s over %(own_days)s days)"))


def as_lang(lang: Lang | str) -> Lang:
    return lang if isinstance(lang, Lang) else _lang(lang)


@lru_cache(maxsize=None)
def _lang(code: str) -> Lang:
    return Lang(code)


def joiner(lang: Lang) -> str:
    """The list separator of the language (、 in Chinese)."""
    return "、" if lang.code == "zh" else ", "


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def number(v) -> str:
    """A number for reading: whole numbers with thousands separators, else 2 decimals at
    most."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "—"
        if v != int(v) or abs(v) >= 1e15:
            return f"{v:,.2f}".rstrip("0").rstrip(".")
        v = int(v)
    return f"{v:,}"


def when(v, date_only: bool = False) -> str:
    """An ISO time written by a detector (site timezone) as 'YYYY-MM-DD HH:MM'."""
    s = str(v)
    if len(s) >= 16 and s[10] in "T ":
        return s[:10] if date_only else s[:10] + " " + s[11:16]
    return s


def format_arg(name: str, value, lang: Lang, masker: Masker) -> str:
    """One argument as text in `lang` (patients masked, codes labelled)."""
    kind = ARG_KINDS.get(name)
    if _blank(value) or value == []:
        return lang.gettext("unknown role") if kind == "role" else "—"
    if kind == "patient":
        return masker.pid(value)
    if kind == "id":
        return str(value)
    if kind in ("time", "date"):
        return when(value, kind == "date")
    if kind == "percent":
        return f"{float(value):.2f}"
    if kind in ("right", "classes", "problems"):
        from emraudit.reports import rights_text
        if kind == "right":
            return rights_text.right_text(value if isinstance(value, dict) else {}, lang)
        if kind == "classes":
            return rights_text.classes_text(value, lang)
        sep = "；" if lang.code == "zh" else "; "
        vals = value if isinstance(value, (list, tuple)) else [value]
        return sep.join(rights_text.problem_text(v, lang) for v in vals)
    if kind == "actions" and isinstance(value, dict):     # {action: times}
        return joiner(lang).join(f"{label(ACTION, a, lang)} {number(n)}"
                                 for a, n in sorted(value.items()))
    if kind in _LABELLED:
        vals = value if isinstance(value, (list, tuple)) else [value]
        return joiner(lang).join(label(_LABELLED[kind], v, lang) for v in vals)
    if kind == "group":
        return peer_group_label(value, lang)
    if kind == "drivers":
        sep = "；" if lang.code == "zh" else "; "
        return sep.join(driver_text(d, lang, masker) for d in value if isinstance(d, dict))
    if isinstance(value, (list, tuple)):
        return joiner(lang).join(masker.scrub(str(v)) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    return masker.scrub(str(value))


# argument kinds that are codes, with the table of their labels
_LABELLED = {"role": ROLE, "flags": PATIENT_FLAGS, "actions": ACTION, "duty_basis": DUTY_BASIS,
             "family_basis": FAMILY_BASIS, "contact_relation": CONTACT_RELATION,
             "relation_kind": RELATION_KIND}


class _Args(dict):
    """Formatted arguments; a placeholder with no argument reads as a dash, never a crash."""

    def __missing__(self, key):
        return "—"


def _part(text, count: str | None, args: dict, fmt: _Args, lang: Lang) -> str:
    if isinstance(text, tuple):
        n = args.get(count)
        n = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else 0
        return lang.t.ngettext(text[0], text[1], n) % fmt
    return lang.t.gettext(text) % fmt


def render(msg: Message, args: dict, lang: Lang | str, masker: Masker,
           memo: dict | None = None) -> str:
    """A message with its arguments in `lang`: template, then each clause whose argument is
    set. `memo`: a dict of formatted arguments to reuse, for a caller whose masker learns
    nothing meanwhile (findings.jsonl writes a night's lines with one)."""
    lang = as_lang(lang)
    if memo is None:
        fmt = _Args({k: format_arg(k, v, lang, masker) for k, v in args.items()})
    else:
        fmt = _Args({k: _remembered(memo, k, v, lang, masker) for k, v in args.items()})
    out = _part(msg.text, msg.count, args, fmt, lang)
    for c in msg.clauses:
        if args.get(c.when):
            out += _part(c.text, c.count, args, fmt, lang)
    return out


def _remembered(memo: dict, name: str, value, lang: Lang, masker: Masker) -> str:
    """format_arg, remembered in `memo` by (language, name, type, value) for str, int and
    bool values (two equal ones of the same type read the same; a float's or a list's text
    may not). Bounded: about a night's distinct values."""
    t = type(value)
    if t is not str and t is not int and t is not bool:
        return format_arg(name, value, lang, masker)
    key = (lang.code, name, t, value)
    text = memo.get(key)
    if text is None:
        if len(memo) >= 500_000:
            memo.clear()
        text = memo[key] = format_arg(name, value, lang, masker)
    return text


def driver_text(d: dict, lang: Lang, masker: Masker) -> str:
    """One anomaly driver: the feature's label in the language and how it compares."""
    from emraudit.detectors.anomaly.features import FEATURES
    f = str(d.get("feature", ""))
    info = FEATURES.get(f, {})
    args = {"feature": info.get(lang.code) or info.get("en") or f,
            "value": d.get("value"), "median": d.get("peer_median"), "p99": d.get("peer_p99"),
            "own": d.get("own_median"), "own_days": d.get("own_days")}
    return render(DRIVER if _blank(d.get("own_median")) else DRIVER_OWN, args, lang, masker)


# -- message look-up --------------------------------------------------------------------------
def messages() -> dict[str, Message]:
    """Every message the installed detectors declare, by id."""
    from emraudit.detectors.registry import all_detectors
    out: dict[str, Message] = {}
    for cls in all_detectors().values():
        out.update(cls.messages)
    return out


def message(message_id) -> Message | None:
    if not isinstance(message_id, str) or not message_id:
        return None
    found = _index().get(message_id)
    if found is None:          # a detector registered since the index was built
        _index.cache_clear()
        found = _index().get(message_id)
    return found


@lru_cache(maxsize=1)
def _index() -> dict[str, Message]:
    return messages()


# english_summary's masker, made once (one per finding was a night's worth of objects): a
# disabled Masker learns nothing and keeps no state, so sharing it changes no sentence
_UNMASKED = Masker(enabled=False)
# english_summary's formatted arguments (render's memo): a night's findings repeat their
# users, days and counts
_ENGLISH_ARGS: dict[tuple, str] = {}


def english_summary(message_id: str, args: dict) -> str:
    """The stored `summary`: the English sentence, unmasked (made when a finding is built).
    An undeclared message id is a programming error, caught when the detector runs."""
    msg = message(message_id)
    if msg is None:
        raise ValueError(f"message id {message_id!r} is not declared by any detector")
    return render(msg, args, "en", _UNMASKED, _ENGLISH_ARGS)


def finding_sentence(row: dict, lang: Lang | str, masker: Masker,
                     memo: dict | None = None) -> str:
    """The sentence of one finding (a store row, a findings-frame row or a findings.jsonl
    object) in `lang`, patient fields masked by `masker` (`memo`: as for render)."""
    lang = as_lang(lang)
    msg = message(row.get("message_id"))
    args = row.get("message_args")
    if msg is not None and isinstance(args, dict):
        return render(msg, args, lang, masker, memo)
    if lang.code == "en" and not _blank(row.get("summary")):
        return masker.scrub(row.get("summary"))
    from emraudit.reports.labels import detector_info
    pid = row.get("patient_id")
    fb = FALLBACK if not _blank(pid) else FALLBACK_ACCOUNT
    return render(fb, {"detector": detector_info(str(row.get("detector")), lang)["name"],
                       "user": row.get("user_id"), "patient": pid}, lang, masker)


def report_record(row: dict, lang: Lang | str, masker: Masker, *,
                  evidence_unchanged: bool = False, memo: dict | None = None) -> dict:
    """One finding as findings.jsonl of a report folder writes it: the contract's fields
    with patient ids and names masked in every field (as on the pages), `summary` the
    English sentence and, in a Chinese report, `summary_zh` beside it.
    `evidence_unchanged`: the masker found that scrubbing cannot change this evidence
    (Masker.unchanged), so it is not walked. `memo`: as for render."""
    from emraudit.model import FINDING_COLUMNS
    lang = as_lang(lang)
    out = {c: row.get(c) for c in FINDING_COLUMNS}
    out["patient_id"] = masker.pid(row.get("patient_id"))
    many = row.get("patient_ids")
    out["patient_ids"] = [masker.pid(p) for p in many] if isinstance(many, list) and many \
        else None
    out["summary"] = finding_sentence(row, "en", masker, memo)
    if lang.code != "en":
        out["summary_" + lang.code] = finding_sentence(row, lang, masker, memo)
    out["evidence"] = (row.get("evidence") or {}) if evidence_unchanged else \
        masker.scrub_obj(row.get("evidence") or {})
    args = row.get("message_args")
    if isinstance(args, dict):
        out["message_args"] = {k: (masker.pid(v) if ARG_KINDS.get(k) == "patient"
                                   else masker.scrub_obj(v)) for k, v in args.items()}
    else:
        out["message_args"] = None
    if not isinstance(out["message_id"], str):
        out["message_id"] = None
    return out


def case_headline(top: dict | None, *, n_findings: int, base: str, severity: str,
                  reasons: list[dict], lang: Lang | str, masker: Masker) -> str:
    """A case's headline: its top finding's sentence, how many more findings it holds, and
    why its severity is above that finding's (`reasons` as the case builder stores them:
    {"reason": "detectors_agree" | "repeat_offender", "n": …})."""
    lang = as_lang(lang)
    s = finding_sentence(top, lang, masker) if top else ""
    if n_findings > 1:
        s += lang.t.ngettext(*MORE_FINDINGS, n_findings - 1) % {"num": n_findings - 1}
    said = []
    for r in reasons:
        n = int(r.get("n") or 0)
        if r.get("reason") == "detectors_agree":
            said.append(lang.t.ngettext(*AGREE, n) % {"num": n})
        elif r.get("reason") == "repeat_offender":
            said.append(lang.t.ngettext(*REPEAT, n) % {"num": n} if n else
                        lang.gettext(REPEAT_UNCOUNTED))
    if said and severity != base:
        s += lang.gettext(RAISED, **{"from": label(SEVERITY, base, lang),
                                     "to": label(SEVERITY, severity, lang),
                                     "reasons": joiner(lang).join(said)})
    return s


def _reasons(case: dict, base: str, n_detectors: int) -> list[dict]:
    """The stored reasons for raising a case's severity; for cases stored before they were
    kept, what the levels between base and case severity must have been."""
    stored = case.get("severity_reasons")
    if isinstance(stored, str) and stored:
        try:
            stored = json.loads(stored)
        except json.JSONDecodeError:
            stored = None
    if isinstance(stored, list):
        return [r for r in stored if isinstance(r, dict)]
    from emraudit.reports.labels import SEVERITY_RANK
    steps = SEVERITY_RANK.get(str(case.get("severity")), 0) - SEVERITY_RANK.get(base, 0)
    out = []
    if steps > 0 and n_detectors >= 2:
        out.append({"reason": "detectors_agree", "n": n_detectors})
        steps -= 1
    if steps > 0:
        out.append({"reason": "repeat_offender", "n": 0})
    return out


def case_sentence(case: dict, findings: list[dict], lang: Lang | str, masker: Masker) -> str:
    """A case's headline from its findings, chosen as the case builder chooses its summary:
    its `top_finding` when stored, else the most severe, then highest-scoring active finding
    (suppressed ones only when nothing else is left). A feed-gap case says what it holds."""
    lang = as_lang(lang)
    if case.get("kind") == "feed_gap":
        return feed_gap_sentence(case, lang, masker)
    active = [f for f in findings if _blank(f.get("suppressed_by"))] or list(findings)
    if not active:
        return _bare_sentence(case, lang, masker)
    from emraudit.reports.labels import SEVERITY_RANK

    def rank(f):
        return SEVERITY_RANK.get(str(f.get("severity")), 0)

    def score(f):
        # as the case builder ranks: a missing score (None, or NaN from a frame) counts as 0
        try:
            value = float(f.get("score") or 0.0)
        except (TypeError, ValueError):
            return 0.0
        return 0.0 if math.isnan(value) else value
    best = min(active, key=lambda f: (-rank(f), -score(f), str(f.get("finding_id"))))
    top = next((f for f in active if f.get("finding_id") == case.get("top_finding")), None) \
        or best
    # the most severe level is the best-ranked finding's: among equal ranks (an unknown level
    # ranks as "low") the same one `case_sentences` takes, not whichever comes first
    return _headline(case, top, len(active), str(best.get("severity")),
                     len({str(f.get("detector")) for f in active}), lang, masker)


def _bare_sentence(case: dict, lang: Lang, masker: Masker) -> str:
    """The headline of a case none of whose findings is live: from the case row alone."""
    dets = case.get("detectors")
    if isinstance(dets, str):
        try:
            dets = json.loads(dets)
        except json.JSONDecodeError:
            dets = []
    return finding_sentence({"detector": dets[0] if isinstance(dets, list) and dets
                             else "", "user_id": case.get("user_id"),
                             "patient_id": case.get("patient_id"),
                             "summary": case.get("summary")}, lang, masker)


def _headline(case: dict, top: dict, n_active: int, max_severity: str, n_detectors: int,
              lang: Lang, masker: Masker) -> str:
    """`max_severity`: the most severe active finding's level, the base when the case has
    none stored."""
    base = str(case.get("severity_base") or max_severity)
    return case_headline(top, n_findings=n_active, base=base,
                         severity=str(case.get("severity") or base),
                         reasons=_reasons(case, base, n_detectors), lang=lang, masker=masker)


def case_sentences(store, cases: list[dict], lang: Lang | str,
                   masker: Masker) -> dict[str, str]:
    """case id -> its headline, for many cases at once: ledgers, the self-inspection report,
    the review app's lists. Each case's headline finding is chosen over narrow columns of
    all its findings (as `case_sentence` chooses it), and only the chosen findings are read
    whole: an open queue of a 20%-unexplained night names ~700,000 findings."""
    import pandas as pd

    from emraudit.reports.data import RANK_COLUMNS, sentence_findings
    from emraudit.reports.labels import SEVERITY_RANK
    lang = as_lang(lang)
    wanted = [c for c in cases if c.get("kind") != "feed_gap"]
    light = sentence_findings(store, [c["case_id"] for c in wanted], columns=RANK_COLUMNS)
    light["case_id"] = light["case_id"].astype(str)
    sup = light["suppressed_by"]
    light["active"] = sup.isna() | (sup.astype(str) == "")
    light = light[light["active"] | ~light.groupby("case_id")["active"].transform("any")]
    light = light.assign(
        rank=light["severity"].astype(str).map(SEVERITY_RANK).fillna(0).astype(int),
        score_n=pd.to_numeric(light["score"], errors="coerce").fillna(0.0),
        fid=light["finding_id"].astype(str), det=light["detector"].astype(str))
    g = light.groupby("case_id")
    n_active, n_det = g.size().to_dict(), g["det"].nunique().to_dict()
    ordered = light.sort_values(["case_id", "rank", "score_n", "fid"],
                                ascending=[True, False, False, True])
    best = ordered.drop_duplicates("case_id")
    best_id = dict(zip(best["case_id"], best["fid"]))
    best_sev = dict(zip(best["case_id"], best["severity"].astype(str)))
    member = set(zip(light["case_id"], light["fid"]))
    top_id = {}
    for c in wanted:
        cid, named = str(c["case_id"]), c.get("top_finding")
        top_id[cid] = str(named) if not _blank(named) and (cid, str(named)) in member \
            else best_id.get(cid)
    tops = sentence_findings(store, finding_ids=[t for t in top_id.values() if t])
    rows = {str(f["finding_id"]): f for f in tops.to_dict("records")}
    out = {}
    for c in cases:
        cid = str(c["case_id"])
        top = rows.get(top_id.get(cid) or "")
        if c.get("kind") == "feed_gap":
            out[cid] = feed_gap_sentence(c, lang, masker)
        elif top is None:
            out[cid] = _bare_sentence(c, lang, masker)
        else:
            out[cid] = _headline(c, top, int(n_active[cid]), best_sev[cid], int(n_det[cid]),
                                 lang, masker)
    return out


FEED_GAP = {
    "department": N_("care relations explain %(share)s%% of the accesses of department "
                     "%(value)s against %(others)s%% elsewhere: its admission feed or department "
                     "codes look incomplete (%(held)s unexplained accesses by %(users)s staff to "
                     "%(patients)s patients held as one case)"),
    "ward": N_("care relations explain %(share)s%% of the accesses of ward %(value)s against "
               "%(others)s%% elsewhere: its ward codes or bed moves look incomplete (%(held)s "
               "unexplained accesses by %(users)s staff to %(patients)s patients held as one "
               "case)"),
    "role": N_("care relations explain %(share)s%% of the accesses of the role %(value)s "
               "against %(others)s%% elsewhere: this role's work is not in the care relations "
               "(%(held)s unexplained accesses by %(users)s staff to %(patients)s patients held "
               "as one case)"),
    "source": N_("care relations explain %(share)s%% of the accesses from source %(value)s "
                 "against %(others)s%% elsewhere: its user or patient ids do not match the "
                 "reference tables (%(held)s unexplained accesses by %(users)s staff to "
                 "%(patients)s patients held as one case)"),
}


def feed_gap_sentence(case: dict, lang: Lang | str, masker: Masker) -> str:
    """The headline of a feed-gap case (emraudit.cases.update_feed_gap_cases), from its
    stored figures."""
    from emraudit.reports.labels import ROLE
    lang = as_lang(lang)
    stored = case.get("severity_reasons")
    try:
        reasons = json.loads(stored) if isinstance(stored, str) else stored
    except json.JSONDecodeError:
        reasons = None
    facts = next((r for r in reasons or [] if isinstance(r, dict)
                  and r.get("reason") == "feed_gap"), None)
    dim = str((facts or {}).get("dimension", ""))
    if facts is None or dim not in FEED_GAP:
        return masker.scrub(case.get("summary")) if lang.code == "en" else \
            lang.gettext(N_("a unit whose care relations look incomplete"))

    def pct(v):
        try:
            return f"{100 * float(v):.0f}"
        except (TypeError, ValueError):
            return "—"
    value = facts.get("value")
    if dim == "role":
        value = label(ROLE, value, lang)
    return render(
        Message(FEED_GAP[dim]),
        {"share": pct(facts.get("share")), "others": pct(facts.get("others_share")),
         "value": value, "held": facts.get("held"), "users": facts.get("users"),
         "patients": facts.get("patients")}, lang, masker)


# -- case history ---------------------------------------------------------------------------
# the notes the case builder (emraudit.cases) writes in English, read back as data
_OPENED = re.compile(r"^(\d+) finding\(s\) by (.+?)(?:; all suppressed by allowlist (.+))?$")
_REOPENED = re.compile(r"^(\d+) new finding\(s\) from scan (\S+); previous disposition "
                       r"(\S+) by (.*)$")
OPENED = Message(Np_("%(num)s finding by %(detectors)s", "%(num)s findings by %(detectors)s"),
                 count="num",
                 clauses=(Clause("allowlist", N_("; all suppressed by allowlist entries "
                                                 "%(allowlist)s")),))
REOPENED = Message(Np_("%(num)s new finding from scan %(scan)s; previous disposition: "
                       "%(disposition)s by %(reviewer)s",
                       "%(num)s new findings from scan %(scan)s; previous disposition: "
                       "%(disposition)s by %(reviewer)s"), count="num")
HISTORY_FIELD = {"status": N_("status"), "disposition": N_("disposition"),
                 "severity": N_("severity"), "detectors": N_("detectors"),
                 "n_findings": N_("findings"), "n_events": N_("events"),
                 "rectification_status": N_("rectification status")}


def history_note(row: dict, lang: Lang | str, masker: Masker) -> str:
    """A case-history note: the scan's own notes in the reader's language, a reviewer's note
    as written (scrubbed)."""
    from emraudit.reports.labels import DISPOSITION, detector_info
    lang = as_lang(lang)
    note = "" if _blank(row.get("note")) else str(row.get("note"))
    if row.get("by") != "scan" or not note:
        return masker.scrub(note)
    m = _OPENED.match(note)
    if m and row.get("action") == "opened":
        names = [detector_info(d.strip(), lang)["name"] for d in m.group(2).split(",")]
        return render(OPENED, {"num": int(m.group(1)), "detectors": joiner(lang).join(names),
                               "allowlist": m.group(3) or ""}, lang, masker)
    m = _REOPENED.match(note)
    if m and row.get("action") == "reopened":
        disp = m.group(3)
        return render(REOPENED, {"num": int(m.group(1)), "scan": m.group(2),
                                 "disposition": label(DISPOSITION, disp, lang)
                                 if disp != "None" else "—",
                                 "reviewer": m.group(4) if m.group(4) != "None" else "—"},
                      lang, masker)
    return masker.scrub(note) if lang.code == "en" else ""


def history_value(field: str, value, lang: Lang | str) -> str:
    """An old or new value of a case-history row, labelled (detector lists by name)."""
    from emraudit.reports.labels import DISPOSITION, STATUS, detector_info
    lang = as_lang(lang)
    if _blank(value):
        return ""
    from emraudit.reports.labels import RECTIFICATION
    tables = {"disposition": DISPOSITION, "status": STATUS, "severity": SEVERITY,
              "rectification_status": RECTIFICATION}
    if field in tables:
        return label(tables[field], str(value), lang)
    if field == "detectors":
        try:
            ids = json.loads(value) if isinstance(value, str) else list(value)
        except (json.JSONDecodeError, TypeError):
            return str(value)
        if isinstance(ids, list):
            return joiner(lang).join(detector_info(str(d), lang)["name"] for d in ids)
    return str(value)


__all__ = ["finding_sentence", "case_sentence", "case_sentences", "report_record", "history_note", "history_value",
           "english_summary", "case_headline", "feed_gap_sentence", "render", "format_arg",
           "message", "messages", "ARG_KINDS"]
