"""The jsonl connector: one object per line, broken lines quarantined with their numbers."""

from __future__ import annotations

import json

import pandas as pd

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector


def make(tmp_path, text: str | bytes, extra: str = ""):
    (tmp_path / "log.jsonl").write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\nconnector = "jsonl"\npath = "log.jsonl"\n{extra}\n',
        encoding="utf-8")
    return load_config(tmp_path / "emraudit.toml")


def rows(n, start=0):
    return "".join(json.dumps({"event_id": f"e{i}", "ts": f"2025-07-01T08:{i % 60:02d}:00+08:00",
                               "user_id": 1000 + i, "patient_id": f"p{i}", "action": "view",
                               "detail": {"k": i}}, ensure_ascii=False) + "\n"
                   for i in range(start, start + n))


def read_all(cfg, wm=None):
    batches = list(open_connector("access_log", cfg).batches(wm))
    for b in batches:
        assert b.read == len(b.frame) + len(b.quarantine)
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    q = pd.concat([b.quarantine for b in batches], ignore_index=True)
    return batches, frame, q


def test_jsonl_reads_values_as_text_and_nested_as_json(tmp_path):
    cfg = make(tmp_path, rows(3))
    _, frame, q = read_all(cfg)
    assert q.empty
    assert frame["user_id"].tolist() == ["1000", "1001", "1002"]
    assert frame["detail"][0] == '{"k":0}'
    assert frame["_source_ref"].tolist() == ["log.jsonl:1", "log.jsonl:2", "log.jsonl:3"]
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert len(v.accepted) == 3 and str(v.accepted["ts"][0]) == "2025-07-01 08:00:00+08:00"


def test_broken_lines_are_quarantined_with_line_numbers(tmp_path):
    text = rows(2) + '{"event_id": "x", "ts": \n' + "\n" + "[1, 2]\n" + rows(1, start=5)
    cfg = make(tmp_path, text)
    batches, frame, q = read_all(cfg)
    assert frame["event_id"].tolist() == ["e0", "e1", "e5"]
    assert frame["_source_ref"].tolist() == ["log.jsonl:1", "log.jsonl:2", "log.jsonl:6"]
    assert q["source_ref"].tolist() == ["log.jsonl:3", "log.jsonl:5"]
    assert q["reason"][0].startswith("not valid JSON") and "not a JSON object" in q["reason"][1]
    assert sum(b.read for b in batches) == 5


def test_missing_key_becomes_a_quarantine_reason_not_a_crash(tmp_path):
    cfg = make(tmp_path, '{"ts": "2025-07-01 08:00:00", "action": "login"}\n')
    _, frame, _ = read_all(cfg)
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert v.quarantine["reason"].tolist() == ["missing required 'user_id'"]


def test_jsonl_resumes_after_appended_lines(tmp_path):
    cfg = make(tmp_path, rows(5), "batch_rows = 2")
    b1, f1, _ = read_all(cfg)
    assert len(f1) == 5
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write(rows(2, start=5))
    _, f2, _ = read_all(cfg, b1[-1].position)
    assert f2["event_id"].tolist() == ["e5", "e6"]
    assert f2["_source_ref"].tolist() == ["log.jsonl:6", "log.jsonl:7"]


def test_gb18030_jsonl_is_detected(tmp_path):
    text = json.dumps({"ts": "2025-07-01 08:00:00", "user_id": "u", "patient_id": "p",
                       "action": "view", "module": "病历"}, ensure_ascii=False) + "\n"
    cfg = make(tmp_path, text.encode("gb18030"))
    _, frame, _ = read_all(cfg)
    assert frame["module"].tolist() == ["病历"]
