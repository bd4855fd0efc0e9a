"""Languages of the reports: gettext catalogs compiled at runtime, a jinja2 environment.

Source strings are English. `src/emraudit/locale/<lang>/LC_MESSAGES/emraudit.po` holds the
translations; the .po is compiled in memory with babel on first use (a committed .mo is used
when it is newer), so no build step is needed. Templates use `{% trans %}` and `_()` through
jinja2's i18n extension; Python code uses the `Lang.gettext` of the same catalog.

Autoescaping is always on: every value that reaches a page is escaped unless it was built
here as markup on purpose (the inline SVG charts, whose text is escaped when built).
"""

from __future__ import annotations

import gettext
import io
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

LANGS = ("zh", "en")
DOMAIN = "emraudit"


def locale_dir() -> Path:
    return Path(str(resources.files("emraudit") / "locale"))


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (English is the source language: identity)."""
    folder = locale_dir() / lang / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as fh:
            return gettext.GNUTranslations(fh)
    if po.exists():
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang, domain=DOMAIN)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    return gettext.NullTranslations()


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet (translated where shown)."""
    return message


class Lang:
    """One language: gettext functions and value formatting for Python-built text."""

    def __init__(self, lang: str):
        if lang not in LANGS:
            from emraudit.errors import ConfigError
            raise ConfigError(f"unknown report language '{lang}' (expected zh or en)",
                              key="reports.lang")
        self.code = lang
        self.t = translations(lang)

    def gettext(self, message: str, **kw) -> str:
        s = self.t.gettext(message)
        return s % kw if kw else s

    _ = gettext

    def ngettext(self, singular: str, plural: str, n: int, **kw) -> str:
        s = self.t.ngettext(singular, plural, n)
        kw.setdefault("num", n)
        return s % kw

    @property
    def html_lang(self) -> str:
        return "zh-CN" if self.code == "zh" else "en"


def safe_json(obj) -> Markup:
    """JSON safe inside a <script type="application/json"> block: ASCII only, and < > & '
    as \\u escapes, so a value such as `</script><script>…` cannot close the block."""
    s = json.dumps(obj, ensure_ascii=True, sort_keys=False, default=str)
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("'", "\\u0027").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(s)


def make_env(lang: Lang) -> jinja2.Environment:
    """The jinja2 environment for one language: package templates, autoescape, i18n."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("emraudit.reports", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.install_gettext_translations(lang.t, newstyle=True)
    env.filters["safe_json"] = safe_json
    env.globals["lang"] = lang
    return env
