"""The masker's index grows as a night's findings teach it patients, batch after batch; it
must stay exactly what building it once from everything learned would give (scrubbed text,
the batch skip of `unchanged`, the index itself)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from property_settings import examples

from emraudit.reports.masking import Masker

ALPHABET = "张王李明华欧阳PQ0123-_\"\\\n"
piece = st.text(alphabet=ALPHABET, min_size=1, max_size=6)
step = st.tuples(st.sampled_from(["ids", "names", "keep", "use"]),
                 st.lists(piece, max_size=4))


def _apply(m: Masker, kind: str, values: list[str]) -> None:
    if kind == "ids":
        m.learn(ids=values)
    elif kind == "names":
        m.learn(names=values)
    elif kind == "keep":
        m.keep(values)


@settings(max_examples=examples(150), deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=8),
       texts=st.lists(st.text(alphabet=ALPHABET + " ", max_size=30), min_size=1, max_size=6))
def test_a_grown_index_equals_one_built_at_once(steps, texts):
    grown = Masker()
    for kind, values in steps:
        if kind == "use":               # the index and the skip codes exist when learning
            grown.pattern()
            grown.unchanged([json.dumps({"t": t}, ensure_ascii=False) for t in texts])
            grown.scrub(" ".join(texts))
        _apply(grown, kind, values)
    once = Masker()
    for kind, values in steps:          # the same strings learned, nothing built before
        _apply(once, kind, values)
    docs = [json.dumps({"t": t}, ensure_ascii=False) for t in texts]
    assert grown.unchanged(docs).tolist() == once.unchanged(docs).tolist()
    assert [grown.scrub(t) for t in texts] == [once.scrub(t) for t in texts]
    assert grown.pattern() == once.pattern()


def test_learning_a_new_patient_after_scrubbing_changes_the_cached_answer():
    m = Masker()
    m.learn(ids=["P00012367"])
    assert m.scrub("张三 P00012367") == "张三 P0*****67"
    assert m.unchanged([json.dumps({"n": "张三"}, ensure_ascii=False)]).tolist() == [True]
    m.learn(names=["张三"])                 # learned after the index and cache were built
    assert m.scrub("张三 P00012367") == "张* P0*****67"
    assert m.unchanged([json.dumps({"n": "张三"}, ensure_ascii=False)]).tolist() == [False]
    m.learn(ids=["P00012367"], names=["张三"])     # nothing new: the same answers
    assert m.scrub("张三 P00012367") == "张* P0*****67"


def test_learn_patients_takes_repeats_once_and_a_new_table_its_own_names():
    """learn_patients drops repeated and blank ids before any work per id, and a masker
    handed another patients table learns the names that table gives the same ids."""
    import pandas as pd
    first = pd.DataFrame({"patient_id": ["P00012367", "P00099999"], "name": ["张三", "李四"]})
    m = Masker()
    m.learn_patients(first, ["P00012367", " ", None, "P00012367", 12345])
    assert m.scrub("张三 P00012367 12345 李四") == "张* P0*****67 1***5 李四"
    m.learn_patients(first, ["P00012367"])          # nothing new
    assert m.scrub("张三 P00012367") == "张* P0*****67"
    second = pd.DataFrame({"patient_id": ["P00012367"], "name": ["王五明"]})
    m.learn_patients(second, ["P00012367"])         # the same id, another table's name
    assert m.scrub("王五明") == "王*明"
