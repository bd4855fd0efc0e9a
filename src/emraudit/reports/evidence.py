"""A finding's structured evidence rendered as readable, escaped HTML.

Evidence is a JSON object whose shape each detector chooses (explanations tried and why each
failed, thresholds, baselines, counts). It is rendered generically: an object becomes a list
of labelled values, a list of objects a small table, numbers are rounded for reading, and
keys that name an explanation or a threshold are highlighted. Every string is escaped and
scrubbed of patient names and ids (`Masker.scrub`).
"""

from __future__ import annotations

import math
import re

from markupsafe import Markup, escape

from emraudit.reports.i18n import N_, Lang
from emraudit.reports.labels import EXPLANATION_LABELS
from emraudit.reports.masking import Masker

# common evidence keys, so the catalog can translate their labels
KEY_LABELS = {
    "explanations": N_("explanations tried"), "explanations_tried": N_("explanations tried"),
    "tried": N_("explanations tried"), "threshold": N_("threshold"),
    "thresholds": N_("thresholds"), "baseline": N_("baseline"), "observed": N_("observed"),
    "count": N_("count"), "patients": N_("patients"), "events": N_("events"),
    "window_minutes": N_("window (minutes)"), "reason": N_("reason"), "kind": N_("kind"),
    "result": N_("result"), "why": N_("why"), "found": N_("found"), "median": N_("median"),
    "peer_median": N_("peer median"), "z": N_("z-score"), "score": N_("score"),
    "department": N_("department"), "ward": N_("ward"), "grace_days": N_("grace days"),
    "relation": N_("relation"), "ratio": N_("ratio"), "features": N_("features"),
    "value": N_("value"), "limit": N_("limit"), "days": N_("days"),
    "explanation": N_("explanation"), "detail": N_("detail"), "required": N_("required"),
    "floor": N_("floor"), "own_baseline": N_("own baseline"), "unit": N_("unit"),
    "peer_percentile": N_("peer percentile"), "group": N_("group"), "duty": N_("duty"),
}
RESULT_WORDS = {"held": N_("held"), "failed": N_("failed")}
_HIGHLIGHT = re.compile(r"explan|threshold|baseline|limit|median|expected")
_MAX_ITEMS = 50
# columns shown first in a list of objects (stable sort keeps the rest in their order)
_FIRST = ["explanation", "name", "kind", "result", "held", "value", "required"]


def _key_label(key: str, lang: Lang) -> str:
    if key in KEY_LABELS:
        return lang.gettext(KEY_LABELS[key])
    return str(key).replace("_", " ")


def _scalar(v, lang: Lang, masker: Masker) -> Markup:
    if v is None:
        return Markup('<span class="muted">—</span>')
    if isinstance(v, bool):
        return Markup('<span class="yes">{}</span>').format(lang.gettext("yes")) if v else \
            Markup('<span class="no">{}</span>').format(lang.gettext("no"))
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return Markup('<span class="muted">—</span>')
        if v == int(v) and abs(v) < 1e15:
            return escape(f"{int(v):,}")
        return escape(f"{v:,.3f}".rstrip("0").rstrip("."))
    if isinstance(v, int):
        return escape(f"{v:,}")
    if isinstance(v, str) and v in EXPLANATION_LABELS:
        return Markup('{} <span class="muted code">{}</span>').format(
            lang.gettext(EXPLANATION_LABELS[v]), v)
    if isinstance(v, str) and v in RESULT_WORDS:
        cls = "yes" if v == "held" else "no"
        return Markup('<span class="{}">{}</span>').format(cls, lang.gettext(RESULT_WORDS[v]))
    return escape(masker.scrub(v))


def render_evidence(obj, lang: Lang, masker: Masker, depth: int = 0) -> Markup:
    """HTML for one evidence value (escaped; never raises on odd shapes)."""
    if isinstance(obj, dict):
        if not obj:
            return Markup('<span class="muted">—</span>')
        rows = []
        for k, v in obj.items():
            cls = ' class="hl"' if _HIGHLIGHT.search(str(k)) else ""
            rows.append(Markup("<tr{}><th>{}</th><td>{}</td></tr>").format(
                Markup(cls), _key_label(str(k), lang), render_evidence(v, lang, masker,
                                                                       depth + 1)))
        return Markup('<table class="ev">') + Markup("").join(rows) + Markup("</table>")
    if isinstance(obj, (list, tuple)):
        if not obj:
            return Markup('<span class="muted">—</span>')
        items = list(obj)[:_MAX_ITEMS]
        more = len(obj) - len(items)
        if all(isinstance(x, dict) for x in items) and depth < 4:
            keys: list[str] = []
            for x in items:
                keys += [k for k in x if k not in keys]
            keys.sort(key=lambda k: _FIRST.index(k) if k in _FIRST else len(_FIRST))
            head = Markup("").join(Markup("<th>{}</th>").format(_key_label(k, lang))
                                   for k in keys)
            body = Markup("").join(
                Markup("<tr>{}</tr>").format(Markup("").join(
                    Markup("<td>{}</td>").format(render_evidence(x.get(k), lang, masker,
                                                                 depth + 1)) for k in keys))
                for x in items)
            out = Markup('<table class="ev-list"><thead><tr>{}</tr></thead><tbody>{}'
                         '</tbody></table>').format(head, body)
        else:
            out = Markup(", ").join(render_evidence(x, lang, masker, depth + 1) for x in items)
        if more > 0:
            out += Markup(' <span class="muted">{}</span>').format(
                lang.gettext("(+%(n)s more)", n=more))
        return out
    return _scalar(obj, lang, masker)
