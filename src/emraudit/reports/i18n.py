"""Languages of the reports: gettext catalogs compiled at runtime, a jinja2 environment.

Source strings are English. `src/emraudit/locale/<lang>/LC_MESSAGES/emraudit.po` holds the
translations and the compiled `emraudit.mo` beside it ships as package data
(`scripts/catalogs.py` extracts, merges and compiles; a test checks the .mo is the .po
compiled). The .po is compiled in memory instead when it is newer than the .mo (editing a
translation needs no build step to be seen). Templates use `{% trans %}` and `_()` through
jinja2's i18n extension; Python code uses the `Lang.gettext` of the same catalog; finding
sentences are messages declared by the detectors (`emraudit.reports.text`).

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
# where the catalogs' messages come from, relative to the package (scripts/catalogs.py
# extracts them with babel; a test checks the zh catalog translates every one)
EXTRACT_METHODS = [("reports/templates/**.html", "jinja2"), ("web/templates/**.html", "jinja2"),
                   ("reports/**.py", "python"), ("detectors/**.py", "python"),
                   ("web/**.py", "python"), ("commands/report.py", "python")]
EXTRACT_OPTIONS = {"reports/templates/**.html": {"extensions": "jinja2.ext.i18n"},
                   "web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
EXTRACT_KEYWORDS = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2),
                    "Np_": (1, 2)}


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
        return gettext.GNUTranslations(io.BytesIO(compile_po(po, lang)))
    return gettext.NullTranslations()


def compile_po(po: Path, lang: str) -> bytes:
    """The .mo bytes of a .po catalog (babel; plural forms from its header)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet (translated where shown)."""
    return message


def Np_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular/plural pair for extraction (translated with `ngettext` where shown)."""
    return (singular, plural)


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
