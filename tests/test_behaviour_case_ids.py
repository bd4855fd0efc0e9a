"""Case ids as a reviewer meets them (issue 23): literal strings pinned once here, never
computed with `case_id_for` (the function under test), so a changed digest, key or day
rule fails — an incident is one user on one site-local day (midnight in Asia/Shanghai).
"""

from __future__ import annotations

import pandas as pd
import pytest

from emraudit import cases as C
from emraudit.results import save_scan_results
from emraudit.store import Store, cases

# pinned once: sha1 of kind, user, day; "C" + 15 hex digits
U0001_0701 = "C7c981b664a73e20"
U0001_0630 = "Cbb4a8c9335dff6c"
U0002_0701 = "C295a12bf904d7a3"
NOBODY_0701 = "Cfce254598a07c1c"
ZHANG_0702 = "C8a1b3ad5255c0c8"

# UTC instants on either side of midnight, 1 July 2025, in Shanghai (UTC+8)
BEFORE = "2025-06-30T15:59:59+00:00"      # 23:59:59 on 30 June, local
AT = "2025-06-30T16:00:00+00:00"          # 00:00:00 on 1 July, local


def findings(*rows):
    return pd.DataFrame([{"finding_id": f, "detector": "care.no_relationship",
                          "severity": "medium", "score": 1.0, "user_id": u, "patient_id": "p1",
                          "start": s, "end": s, "event_ids": ["e1"], "rectification_item": "9",
                          "summary": "s", "evidence": {}, "suppressed_by": sup}
                         for f, u, s, sup in rows])


def test_literal_ids():
    assert C.case_id_for("incident", "U0001", "2025-07-01") == U0001_0701
    assert C.case_id_for("incident", "张三", "2025-07-02") == ZHANG_0702
    assert C.feed_gap_case_id("department", "心内科") == "C56a7562a352172a"


def test_incident_of_a_user_and_the_site_local_day():
    f = findings(("F1", "U0001", AT, None), ("F2", "U0001", BEFORE, None),
                 ("F3", "U0001", "2025-07-01T08:00:00+08:00", None),
                 ("F4", "U0002", "2025-07-01T08:00:00+08:00", None),
                 ("F5", None, "2025-07-01T08:00:00+08:00", None))
    got = C.assign_cases(f, "Asia/Shanghai")
    assert got["case_id"].tolist() == [U0001_0701, U0001_0630, U0001_0701, U0002_0701,
                                       NOBODY_0701]
    assert got["case_day"].tolist() == ["2025-07-01", "2025-06-30", "2025-07-01",
                                        "2025-07-01", "2025-07-01"]
    assert got["case_user"].tolist() == ["U0001", "U0001", "U0001", "U0002", ""]
    assert set(got["case_kind"]) == {"incident"}
    assert got.index.equals(f.index)
    # without a timezone the day is read from the ISO string as written
    assert C.assign_cases(f)["case_id"].tolist()[:3] == [U0001_0630, U0001_0630, U0001_0701]


def test_an_unparseable_start_keeps_its_written_day():
    f = findings(("F1", "U0001", "2025-07-01 garbled", None))
    assert C.assign_cases(f, "Asia/Shanghai")["case_id"].tolist() == [U0001_0701]


def test_no_findings_no_cases():
    empty = findings()
    got = C.assign_cases(empty, "Asia/Shanghai")
    assert list(got.columns) == ["case_kind", "case_user", "case_day", "case_id"]
    assert len(got) == 0
    assert C.count_cases(empty) == 0


def test_count_cases_leaves_out_suppressed_findings():
    f = findings(("F1", "U0001", AT, None), ("F2", "U0001", BEFORE, None),
                 ("F3", "U0002", AT, 7), ("F4", "U0001", AT, None))
    assert C.count_cases(f, "Asia/Shanghai") == 2
    assert C.count_cases(findings(("F3", "U0002", AT, 7)), "Asia/Shanghai") == 0
    assert C.count_cases(f.drop(columns=["suppressed_by"]), "Asia/Shanghai") == 3


def test_annotate_writes_the_case_id_on_each_finding():
    f = findings(("F1", "U0001", AT, None), ("F2", "U0002", AT, None))
    out = C.annotate(f, "Asia/Shanghai")
    assert out["case_id"].tolist() == [U0001_0701, U0002_0701]
    assert "case_id" not in f.columns                    # a copy
    assert len(out["risk_flags"]) == 2


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


def test_the_scan_stores_cases_under_the_pinned_ids(store):
    f = findings(("F1", "U0001", AT, None), ("F2", "U0001", BEFORE, None),
                 ("F3", "U0002", "2025-07-01T08:00:00+08:00", None))
    with store.begin() as conn:
        save_scan_results(conn, f, "S1", ran=[], window_start=pd.Timestamp("2025-06-01",
                                                                           tz="Asia/Shanghai"),
                          window_end=pd.Timestamp("2025-08-01", tz="Asia/Shanghai"), days=None,
                          tz="Asia/Shanghai", quota=100,
                          now=pd.Timestamp("2025-07-03T01:00:00+08:00"))
    rows = store.read_table(cases, order_by=cases.c.case_id)
    assert sorted(rows["case_id"]) == sorted([U0001_0701, U0001_0630, U0002_0701])
    stored = store.read_findings().set_index("finding_id")["case_id"].to_dict()
    assert stored == {"F1": U0001_0701, "F2": U0001_0630, "F3": U0002_0701}
