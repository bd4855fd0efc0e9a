"""Every page string goes through the gettext catalogs, and the zh catalog translates all."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import emraudit
from emraudit.reports.i18n import (EXTRACT_KEYWORDS, EXTRACT_METHODS, EXTRACT_OPTIONS, LANGS,
                                   Lang, compile_po, make_env, safe_json)

PKG = Path(emraudit.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def _messages() -> set[str]:
    """The singular msgid of every message the code marks (the catalogs' own sources)."""
    out = set()
    for _fn, _line, msg, _c, _ctx in extract_from_dir(str(PKG), EXTRACT_METHODS,
                                                      EXTRACT_OPTIONS,
                                                      keywords=EXTRACT_KEYWORDS):
        out.add(msg if isinstance(msg, str) else msg[0])
    return out


def _catalog(lang: str):
    with open(PKG / "locale" / lang / "LC_MESSAGES" / "emraudit.po", "rb") as fh:
        return read_po(fh, locale=lang)


def _singular(msgid) -> str:
    return msgid[0] if isinstance(msgid, tuple) else msgid


def test_zh_catalog_translates_every_message():
    cat = _catalog("zh")
    translated = {_singular(m.id) for m in cat
                  if m.id and (m.string[0] if isinstance(m.string, tuple) else m.string)}
    msgs = _messages()
    assert len(msgs) > 400
    missing = sorted(msgs - translated)
    assert missing == [], missing
    assert msgs <= {_singular(m.id) for m in _catalog("en") if m.id}


def test_translations_keep_every_placeholder():
    """A translation naming an argument the template does not pass (or dropping one) would
    read as a dash or lose a fact: the placeholders of msgid and msgstr are the same set."""
    bad = []
    for m in _catalog("zh"):
        if not m.id:
            continue
        want = set(PLACEHOLDER.findall(_singular(m.id)))
        for s in (m.string if isinstance(m.string, tuple) else (m.string,)):
            if s and set(PLACEHOLDER.findall(s)) != want:
                bad.append(_singular(m.id))
    assert bad == []


def test_compiled_catalogs_are_the_po_files_compiled():
    """The shipped .mo is what scripts/catalogs.py --compile makes of the .po."""
    for lang in LANGS:
        folder = PKG / "locale" / lang / "LC_MESSAGES"
        assert (folder / "emraudit.mo").read_bytes() == compile_po(folder / "emraudit.po", lang)


def test_every_detector_message_is_declared_and_plural_where_it_counts():
    from emraudit.reports.text import messages
    msgs = messages()
    from emraudit.detectors.registry import all_detectors
    for det_id, cls in all_detectors().items():
        assert cls.messages, det_id
        assert all(m == det_id or m.startswith(det_id + ".") for m in cls.messages), det_id
    zh = Lang("zh")
    for mid, msg in msgs.items():
        for text in msg.msgids():
            assert zh.t.gettext(text) != text, (mid, text)


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
