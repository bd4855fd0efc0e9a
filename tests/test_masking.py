"""Patient masking: names as 张*明, ids as P0****67, free text scrubbed."""

from __future__ import annotations

import pandas as pd

from emraudit.reports.masking import Masker, mask_id, mask_name


def test_mask_name_shapes():
    assert mask_name("张三明") == "张*明"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳小明") == "欧**明"
    assert mask_name("王") == "*"
    assert mask_name("John Smith") == "J*** S****"
    assert mask_name(None) == "" and mask_name(float("nan")) == "" and mask_name(" ") == ""


def test_mask_id_keeps_two_characters_at_each_end():
    assert mask_id("P0123467") == "P0****67"
    assert mask_id("P00012367") == "P0*****67"
    assert mask_id("12345") == "1***5"
    assert mask_id("12") == "**"
    assert mask_id(pd.NA) == ""


def test_masker_off_shows_values():
    m = Masker(enabled=False)
    assert m.name("张三明") == "张三明" and m.pid("P0123467") == "P0123467"
    m.learn(["P0123467"], ["张三明"])
    assert m.scrub("张三明 P0123467") == "张三明 P0123467"


def test_scrub_replaces_known_names_and_ids_in_text():
    m = Masker()
    patients = pd.DataFrame({"patient_id": ["P0123467", "P999"], "name": ["张三明", "李四"]})
    m.learn_patients(patients, ["P0123467"])
    text = "U1 opened 张三明 (P0123467) twice; 李四 untouched"
    assert m.scrub(text) == "U1 opened 张*明 (P0****67) twice; 李四 untouched"
    assert m.scrub_obj({"who": ["张三明", 3]}) == {"who": ["张*明", 3]}
    assert m.scrub(None) == "" and m.scrub(float("nan")) == ""
