"""Loose fields are quarantined with a reason, never cut to fit (issue 17 item 4): negative or
fractional counts, nested JSON where a single value belongs, control characters in ids,
yes/no fields that say neither. Counts still reconcile: read = accepted + quarantined +
duplicates."""

import json

import pandas as pd
import pytest

from emraudit.config import load_config
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.model import validate
from emraudit.store import Store, quarantine

TZ = "Asia/Shanghai"


def _ingest(tmp_path, files: dict[str, bytes], sources: str):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "emraudit.toml").write_text(sources, encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    res = {r.name: r for r in ingest(cfg, store, lake)}
    for r in res.values():
        assert r.status != "failed", r.error
        assert r.read == r.accepted + r.quarantined + r.duplicates
    q = store.read_table(quarantine).sort_values("id")
    events = lake.read_events(store.committed_runs())
    return res, q, events


def _reasons(q) -> dict[str, str]:
    return dict(zip(q["source_ref"], q["reason"]))


def test_csv_record_counts_that_are_not_counts_are_quarantined(tmp_path):
    rows = ["E1,2025-07-01 08:00:00,u1,p1,print,3",
            "E2,2025-07-01 08:01:00,u1,p1,print,-5",
            "E3,2025-07-01 08:02:00,u1,p1,print,1.5",
            "E4,2025-07-01 08:03:00,u1,p1,print,1.0",        # a whole number written so
            "E5,2025-07-01 08:04:00,u1,p1,print,",           # blank: the default, 1
            "E6,2025-07-01 08:05:00,u1,p1,export,99999999999999999999"]
    csv = "event_id,ts,user_id,patient_id,action,record_count\n" + "\n".join(rows) + "\n"
    res, q, ev = _ingest(tmp_path, {"a.csv": csv.encode()},
                         '[sources.access_log]\npath = "a.csv"\n')
    why = _reasons(q)
    assert why == {"a.csv:3": "'record_count' is negative (-5)",
                   "a.csv:4": "'record_count' is not a whole number (1.5)",
                   "a.csv:7": "'record_count' is too large to be a count"}
    assert dict(zip(ev["event_id"], ev["record_count"])) == {"E1": 3, "E4": 1, "E5": 1}
    assert res["access_log"].accepted == 3 and res["access_log"].quarantined == 3


def test_every_negative_count_is_caught_on_the_fast_integer_path():
    """A column of plain integers takes Arrow's one-cast path: negatives are caught there."""
    df = pd.DataFrame({"event_id": ["a", "b"], "ts": ["2025-07-01 08:00:00"] * 2,
                       "user_id": ["u", "u"], "patient_id": ["p", "p"],
                       "action": ["print", "print"], "record_count": ["-1", "2"]},
                      dtype="string[pyarrow]")
    v = validate("access_log", df, TZ, "s")
    assert list(v.accepted["event_id"]) == ["b"]
    assert list(v.quarantine["reason"]) == ["'record_count' is negative (-1)"]


def test_jsonl_nested_values_in_scalar_columns_are_quarantined(tmp_path):
    lines = [{"event_id": "E1", "ts": "2025-07-01 08:00:00", "user_id": "u1",
              "patient_id": "p1", "action": "view"},
             {"event_id": "E2", "ts": "2025-07-01 08:00:01", "user_id": {"a": 1},
              "patient_id": "p1", "action": "view"},
             {"event_id": "E3", "ts": "2025-07-01 08:00:02", "user_id": "u1",
              "patient_id": ["p1", "p2"], "action": "view"},
             {"event_id": "E4", "ts": "2025-07-01 08:00:03", "user_id": "u1",
              "patient_id": "p1", "action": "print", "record_count": {"n": 3}},
             {"event_id": "E5", "ts": "2025-07-01 08:00:04", "user_id": "u1",
              "patient_id": "p1", "action": "view", "module": [1]},
             # text that merely starts with a bracket is a value like any other
             {"event_id": "E6", "ts": "2025-07-01 08:00:05", "user_id": "u1",
              "patient_id": "p1", "action": "view", "module": "[病历] 首页"}]
    data = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
    res, q, ev = _ingest(tmp_path, {"a.jsonl": data.encode()},
                         '[sources.access_log]\nconnector = "jsonl"\npath = "a.jsonl"\n')
    why = _reasons(q)
    assert set(why) == {"a.jsonl:2", "a.jsonl:3", "a.jsonl:4", "a.jsonl:5"}
    assert "'user_id' holds a nested JSON value" in why["a.jsonl:2"]
    assert "'patient_id' holds a nested JSON value" in why["a.jsonl:3"]
    assert "'record_count' holds a nested JSON value" in why["a.jsonl:4"]
    assert "'module' holds a nested JSON value" in why["a.jsonl:5"]
    assert list(ev["event_id"]) == ["E1", "E6"]
    assert '{"a":1}' not in set(ev["user_id"])


@pytest.mark.parametrize("value,code", [("u\x001", "U+0000"), ("u\x1b[31m1", "U+001B"),
                                        ("u\x07", "U+0007"), ("u\t1", "U+0009"),
                                        ("u1\x1f", "U+001F"), ("\x7fu1", "U+007F"),
                                        ("u\u00851", "U+0085")])
def test_control_characters_in_ids_are_quarantined_without_echoing_the_id(tmp_path, value,
                                                                          code):
    csv = ("event_id,ts,user_id,patient_id,action\n"
           "E1,2025-07-01 08:00:00,u1,p1,view\n"
           f"E2,2025-07-01 08:00:01,{value},p1,view\n"
           f"E3,2025-07-01 08:00:02,u1,{value},view\n"
           f"E4{value},2025-07-01 08:00:03,u1,p1,view\n"
           "E5,2025-07-01 08:00:04, u5 ,p1,view\n")        # edge spaces are only trimmed
    res, q, ev = _ingest(tmp_path, {"a.csv": csv.encode()},
                         '[sources.access_log]\npath = "a.csv"\n')
    why = _reasons(q)
    assert why == {"a.csv:3": f"control character {code} in 'user_id'",
                   "a.csv:4": f"control character {code} in 'patient_id'",
                   "a.csv:5": f"control character {code} in 'event_id'"}
    assert list(ev["event_id"]) == ["E1", "E5"] and list(ev["user_id"]) == ["u1", "u5"]


def test_reference_ids_and_yes_no_fields_are_checked_too(tmp_path):
    patients = ("patient_id,name,vip,sensitive\n"
                "P1,张三,1,0\nP2,李四,是,否\nP3,王五,maybe,0\nP4\x1b,赵六,0,0\nP5,钱七,,\n")
    access = "event_id,ts,user_id,patient_id,action\nE1,2025-07-01 08:00:00,u1,P1,view\n"
    res, q, _ = _ingest(tmp_path, {"patients.csv": patients.encode(), "a.csv": access.encode()},
                        '[sources.access_log]\npath = "a.csv"\n'
                        '[sources.patients]\npath = "patients.csv"\n')
    assert _reasons(q) == {"patients.csv:4": "'vip' is not yes/no ('maybe')",
                           "patients.csv:5": "control character U+001B in 'patient_id'"}
    assert res["patients"].accepted == 3
