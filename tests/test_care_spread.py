"""care.no_relationship's spread night (issue 16, "incidents, not accesses"): a user who
opened more than `spread_patients` patients' records without a reason in one site-local day
gets one finding for that night, naming every patient and access, instead of a finding per
patient; protected patients and openings after a name look-up keep their own finding. The
edges: exactly the limit, one over, 0 (off), the day boundary, and the grading by patients.
Then the finding through the store, the case, findings.jsonl and the patient report."""

from __future__ import annotations

import json
import math

import pytest

from detector_frames import ev, make_ctx, run

W = ("2025-07-07", "2025-07-14")
DET = "care.no_relationship"
SPREAD = "care.no_relationship.spread"
USERS = [{"user_id": "u1", "role": "nurse", "department": "骨科"},
         {"user_id": "u2", "role": "nurse", "department": "骨科"}]


def care(events, over=None, **kw):
    kw.setdefault("window", W)
    kw.setdefault("users", USERS)
    return run(DET, make_ctx(events, **kw), **(over or {}))


def night(user, n, day="2025-07-08", hour=10, prefix="p", first=0):
    """`user` opens `n` patients' records once each, a minute apart, from `hour`."""
    return [ev(user, f"{prefix}{first + i}", f"{day} {hour + i // 60:02d}:{i % 60:02d}",
               event_id=f"{user}-{day}-{first + i}") for i in range(n)]


def test_up_to_the_limit_a_finding_per_patient_one_over_one_for_the_night():
    at = care(night("u1", 5))
    assert len(at) == 5 and set(at["message_id"]) == {DET}
    assert at["patient_ids"].isna().all()

    over = care(night("u1", 6))
    assert len(over) == 1
    r = over.iloc[0]
    assert r["message_id"] == SPREAD
    assert r["patient_id"] == ""
    assert r["patient_ids"] == [f"p{i}" for i in range(6)]
    assert r["event_ids"] == sorted(f"u1-2025-07-08-{i}" for i in range(6))
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-08T10:05:00+08:00")
    assert r["severity"] == "medium"
    assert r["score"] == pytest.approx(math.log2(7) + math.log2(6))
    assert r["message_args"] == {"user": "u1", "n_patients": 6, "accesses": 6,
                                 "day": "2025-07-08", "tried": 9}
    assert r["summary"] == ("u1 opened the records of 6 patients with no care relationship on "
                            "2025-07-08 (6 accesses; 9 explanations tried, none held)")
    e = r["evidence"]
    assert (e["day"], e["accesses"], e["actions"]) == ("2025-07-08", 6, {"view": 6})
    assert [p["patient_id"] for p in e["patients"]] == [f"p{i}" for i in range(6)]
    assert e["patients"][0] == {"patient_id": "p0", "accesses": 1,
                                "first": "2025-07-08T10:00:00+08:00",
                                "last": "2025-07-08T10:00:00+08:00"}
    assert e["explanations_for"] == {"event_id": "u1-2025-07-08-0", "patient_id": "p0"}
    assert e["thresholds"]["spread_patients"] == 5
    assert e["user"] == {"role": "nurse", "department": "骨科"}


def test_the_limit_is_a_parameter_and_zero_turns_the_night_off():
    assert len(care(night("u1", 6), {"spread_patients": 6})) == 6
    assert len(care(night("u1", 7), {"spread_patients": 6})) == 1
    assert len(care(night("u1", 40), {"spread_patients": 0})) == 40


def test_patients_are_counted_per_user_and_site_local_day():
    # 3 patients on the 8th and 3 on the 9th: no night reaches 6
    assert len(care(night("u1", 3) + night("u1", 3, day="2025-07-09", first=3))) == 6
    # 23:00 to 00:59 Shanghai: 60 patients on the 8th and 60 on the 9th, two nights
    late = [ev("u1", f"p{i}", f"2025-07-08 {23 + i // 60:02d}:{i % 60:02d}",
               event_id=f"e{i}") for i in range(120)]
    late = [dict(e, ts=e["ts"].replace("2025-07-08 24", "2025-07-09 00")) for e in late]
    f = care(late)
    assert sorted(f["message_args"].map(lambda a: (a["day"], a["n_patients"]))) == \
        [("2025-07-08", 60), ("2025-07-09", 60)]
    # two users' nights are their own: 4 + 4 patients stay 8 findings
    assert len(care(night("u1", 4) + night("u2", 4, first=4))) == 8


def test_repeated_openings_count_once_a_patient_and_grade_by_patients():
    events = night("u1", 6) + [ev("u1", "p0", "2025-07-08 12:00", event_id="again")]
    r = care(events).iloc[0]
    assert r["message_args"]["n_patients"] == 6 and r["message_args"]["accesses"] == 7
    assert r["evidence"]["patients"][0]["patient_id"] == "p0"       # most accesses first
    assert r["evidence"]["patients"][0]["accesses"] == 2
    assert "again" in r["event_ids"]
    # graded by patients: high from 20, critical from 100 (by default)
    assert care(night("u1", 19)).iloc[0]["severity"] == "medium"
    assert care(night("u1", 20)).iloc[0]["severity"] == "high"
    assert care(night("u1", 99)).iloc[0]["severity"] == "high"
    assert care(night("u1", 100)).iloc[0]["severity"] == "critical"
    assert care(night("u1", 8), {"spread_high_patients": 8}).iloc[0]["severity"] == "high"


