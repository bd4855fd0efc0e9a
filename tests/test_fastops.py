"""The fast helpers agree with pandas' own (slow) route."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from emraudit.fastops import isin, iso_strings, local_days, text_fields


def test_local_days_match_strftime_across_midnight():
    ts = pd.Series(pd.to_datetime(["2025-06-30T15:59:59Z", "2025-06-30T16:00:00Z", None],
                                  utc=True))
    got = local_days(ts, "Asia/Shanghai")
    assert list(got[:2]) == ["2025-06-30", "2025-07-01"] and pd.isna(got[2])
    ref = ts.dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%d")
    assert list(got[:2]) == list(ref[:2])


def test_isin_matches_pandas():
    a = pd.Series(["a", "b", None, "d"], dtype="string")
    assert list(isin(a, pd.Index(["b", "d", "x"], dtype="string"))) == [False, True, False, True]
    assert list(isin(a, set())) == [False] * 4
    assert np.array_equal(isin(a, {"a"}), a.isin(["a"]).fillna(False).to_numpy(bool))


def test_sorted_id_hashes_answer_membership_across_storages():
    from emraudit.fastops import id_hashes, in_sorted
    known = np.sort(id_hashes(pd.Series(["E1", "E2", "E3"], dtype="string")))
    asked = np.array(["E2", "E9", "E3", "e1"], dtype=object)     # object, not arrow
    assert in_sorted(known, id_hashes(asked)).tolist() == [True, False, True, False]
    assert in_sorted(np.empty(0, dtype=np.uint64), id_hashes(asked)).tolist() == [False] * 4
    assert in_sorted(known, id_hashes([])).tolist() == []


@pytest.mark.parametrize("dtype", ["string", "category"])
def test_is_value_and_factorize_text_agree_on_plain_and_coded_columns(dtype):
    from emraudit.fastops import factorize_text, is_value
    s = pd.Series(["failure", None, "success", "failure"], dtype="string").astype(dtype)
    assert is_value(s, "failure").tolist() == [True, False, False, True]
    assert not is_value(s, "absent").any()
    codes, uniq = factorize_text(s)
    assert [uniq[c] if c >= 0 else None for c in codes] == ["failure", None, "success",
                                                             "failure"]
    assert all(isinstance(u, str) for u in uniq)


@pytest.mark.parametrize("dtype", ["string", "category", "object"])
def test_positions_in_matches_get_indexer(dtype):
    from emraudit.fastops import positions_in
    index = pd.Index(["u2", "u1", "u3"], dtype="string")
    s = pd.Series(["u1", None, "u9", "u3", "u1"], dtype="string").astype(dtype)
    assert positions_in(s, index).tolist() == [1, -1, -1, 2, 1]
    ref = index.get_indexer(pd.Series(s, dtype="string").fillna("\x00"))
    assert positions_in(s, index).tolist() == ref.tolist()
    assert positions_in(s, pd.Index([], dtype="string")).tolist() == [-1] * 5
    assert positions_in(s.iloc[:0], index).tolist() == []


def test_local_days_over_a_long_span_and_with_missing_values():
    ts = pd.Series(pd.to_datetime(["1900-01-01T00:00:00Z", None, "2200-12-31T12:00:00Z",
                                   "2025-07-01T16:30:00Z"], utc=True))
    got = local_days(ts, "Asia/Shanghai")
    assert got.dtype == "string"
    ref = ts.dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%d")
    assert got.isna().tolist() == [False, True, False, False]
    assert got.dropna().tolist() == ref.dropna().tolist()
    assert local_days(ts.iloc[1:2], "Asia/Shanghai").isna().all()


@pytest.mark.parametrize("values", [["E1", "E2", "E1", "E3", "E2", "E1"], ["a", None, "a", None],
                                    [], ["x"]])
def test_duplicated_text_matches_pandas(values):
    from emraudit.fastops import duplicated_text
    s = pd.Series(values, dtype="string")
    assert duplicated_text(s).tolist() == s.duplicated(keep="first").tolist()


def test_text_helpers_take_concatenated_columns():
    """A Series concatenated from two is backed by several Arrow chunks."""
    from emraudit.fastops import duplicated_text, positions_in
    s = pd.concat([pd.Series(["a", "b"], dtype="string"), pd.Series(["a", "c"], dtype="string")],
                  ignore_index=True)
    assert duplicated_text(s).tolist() == [False, False, True, False]
    assert positions_in(s, s.iloc[[3, 0]]).tolist() == [1, -1, 1, 0]


def test_id_hashes_depend_on_the_value_only():
    """A value hashes the same whatever it is batched with (short and long ids take two
    routes), however it is stored; distinct ids of a million get distinct hashes."""
    from emraudit.fastops import id_hashes
    values = ["a", "a\x00", "", None, "x" * 17, "x" * 16, "中文编号001", "E1"]
    h = id_hashes(pd.Series(values, dtype="string"))
    assert h[2] == h[3]                                  # missing hashes as ""
    assert len(set(h.tolist())) == len(values) - 1
    for i, v in enumerate(values):
        if v is None:
            continue
        assert id_hashes(pd.Series([v], dtype="string"))[0] == h[i]
        assert id_hashes(np.array(["zz", v], dtype=object))[1] == h[i]
        assert id_hashes(pd.Series(["y" * 30, v]).astype("category"))[1] == h[i]
    sliced = pd.Series(["zz", "E1"], dtype="string").iloc[1:]
    assert id_hashes(sliced)[0] == h[7]
    many = pd.Series([f"E{i:07d}" for i in range(1_000_000)], dtype="string")
    assert len(np.unique(id_hashes(many))) == 1_000_000


def test_blank_text_is_strip_then_empty():
    from emraudit.fastops import blank_text
    vals = ["a", "", " ", "\t\n", "\u3000", "\xa0", " x ", None, "\u200b"]
    s = pd.Series(vals, dtype="string")
    assert blank_text(s).tolist() == (s.str.strip() == "").fillna(True).tolist()
    assert blank_text(pd.Series(vals, dtype=object)).tolist() == blank_text(s).tolist()


@pytest.mark.parametrize("codes", [[5, 3, 5, 0, 3, 9], [10**12, 7, 10**12, 7], []])
def test_dense_unique_answers_like_np_unique(codes):
    from emraudit.fastops import dense_unique
    a = np.array(codes, dtype=np.int64)
    distinct, first, inv = dense_unique(a)
    uniq = np.unique(a)
    assert a[first].tolist() == uniq.tolist()
    assert uniq[inv].tolist() == a.tolist()
    assert distinct.tolist() == uniq.tolist()


def test_stable_order_of_codes_is_a_stable_argsort():
    from emraudit.fastops import stable_order
    codes = np.array([3, -1, 0, 3, 1, 0, -1])
    assert stable_order(codes).tolist() == np.argsort(codes, kind="stable").tolist()
    wide = np.array([40000, 5, 40000, 2])
    assert stable_order(wide).tolist() == [3, 1, 0, 2]


@pytest.mark.parametrize("values", [
    [5, 5, 5, -1, 2, 5],                       # ties keep their order
    list(range(10, 0, -1)) * 3,
    [2**40, 7, 2**40, -3],                     # wide range: packed, if it fits
    [2**61, -2**61, 0, 2**61],                 # does not fit beside the positions: numpy
    [], [9],
])
def test_stable_order_is_numpys_stable_argsort(values):
    from emraudit.fastops import stable_order
    v = np.array(values, dtype=np.int64)
    assert stable_order(v).tolist() == np.argsort(v, kind="stable").tolist()


def test_cache_order_is_a_permutation_by_high_bits():
    from emraudit.fastops import cache_order, in_sorted
    rng = np.random.default_rng(5)
    h = rng.integers(0, 2**63, 50_000, dtype=np.uint64) * np.uint64(2)
    o = cache_order(h)
    assert sorted(o.tolist()) == list(range(len(h)))
    top = (h[o] >> np.uint64(40)).astype(np.int64)
    assert (np.diff(top) >= 0).all()                 # in order of the high bits
    haystack = np.sort(h[::7])
    assert in_sorted(haystack, h).tolist() == np.isin(h, haystack).tolist()


def test_trimmed_ids_match_the_pandas_route():
    """Trimmed, '1234.0' → '1234' for any decimal digits (Python's \\d), blanks missing."""
    from emraudit.fastops import text_missing_where, trimmed_ids
    s = pd.Series([" a1 ", "1234.0", "", None, "  ", "x.0", "12.00", "١٢.0", "五.0"],
                  dtype="string")
    want = s.str.strip().str.replace(r"^(\d+)\.0$", r"\1", regex=True)
    want = want.mask(want == "", pd.NA)
    got = pd.Series(pd.arrays.ArrowStringArray(trimmed_ids(s)))
    pd.testing.assert_series_equal(got, want)
    assert got.tolist()[:3] == ["a1", "1234", pd.NA] and got[7] == "١٢"
    masked = text_missing_where(s, np.array([True] + [False] * 8))
    assert masked.isna().tolist() == [True, False, False, True] + [False] * 5
    assert masked.dtype == s.dtype


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-2_500_000_000_000_000_000, 4_000_000_000_000_000_000)
                | st.sampled_from([0, 1, 999, 1000, 1_000_000_000, 1_711_846_800_000_000_000]),
                max_size=30),
       st.sampled_from([None, "UTC", "Asia/Shanghai", "Europe/London", "America/St_Johns",
                        "Asia/Kolkata", "Pacific/Chatham"]),
       st.booleans())
