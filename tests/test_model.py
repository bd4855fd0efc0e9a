"""Canonical model: coercion, quarantine with reasons, duplicates, counts that add up."""

import pandas as pd
import pytest

from emraudit.model import derive_event_ids, describe_schema, validate
from emraudit.timeparse import cache_horolog_days, parse_timestamps

TZ = "Asia/Shanghai"


def _log(**cols):
    n = len(next(iter(cols.values())))
    base = {"ts": ["2025-07-01 08:00:00"] * n, "user_id": ["u1"] * n,
            "patient_id": ["p1"] * n, "action": ["view"] * n}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize("raw,expected", [
    ("2025-07-01 08:03:15", "2025-07-01 08:03:15+08:00"),
    ("2025/07/01 8:03", "2025-07-01 08:03:00+08:00"),
    ("20250701080315", "2025-07-01 08:03:15+08:00"),
    ("2025-07-01T00:03:15Z", "2025-07-01 08:03:15+08:00"),
    ("2025-07-01T08:03:15+08:00", "2025-07-01 08:03:15+08:00"),
    ("2025-06-30T20:03:15-04:00", "2025-07-01 08:03:15+08:00"),
    ("1751328195", "2025-07-01 08:03:15+08:00"),
    ("1751328195000", "2025-07-01 08:03:15+08:00"),
    ("2025-07-01", "2025-07-01 00:00:00+08:00"),
])
def test_timestamp_formats_seen_in_hospital_exports(raw, expected):
    got = parse_timestamps(pd.Series([raw]), TZ).iloc[0]
    assert got == pd.Timestamp(expected)
    assert str(got.tz) == TZ


def test_unparseable_and_blank_times():
    got = parse_timestamps(pd.Series(["not a time", "", None, "2025-13-45 99:00"]), TZ)
    assert got.isna().all()


def test_cache_horolog_day_counts():
    # $H day 67387 is 2025-07-01 (days since 1840-12-31)
    assert cache_horolog_days(pd.Series(["67387"])).iloc[0] == pd.Timestamp("2025-07-01")


def test_bad_rows_quarantined_with_reason_and_counts_add_up():
    df = _log(ts=["2025-07-01 08:00:00", "garbage", "2025-07-01 09:00:00",
                  "2025-07-01 10:00:00", "2025-07-01 11:00:00"],
              user_id=["u1", "u2", "", "u4", "u5"],
              action=["view", "view", "view", "peek", "print"],
              patient_id=["p1", "p1", "p1", "p1", None])
    v = validate("access_log", df, TZ, "log.csv")
    assert len(v.accepted) == 1
    reasons = list(v.quarantine["reason"])
    assert reasons[0].startswith("unparseable time in 'ts': garbage")
    assert reasons[1] == "missing required 'user_id'"
    assert reasons[2] == "unknown action 'peek'"
    assert reasons[3].startswith("no patient for a patient action 'print'")
    assert list(v.quarantine["source_ref"]) == ["log.csv:2", "log.csv:3", "log.csv:4", "log.csv:5"]
    assert '"ts":"garbage"' in v.quarantine["raw"].iloc[0]   # raw value, not the coerced one
    c = v.counts
    assert c["read"] == c["accepted"] + c["quarantined"] + c["duplicates"] == 5


def test_duplicate_rows_counted_not_kept():
    df = _log(ts=["2025-07-01 08:00:00"] * 3, user_id=["u1", "u1", "u2"])
    v = validate("access_log", df, TZ, "log.csv")
    assert len(v.accepted) == 2 and v.duplicates == 1
    assert v.counts["read"] == 3


def test_event_ids_deterministic_and_source_specific():
    df = _log(user_id=["u1", "u2"])
    a = validate("access_log", df, TZ, "a.csv").accepted["event_id"]
    b = validate("access_log", df, TZ, "a.csv").accepted["event_id"]
    c = validate("access_log", df, TZ, "b.csv").accepted["event_id"]
    assert list(a) == list(b)
    assert set(a).isdisjoint(set(c))
    assert a.str.len().eq(32).all()


def test_given_event_ids_are_kept_and_ids_are_strings():
    df = _log(event_id=["E1", None], user_id=[1001, 1002.0])
    acc = validate("access_log", df, TZ, "x").accepted
    assert acc["event_id"].iloc[0] == "E1" and len(acc["event_id"].iloc[1]) == 32
    assert list(acc["user_id"]) == ["1001", "1002"]


