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


def test_unchanged_skips_only_evidence_that_scrubbing_cannot_change():
    """Masker.unchanged decides from the stored JSON text, for a batch at once, where the
    evidence walk can be skipped: never where a known name or id, a kept staff name, a
    blank string or an escaped character is in it; the decision matches scrub_obj."""
    import json as _json
    from emraudit.reports.masking import Masker
    m = Masker(True)
    m.learn(ids=["P0001"], names=["王五"])
    m.keep(["李四海"])
    objs = [
        {"ward": "心内科一病区", "n": 3, "ids": ["E1", "E2"]},        # nothing known
        {"note": "查阅王五的病历"},                                     # a patient's name
        {"patient": "P0001"},                                          # a patient's id
        {"staff": "李四海"},                                            # kept, still walked
        {"blank": "  "},                                                # scrub empties it
        {" ": "x"},                                                     # a blank key
        {"ward": "心内科", "other": "P00012"},                          # id prefix only
    ]
    texts = [_json.dumps(o, ensure_ascii=False, sort_keys=True) for o in objs]
    got = m.unchanged(texts)
    assert got.tolist() == [True, False, False, False, False, False, False]
    for o, t, same in zip(objs, texts, got):
        if same:
            assert m.scrub_obj(o) == o
    assert m.scrub_obj(objs[1]) != objs[1] and m.scrub_obj(objs[4]) != objs[4]
    # escaped text (an older store's ensure_ascii) is never skipped
    assert m.unchanged([_json.dumps({"ward": "心内科"})]).tolist() == [False]
    # a masker that masks nothing still empties blank strings
    off = Masker(False)
    assert off.unchanged(texts).tolist() == [True, True, True, True, False, False, True]