def test_protected_patients_and_lookups_keep_their_own_findings():
    events = night("u1", 6) + [
        ev("u1", "vip", "2025-07-08 13:00", event_id="v1"),
        ev("u1", "q", "2025-07-08 13:55", "query", event_id="lq"),
        ev("u1", "q", "2025-07-08 14:00", event_id="lo")]
    f = care(events, patients=[{"patient_id": "vip", "vip": True}, {"patient_id": "q"}])
    own = f[f["message_id"] == DET].set_index("patient_id")
    assert sorted(own.index) == ["q", "vip"]
    assert own.loc["vip", "evidence"]["patient_flags"] == ["vip"]
    assert own.loc["q", "evidence"]["query_lookup"]["event_ids"] == ["lq"]
    spread = f[f["message_id"] == SPREAD].iloc[0]
    assert spread["patient_ids"] == [f"p{i}" for i in range(6)]
    # 5 plain patients beside them: no night, all seven per patient
    g = care(night("u1", 5) + events[6:],
             patients=[{"patient_id": "vip", "vip": True}, {"patient_id": "q"}])
    assert len(g) == 7 and (g["message_id"] == DET).all()


def test_explained_accesses_do_not_count_towards_the_night():
    rel = [{"patient_id": f"p{i}", "department": "骨科", "kind": "admission",
            "start": "2025-07-01 08:00"} for i in range(3)]
    f = care(night("u1", 8), care_relations=rel)      # 3 explained, 5 left: per patient
    assert len(f) == 5 and (f["message_id"] == DET).all()


@pytest.mark.slow
def test_a_night_through_the_store_case_jsonl_and_patient_report(sample_scan, tmp_path):
    """The sample hospital has such nights: the case lists their patients, findings.jsonl
    masks them and says the night in Chinese, the patient report of one of them flags the
    accesses of the night."""
    import csv

    import sqlalchemy as sa
    from click.testing import CliRunner

    from emraudit.cli import main
    from emraudit.store import Store, cases, findings

    site, cfg, result = sample_scan
    store = Store(cfg.store_url)
    try:
        with store.engine.connect() as c:
            f = c.execute(sa.select(findings).where(findings.c.message_id == SPREAD)
                          .order_by(findings.c.finding_id)).mappings().all()
            assert f, "the sample has spread nights"
            r = dict(f[0])
            pats = json.loads(r["patient_ids"])
            assert len(pats) > 5 and r["patient_id"] in ("", None)
            case = c.execute(sa.select(cases).where(cases.c.case_id == r["case_id"])) \
                .mappings().one()
            assert set(pats) <= set(json.loads(case["patients"]))
    finally:
        store.dispose()
    lines = [json.loads(x) for x in (cfg.reports_dir / "latest" / "findings.jsonl")
             .read_text(encoding="utf-8").splitlines()]
    mine = next(x for x in lines if x["finding_id"] == r["finding_id"])
    assert len(mine["patient_ids"]) == len(pats)
    assert not set(mine["patient_ids"]) & set(pats)                  # masked
    # the sentence in Chinese (the report's own language may be English: other tests of the
    # process re-render the sample's report in each language)
    from emraudit.reports.masking import Masker
    from emraudit.reports.text import finding_sentence
    zh = finding_sentence({**r, "message_args": json.loads(r["message_args"])}, "zh",
                          Masker(enabled=False))
    assert zh.startswith(f"{r['user_id']} 于 ") and f"查阅了 {len(pats)} 名患者的病历" in zh
    assert mine.get("summary_zh", zh) == zh
    text = json.dumps(mine, ensure_ascii=False)
    assert not any(p in text for p in pats)                          # nowhere in clear

    day = r["start"][:10]
    page = tmp_path / "p.html"
    res = CliRunner().invoke(main, ["report", "patient", "--config",
                                    str(site / "emraudit.toml"), pats[-1], "--from", day,
                                    "--to", day, "--out", str(page)])
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(page.with_suffix(".csv").open(encoding="utf-8-sig")))
    mine = [row for row in rows[1:] if row[1] == r["user_id"]]
    others = [row for row in rows[1:] if row[1] != r["user_id"]]
    assert mine and all("无诊疗关系查阅" in row for row in mine), rows
    assert not any("无诊疗关系查阅" in row for row in others), rows


def test_a_patient_looked_up_once_keeps_all_its_accesses_of_the_day_together():
    # p0 opened twice, once after a name look-up: both openings stay in p0's own finding
    events = night("u1", 7) + [ev("u1", "p0", "2025-07-08 14:55", "query", event_id="lq"),
                               ev("u1", "p0", "2025-07-08 15:00", event_id="lo")]
    f = care(events)
    own = f[f["message_id"] == DET]
    assert own["patient_id"].tolist() == ["p0"]
    assert own.iloc[0]["event_ids"] == sorted(["u1-2025-07-08-0", "lo", "lq"])
    spread = f[f["message_id"] == SPREAD].iloc[0]
    assert spread["patient_ids"] == [f"p{i}" for i in range(1, 7)]
