"""The sample hospital's reports are in one language: no English sentence on a Chinese page
or in the Chinese ledger, no Chinese on an English one, beyond ids, codes and names.

One scan of sample_logs/ in Chinese, then the same scan rendered in English. Every page of
each folder is read as a reader sees it (tests/language_check.py): the dashboard, every case
page, the ledger (CSV, XLSX and HTML), a patient's access report, the self-inspection report,
a notice to a confirmed user, findings.jsonl's sentences. Names
are data, not prose: the site's, the staff's, patients' (masked or not), departments, wards,
places, modules, and the campaign's official item wording.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from language_check import offenders, page_text

pytestmark = pytest.mark.slow

NAME_COLUMNS = {"users.csv": ("name", "department", "ward", "title"),
                "patients.csv": ("name", "sex"),
                "workstations.csv": ("department", "campus", "location"),
                "care_relations.csv": ("department", "ward"), "access_log.csv": ("module",),
                "shifts.csv": ("ward", "location"), "patient_contacts.csv": ("name",),
                # the rights tables: role names, departments and the reasons typed with a grant
                "grants.csv": ("role", "department", "reason"),
                "roles.csv": ("role", "description"),
                "departments.csv": ("department", "parent", "head_name")}



def _names(site: Path, config) -> set[str]:
    from emraudit.model import RECTIFICATION_ITEMS
    from emraudit.reports.masking import mask_name
    names = {config.site.name, *RECTIFICATION_ITEMS.values()}
    # the configuration's own names: its sources and their connector kinds (csv, his-zh …)
    names |= set(config.sources) | {s.connector for s in config.sources.values()}
    for fname, cols in NAME_COLUMNS.items():
        with open(site / fname, encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                names.update(r[c] for c in cols if r.get(c))
    people = {n for f in ("users.csv", "patients.csv", "patient_contacts.csv")
              for n in _column(site / f, "name")}
    names |= set(_column(site / "access_log.csv", "user_id"))
    names |= {f"role:{r}" for r in _column(site / "roles.csv", "role")}
    return names | {mask_name(n) for n in people} | {n[0] for n in people if n} \
        | _keywords()


def _keywords() -> set[str]:
    """The Chinese words detectors match in the hospital's data (generic logins such as 护士站,
    the sensitive-class keywords such as 精神, the trainee words 进修/实习), quoted as data on
    English pages. English codes are not taken: they must never show on a Chinese page."""
    from emraudit.access_rights import SENSITIVE_CLASS_SYNONYMS
    from emraudit.detectors.registry import all_detectors
    out: set[str] = set(SENSITIVE_CLASS_SYNONYMS) | {"进修", "实习", "传染病/HIV"}
    for cls in all_detectors().values():
        for p in cls.params:
            d = p.default
            vals = d if isinstance(d, (list, tuple)) else \
                [v for vs in d.values() for v in (vs if isinstance(vs, (list, tuple)) else [vs])] \
                if isinstance(d, dict) else []
            out.update(str(v) for v in vals if isinstance(v, str) and v)
    return {w for w in out if not w.isascii()}


def _column(path: Path, col: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [r[col] for r in csv.DictReader(fh) if r.get(col)]


@pytest.fixture(scope="module")
def sample(sample_scan, tmp_path_factory):
    """(names, {"zh": folder, "en": folder}, config) of one scan of the sample hospital."""
    from emraudit.lake import Lake
    from emraudit.reports import write_scan_reports
    from emraudit.store import Store
    site, cfg, res = sample_scan
    tmp = tmp_path_factory.mktemp("sample-lang")
    assert cfg.reports.lang == "zh"
    folders = {"zh": tmp / "zh"}
    shutil.copytree(res.report_dir, folders["zh"])
    en = cfg.model_copy(update={"reports": cfg.reports.model_copy(update={"lang": "en"})})
    store = Store(cfg.store_url)
    folders["en"] = write_scan_reports(en, store, Lake(cfg.lake_dir, cfg.tz), res.scan_id)
    return _names(site, cfg), folders, (cfg, en, store, res.scan_id)


def _pages(folder: Path) -> dict[str, str]:
    pages = {name: page_text((folder / name).read_text(encoding="utf-8"))
             for name in ("index.html", "ledger.html")}
    for p in sorted((folder / "cases").glob("*.html")):
        pages["cases/" + p.name] = page_text(p.read_text(encoding="utf-8"))
    return pages


def _ledger(folder: Path) -> dict[str, str]:
    from openpyxl import load_workbook
    with open(folder / "ledger.csv", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    ws = load_workbook(folder / "ledger.xlsx").active
    cells = [str(c.value) for row in ws.iter_rows() for c in row if c.value is not None]
    # the case id column is an id; every other cell is read
    return {"ledger.csv": "\n".join(c for r in rows for c in r[:-1]),
            "ledger.xlsx": "\n".join(c for c in cells if not c.startswith("C"))}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_of_the_sample_is_in_its_language(sample, lang):
    names, folders, _ = sample
    pages = _pages(folders[lang])
    assert len(pages) > 100                                   # the queue's case pages
    assert offenders(pages, lang, names) == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_ledger_of_the_sample_is_in_its_language(sample, lang):
    names, folders, _ = sample
    assert offenders(_ledger(folders[lang]), lang, names) == []


def test_findings_jsonl_sentences_are_in_both_languages(sample):
    names, folders, _ = sample
    lines = [json.loads(x) for x in
             (folders["zh"] / "findings.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) > 200 and all(x["message_id"] for x in lines)
    assert offenders({"summary_zh": "\n".join(x["summary_zh"] for x in lines)}, "zh",
                     names) == []
    assert offenders({"summary": "\n".join(x["summary"] for x in lines)}, "en", names) == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_patient_access_report_of_the_sample_is_in_its_language(sample, lang, tmp_path):
    from emraudit.lake import Lake
    from emraudit.reports.patient import write_patient_report
    names, _, (zh, en, store, _) = sample
    cfg = zh if lang == "zh" else en
    flagged = store.read_findings()
    pid = flagged.loc[flagged["detector"] == "snoop.vip", "patient_id"].iloc[0]
    html, csv_path = write_patient_report(cfg, store, Lake(cfg.lake_dir, cfg.tz), pid,
                                          "2026-09-07", "2026-10-06",
                                          out=tmp_path / "p.html")
    texts = {"patient.html": page_text(html.read_text(encoding="utf-8")),
             "patient.csv": csv_path.read_text(encoding="utf-8-sig")}
    assert offenders(texts, lang, names) == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_self_inspection_report_and_a_notice_of_the_sample_are_in_its_language(
        sample, lang, tmp_path):
    from emraudit.cases import resolve_case
    from emraudit.lake import Lake
    from emraudit.reports.notice import write_notice
    from emraudit.reports.self_inspection import write_self_inspection
    names, folders, (zh, en, store, _) = sample
    cfg = zh if lang == "zh" else en
    lake = Lake(cfg.lake_dir, cfg.tz)
    _, html = write_self_inspection(cfg, store, lake, "2026-09-07", "2026-10-06",
                                    out=tmp_path / "self.docx")
    first = json.loads((folders["zh"] / "findings.jsonl").read_text(
        encoding="utf-8").splitlines()[0])
    case_id = _a_case(store, first)
    officer = "王芳" if lang == "zh" else "officer"   # a person's name, as a user types it
    resolve_case(store, case_id, "confirmed", "interviewed", officer)
    notice = write_notice(cfg, store, lake, case_id, by=officer,
                          out=tmp_path / "notice.html")
    texts = {"self-inspection.html": page_text(html.read_text(encoding="utf-8")),
             "notice.html": page_text(notice.read_text(encoding="utf-8"))}
    assert offenders(texts, lang, names) == []


def _a_case(store, finding: dict) -> str:
    """The case of a finding of the sample (the first line of findings.jsonl)."""
    import sqlalchemy as sa
    from emraudit.store import findings
    with store.engine.connect() as c:
        return c.execute(sa.select(findings.c.case_id).where(
            findings.c.finding_id == finding["finding_id"])).scalar()
