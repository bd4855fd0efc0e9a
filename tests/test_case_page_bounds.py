"""A case page costs what it shows, not what its case holds.

A bulk user's night is one case of hundreds of thousands of events (a 10M night where a
fifth stays unexplained had one of 262,132). Its page lists MAX_EVENTS_SHOWN of them and
draws one chart of the day: only those rows become dicts, and the chart's red ticks are
merged per pixel column beyond charts.MAX_TICKS (one tick per access made that page 39 MB).
These tests pin what the page shows against the plain definition: every flagged event
sorted by (time to the second, event id), the first MAX_EVENTS_SHOWN listed, the day with
most flagged events charted (the earliest of a tie).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from emraudit.config import default_config
from emraudit.detectors.base import findings_frame
from emraudit.lake import Lake
from emraudit.model import validate
from emraudit.reports import charts
from emraudit.reports.i18n import Lang
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt
from emraudit.reports.render import MAX_EVENTS_SHOWN, case_view, load_cases
from emraudit.store import Store, cases, findings, ingest_runs

TZ = "Asia/Shanghai"
CASE = "Cbulknight000001"


def _events() -> pd.DataFrame:
    """U9's 760 events and U8's look-up: 330 on 07-02 (several within one second, ids against their
    sub-second order), 430 on 07-03 (the most flagged day), random order of rows."""
    rows = []
    for k in range(330):
        rows.append((f"a{k:04d}", f"2025-07-02 08:{k // 60:02d}:{k % 60:02d}"))
    # one second, three events whose ids sort against their times
    rows += [("tie-z", "2025-07-02 07:00:00.100"), ("tie-m", "2025-07-02 07:00:00.500"),
             ("tie-a", "2025-07-02 07:00:00.900")]
    for k in range(427):
        rows.append((f"b{k:04d}", f"2025-07-03 {1 + k // 60:02d}:{k % 60:02d}:30"))
    rng = np.random.default_rng(5)
    order = rng.permutation(len(rows))
    df = pd.DataFrame([dict(event_id=rows[i][0], ts=rows[i][1], user_id="U9",
                            patient_id=f"P{i % 97:05d}", action="view", module="病历",
                            workstation="WS-9", ip="10.0.0.9") for i in order])
    # a look-up by another account, cited by the finding: read by id, not by user
    df = pd.concat([df, pd.DataFrame([dict(
        event_id="x-other", ts="2025-07-02 06:59:59", user_id="U8", patient_id="P00001",
        action="query", module="检索", workstation="WS-8", ip="10.0.0.8")])],
        ignore_index=True)
    df["_source_ref"] = [f"access_log.csv:{i + 2}" for i in range(len(df))]
    df["_source"] = "access_log"
    return df


def _build(tmp):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "emraudit.toml").write_text('[sources.access_log]\npath = "a.csv"\n',
                                       encoding="utf-8")
    cfg = default_config(tmp)
    store = Store(cfg.store_url)
    lake = Lake(cfg.lake_dir, TZ)
    ev = _events()
    v = validate("access_log", ev, TZ, "access_log")
    assert len(v.accepted) == len(ev), v.quarantine
    lake.write_events(v.accepted, "r1")
    now = datetime(2025, 7, 4, tzinfo=timezone.utc)
    ids = ev["event_id"].tolist()
    spread = findings_frame("care.no_relationship", [dict(
        key="U9||night|spread", user_id="U9", patient_id=None,
        event_ids=ids + ["gone1", "gone2"],          # two the lake no longer holds
        start=pd.Timestamp("2025-07-02 07:00", tz=TZ),
        end=pd.Timestamp("2025-07-03 08:07:30", tz=TZ),
        severity="high", score=5.0, summary="U9 opened many records.", evidence={})],
        default_item="9", default_severity="high")
    other = findings_frame("bulk.off_hours", [dict(
        key="U9|0702", user_id="U9", patient_id=None, event_ids=["tie-a", "tie-z", "a0001"],
        start=pd.Timestamp("2025-07-02 07:00", tz=TZ),
        end=pd.Timestamp("2025-07-02 08:00:01", tz=TZ),
        severity="medium", score=1.0, summary="U9 off hours.", evidence={})],
        default_item="9", default_severity="medium")
    f = pd.concat([spread, other], ignore_index=True)
    rows = [dict(r, event_ids=json.dumps(r["event_ids"]), evidence="{}", message_args=None,
                 patient_ids=None, case_id=CASE, first_scan="s1", last_scan="s1",
                 created=now, updated=now) for r in f.to_dict("records")]
    keys = [c.name for c in findings.columns if c.name in rows[0]]
    with store.begin() as c:
        c.execute(ingest_runs.insert().values(
            run_id="r1", source="access_log", table_name="access_log", started=now,
            finished=now, status="committed", days=json.dumps(["2025-07-02", "2025-07-03"])))
        c.execute(findings.insert(), [{k: r.get(k) for k in keys} for r in rows])
        c.execute(cases.insert().values(
            case_id=CASE, kind="incident", user_id="U9", day="2025-07-02", queued=True,
            patients="[]", severity="high", score=5.0,
            detectors=json.dumps(["bulk.off_hours", "care.no_relationship"]),
            items=json.dumps(["9"]), first_seen=str(f["start"].min()),
            last_seen=str(f["end"].max()), n_findings=2, n_events=len(ids) + 2,
            summary="U9", status="open", version=1, created=now, updated=now))
    return cfg, store, lake, ev


def test_a_case_page_lists_the_first_events_of_its_case_in_page_order(tmp_path, monkeypatch):
    from emraudit.reports import data
    read = []
    real = data.read_event_rows
    monkeypatch.setattr(data, "read_event_rows",
                        lambda lake, ids, files: read.append(len(ids)) or real(lake, ids, files))
    cfg, store, lake, ev = _build(tmp_path)
    lang, masker = Lang("en"), Masker(enabled=False)
    ld = load_cases(cfg, store, lake, [CASE], lang, masker)
    view = case_view(ld.cases[0], ld, cfg, lang, masker, Fmt(TZ), set(), "")

    local = pd.to_datetime(ev["ts"], format="ISO8601").dt.strftime("%Y-%m-%d %H:%M:%S")
    want = sorted(zip(local, ev["event_id"]))           # the plain definition
    assert view["events_total"] == len(ev) + 2 and view["events_missing"] == 2
    assert len(view["events"]) == MAX_EVENTS_SHOWN < len(ev)
    assert [e["time"] for e in view["events"]] == [t for t, _ in want[:MAX_EVENTS_SHOWN]]
    # within one second the event id decides, whatever the sub-second order
    assert [t for t, _ in want[:4]] == ["2025-07-02 06:59:59"] + ["2025-07-02 07:00:00"] * 3
    assert [e["source_ref"] for e in view["events"][:4]] == [
        ev.loc[ev["event_id"] == i, "_source_ref"].item()
        for i in ("x-other", "tie-a", "tie-m", "tie-z")]
    assert view["events"][0]["workstation"] == "WS-8"     # the other account's whole row
    assert all(e["module"] == "病历" and e["source_ref"] for e in view["events"][1:])
    # whole rows were read for the listed events of the user, not for the case's 760
    assert sum(read) == MAX_EVENTS_SHOWN - 1
    # which detectors flagged each listed event
    by = [e["by"] for e in view["events"][1:4]]
    assert "," in by[0] and "," in by[2] and "," not in by[1]
    # the chart is of the day with most flagged events; every day flagged is marked
    assert view["chart_day"] == "2025-07-03"
    assert view["day_total"] == 427


def test_the_day_chart_merges_ticks_beyond_max_ticks():
    few = charts.day_chart([9.5, 9.6], [9.5, 9.6], tooltips=["09:30:00", "09:36:00"])
    assert few.count('class="flag"') == 2 and "<title>09:36:00</title>" in few

    n = 20_000                                   # a bulk user's day, in time order
    hrs = np.sort(np.random.default_rng(1).uniform(0, 24, n))
    secs = (hrs * 3600).astype(int)
    tips = [f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}" for s in secs]
    svg = charts.day_chart(hrs, hrs, tooltips=tips, flagged_label="flagged")
    ticks = re.findall(r'<line class="flag" x1="([\d.]+)"[^>]*><title>([^<]*)</title>', svg)
    assert 24 * 20 < len(ticks) <= 720                # one per pixel column, not per access
    counted = [int(m.group(1)) if (m := re.search(r"\((\d+) flagged\)$", t)) else 1
               for _, t in ticks]
    assert sum(counted) == n                      # every access is in one tick
    first = next(t for _, t in ticks if "–" in t)
    a, b = first.split(" (")[0].split("–")
    assert a <= b and a in tips and b in tips
    assert len(svg) < 200_000
    # the boundary: MAX_TICKS accesses still get a tick each
    edge = charts.day_chart(hrs[:charts.MAX_TICKS], hrs[:charts.MAX_TICKS])
    assert edge.count('class="flag"') == charts.MAX_TICKS
