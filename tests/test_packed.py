"""Findings packed for the trip from a partition to the store (emraudit.packed): the text is
the store's own either way, compressed only above the plain budget, and read back alike."""

from __future__ import annotations

import zlib

import pandas as pd

from emraudit.engine import job as engine_job
from emraudit.model import dumps
from emraudit.packed import PLAIN_BUDGET, args_text, evidence_text, pack, text_of, unpack


def _found(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "finding_id": [f"f{i}" for i in range(n)], "detector": ["care.no_relationship"] * n,
        "severity": ["low"] * n, "score": [1.0] * n, "user_id": ["U1"] * n,
        "patient_id": [f"P{i}" for i in range(n)],
        "start": ["2026-09-09T01:00:00+00:00"] * n, "end": ["2026-09-09T02:00:00+00:00"] * n,
        "event_ids": [[f"E{i}", f"E{i}b"] for i in range(n)],
        "rectification_item": ["九"] * n, "summary": ["s"] * n,
        "evidence": [{"day": "2026-09-09", "病区": "心内科", "n": i, "p": 3e-06}
                     for i in range(n)],
        "message_id": ["care.no_relationship"] * n,
        "message_args": [{"user": "U1", "accesses": i} if i else None for i in range(n)],
    })


def test_a_small_partition_travels_its_text_plain():
    found = _found()
    packed = pack(found, plain_bytes=10_000)
    for obj, v in zip(found["evidence"], packed["evidence"]):
        assert isinstance(v, bytes) and v[:1] == b"{"
        assert text_of(v) == evidence_text(v) == dumps(obj)
    assert packed["message_args"][0] is None
    assert evidence_text(packed["message_args"][1]) == args_text(found["message_args"][1])
    assert unpack(packed)["evidence"].tolist() == found["evidence"].tolist()


def test_above_the_budget_the_text_is_compressed_and_reads_the_same():
    found = _found()
    plain = pack(found, plain_bytes=10_000)
    size = sum(len(v) for c in ("evidence", "message_args") for v in plain[c] if v)
    at = pack(found, plain_bytes=size)          # exactly the budget: still plain
    over = pack(found, plain_bytes=size - 1)    # one byte over: compressed, every value
    assert all(v[:1] == b"{" for v in at["evidence"])
    assert all(v[:1] == b"x" for v in over["evidence"])
    assert over["message_args"][0] is None and over["message_args"][2][:1] == b"x"
    for a, b in zip(plain["evidence"], over["evidence"]):
        assert zlib.decompress(b) == a
        assert evidence_text(a) == evidence_text(b)
    assert unpack(over)["message_args"].tolist() == found["message_args"].tolist()


def test_the_default_compresses_as_before():
    packed = pack(_found())
    assert all(v[:1] == b"x" for v in packed["evidence"])


def test_pass_two_shares_the_budget_among_the_tasks(monkeypatch):
    seen = []

    def spy(found, plain_bytes=0):
        seen.append(plain_bytes)
        return found
    monkeypatch.setattr(engine_job, "pack", spy)
    monkeypatch.setattr(engine_job, "run_detectors", lambda ctx, settings: (_found(), {}))
    monkeypatch.setattr(engine_job, "read_partition", lambda job, task: pd.DataFrame())
    monkeypatch.setattr(engine_job, "partition_context",
                        lambda job, ev: type("C", (), {"memo": {}, "outputs": {},
                                                       "notes": []})())
    monkeypatch.setattr(engine_job, "_unspill", lambda job, task, n: {})

    class Job:
        settings: dict = {}
    from emraudit.engine.plan import Task
    engine_job.pass_two(Job(), Task(1, 4, ()))
    engine_job.pass_two(Job(), Task(0, 1, ()))
    assert seen == [PLAIN_BUDGET // 5, PLAIN_BUDGET // 2]
