"""The masker's batch helpers, stated as behaviour: `unchanged` (which evidence texts a
findings.jsonl batch may skip walking) and `learn_findings` (which patients a batch of
findings teaches). A wrong True from `unchanged`, or a patient `learn_findings` misses, is a
patient id or name left in clear in a report."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from property_settings import examples

from emraudit.reports.masking import Masker, id_tokens, mask_id, mask_name

PATIENTS = pd.DataFrame({"patient_id": pd.Series(["P001", "P002", "P003"], dtype="string"),
                         "name": pd.Series(["王小明", "李四", "张三丰"], dtype="string")})


def _j(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def test_unchanged_marks_only_the_texts_naming_a_known_string():
    m = Masker()
    m.learn(ids=["P001"], names=["王小明"])          # known strings, nothing kept
    texts = [_j({"a": "x"}), _j({"who": "王小明"}), _j({"b": "y"}), _j({"ids": ["P001"]}),
             _j({"c": "王六"})]                       # 王 starts a known string, 王六 none
    got = m.unchanged(texts)
    assert got.dtype == bool
    assert got.tolist() == [True, False, True, False, True]


def test_unchanged_on_a_two_character_text_and_on_none():
    m = Masker()
    m.learn(names=["王五"])
    assert m.unchanged(["王五"]).tolist() == [False]
    assert m.unchanged(["李四"]).tolist() == [True]
    got = m.unchanged([])
    assert got.dtype == bool and got.tolist() == []


def test_unchanged_never_skips_when_a_known_string_holds_a_character_json_escapes():
    m = Masker()
    m.learn(names=['王"五'])                         # JSON writes it as 王\"五
    got = m.unchanged([_j({"a": "x"}), _j({"b": 'x王"五'})])
    assert got.dtype == bool and got.tolist() == [False, False]


def test_unchanged_skips_blank_strings_and_escapes_never():
    m = Masker()
    m.learn(names=["王五"])
    assert m.unchanged([_j({"a": " "}), '{"a": "\\u00e9"}', _j({"a": "ok"})]).tolist() == \
        [False, False, True]
    off = Masker(enabled=False)
    assert off.unchanged([_j({"a": " "}), _j({"a": "王五"})]).tolist() == [False, True]


def test_learn_findings_learns_the_patients_names_from_the_patients_table():
    m = Masker()
    m.learn_findings(PATIENTS, pd.DataFrame({"patient_id": ["P001"], "summary": ["viewed"]}))
    assert m.scrub("王小明 P001") == "王*明 P**1"
    assert m.scrub("李四 P002") == "李四 P002"        # not named by the finding


def test_learn_findings_learns_patients_named_in_summaries_and_evidence_texts():
    m = Masker()
    found = pd.DataFrame({"patient_id": ["P001"], "summary": ["also opened P002"]})
    m.learn_findings(PATIENTS, found, evidence_texts=[_j({"others": ["P003"]})])
    assert m.scrub("P002 李四 P003 张三丰") == "P**2 李* P**3 张*丰"


def test_learn_findings_encodes_evidence_objects_whatever_they_hold():
    m = Masker()
    found = pd.DataFrame({"patient_id": ["P001"],
                          "evidence": [{"at": pd.Timestamp("2025-07-01 10:00"),
                                        "others": ["P003"]}]})
    m.learn_findings(PATIENTS, found)
    assert m.scrub("张三丰") == "张*丰"


def test_learn_findings_without_findings_or_columns_learns_nothing_and_does_not_fail():
    m = Masker()
    m.learn_findings(PATIENTS, None)
    m.learn_findings(PATIENTS, pd.DataFrame({"patient_id": []}))
    m.learn_findings(PATIENTS, pd.DataFrame({"summary": ["P002 was opened"]}))
    assert m.scrub("P002") == "P**2"
    m.learn_findings(PATIENTS, pd.DataFrame({"patient_id": ["P003"]}))
    assert m.scrub("张三丰") == "张*丰"
    assert np.array_equal(m.unchanged([_j({"a": "张三丰"})]), [False])


def test_scrub_of_blank_and_non_text_values():
    m = Masker()
    m.learn(ids=["P001"])
    assert m.scrub("   ") == "" and m.scrub(None) == "" and m.scrub(float("nan")) == ""
    assert m.scrub(12) == "12"
    assert m.scrub(["P001"]) == "['P**1']"


def test_learning_patients_without_a_patients_table_or_its_names():
    m = Masker()
    m.learn_patients(None, ["P001"])
    m.learn_patients(pd.DataFrame({"patient_id": ["P002"]}), ["P002"])   # no name column
    m.learn_patients(PATIENTS.iloc[:0], ["P003"])
    m.learn_mentioned(None, ["P001 and P002"])
    m.learn_mentioned(PATIENTS.iloc[:0], ["P001 and P002"])
    assert m.scrub("P001 P002 P003 王小明") == "P**1 P**2 P**3 王小明"


def test_a_finding_without_a_patient_keeps_its_empty_patient_field():
    m = Masker()
    assert m.finding({"patient_id": "", "summary": "x"})["patient_id"] == ""
    assert m.finding({"patient_id": "P001", "summary": "x"})["patient_id"] == "P**1"


def test_case_patient_ids_are_its_patient_then_its_incidents_list():
    from emraudit.reports.masking import case_patient_ids
    assert case_patient_ids({"patient_id": "P1", "patients": ["P2", 3]}) == ["P1", "P2", "3"]
    assert case_patient_ids({"patient_id": "P1", "patients": '["P2"]'}) == ["P1", "P2"]
    assert case_patient_ids({"patient_id": None, "patients": "not json"}) == []


def test_patient_ids_of_spread_findings_are_learned_with_their_names():
    m = Masker()
    found = pd.DataFrame({"patient_id": ["", None],
                          "patient_ids": [["P001", "P003"], None],
                          "summary": ["U1 opened 2 records", "x"]})
    m.learn_findings(PATIENTS, found)
    assert m.scrub("P001 王小明 P003 张三丰 P002 李四") == \
        f"{mask_id('P001')} 王*明 {mask_id('P003')} 张*丰 P002 李四"


def test_a_patient_learned_from_one_table_gets_the_names_of_another():
    m = Masker()
    m.learn_patients(PATIENTS, ["P001", "P001"])
    assert m.scrub("王小明") == "王*明"
    # the same table again teaches nothing new, and scrubbing stays right
    m.learn_patients(PATIENTS, ["P001"])
    assert m.scrub("P001 王小明") == f"{mask_id('P001')} 王*明"
    # a different table (a later snapshot) naming P001 otherwise: that name is learned too
    other = pd.DataFrame({"patient_id": ["P001"], "name": ["赵小红"]})
    m.learn_patients(other, ["P001"])
    assert m.scrub("赵小红 王小明") == "赵*红 王*明"
    # ids learned without a table first still get their names from one later
    n = Masker()
    n.learn_patients(None, ["P002"])
    assert n.scrub("李四") == "李四"
    n.learn_patients(PATIENTS, ["P002"])
    assert n.scrub("P002 李四") == f"{mask_id('P002')} {mask_name('李四')}"


def test_strings_sharing_no_first_character_pass_and_the_check_follows_new_patients():
    m = Masker()
    m.learn(ids=["P001"])
    assert m.scrub("2026-09-07T11:32:00+08:00") == "2026-09-07T11:32:00+08:00"
    assert m.scrub("Q7 met P001") == f"Q7 met {mask_id('P001')}"
    m.learn(ids=["Q7"])                       # a new first character: Q
    assert m.scrub("Q7 met P001") == f"{mask_id('Q7')} met {mask_id('P001')}"
    m.keep(["Q7X"])                           # kept strings start matches too
    assert m.scrub("Q7X") == "Q7X"


def test_findings_patients_are_the_lists_learn_findings_learns_and_teach_nothing():
    m = Masker()
    found = pd.DataFrame({"patient_id": ["P001", ""], "patient_ids": [None, ["P003"]],
                          "summary": ["viewed", "also opened P002 and P009"]})
    texts = [_j({"others": ["P003", "P001x"]}), ""]
    assert m.findings_patients(PATIENTS, found, evidence_texts=texts) == \
        [["P001", ""], ["P003"], ["P002", "P003"]]      # P009: not in the patients table
    assert m.scrub("P001 P002 王小明") == "P001 P002 王小明"
    assert m.findings_patients(PATIENTS, found.iloc[:0]) == []
    assert m.findings_patients(None, found, evidence_texts=texts)[2] == []
    m.learn_findings(PATIENTS, found, evidence_texts=texts)
    assert m.scrub("P001 P002 P003 P009 王小明") == \
        f"{mask_id('P001')} {mask_id('P002')} {mask_id('P003')} P009 王*明"


def test_ready_builds_the_lookups_a_forked_worker_inherits():
    m = Masker()
    m.learn(ids=["P001"])
    m.ready(PATIENTS)
    assert m._index is not None and m._first_chars is not None and m._codes is not None
    assert m._pt is not None and m._pt[0] is PATIENTS
    off = Masker(enabled=False)
    off.ready(PATIENTS)
    assert off._pt is None and off._index is None


@settings(max_examples=examples(300), deadline=None)
@given(text=st.text(alphabet=st.one_of(st.sampled_from("aZ09_-. \t\n\"\\,:王é\x00\x7f\x80\ud800"),
                                       st.characters()), max_size=40))
def test_id_tokens_are_the_runs_of_ascii_letters_digits_underscores_and_dashes(text):
    assert id_tokens(text) == set(re.findall(r"[A-Za-z0-9_-]+", text))
