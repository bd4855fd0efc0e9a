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
    # the access-rights checks (emraudit.detectors.rights*, the class check on
    # care.no_relationship)
    "class_grants": N_("sensitive-class grants"), "classes": N_("sensitive classes"),
    "granted": N_("with a grant"), "missing": N_("without a grant"),
    "classes_without_grant": N_("classes without a grant"),
    "care_explanations": N_("care relation found"), "problems": N_("problems"),
    "refs": N_("rows it rests on"),
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


def _h(v) -> str:
    """What Markup.format would put in a field: Markup as it is, anything else escaped.
    Pieces are joined as plain text and marked safe once: Markup.format runs a Python
    formatter per field, a third of the time of a case page."""
    return str(escape(v))


_NONE = '<span class="muted">—</span>'


def _scalar(v, lang: Lang, masker: Masker) -> Markup:
    if v is None:
        return Markup(_NONE)
    if isinstance(v, bool):
        return Markup(f'<span class="yes">{_h(lang.gettext("yes"))}</span>') if v else \
            Markup(f'<span class="no">{_h(lang.gettext("no"))}</span>')
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return Markup(_NONE)
        if v == int(v) and abs(v) < 1e15:
            return escape(f"{int(v):,}")
        return escape(f"{v:,.3f}".rstrip("0").rstrip("."))
    if isinstance(v, int):
        return escape(f"{v:,}")
    if isinstance(v, str) and v in EXPLANATION_LABELS:
        return Markup(f'{_h(lang.gettext(EXPLANATION_LABELS[v]))} '
                      f'<span class="muted code">{_h(v)}</span>')
    if isinstance(v, str) and v in RESULT_WORDS:
        cls = "yes" if v == "held" else "no"
        return Markup(f'<span class="{cls}">{_h(lang.gettext(RESULT_WORDS[v]))}</span>')
    return escape(masker.scrub(v))


def render_evidence(obj, lang: Lang, masker: Masker, depth: int = 0) -> Markup:
    """HTML for one evidence value (escaped; never raises on odd shapes)."""
    if isinstance(obj, dict):
        if not obj:
            return Markup(_NONE)
        rows = []
        for k, v in obj.items():
            cls = ' class="hl"' if _HIGHLIGHT.search(str(k)) else ""
            rows.append(f"<tr{cls}><th>{_h(_key_label(str(k), lang))}</th>"
                        f"<td>{_h(render_evidence(v, lang, masker, depth + 1))}</td></tr>")
        return Markup('<table class="ev">' + "".join(rows) + "</table>")
    if isinstance(obj, (list, tuple)):
        if not obj:
            return Markup(_NONE)
        items = list(obj)[:_MAX_ITEMS]
        more = len(obj) - len(items)
        if all(isinstance(x, dict) for x in items) and depth < 4:
            keys: list[str] = []
            for x in items:
                keys += [k for k in x if k not in keys]
            keys.sort(key=lambda k: _FIRST.index(k) if k in _FIRST else len(_FIRST))
            head = "".join(f"<th>{_h(_key_label(k, lang))}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{_h(render_evidence(x.get(k), lang, masker, depth + 1))}"
                                 "</td>" for k in keys) + "</tr>"
                for x in items)
            out = ('<table class="ev-list"><thead><tr>' + head + "</tr></thead><tbody>" + body
                   + "</tbody></table>")
        else:
            out = ", ".join(_h(render_evidence(x, lang, masker, depth + 1)) for x in items)
        if more > 0:
            out += f' <span class="muted">{_h(lang.gettext("(+%(n)s more)", n=more))}</span>'
        return Markup(out)
    return _scalar(obj, lang, masker)
