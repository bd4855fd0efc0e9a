"""Feed diagnosis: a unit whose accesses the care relations explain far less than the rest is
a feed gap, held as one case with its figures; protected patients and look-ups never are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.care import NoRelationship
from emraudit.feeds import FeedRules, explained_shares, feed_notes, held_mask

RULES = FeedRules(floor=0.6, margin=0.3, min_accesses=10)


def _units(dept):
    n = len(dept)
    return pd.DataFrame({"source": pd.Series([pd.NA] * n, dtype="string"),
                         "department": pd.Series(dept, dtype="string"),
                         "ward": pd.Series([pd.NA] * n, dtype="string"),
                         "role": pd.Series([pd.NA] * n, dtype="string")})


def _shares(explained, dept, rules=RULES):
    n = len(dept)
    return explained_shares(np.asarray(explained), _units(dept),
                            pd.Series([f"u{i % 3}" for i in range(n)], dtype="string"),
                            pd.Series([f"p{i}" for i in range(n)], dtype="string"), rules)


@pytest.mark.parametrize("k_explained, gap, reason", [
    (5, True, "floor"),          # 5 of 10 = 50% < floor 60%
    (6, True, "below_rest"),     # 60% = the floor, but 40 points below the rest's 100%
    (7, False, ""),              # 70%: 30 points below the rest... exactly the margin
    (8, False, ""),
])
def test_floor_and_margin_edges(k_explained, gap, reason):
    dept = ["A"] * 10 + ["B"] * 40
    explained = [True] * k_explained + [False] * (10 - k_explained) + [True] * 40
    sh = _shares(explained, dept).set_index(["dimension", "value"])
    a = sh.loc[("department", "A")]
    assert a["accesses"] == 10 and a["explained"] == k_explained
    assert a["others_share"] == 1.0
    if k_explained == 7:
        gap, reason = True, "below_rest"     # 1.0 - 0.7 == margin: at the margin is a gap
    assert bool(a["gap"]) is gap and a["reason"] == reason
    assert not bool(sh.loc[("department", "B"), "gap"])


def test_too_few_accesses_are_not_judged():
    dept = ["A"] * 9 + ["B"] * 40
    sh = _shares([False] * 9 + [True] * 40, dept).set_index(["dimension", "value"])
    assert not bool(sh.loc[("department", "A"), "gap"])


def test_a_unit_alone_is_judged_by_the_floor_only():
    sh = _shares([False] * 20, ["A"] * 20)
    assert sh.iloc[0]["reason"] == "floor" and pd.isna(sh.iloc[0]["others_share"])


def test_held_access_goes_to_its_least_explained_gap_unit():
    units = pd.DataFrame({"source": pd.Series(["s1", "s2", "s1"], dtype="string"),
                          "department": pd.Series(["A", "A", "B"], dtype="string"),
                          "ward": pd.Series([pd.NA, pd.NA, pd.NA], dtype="string"),
                          "role": pd.Series([pd.NA, pd.NA, pd.NA], dtype="string")})
    shares = pd.DataFrame({"dimension": ["source", "department", "department"],
                           "value": ["s1", "A", "B"], "share": [0.5, 0.1, 0.5],
                           "gap": [True, True, False]})
    held, gap = held_mask(units, shares)
    assert held.tolist() == [True, True, True]
    # A (10%) is worse than s1 (50%); B is no gap, so its access is s1's
    assert gap.tolist() == ["department\x1fA", "department\x1fA", "source\x1fs1"]
    # a tie goes to the earlier dimension (source before department)
    tie = shares.assign(share=[0.1, 0.1, 0.5])
    assert held_mask(units, tie)[1].tolist()[0] == "source\x1fs1"


def _hospital(n_cardio_explained: int, extra=(), protected=None):
    """Two departments of 3 nurses each; 心内科's 30 accesses explained only
    `n_cardio_explained` times (its admissions feed is missing), 普外科's 30 all. (All are
    nurses: the floor is lowered to 30% so that the role as a whole is not a gap.)"""
    users = [{"user_id": f"c{i}", "role": "nurse", "department": "心内科"} for i in range(3)] + \
        [{"user_id": f"s{i}", "role": "nurse", "department": "普外科"} for i in range(3)]
    patients = [{"patient_id": f"P{i:03d}"} for i in range(60)] + \
        [{"patient_id": "PVIP", **({"vip": "true"} if protected is None else protected)}]
    rel, events = [], []
    for i in range(30):
        events.append(ev(f"c{i % 3}", f"P{i:03d}", f"2025-07-01 09:{i:02d}"))
        if i < n_cardio_explained:
            rel.append({"patient_id": f"P{i:03d}", "department": "心内科", "kind": "admission",
                        "start": "2025-06-30 08:00"})
    for i in range(30, 60):
        events.append(ev(f"s{i % 3}", f"P{i:03d}", f"2025-07-01 10:{i - 30:02d}"))
        rel.append({"patient_id": f"P{i:03d}", "department": "普外科", "kind": "admission",
                    "start": "2025-06-30 08:00"})
    events.append(ev("c0", "PVIP", "2025-07-01 11:00"))
    return make_ctx(events + list(extra), window=("2025-07-01", "2025-07-02"), users=users,
                    patients=patients, care_relations=rel,
                    params={"care.no_relationship": {"feed_min_accesses": 20}})


def test_a_department_without_admissions_is_one_feed_gap_not_thirty_accusations():
    ctx = _hospital(n_cardio_explained=3)
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3).run(ctx)
    # the 27 unexplained accesses of 心内科 are held; the VIP access is still judged
    assert found["patient_id"].tolist() == ["PVIP"]
    health = ctx.outputs["feed_health"].set_index(["dimension", "value"])
    cardio = health.loc[("department", "心内科")]
    assert cardio["accesses"] == 31 and cardio["explained"] == 3 and bool(cardio["gap"])
    assert health.loc[("department", "普外科"), "share"] == 1.0
    held = ctx.outputs["feed_gaps"].iloc[0]
    assert (held["dimension"], held["value"], held["held"], held["users"]) == \
        ("department", "心内科", 27, 3)
    assert len(ctx.outputs["feed_gap_events"]) == 27
    notes = feed_notes(ctx.outputs["feed_health"], ctx.outputs["feed_gaps"])
    assert any("心内科: 10% of 31 accesses explained against 100% elsewhere" in n
               for n in notes)


def test_a_complete_feed_holds_nothing_and_judging_can_be_turned_off():
    ctx = _hospital(n_cardio_explained=30)
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3).run(ctx)
    assert found["patient_id"].tolist() == ["PVIP"]
    assert "feed_gaps" not in ctx.outputs
    assert not ctx.outputs["feed_health"]["gap"].any()
    ctx = _hospital(n_cardio_explained=3)
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3, hold_feed_gaps=False,
                           spread_patients=0).run(ctx)
    assert len(found) == 28          # 27 patients and the VIP: judged one by one
    # by default each cardiology nurse's unexplained day is one finding, the VIP its own
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3, hold_feed_gaps=False).run(ctx)
    assert sorted(len(v) for v in found["patient_ids"] if isinstance(v, list)) == [9, 9, 9]
    assert found["patient_id"].tolist().count("PVIP") == 1
    assert "feed_gaps" not in ctx.outputs and ctx.outputs["feed_health"]["gap"].any()


def test_a_lookup_before_opening_is_never_held():
    # c2 opens P005 at 09:05; a name look-up of P005 by c2 a minute before
    ctx = _hospital(3, extra=[ev("c2", "P005", "2025-07-01 09:04", action="query")])
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3).run(ctx)
    assert sorted(found["patient_id"]) == ["P005", "PVIP"]
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == 26


def test_scan_reports_a_feed_gap_case_through_the_cli(tmp_path):
    """End to end: 心内科's admissions are missing from the feed. The scan says so, stores
    the figures, opens one feed-gap case first in the queue, and the dashboard shows it."""
    import csv
    import sqlalchemy as sa
    from click.testing import CliRunner
    from emraudit.cli import main
    from emraudit.store import Store, cases, feed_health

    def write(name, rows):
        with open(tmp_path / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    users = [{"user_id": f"c{i}", "role": "nurse", "department": "心内科"} for i in range(4)]
    users += [{"user_id": f"s{i}", "role": "nurse", "department": "普外科"} for i in range(4)]
    write("users", users)
    write("patients", [{"patient_id": f"P{i:04d}", "name": f"患者{i}"} for i in range(600)])
    events, rel = [], []
    for i in range(600):
        dept, u = ("心内科", f"c{i % 4}") if i < 300 else ("普外科", f"s{i % 4}")
        ts = pd.Timestamp("2025-07-01 08:00") + pd.Timedelta(minutes=i)
        events.append({"event_id": f"E{i:05d}", "ts": str(ts), "user_id": u,
                       "patient_id": f"P{i:04d}", "action": "view"})
        if dept == "普外科" or i < 30:       # 心内科: 10% of its admissions in the feed
            rel.append({"patient_id": f"P{i:04d}", "department": dept, "kind": "admission",
                        "start": "2025-06-30 08:00:00"})
    write("access_log", events)
    write("care_relations", rel)
    srcs = "".join(f'[sources.{t}]\nconnector = "csv"\npath = "{t}.csv"\n'
                   for t in ("access_log", "users", "patients", "care_relations"))
    (tmp_path / "emraudit.toml").write_text(
        '[site]\ntimezone = "Asia/Shanghai"\n[store]\nurl = "sqlite:///e.db"\n' + srcs,
        encoding="utf-8")
    r = CliRunner().invoke(main, ["scan", "--config", str(tmp_path / "emraudit.toml")])
    assert r.exit_code == 0, r.output
    assert "department 心内科: 10% of 300 accesses explained against 100% elsewhere" \
        in r.output
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    gap = store.read_table(cases, cases.c.kind == "feed_gap").iloc[0]
    assert gap["department"] == "心内科" and gap["n_events"] == 270 and bool(gap["queued"])
    assert store.read_table(cases, cases.c.kind == "incident").empty   # nobody accused
    fh = store.read_table(feed_health, sa.and_(feed_health.c.dimension == "department",
                                               feed_health.c.value == "心内科")).iloc[0]
    assert (fh["accesses"], fh["explained"], bool(fh["gap"])) == (300, 30, True)
    index = (tmp_path / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert 'id="feed-gaps"' in index and "心内科" in index
    page = (tmp_path / "reports" / "latest" / "cases" / f"{gap['case_id']}.html")
    assert "c0" in page.read_text(encoding="utf-8")            # the staff most held


def test_coverage_shows_the_feed_check(tmp_path):
    from click.testing import CliRunner
    from emraudit.cli import main
    test_scan_reports_a_feed_gap_case_through_the_cli(tmp_path)
    cfg = str(tmp_path / "emraudit.toml")
    r = CliRunner().invoke(main, ["coverage", "--config", cfg])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "department 心内科" in x)
    assert "300" in line and "10%" in line and "100%" in line and "below the floor" in line
    assert "普外科" not in r.output
    r = CliRunner().invoke(main, ["coverage", "--config", cfg, "--units"])
    assert "department 普外科" in r.output and "ok" in r.output


@pytest.mark.parametrize("flags,judged", [
    ({"sensitive": "true"}, True), ({"watch": "true"}, True),
    ({"employee_user_id": "s1"}, True), ({"deceased_date": "2025-06-01"}, True),
    ({"deceased_date": "2025-07-02"}, False),    # died after the access: not protected then
    ({}, False),
])
def test_protected_patients_are_never_held(flags, judged):
    ctx = _hospital(3, protected=flags)
    found = NoRelationship(feed_min_accesses=20, feed_floor=0.3).run(ctx)
    assert found["patient_id"].tolist() == (["PVIP"] if judged else [])
    assert ctx.outputs["feed_gaps"].iloc[0]["held"] == (27 if judged else 28)


def test_shares_from_partitions_equal_the_shares_of_all_accesses():
    """Partitions are disjoint sets of users but share patients: the distinct patients of
    a unit are counted once across them (patients travel as hashes), whatever order each
    partition met the units in."""
    from emraudit.feeds import share_counts, shares_from_counts
    acc = pd.DataFrame({
        "user_id": ["a", "a", "b", "c", "c", "c", "d"],
        "patient_id": pd.array(["p1", "p2", "p1", "p1", None, "p3", "p2"], dtype="string"),
        "explained": [True, False, True, False, True, True, False]})
    units = pd.DataFrame({
        "source": pd.array(["his"] * 7, dtype="string"),
        "department": pd.array(["card", "card", "neuro", "neuro", "card", "card", "card"],
                               dtype="string"),
        "ward": pd.array([None] * 7, dtype="string"),
        "role": pd.array(["doctor", "doctor", "nurse", "nurse", "nurse", "nurse", "doctor"],
                         dtype="string"),
        "site": pd.array(["s1"] * 7, dtype="string")})
    rules = FeedRules(min_accesses=1)
    whole = explained_shares(acc["explained"].to_numpy(), units, acc["user_id"],
                             acc["patient_id"], rules)
    parts = []
    for users in (["c", "d"], ["a", "b"]):       # neuro is met first in one, card in other
        m = acc["user_id"].isin(users).to_numpy()
        parts.append(share_counts(acc["explained"].to_numpy()[m], units[m],
                                  acc["user_id"][m], acc["patient_id"][m]))
    split = shares_from_counts(parts, rules)
    pd.testing.assert_frame_equal(split, whole)
    card = whole[(whole["dimension"] == "department") & (whole["value"] == "card")].iloc[0]
    assert (card["accesses"], card["patients"], card["users"]) == (5, 3, 3)
    his = whole[whole["dimension"] == "source"].iloc[0]
    assert his["patients"] == 3                 # p1 in three partitions' accesses, once
