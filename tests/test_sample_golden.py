"""The sample hospital's findings, pinned: every live finding of one scan of sample_logs/ as
(finding_id, detector, user_id, patient_id, case_id), equal to the literal list in
tests/data/sample_golden.json (issue 22: "the same findings and ids on the sample hospital
before and after"). A refactor that changes a finding, its id or its case fails here.

When a change is meant to alter the sample's findings, regenerate the file on purpose:
    EMRAUDIT_REGOLDEN=1 python -m pytest tests/test_sample_golden.py
and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parent / "data" / "sample_golden.json"


def _rows(cfg) -> list[list[str]]:
    from emraudit.store import Store, findings
    store = Store(cfg.store_url)
    cols = [findings.c.finding_id, findings.c.detector, findings.c.user_id,
            findings.c.patient_id, findings.c.case_id]
    try:
        with store.engine.connect() as c:
            rows = c.execute(sa.select(*cols).where(findings.c.retracted_scan.is_(None)))
            return sorted([r or "" for r in row] for row in rows)
    finally:
        store.dispose()


def test_the_sample_findings_equal_the_golden_list(sample_scan):
    _, cfg, _ = sample_scan
    got = _rows(cfg)
    if os.environ.get("EMRAUDIT_REGOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in got)
        GOLDEN.write_text(f'{{"count": {len(got)}, "findings": [\n{lines}\n]}}\n',
                          encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert len(got) == want["count"] == len(want["findings"])
    assert got == want["findings"]
