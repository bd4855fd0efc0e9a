"""Masking as a reader sees it (issue 23): every patient of the sample hospital — 791 of them
with two-character Chinese names — is masked in every shape an output takes (a finding's
summary and evidence, a case row with its patients list and the reviewer's note, free text,
JSON-like evidence), and the masked forms are pinned as literal strings.

Fast: the sample's patients table only, no scan (the slow end-to-end check over the report
folder, the case page and the CLI is tests/test_masking_outputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from emraudit.reports.masking import Masker, case_patient_ids, id_tokens, mask_id, mask_name

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "patients.csv", dtype="string", keep_default_na=False)


@pytest.fixture(scope="module")
def masker(patients) -> Masker:
    m = Masker()
    m.learn_patients(patients, patients["patient_id"])
    return m


@pytest.mark.parametrize("name,masked", [
    ("张三", "张*"), ("李莉", "李*"), ("王", "*"), ("张三明", "张*明"), ("欧阳小明", "欧**明"),
    ("  张三  ", "张*"), ("John Smith", "J*** S****"), ("Li", "L*"),
])
def test_name_shapes(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize("value,masked", [
    ("P0000001", "P0****01"), ("P00012367", "P0*****67"), ("123456", "12**56"),
    ("12345", "1***5"), ("123", "1*3"), ("12", "**"), ("1", "*"), (" P0000001 ", "P0****01"),
    (None, ""), (pd.NA, ""), (float("nan"), ""), ("  ", ""),
])
def test_id_shapes(value, masked):
    assert mask_id(value) == masked


def test_sample_has_two_character_names(patients):
    assert (patients["name"].str.len() == 2).sum() > 500


def test_every_patient_of_the_sample_is_masked_in_free_text(patients, masker):
    """Each patient's name and id inside a sentence comes out masked — the two-character
    names too — and nothing else in the sentence changes."""
    leaks = []
    for pid, name in zip(patients["patient_id"], patients["name"]):
        text = f"U0001 opened {pid} ({name}) at night；{name}的病历"
        got = masker.scrub(text)
        want = f"U0001 opened {mask_id(pid)} ({mask_name(name)}) at night；" \
               f"{mask_name(name)}的病历"
        if got != want:
            leaks.append((pid, got))
    assert leaks == []


def test_every_patient_is_masked_in_findings_and_cases(patients, masker):
    leaks = []
    for pid, name in zip(patients["patient_id"], patients["name"]):
        f = masker.finding({"patient_id": pid, "user_id": "U0001",
                            "summary": f"{name} ({pid}) opened",
                            "evidence": json.dumps({"patients": [pid], "names": {pid: name}},
                                                   ensure_ascii=False)})
        c = masker.case({"patient_id": pid, "patients": json.dumps([pid]),
                         "summary": f"看了{name}", "note": f"{name}是同事的家属 {pid}"})
        c2 = masker.case({"patient_id": None, "patients": [pid, pid]})
        out = json.dumps([f, c, c2], ensure_ascii=False)
        if pid in out or name in out:
            leaks.append(pid)
    assert leaks == []


def test_a_finding_as_an_output_shows_it():
    m = Masker()
    m.learn(["P0000001", "P0000002"], ["李莉", "王小明"])
    row = {"patient_id": "P0000001", "user_id": "U0007", "summary": "U0007 opened 李莉",
           "evidence": '{"other": "P0000002", "name": "王小明", "n": 3}'}
    got = m.finding(row)
    assert got == {"patient_id": "P0****01", "user_id": "U0007",
                   "summary": "U0007 opened 李*",
                   "evidence": '{"n": 3, "name": "王*明", "other": "P0****02"}'}
    assert row["patient_id"] == "P0000001"                  # the input is left alone
    # evidence already parsed, and evidence that is not JSON
    assert m.finding(dict(row, evidence={"who": ["李莉", 1]}))["evidence"] == \
        {"who": ["李*", 1]}
    assert m.finding(dict(row, evidence="not json 李莉"))["evidence"] == "not json 李*"
    assert m.finding(dict(row, evidence=None))["evidence"] is None
    assert m.finding(dict(row, patient_id=None))["patient_id"] is None
    off = Masker(enabled=False)
    off.learn(["P0000001"], ["李莉"])
    assert off.finding(row) == row


def test_a_case_as_an_output_shows_it():
    m = Masker()
    m.learn(["P0000001", "P0000002"], ["李莉"])
    row = {"case_id": "C-1", "patient_id": "P0000001", "patients": '["P0000001", "P0000002"]',
           "summary": "看了李莉", "note": "李莉 P0000002", "user_id": "U1"}
    assert m.case(row) == {"case_id": "C-1", "patient_id": "P0****01",
                           "patients": '["P0****01", "P0****02"]', "summary": "看了李*",
                           "note": "李* P0****02", "user_id": "U1"}
    assert m.case({"patients": ["P0000002"], "patient_id": None}) == \
        {"patients": ["P0****02"], "patient_id": None}
    assert m.case({"patients": "P0000002 broken", "note": ""}) == \
        {"patients": "P0****02 broken", "note": ""}
    assert Masker(enabled=False).case(row) == row


def test_ids_match_whole_tokens_only_and_longest_first():
    m = Masker()
    m.learn(["P0001", "P00012"], ["李莉", "李莉华"])
    assert m.scrub("P0001 P00012 XP0001 P0001X P0001-2 P0001。") == \
        "P***1 P0**12 XP0001 P0001X P0001-2 P***1。"
    assert m.scrub("李莉华和李莉") == "李*华和李*"
    assert m.scrub("李莉") == "李*"                        # the whole text is the name
    assert m.scrub("x李莉") == "x李*"                      # at the very end


def test_staff_names_are_kept_whole():
    m = Masker()
    m.learn(["P0000009"], ["王五"])
    m.keep(["王五明"])
    assert m.scrub("王五明 looked at 王五") == "王五明 looked at 王*"


def test_single_characters_are_not_learned():
    m = Masker()
    m.learn(["P", "7"], ["王"])
    assert m.scrub("王 P 7") == "王 P 7"


def test_masking_off_and_blanks():
    m = Masker(enabled=False)
    m.learn(["P0000001"], ["李莉"])
    m.keep(["王五明"])
    assert m.name("李莉") == "李莉" and m.pid("P0000001") == "P0000001"
    assert m.scrub("李莉 P0000001") == "李莉 P0000001"
    on = Masker()
    assert on.name("李莉") == "李*" and on.pid("P0000001") == "P0****01"
    assert on.name(None) == "" and on.pid(float("nan")) == ""
    assert on.scrub("nothing learned") == "nothing learned"
    assert on.scrub(None) == ""


def test_learn_mentioned_and_findings(patients):
    m = Masker()
    m.learn_mentioned(patients, ["U1 also opened P0000002 and P0000003", None])
    two = patients.set_index("patient_id").loc["P0000002", "name"]
    assert m.scrub(f"{two} P0000002") == f"{mask_name(two)} P0****02"
    assert m.scrub("P0000004") == "P0000004"                # not mentioned: not learned
    m = Masker()
    found = pd.DataFrame({"patient_id": ["P0000005"], "summary": ["see P0000006"],
                          "evidence": [{"peer": "P0000007"}]})
    m.learn_findings(patients, found)
    assert m.scrub("P0000005 P0000006 P0000007 P0000008") == \
        "P0****05 P0****06 P0****07 P0000008"
    off = Masker(enabled=False)
    off.learn_findings(patients, found)
    off.learn_mentioned(patients, ["P0000002"])
    assert off.scrub("P0000005") == "P0000005"


def test_case_patient_ids_and_tokens():
    assert case_patient_ids({"patient_id": "P1", "patients": '["P2", "P3"]'}) == \
        ["P1", "P2", "P3"]
    assert case_patient_ids({"patient_id": None, "patients": ["P2"]}) == ["P2"]
    assert case_patient_ids({"patient_id": "P1", "patients": "broken"}) == ["P1"]
    assert id_tokens("P0001，张三 U_1-a") == {"P0001", "U_1-a"}


def test_two_character_ids_and_staff_names_count_too():
    m = Masker()
    m.learn(["P7"], ["李莉"])
    m.keep(["王五"])
    m.learn([], ["王五"])            # a patient who shares a staff member's name
    assert m.scrub("P7 P77 王五 李莉") == "** P77 王五 李*"
