"""Update the gettext catalogs: extract every message, merge it into each language's .po
(translations kept, new messages empty), compile the .mo.

    .venv/bin/python scripts/catalogs.py            # extract, merge, compile
    .venv/bin/python scripts/catalogs.py --prune    # ... and drop messages no source uses
    .venv/bin/python scripts/catalogs.py --compile  # compile only (after editing a .po)

Messages no source scanned uses any more are kept (and counted) unless --prune: another
module may mark messages this extraction does not scan.

Then translate the new (empty) messages of locale/zh/LC_MESSAGES/emraudit.po and run it with
--compile; tests/test_report_i18n.py fails while a message has no Chinese or a .mo is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

import emraudit
from emraudit.reports.i18n import (DOMAIN, EXTRACT_KEYWORDS, EXTRACT_METHODS, EXTRACT_OPTIONS,
                                   LANGS, compile_po, locale_dir)

PKG = Path(emraudit.__file__).parent
WIDTH = 100


def template() -> Catalog:
    cat = Catalog(domain=DOMAIN, project="emraudit", version="0.1")
    for fn, line, msg, comments, ctx in extract_from_dir(str(PKG), EXTRACT_METHODS,
                                                          EXTRACT_OPTIONS,
                                                          keywords=EXTRACT_KEYWORDS):
        cat.add(msg, None, [(fn, line)], auto_comments=comments, context=ctx)
    return cat


def main(argv: list[str]) -> int:
    for lang in LANGS:
        folder = locale_dir() / lang / "LC_MESSAGES"
        po = folder / f"{DOMAIN}.po"
        if "--compile" not in argv:
            with po.open("rb") as fh:
                cat = read_po(fh, locale=lang, domain=DOMAIN)
            cat.update(template(), no_fuzzy_matching=True, update_header_comment=False)
            if cat.obsolete and "--prune" not in argv:
                print(f"{lang}: {len(cat.obsolete)} messages no source scanned uses (kept)")
                for msg in cat.obsolete.values():
                    cat[msg.id] = msg
            cat.obsolete.clear()
            with po.open("wb") as fh:
                # file names without line numbers: moving code does not churn the catalogs
                write_po(fh, cat, width=WIDTH, omit_header=False, sort_output=True,
                         include_lineno=False)
            empty = [m.id for m in cat if m.id and not m.string]
            if lang != "en" and empty:
                print(f"{lang}: {len(empty)} messages to translate")
        (folder / f"{DOMAIN}.mo").write_bytes(compile_po(po, lang))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
