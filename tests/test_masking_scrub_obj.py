"""`Masker.scrub_obj` decides most strings without calling `scrub` (a night's evidence holds
over a million); its result must stay exactly the plain walk's: `scrub` on every key and
string, tuples as lists, every other value as it is. `scrub`'s own shortcuts (no character
that starts a known string; the whole text a known string) must answer as its scan does."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from property_settings import examples

from emraudit.reports.masking import Masker

IDS = ["P0001", "P00012367", "Q7"]
NAMES = ["王五", "欧阳小明", "Li Wei"]
KEPT = ["王五明", "李四海"]
BLANKS = ["", " ", "\t\n", "\u3000"]
PLAIN = ["viewed", "2026-09-07T11:32:00+08:00", "心内科", "E123", "Wang", "P00012"]

pieces = st.sampled_from(IDS + NAMES + KEPT + BLANKS + PLAIN)
strings = st.one_of(pieces, st.lists(pieces, min_size=1, max_size=4).map(" ".join),
                    st.lists(pieces, min_size=1, max_size=3).map("".join),
                    st.text(alphabet="王五欧阳P0Qx 7-", max_size=8))
scalars = st.one_of(strings, st.integers(-5, 5), st.floats(allow_nan=False),
                    st.booleans(), st.none())
keys = st.one_of(strings, st.integers(0, 3), st.none())
objects = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


def _masker(kind: str) -> Masker:
    if kind == "off":
        m = Masker(enabled=False)
    else:
        m = Masker()
        if kind in ("known", "kept"):
            m.learn(ids=IDS, names=NAMES)
        if kind in ("kept", "kept only"):
            m.keep(KEPT)
    return m


def _reference(m: Masker, obj):
    if isinstance(obj, str):
        return m.scrub(obj)
    if isinstance(obj, dict):
        return {m.scrub(k): _reference(m, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_reference(m, v) for v in obj]
    return obj


@settings(max_examples=examples(300), deadline=None)
@given(obj=objects, kind=st.sampled_from(["known", "kept", "kept only", "nothing", "off"]))
def test_scrub_obj_is_the_plain_walk(obj, kind):
    m = _masker(kind)
    before = copy.deepcopy(obj)
    got, want = m.scrub_obj(obj), _reference(m, obj)
    assert got == want and repr(got) == repr(want)     # repr: lists, not tuples; bools
    assert repr(obj) == repr(before)                    # the input is left as it was


def test_scrub_obj_masks_and_empties_as_scrub_does():
    m = _masker("kept")
    obj = {"who": ("王五", "王五明", 3), " ": "P0001 met Q7", "t": ["\t", None, 1.5],
           7: {"欧阳小明": [True]}}
    assert m.scrub_obj(obj) == {"who": ["王*", "王五明", 3], "": "P***1 met **",
                                "t": ["", None, 1.5], "7": {"欧**明": [True]}}
    off = _masker("off")
    assert off.scrub_obj({"a": [" ", "王五"]}) == {"a": ["", "王五"]}


def test_scrub_obj_calls_scrub_only_for_strings_it_may_change():
    m = _masker("known")
    calls = []
    scrub = m.scrub
    m.scrub = lambda s: calls.append(s) or scrub(s)
    obj = {"times": [f"2026-09-07T11:{i:02d}:00" for i in range(50)],
           "detail": {"ward": "心内科", "n": 3}, "who": ["P0001", " "]}
    out = m.scrub_obj(obj)
    assert out["who"] == ["P***1", ""]
    assert sorted(calls) == [" ", "P0001"]


@settings(max_examples=examples(300), deadline=None)
@given(text=strings, also_kept=st.booleans())
def test_scrub_shortcuts_answer_as_the_scan(text, also_kept):
    m = _masker("kept")
    if also_kept:
        m.keep(["王五", "P0001"])          # kept and known: kept wins
    want = m._scrub(text) if text.strip() else ""
    assert m.scrub(text) == want
