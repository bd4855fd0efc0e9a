"""findings.jsonl is written by forked workers when a scan has many findings: the file must
be the one a single process writes, byte for byte, whatever the batch size, and every line
masked with every patient the file names (a patient first met in a later batch is masked in
an earlier batch's line too)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from emraudit.lake import Lake
from emraudit.model import dumps
from emraudit.reports import data, findings_jsonl
from emraudit.reports.findings_jsonl import write_findings_jsonl
from emraudit.reports.i18n import Lang
from emraudit.reports.masking import Masker, mask_id
from emraudit.reports.text import report_record
from emraudit.store import Store, findings


@pytest.fixture
def forks(monkeypatch):
    """What each pool findings_jsonl forks runs; any number of findings is enough."""
    ran: list[str] = []
    real = findings_jsonl.ForkedMap

    def spy(fn, job, items, workers):
        ran.append(fn.__name__)
        return real(fn, job, items, workers)

    monkeypatch.setattr(findings_jsonl, "ForkedMap", spy)
    monkeypatch.setattr(findings_jsonl, "PARALLEL_MIN_FINDINGS", 1)
    return ran


@pytest.fixture
def sample(sample_scan):
    """(store, scan id, patients, users) of the sample's scan."""
    _, cfg, result = sample_scan
    store = Store(cfg.store_url)
    committed = store.committed_runs()
    lake = Lake(cfg.lake_dir, cfg.tz)
    yield (store, result.scan_id, data.snapshot(lake, committed, "patients"),
           data.snapshot(lake, committed, "users"))
    store.dispose()


def _masker(users: pd.DataFrame) -> Masker:
    m = Masker()
    m.keep(users["name"])           # as the report does: staff names stay whole
    return m


def test_workers_write_the_sample_s_file_byte_for_byte_as_one_process(sample, forks, tmp_path):
    store, scan_id, patients, users = sample
    out = {}
    for workers, batch in ((1, 5_000), (1, 37), (2, 37), (2, 100)):
        path = tmp_path / f"w{workers}b{batch}.jsonl"
        n = write_findings_jsonl(path, store, scan_id, Lang("zh"), _masker(users), patients,
                                 workers=workers, batch=batch)
        out[workers, batch] = (n, path.read_bytes())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert forks == ["patients_of", "write_part"] * 2      # both passes of both 2-worker runs
    n, text = out[1, 5_000]
    assert n > 200 and text.count(b"\n") == n
    assert all(v == (n, text) for v in out.values())
    assert len(list(tmp_path.iterdir())) == len(out)       # no part file left behind
    ids = [json.loads(line)["finding_id"] for line in text.splitlines()]
    assert ids == sorted(ids)


def test_every_line_is_masked_with_every_patient_of_the_file(sample, tmp_path):
    """The oracle: one masker taught all the scan's findings at once, every evidence
    walked (no skip decided from the text)."""
    store, scan_id, patients, users = sample
    path = tmp_path / "f.jsonl"
    write_findings_jsonl(path, store, scan_id, Lang("zh"), _masker(users), patients, batch=25)
    raw = pd.concat(list(data.iter_scan_findings(store, scan_id, decode=False)),
                    ignore_index=True)
    m = _masker(users)
    found = data.decode_findings(raw)
    m.learn_findings(patients, found, evidence_texts=raw["evidence"].fillna("").tolist())
    names = list(found.columns)
    rows = [dict(zip(names, v)) for v in zip(*(found[c].tolist() for c in names))]
    assert path.read_text(encoding="utf-8") == \
        "".join(dumps(report_record(r, Lang("zh"), m)) + "\n" for r in rows)


def _store(tmp_path) -> Store:
    """Three findings of one scan, a batch each when read one at a time: the first names, in
    its summary and evidence, the patient of the second (by name only) and of the third (an
    id the patients table does not have)."""
    base = {"detector": "care.no_relationship", "severity": "low", "user_id": "U1",
            "last_scan": "s1", "event_ids": "[]", "message_id": None, "message_args": None}
    rows = [dict(base, finding_id="F1", patient_id="P1",
                 summary="U1 opened P1 after 赵小红 and X900",
                 evidence=json.dumps({"also": ["赵小红", "X900"]}, ensure_ascii=False)),
            dict(base, finding_id="F2", patient_id="P2", summary="U1 opened P2", evidence="{}"),
            dict(base, finding_id="F3", patient_id="X900", summary="U1 opened X900",
                 evidence="{}")]
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.begin() as c:
        c.execute(findings.insert(), rows)
    return store


PATIENTS = pd.DataFrame({"patient_id": ["P1", "P2"], "name": ["钱一", "赵小红"]})


