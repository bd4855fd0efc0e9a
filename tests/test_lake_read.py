"""Reading events back from the lake in the scan's coded form: the categoricals, the time
window and the (ts, event_id) order must be exactly what the plain read gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from emraudit.lake import Lake, _range_order, _sorted_categorical
from emraudit.model import CODED_EVENT_COLUMNS

TZ = "Asia/Shanghai"


def mixed_chunks() -> pa.ChunkedArray:
    """Row groups as Parquet hands them over: each with its own dictionary, nulls in the
    indices, and chunks that are plain text or all-null (a column one file lacks)."""
    d1 = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0], pa.int32()),
                                        pa.array(["b", "a"]))
    d2 = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), pa.array(["c", "a"]))
    return pa.chunked_array([d1.cast(pa.dictionary(pa.int32(), pa.large_string())),
                             d2.cast(pa.dictionary(pa.int32(), pa.large_string())),
                             pa.array(["张", None, "B"], pa.large_string()).dictionary_encode(),
                             pa.nulls(2, pa.dictionary(pa.int32(), pa.large_string()))])


def test_row_groups_become_one_categorical_with_sorted_categories():
    col = mixed_chunks()
    got = _sorted_categorical(col, None)
    want = ["b", "a", None, "b", "a", "c", "张", None, "B", None, None]
    assert list(got.categories) == ["B", "a", "b", "c", "张"]      # code-point order
    assert [None if pd.isna(v) else v for v in got] == want
    assert got.categories.dtype == object


def test_rows_are_picked_by_positions_or_a_run():
    col = mixed_chunks()
    full = list(_sorted_categorical(col, None).codes)
    assert list(_sorted_categorical(col, np.array([5, 0, 8])).codes) == [full[5], full[0],
                                                                         full[8]]
    part = _sorted_categorical(col, slice(3, 7))
    assert list(part.codes) == full[3:7]
    assert part.codes.base is None or part.codes.base.size == 4     # not a view of all rows


def frame(ts: list[str], ids: list[str]) -> pa.Table:
    t = pd.to_datetime(pd.Series(ts)).dt.tz_localize(TZ)
    return pa.table({"ts": pa.array(t), "event_id": pa.array(ids, pa.large_string())})


def stamp(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=TZ)


def test_rows_in_order_need_no_order_and_a_window_of_them_is_a_run():
    tb = frame(["2025-07-01 08:00", "2025-07-01 08:00", "2025-07-01 09:00", "2025-07-01 10:00"],
               ["E1", "E2", "E0", "E9"])
    assert _range_order(tb, None, None) is None
    assert _range_order(tb, stamp("2025-07-01 08:00"), stamp("2025-07-01 10:00")) == slice(0, 3)
    assert _range_order(tb, stamp("2025-07-01 08:30"), None) == slice(2, 4)


def test_ties_out_of_id_order_and_rows_out_of_time_order_are_sorted():
    tb = frame(["2025-07-01 08:00", "2025-07-01 08:00", "2025-07-01 07:00"],
               ["E2", "E10", "E5"])   # "E10" < "E2" as text
    assert list(_range_order(tb, None, None)) == [2, 1, 0]
    assert list(_range_order(tb, stamp("2025-07-01 07:30"), None)) == [1, 0]


@pytest.fixture
def lake_with_two_runs(tmp_path):
    lake = Lake(tmp_path / "lake", TZ)
    cols = {c: pd.Series(dtype="string") for c in CODED_EVENT_COLUMNS}

    def events(ts, ids, users, patients, extra=None):
        df = pd.DataFrame({"event_id": pd.Series(ids, dtype="string"),
                           "ts": pd.to_datetime(pd.Series(ts)).dt.tz_localize(TZ)})
        for c in cols:
            df[c] = pd.Series([None] * len(ids), dtype="string")
        df["user_id"] = pd.Series(users, dtype="string")
        df["patient_id"] = pd.Series(patients, dtype="string")
        df["action"] = "view"
        df["record_count"] = 1
        if extra:
            df = df.drop(columns=extra)     # an older file without these columns
        return df

    lake.write_events(events(["2025-07-01 09:00", "2025-07-01 08:00", "2025-07-02 01:00"],
                             ["E3", "E1", "E7"], ["u2", "u1", "u2"], ["p9", None, "p1"]), "r1")
    lake.write_events(events(["2025-07-01 08:00", "2025-07-01 12:00"], ["E0", "E4"],
                             ["u3", "u1"], ["p2", "p9"], extra=["reason"]), "r2")
    return lake


def test_coded_read_equals_the_plain_read(lake_with_two_runs):
    lake = lake_with_two_runs
    for start, end in [(None, None), (stamp("2025-07-01 08:00"), stamp("2025-07-01 12:00")),
                       (stamp("2025-07-01 00:00"), stamp("2025-07-02 00:00"))]:
        plain = lake.read_events({"r1", "r2"}, start, end)
        coded = lake.read_events({"r1", "r2"}, start, end, coded=True)
        assert list(coded.columns) == list(plain.columns)
        for c in CODED_EVENT_COLUMNS:
            assert isinstance(coded[c].dtype, pd.CategoricalDtype), c
            assert list(coded[c].cat.categories) == sorted(coded[c].cat.categories)
            pd.testing.assert_series_equal(coded[c].astype("string"), plain[c].astype("string"),
                                           check_names=False)
        pd.testing.assert_frame_equal(coded[["event_id", "ts", "record_count"]],
                                      plain[["event_id", "ts", "record_count"]])
    whole = lake.read_events({"r1", "r2"}, coded=True)
    assert list(whole["event_id"]) == ["E0", "E1", "E3", "E4", "E7"]
    assert whole["reason"].isna().all() and whole["patient_id"].isna().sum() == 1


def test_scan_reads_the_baseline_beside_the_lake_only_from_a_shared_store(tmp_path):
    from emraudit.detection import _background, _threads_share_store
    from emraudit.store import Store
    assert _threads_share_store(Store(f"sqlite:///{tmp_path / 's.db'}"))
    assert not _threads_share_store(Store("sqlite://"))     # one database per thread
    import threading
    with _background(True) as run:
        where = run(lambda: threading.current_thread().name)
        failed = run(lambda: 1 / 0)
    assert where().startswith("emraudit-load")
    with pytest.raises(ZeroDivisionError):
        failed()
    with _background(False) as run:
        assert run(lambda: threading.current_thread().name)() == threading.current_thread().name
