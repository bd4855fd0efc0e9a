"""Every page string goes through the gettext catalogs, and the zh catalog translates all."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import emraudit
from emraudit.reports.i18n import Lang, make_env, safe_json

PKG = Path(emraudit.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)}


def _messages() -> set[str]:
    method_map = [("reports/templates/**.html", "jinja2"), ("reports/**.py", "python"),
                  ("commands/report.py", "python")]
    options = {"reports/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    out = set()
    for _fn, _line, msg, _c, _ctx in extract_from_dir(str(PKG), method_map, options,
                                                      keywords=KEYWORDS):
        out.add(msg if isinstance(msg, str) else msg[0])
    return out


def test_zh_catalog_translates_every_message():
    with open(PKG / "locale" / "zh" / "LC_MESSAGES" / "emraudit.po", "rb") as fh:
        cat = read_po(fh, locale="zh")
    translated = {m.id for m in cat if m.id and m.string}
    msgs = _messages()
    assert len(msgs) > 150
    missing = sorted(msgs - translated)
    assert missing == [], missing
    with open(PKG / "locale" / "en" / "LC_MESSAGES" / "emraudit.po", "rb") as fh:
        en = {m.id for m in read_po(fh, locale="en") if m.id}
    assert msgs <= en


def test_templates_have_no_text_outside_gettext():
    """Strip jinja tags and expressions, HTML tags, style/script bodies: no words remain."""
    bad = []
    for path in sorted((PKG / "reports" / "templates").glob("*.html")):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", text, flags=re.S)
        text = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", text, flags=re.S)
        text = re.sub(r"<!--.*?-->|<[^>]+>", " ", text, flags=re.S)
        text = re.sub(r"&[a-z]+;", " ", text)
        for word in re.findall(r"[A-Za-z\u4e00-\u9fff]{2,}", text):
            bad.append(f"{path.name}: {word}")
    assert bad == []


def test_runtime_catalogs_and_escaping_environment():
    zh, en = Lang("zh"), Lang("en")
    assert zh.gettext("No.") == "序号" and en.gettext("No.") == "No."
    assert zh.gettext("%(n)s events", n=3) == "3 条事件"
    env = make_env(zh)
    assert env.autoescape is True or callable(env.autoescape)
    out = env.from_string("{{ x }}|{{ _('Case %(id)s', id=x) }}").render(x="<b>")
    assert out == "&lt;b&gt;|案件 &lt;b&gt;"
    s = safe_json({"a": "</script><b>&'"})
    assert "<" not in s and ">" not in s and "&" not in s and "'" not in s