def test_extra_columns_kept_and_defaults_filled():
    acc = validate("access_log", _log(vendor_col=["x"]), TZ, "x").accepted
    assert acc["vendor_col"].iloc[0] == "x"
    assert acc["record_count"].iloc[0] == 1 and acc["outcome"].iloc[0] == "success"


def test_login_without_patient_is_fine_and_failed_login_is_failure():
    df = _log(action=["login", "login_failed"], patient_id=[None, None])
    acc = validate("access_log", df, TZ, "x").accepted
    assert list(acc["outcome"]) == ["success", "failure"]


def test_roles_and_statuses_normalized():
    users = pd.DataFrame({"user_id": ["a", "b", "c", "d"],
                          "role": ["医生", "RN", "病案室", "astronaut"],
                          "status": ["在职", "离职", "active", "leave"]})
    acc = validate("users", users, TZ, "users.csv").accepted
    assert list(acc["role"]) == ["physician", "nurse", "medical_records", "other"]
    assert list(acc["status"]) == ["active", "terminated", "active", "leave"]


def test_care_relation_ending_before_start_quarantined():
    rel = pd.DataFrame({"patient_id": ["p"], "user_id": ["u"], "kind": ["admission"],
                        "start": ["2025-07-02"], "end": ["2025-07-01"]})
    v = validate("care_relations", rel, TZ, "rel.csv")
    assert v.quarantine["reason"].iloc[0] == "care relation ends before it starts"


def test_patient_flags_are_booleans():
    p = pd.DataFrame({"patient_id": ["1", "2"], "vip": ["1", ""], "sensitive": ["是", "0"]})
    acc = validate("patients", p, TZ, "p").accepted
    assert list(acc["vip"]) == [True, False] and list(acc["sensitive"]) == [True, False]


def test_event_ids_vectorized_many_rows():
    n = 20000
    df = _log(user_id=[f"u{i}" for i in range(n)])
    ids = derive_event_ids(validate("access_log", df, TZ, "x").accepted, "x")
    assert ids.nunique() == n


def test_schema_described():
    text = describe_schema()
    for t in ("access_log", "users", "patients", "care_relations", "shifts", "workstations"):
        assert t in text


def test_event_ids_equal_the_reference_row_hash():
    """The fast per-column hashing gives exactly pandas' row hash of (source, fields, ts)."""
    import numpy as np
    from emraudit.model import EVENT_ID_FIELDS, _row_hashes
    df = validate("access_log", _log(user_id=["u1", "u2", "u1"], patient_id=["p1", None, "p3"],
                                     action=["view", "login", "print"]), TZ, "x").accepted
    cols = [c for c in EVENT_ID_FIELDS if c in df.columns and c != "ts"]
    frame = pd.DataFrame({c: df[c].astype("string").fillna("\x00") for c in cols})
    frame["ts"] = df["ts"].dt.tz_convert("UTC").astype("int64")
    frame.insert(0, "_src", "x")
    ref = pd.util.hash_pandas_object(frame, index=False, hash_key="emraudit-evt-001")
    assert np.array_equal(_row_hashes(df, "x")[0], ref.to_numpy())


def test_record_count_plain_integers_and_the_general_route_agree():
    """Plain integers take Arrow's one-cast route; anything else the general one, which
    quarantines what is not a whole number. Both give the same values."""
    base = {"ts": "2025-07-01 08:00", "user_id": "u1", "patient_id": "p1", "action": "print"}
    plain = pd.DataFrame([{**base, "event_id": f"e{i}", "record_count": v}
                          for i, v in enumerate(["3", None, "12"])]).astype("string")
    mixed = pd.DataFrame([{**base, "event_id": f"e{i}", "record_count": v}
                          for i, v in enumerate(["3", None, "12.0", "many"])]).astype("string")
    a = validate("access_log", plain, "Asia/Shanghai", "t")
    b = validate("access_log", mixed, "Asia/Shanghai", "t")
    assert a.accepted["record_count"].tolist() == [3, 1, 12]
    assert b.accepted["record_count"].tolist() == [3, 1, 12]
    assert b.quarantine["reason"].tolist() == ["'record_count' is not a whole number"]
