"""Masking that holds (issue 17 item 7): with [reports] mask_patients on, no raw patient id or
name of any patient of the sample hospital appears in any output — the report folder (HTML,
findings.jsonl, the ledger's CSV and XLSX), the on-demand case page, the patient and summary
reports, and the command line's text and JSON — with two-character Chinese names among them.
Raw values go out only with --unmask, which the audit trail records; `emraudit findings`, the
store's own export, stays raw and says so. A failed source never repeats the file's content.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store, audit_trail
from sample_site import copy_sample, emraudit

pytestmark = pytest.mark.slow

# two-character names from characters no staff name, department or place of the sample uses
SURNAMES = "欧单仇区查阎訾庞邝滕蔺闵"
GIVEN = "鑫翾骞玥琰珩邈翊昀煦晗曦琛瑾璟锴"


def _two_char_names(n: int, avoid: str) -> list[str]:
    names = [s + g for s in SURNAMES for g in GIVEN]
    names = [x for x in names if x not in avoid]
    return [names[i % len(names)] for i in range(n)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The sample, every other patient renamed to a two-character name, scanned."""
    root = tmp_path_factory.mktemp("masked")
    cfg = copy_sample(root / "h")
    h = root / "h"
    patients = pd.read_csv(h / "patients.csv", dtype=str, keep_default_na=False)
    users = pd.read_csv(h / "users.csv", dtype=str, keep_default_na=False)
    others = "".join(p.read_text(encoding="utf-8") for p in h.glob("*.csv")
                     if p.name != "patients.csv")
    odd = patients.index % 2 == 1
    patients.loc[odd, "name"] = _two_char_names(int(odd.sum()), others)
    patients.to_csv(h / "patients.csv", index=False)
    r = emraudit("scan", "--config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    access = pd.read_csv(h / "access_log.csv", dtype=str, keep_default_na=False)
    ids = set(patients["patient_id"]) | set(access["patient_id"]) - {""}
    staff = set(users["name"])
    # a patient who is also on the staff shows as staff (never masked): not a leak
    names = {n for n in patients["name"] if n and not any(n in s for s in staff)}
    assert (patients["name"].str.len() == 2).sum() > 1000
    assert sum(len(n) == 2 for n in names) > 100
    return {"cfg": cfg, "root": h, "scan_out": r.stdout, "ids": ids, "names": names}


def _leaks(site, text: str) -> list[str]:
    """Raw patient ids (as whole tokens) and names found in `text`."""
    import re
    tokens = set(re.findall(r"[A-Za-z0-9_-]+", text))
    found = sorted(tokens & site["ids"])
    found += sorted(n for n in site["names"] if n in text)
    return found


def _files_text(path: Path) -> str:
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as z:
            return "".join(z.read(n).decode("utf-8", "ignore") for n in z.namelist()
                           if n.endswith(".xml"))
    return path.read_text(encoding="utf-8", errors="ignore")


def _cli(site, *args) -> str:
    res = CliRunner().invoke(main, [args[0], *args[1:2], "--config", str(site["cfg"]),
                                    *args[2:]] if args[0] in ("cases", "allow", "report")
                             else [args[0], "--config", str(site["cfg"]), *args[1:]])
    assert res.exit_code == 0, res.output
    return res.output


def _case_with_patient(site) -> tuple[str, str]:
    """A case about patients, and the raw id of its first patient (from the store)."""
    from emraudit.store import cases as cases_t
    store = Store(load_config(site["cfg"]).store_url)
    with store.engine.connect() as c:
        for cid, pid, pats in c.execute(sa.select(cases_t.c.case_id, cases_t.c.patient_id,
                                                  cases_t.c.patients)
                                        .order_by(cases_t.c.case_id)):
            ids = ([pid] if pid else []) + json.loads(pats or "[]")
            if ids:
                return cid, ids[0]
    raise AssertionError("no case about a patient")


def _cases(site) -> list[dict]:
    return json.loads(_cli(site, "cases", "list", "--status", "all", "--format", "json"))


def test_the_report_folder_masks_every_patient(site):
    folder = site["root"] / "reports" / "latest"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    kinds = {p.suffix for p in files}
    assert {".html", ".jsonl", ".csv", ".xlsx"} <= kinds
    for p in files:
        assert not _leaks(site, _files_text(p)), p.name
    lines = (folder / "findings.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 100
    first = json.loads(lines[0])
    assert set(first) >= {"finding_id", "patient_id", "summary", "evidence", "event_ids"}


def test_the_command_line_masks_every_patient(site):
    cases = _cases(site)
    assert len(cases) > 50 and not _leaks(site, json.dumps(cases, ensure_ascii=False))
    assert not _leaks(site, _cli(site, "cases", "list", "--status", "all"))
    # one case of each detector, in both formats: every summary form
    by_det: dict[str, str] = {}
    for c in cases:
        for d in c["detectors"]:
            by_det.setdefault(d, c["case_id"])
    assert len(by_det) >= 10
    for cid in sorted(set(by_det.values())):
        for fmt in ("table", "json"):
            out = _cli(site, "cases", "show", cid, "--format", fmt)
            assert not _leaks(site, out), (cid, fmt, _leaks(site, out)[:3])
    assert not _leaks(site, site["scan_out"])


def test_reviewer_notes_and_allowlist_entries_are_masked(site):
    cid, raw = _case_with_patient(site)
    name = pd.read_csv(site["root"] / "patients.csv", dtype=str).set_index(
        "patient_id")["name"].get(raw)
    note = f"checked {raw} ({name}) with the ward"
    _cli(site, "cases", "resolve", cid, "--disposition", "justified", "--note", note, "--by",
         "reviewer")
    for fmt in ("table", "json"):
        out = _cli(site, "cases", "show", cid, "--format", fmt)
        assert raw not in out and (not name or name not in out), out
    out = _cli(site, "allow", "add", "--user", "U0001", "--patient", raw, "--until",
               "2030-01-01", "--reason", f"research on {raw}", "--by", "officer")
    assert raw not in out
    for fmt in ("table", "json"):
        out = _cli(site, "allow", "list", "--format", fmt)
        assert raw not in out and "research on" in out


def test_patient_case_and_summary_reports_mask_every_patient(site, tmp_path):
    cases = _cases(site)
    cid = cases[-1]["case_id"]
    page = Path(_cli(site, "report", "case", cid, "--out", str(tmp_path / "case.html"))
                .strip())
    assert not _leaks(site, page.read_text(encoding="utf-8"))
    store = Store(load_config(site["cfg"]).store_url)
    pid = store.read_findings()["patient_id"].replace("", pd.NA).dropna().iloc[0]
    out = _cli(site, "report", "patient", pid, "--from", "2026-09-01", "--to", "2026-10-31",
               "--out", str(tmp_path / "patient.html")).split()
    for f in out:
        assert not _leaks(site, _files_text(Path(f))), f
    out = _cli(site, "report", "summary", "--from", "2026-09-01", "--to", "2026-10-31",
               "--out", str(tmp_path / "summary.html")).split()
    for f in out:
        assert not _leaks(site, _files_text(Path(f))), f


def test_unmask_shows_raw_ids_and_is_recorded(site):
    cid, _ = _case_with_patient(site)
    masked = _cli(site, "cases", "show", cid, "--format", "json")
    raw = _cli(site, "cases", "show", cid, "--format", "json", "--unmask")
    assert not _leaks(site, masked) and _leaks(site, raw)
    store = Store(load_config(site["cfg"]).store_url)
    rows = store.read_table(audit_trail)
    rec = rows[(rows["action"] == "unmask") & (rows["target"] == cid)]
    assert len(rec) == 1 and rec["actor"].iloc[0].startswith("cli:")
    assert json.loads(rec["detail"].iloc[0])["command"] == "cases show"


def test_the_stores_own_export_is_raw_and_says_so(site):
    res = CliRunner().invoke(main, ["findings", "--help"])
    assert "RAW" in res.output
    out = _cli(site, "findings")
    assert _leaks(site, out)                   # the export for downstream systems


def test_a_failed_source_never_repeats_the_files_content(tmp_path):
    secret = "root:x:0:0:张三:/root:/bin/bash"
    (tmp_path / "passwd").write_text(secret + "\nbin:x:1:1::/bin:/sbin/nologin\n",
                                     encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text('[sources.access_log]\npath = "passwd"\n',
                                            encoding="utf-8")
    res = CliRunner().invoke(main, ["ingest", "--config", str(tmp_path / "emraudit.toml")])
    assert res.exit_code == 1 and "FAILED" in res.output, res.output
    assert "root" not in res.output and "张三" not in res.output and "/bin/bash" not in res.output
    assert "not shown" in res.output


def test_masker_scrubs_two_character_names_and_whole_ids_only():
    from emraudit.reports.masking import Masker
    m = Masker()
    m.learn(["P0001", "P0001234"], ["王五", "欧阳小明"])
    m.keep(["王五明"])
    text = "U1 saw 王五 (P0001) and 欧阳小明 P0001234; P00012 is another id; staff 王五明"
    assert m.scrub(text) == ("U1 saw 王* (P***1) and 欧**明 P0****34; P00012 is another id; "
                             "staff 王五明")
    assert m.case({"patient_id": "P0001", "patients": json.dumps(["P0001234"]),
                   "summary": "王五", "note": None}) == {
        "patient_id": "P***1", "patients": json.dumps(["P0****34"]), "summary": "王*",
        "note": None}
    f = m.finding({"patient_id": "P0001", "summary": "VIP patient P0001",
                   "evidence": {"who": ["王五", 3]}})
    assert f == {"patient_id": "P***1", "summary": "VIP patient P***1",
                 "evidence": {"who": ["王*", 3]}}
    assert Masker(enabled=False).scrub(text) == text