def test_iso_strings_are_what_isoformat_writes(ns, tz, microseconds):
    s = pd.Series(pd.to_datetime(np.asarray(ns, dtype="int64")))
    if microseconds:
        s = s.dt.floor("us")
    if tz:
        s = s.dt.tz_localize("UTC").dt.tz_convert(tz)
    assert list(iso_strings(s)) == [t.isoformat() for t in s]


def test_iso_strings_keep_missing_times_as_nat_and_offsets_with_seconds():
    s = pd.Series(pd.to_datetime(["1890-01-01 12:00:00", None, "2026-09-07 08:00:00.000000500"],
                                 format="ISO8601")
                  ).dt.tz_localize("Asia/Shanghai")
    assert list(iso_strings(s)) == [t.isoformat() for t in s]
    assert iso_strings(s)[0].endswith("+08:05:43") and iso_strings(s)[1] == "NaT"


def test_findings_times_by_column_are_the_value_by_value_ones():
    """findings_frame writes a datetime column with iso_strings: the same text as `_iso`
    value by value, missing times empty, other columns value by value."""
    from emraudit.detectors.base import _iso, _iso_column
    aware = pd.Series(pd.to_datetime(["2026-09-07 08:00:00.000123", None,
                                      "2026-09-07 23:59:59"], format="ISO8601")
                      ).dt.tz_localize("Asia/Shanghai")
    naive = pd.Series(pd.to_datetime(["2026-09-07 08:00:00", None]))
    mixed = pd.Series([pd.Timestamp("2026-09-07 08:00", tz="UTC"), None, "2026-09-07"],
                      dtype=object)
    for col in (aware, naive, mixed, aware.iloc[:0]):
        assert _iso_column(col) == [_iso(t) for t in col]
    assert _iso_column(aware)[1] == "" and _iso_column(aware)[0].endswith(".000123+08:00")


def test_text_fields_of_the_wanted_keys_last_row_winning():
    users = pd.DataFrame({"user_id": pd.Series(["U1", "U2", "U1", "7", None], dtype="string"),
                          "role": ["nurse", "doctor", "head_nurse", None, "x"],
                          "department": [None, "内科", "外科", 3, "y"]})
    out = text_fields(users, "user_id", ["U1", 7, "U9"], ("role", "department", "ward"))
    assert out == {"U1": {"role": "head_nurse", "department": "外科"},   # the last row of U1
                   "7": {"role": None, "department": "3"}}              # ids compared as text
    assert text_fields(users, "user_id", [], ("role",)) == {}


def test_values_of_gives_none_for_every_kind_of_missing_value():
    from emraudit.fastops import values_of
    assert values_of(pd.Series(["a", None, "b"], dtype="string[pyarrow]")) == ["a", None, "b"]
    assert values_of(pd.Series(["a", float("nan"), None], dtype=object)) == ["a", None, None]
    assert values_of(pd.Series([1.5, float("nan")])) == [1.5, None]
    assert values_of(pd.Series([], dtype=object)) == []
