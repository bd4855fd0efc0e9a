"""Every string of the review app goes through the gettext catalogs and has Chinese."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import emraudit

PKG = Path(emraudit.__file__).parent


def test_zh_catalog_translates_every_web_message():
    method_map = [("web/templates/**.html", "jinja2"), ("web/**.py", "python")]
    options = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)}
    msgs = {m if isinstance(m, str) else m[0] for _f, _l, m, _c, _x in
            extract_from_dir(str(PKG), method_map, options, keywords=keywords)}
    assert len(msgs) > 60
    with open(PKG / "locale" / "zh" / "LC_MESSAGES" / "emraudit.po", "rb") as fh:
        zh = {m.id for m in read_po(fh, locale="zh") if m.id and m.string}
    assert sorted(msgs - zh) == []
    with open(PKG / "locale" / "en" / "LC_MESSAGES" / "emraudit.po", "rb") as fh:
        en = {m.id for m in read_po(fh, locale="en") if m.id}
    assert sorted(msgs - en) == []