@pytest.mark.parametrize("workers", [1, 2])
def test_a_patient_met_in_a_later_batch_is_masked_in_an_earlier_line(tmp_path, forks,
                                                                       workers):
    store = _store(tmp_path)
    path = tmp_path / "f.jsonl"
    try:
        n = write_findings_jsonl(path, store, "s1", Lang("en"), Masker(), PATIENTS,
                                 workers=workers, batch=1)
    finally:
        store.dispose()
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert n == 3 and [json.loads(x)["finding_id"] for x in lines] == ["F1", "F2", "F3"]
    assert first["evidence"] == {"also": ["赵*红", mask_id("X900")]}
    assert first["summary"] == f"U1 opened {mask_id('P1')} after 赵*红 and {mask_id('X900')}"
    assert "赵小红" not in lines[0] and "X900" not in lines[0]
    assert len(forks) == (2 if workers == 2 else 0)


def test_an_unmasked_file_is_written_in_clear_by_workers_too(tmp_path, forks):
    store = _store(tmp_path)
    path = tmp_path / "f.jsonl"
    try:
        write_findings_jsonl(path, store, "s1", Lang("en"), Masker(enabled=False), PATIENTS,
                             workers=2, batch=1)
    finally:
        store.dispose()
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["evidence"] == {"also": ["赵小红", "X900"]} and first["patient_id"] == "P1"
    assert forks == ["write_part"]                      # nothing to learn


def test_a_scan_without_findings_writes_an_empty_file(tmp_path, forks):
    store = _store(tmp_path)
    path = tmp_path / "f.jsonl"
    try:
        assert write_findings_jsonl(path, store, "other", Lang("en"), Masker(), PATIENTS,
                                    workers=2) == 0
    finally:
        store.dispose()
    assert path.read_text() == "" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_forked_worker_leaves_the_parent_s_connections_alone(tmp_path):
    store = _store(tmp_path)
    try:
        pool = store.engine.pool
        store.after_fork()
        assert store.engine.pool is pool            # the process that made it: as it is
        store._pid = -1                              # as seen from a forked child
        store.after_fork()
        assert store.engine.pool is not pool and store._pid == os.getpid()
        assert data.scan_finding_ids(store, "s1") == ["F1", "F2", "F3"]
    finally:
        store.dispose()


@pytest.mark.parametrize("text", [
    json.dumps({"b": [1, 2.5, None], "a": {"z": "无", "y": True}}, ensure_ascii=False,
               sort_keys=True),                                    # spaced: stored earlier
    dumps({"b": [1, 2.5, None], "a": {"z": "无", "y": True}}),      # compact: stored now
    "{}", "", None])
def test_evidence_left_alone_is_written_as_the_decoded_object_would_be(tmp_path, text):
    """An evidence masking does not change is carried as the stored text when that text is
    compact, decoded otherwise: the line is the same either way."""
    base = {"detector": "care.no_relationship", "severity": "low", "user_id": "U1",
            "last_scan": "s1", "event_ids": '["E1"]', "message_id": None,
            "message_args": None, "summary": "U1 opened a record"}
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.begin() as c:
        c.execute(findings.insert(), [dict(base, finding_id="F1", patient_id="P1",
                                           evidence=text)])
    path = tmp_path / "f.jsonl"
    try:
        write_findings_jsonl(path, store, "s1", Lang("zh"), Masker(), PATIENTS)
        raw = pd.concat(list(data.iter_scan_findings(store, "s1", decode=False)))
    finally:
        store.dispose()
    m = Masker()
    m.learn_patients(PATIENTS, ["P1"])
    row = data.decode_findings(raw).iloc[0].to_dict()
    assert path.read_text(encoding="utf-8") == dumps(report_record(row, Lang("zh"), m)) + "\n"
    assert json.loads(path.read_text(encoding="utf-8"))["evidence"] == \
        (json.loads(text) if text else {})


@pytest.mark.parametrize("dtype", ["string[pyarrow]", object])
def test_store_rows_decode_alike_from_arrow_or_object_columns(dtype):
    """decode_findings reads the JSON columns value by value: an Arrow string column and an
    object one give the same objects, a missing or empty value the empty one."""
    raw = pd.DataFrame({
        "event_ids": ['["E1","E2"]', "", None], "evidence": ['{"day":"2026-09-09"}', "", None],
        "message_args": ['{"user":"U1"}', None, ""], "patient_ids": ['["P1","P2"]', None, ""],
    }).astype(dtype)
    got = data.decode_findings(raw)
    assert got["event_ids"].tolist() == [["E1", "E2"], [], []]
    assert got["evidence"].tolist() == [{"day": "2026-09-09"}, {}, {}]
    assert got["message_args"].tolist() == [{"user": "U1"}, None, None]
    assert got["patient_ids"].tolist() == [["P1", "P2"], None, None]
    kept = data.decode_findings(raw, evidence=np.array([False, True, True]))
    assert kept["evidence"].tolist() == ['{"day":"2026-09-09"}', {}, {}]
