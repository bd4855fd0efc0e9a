"""What a reader of a report page sees, and the words in it that are in the wrong language.

`page_text(html)` is the visible text of a report page: text nodes, titles and labels, and
the display fields of the dashboard's case table (a JSON block its script renders), without
elements marked `code` (ids, detector ids, commands, log codes) or `raw` (free text copied
verbatim from the hospital's data, such as a reason typed into the EMR). `foreign_words(text,
lang, names)` lists the English words in a zh text, or the Chinese runs in an en text, once
`names` (the site's, departments', wards', people's: data, not prose) are taken out.
Acronyms (VIP, ICU, IP) and identifiers (U0011, care.no_relationship, ledger.xlsx, field
names with underscores) are not words.
"""

from __future__ import annotations

import html as _html
import json
import re

# the fields of a dashboard row (static/report.js) a reader sees as text
DISPLAY_FIELDS = ("sevLabel", "userName", "role", "dept", "patient", "flags", "detectors",
                  "statusLabel", "summary")

_JSON = re.compile(r'<script type="application/json"[^>]*>(.*?)</script>', re.S)
_DROP = re.compile(r"<(style|script)[^>]*>.*?</\1>", re.S)
_CODE = re.compile(r'<(td|dd|span|div|code|p)\b[^>]*class="[^"]*\b(?:code|raw)\b[^"]*"[^>]*>'
                   r'.*?</\1>', re.S)
_ATTR = re.compile(r'\b(?:title|aria-label|placeholder|alt)="([^"]*)"')
_TAG = re.compile(r"<[^>]+>")
# an English word: letters (an apostrophe inside), not touching digits, _, -, . or /
_EN = re.compile(r"(?<![\w.\-/*])[A-Za-z][a-z]*(?:'[a-z]+)?[a-z](?![\w.\-/*])")
_ZH = re.compile(r"[\u3400-\u9fff]+")


def _json_text(block: str) -> list[str]:
    try:
        data = json.loads(_html.unescape(block))
    except json.JSONDecodeError:
        return [block]
    rows = data if isinstance(data, list) else data.get("rows", []) \
        if isinstance(data, dict) else []
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        for k in DISPLAY_FIELDS:
            v = r.get(k)
            out += [str(x) for x in v] if isinstance(v, list) else [str(v or "")]
    return out


def page_text(page: str) -> str:
    """The text a reader sees on one report page."""
    parts = [t for block in _JSON.findall(page) for t in _json_text(block)]
    body = _JSON.sub(" ", page)
    parts += _ATTR.findall(body)
    body = _DROP.sub(" ", body)
    body = _CODE.sub(" ", body)
    parts.append(_TAG.sub("\n", body))
    return _html.unescape("\n".join(parts))


def foreign_words(text: str, lang: str, names: set[str] = frozenset()) -> list[str]:
    """English words in a zh text (lang "zh"), Chinese runs in an en text (lang "en")."""
    for n in sorted(names, key=len, reverse=True):
        if n:
            text = text.replace(n, " ")
    if lang == "zh":
        return _EN.findall(text)
    return _ZH.findall(text)


def offenders(texts: dict[str, str], lang: str, names: set[str], limit: int = 30) -> list[str]:
    """'where: word … in context' for each foreign word, first `limit`."""
    out = []
    for where, text in texts.items():
        for line in text.splitlines():
            bad = foreign_words(line, lang, names)
            if bad:
                out.append(f"{where}: {bad[:5]} in {line.strip()[:150]!r}")
                if len(out) >= limit:
                    return out
    return out
