"""rights.beyond_role, rights.unapproved, rights.after_leaving, rights.unused: edge cases on
hand-made tables (the state as of the window's end; no events needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from detector_frames import TZ, ev, make_ctx
from emraudit.detectors.registry import get

WINDOW = ("2026-09-10", "2026-09-11")        # as of 2026-09-11 00:00


def run(det_id: str, ctx, **params):
    return get(det_id)(**params).run(ctx)


def nurses(n: int, dept: str = "内科") -> list[dict]:
    return [{"user_id": f"n{i}", "role": "nurse", "department": dept} for i in range(n)]


def grant(gid, user=None, perm="查阅", **kw) -> dict:
    row = {"grant_id": gid, "user_id": user, "permission": perm, "granted_at": "2026-01-01",
           "granted_by": "it1", "approved_by": "m1"}
    row.update(kw)
    return row


def ctx_of(users=None, grants=(), roles=None, events=(), window=WINDOW, **kw):
    return make_ctx(list(events), window=window, users=users, grants=list(grants),
                    roles=roles, **kw)


# -- rights.beyond_role ---------------------------------------------------------------------------
@pytest.mark.parametrize("holders, flagged", [(1, True), (2, False)])
def test_peer_share_just_under_and_over_the_threshold(holders, flagged):
    # 9 nurses: 8 peers each; a grant held by 1 of them is 1/8 = 0.125 <= 0.2; by 2: the
    # other holder makes 1/8 for each — still rare; so use 3 holders for "over": 2/8 = 0.25
    n_hold = 1 if flagged else 3
    g = [grant(f"G{i}", f"n{i}", "导出") for i in range(n_hold)]
    f = run("rights.beyond_role", ctx_of(nurses(9), g))
    assert (len(f) == n_hold) if flagged else f.empty
    if flagged:
        e = f.iloc[0]
        assert e["user_id"] == "n0" and e["severity"] == "high" and e["event_ids"] == []
        assert e["evidence"]["refs"] == ["grants:G0"]
        assert e["evidence"]["peer_group"] == {"role": "nurse", "department": "内科",
                                               "peers": 8}
        assert e["start"] == "2026-01-01T00:00:00+08:00"
        assert "0 of 8 peers" in e["summary"]


def test_too_few_peers_is_not_judged():
    g = [grant("G0", "n0", "导出")]
    assert run("rights.beyond_role", ctx_of(nurses(5), g)).empty          # 4 peers
    assert len(run("rights.beyond_role", ctx_of(nurses(6), g))) == 1      # 5 peers
    assert run("rights.beyond_role", ctx_of(nurses(6), g), min_peers=6).empty


def test_a_broader_right_of_the_peers_covers_and_role_rights_never_count():
    roles = [{"role": "nurse", "permissions": "查阅;打印", "scope": "全院"}]
    g = [grant("G0", "n0", "打印", scope="本科室"),          # peers print hospital-wide
         grant("G1", "n1", "导出", scope="全院")]
    f = run("rights.beyond_role", ctx_of(nurses(8), g, roles))
    assert f["evidence"].map(lambda e: e["refs"]).tolist() == [["grants:G1"]]
    # a peer holding 'all' covers export as well
    g.append(grant("G2", "n2", "全部", scope="全院"))
    f = run("rights.beyond_role", ctx_of(nurses(8), g, roles), max_peer_share=0.1)
    assert sorted(f["user_id"]) == ["n2"]


def test_departed_peers_do_not_count_and_ignored_permissions_are_skipped():
    users = nurses(7) + [{"user_id": "x", "role": "nurse", "department": "内科",
                          "status": "terminated"}]
    g = [grant("G0", "n0", "导出"), grant("Gx", "x", "导出")]
    f = run("rights.beyond_role", ctx_of(users, g))
    assert f["user_id"].tolist() == ["n0"]       # x left: not a peer, not judged
    assert run("rights.beyond_role", ctx_of(users, g), ignore_permissions=["export"]).empty


def test_role_reaching_a_sensitive_class_needs_an_approved_definition():
    users = [{"user_id": "t1", "role": "trainee", "department": "内科",
              "start_date": "2026-03-01"}]
    roles = [{"role": "trainee", "permissions": "查阅", "record_class": "精神"},
             {"role": "nurse", "permissions": "查阅", "record_class": "传染病",
              "approved_by": "m1"}]
    ctx = ctx_of(users, [grant("G0", "t1", "打印")], roles)
    f = run("rights.beyond_role", ctx)
    assert f["user_id"].tolist() == ["role:trainee"]
    e = f.iloc[0]
    assert e["severity"] == "high" and e["evidence"]["refs"] == ["roles:trainee"]
    assert e["start"] == "2026-03-01T00:00:00+08:00"     # dated by the first holder
    assert "psychiatric" in e["summary"] and "1 holders" in e["summary"]
    assert run("rights.beyond_role", ctx, role_classes=False).empty


def test_an_undated_unapproved_role_is_said_once_not_filed():
    roles = [{"role": "trainee", "permissions": "查阅", "record_class": "精神"}]
    ctx = ctx_of([{"user_id": "t1", "role": "trainee"}], [grant("G0", "t1")], roles)
    assert run("rights.beyond_role", ctx).empty
    run("rights.beyond_role", ctx)
    assert len([n for n in ctx.notes if "trainee" in n]) == 1


# -- rights.unapproved ----------------------------------------------------------------------------
def test_self_granted_self_approved_untraceable_and_missing_approval():
    g = [grant("S", "u1", granted_by="u1", approved_by="m1"),
         grant("A", "u2", approved_by="u2"),
         grant("N", "u3", granted_by=None),
         grant("P", "u4", "导出", approved_by=None),
         grant("C", "u5", record_class="精神", approved_by=None),
         grant("OK", "u6", approved_by=None)]            # plain read: no approval needed
    f = run("rights.unapproved", ctx_of(None, g)).set_index("user_id")
    probs = f["evidence"].map(lambda e: e["problems"]).to_dict()
    assert probs == {"u1": ["self_granted"], "u2": ["self_approved"], "u3": ["no_granter"],
                     "u4": ["no_approval"], "u5": ["no_approval"]}
    assert f.loc["u1", "severity"] == "high" and f.loc["u4", "severity"] == "medium"
    assert "granted by the holder themselves" in f.loc["u1", "summary"]
    f = run("rights.unapproved", ctx_of(None, g), require_approval=["any"])
    assert "u6" in set(f["user_id"])


def test_four_eyes_same_person_is_low_and_can_be_turned_off():
    g = [grant("F", "u1", granted_by="m1", approved_by="m1")]
    f = run("rights.unapproved", ctx_of(None, g))
    assert f["severity"].tolist() == ["low"]
    assert f.iloc[0]["evidence"]["problems"] == ["same_person"]
    assert run("rights.unapproved", ctx_of(None, g), four_eyes=False).empty


def test_role_given_to_an_account_is_judged_by_what_the_role_reaches():
    roles = [{"role": "精神科组", "permissions": "查阅", "record_class": "精神"},
             {"role": "病区组", "permissions": "查阅"}]
    g = [{"grant_id": "R1", "user_id": "u1", "role": "精神科组", "granted_at": "2026-01-01",
          "granted_by": "it1"},
         {"grant_id": "R2", "user_id": "u2", "role": "病区组", "granted_at": "2026-01-01",
          "granted_by": "it1"}]
    f = run("rights.unapproved", ctx_of(None, g, roles))
    assert f["user_id"].tolist() == ["u1"]
    assert "role 精神科组" in f.iloc[0]["summary"]


def test_grants_revoked_before_the_window_are_history_those_made_in_it_are_judged():
    g = [grant("old", "u1", granted_by="u1", revoked_at="2026-02-01"),
         grant("new", "u2", granted_by="u2", granted_at="2026-09-10 09:00",
               revoked_at="2026-09-10 12:00")]
    f = run("rights.unapproved", ctx_of(None, g))
    assert f["user_id"].tolist() == ["u2"]


# -- rights.after_leaving -------------------------------------------------------------------------
@pytest.mark.parametrize("end, flagged", [("2026-09-10 00:00", False),
                                          ("2026-09-09 23:59", True)])
def test_departed_with_grace_boundary(end, flagged):
    # as of 2026-09-11 00:00, one day of grace: the end date must be before 09-10 00:00;
    # a terminated status with an end date still in its grace is judged by the date
    users = [{"user_id": "u1", "role": "nurse", "end_date": end, "status": "terminated"}]
    f = run("rights.after_leaving", ctx_of(users, [grant("G1", "u1")]))
    if not flagged:
        assert f.empty
    else:
        e = f.iloc[0]
        assert e["evidence"]["reason"] == "departed" and e["severity"] == "high"
        assert e["start"].startswith("2026-09-09T23:59")
        assert e["evidence"]["refs"] == ["grants:G1"]


def test_terminated_without_date_expired_trainee_and_revoked_grants():
    users = [{"user_id": "t", "role": "nurse", "status": "terminated"},
             {"user_id": "tr", "role": "trainee", "access_until": "2026-09-01"},
             {"user_id": "r", "role": "nurse", "status": "terminated"},
             {"user_id": "ok", "role": "nurse"}]
    g = [grant("G1", "t", granted_at="2026-03-01"), grant("G2", "tr", record_class="精神"),
         grant("G3", "r", revoked_at="2026-05-01"),
         grant("G4", "r", expires_at="2026-06-01"), grant("G5", "ok")]
    f = run("rights.after_leaving", ctx_of(users, g)).set_index("user_id")
    assert sorted(f.index) == ["t", "tr"]
    assert f.loc["t", "evidence"]["reason"] == "terminated"
    assert f.loc["t", "start"].startswith("2026-03-01")    # no end date: the first grant
    # expired 10 days ago: medium, raised for the sensitive class
    assert f.loc["tr", "evidence"]["reason"] == "expired" and f.loc["tr", "severity"] == "high"
    assert "had access until 2026-09-01 and still holds 1 grant" in f.loc["tr", "summary"]


def test_transferred_grant_of_the_former_department():
    users = [{"user_id": "u1", "role": "nurse", "department": "外科"}]
    g = [grant("G1", "u1", department="内科"), grant("G2", "u1", department=" 外科 ")]
    f = run("rights.after_leaving", ctx_of(users, g))
    assert f["evidence"].map(lambda e: e["refs"]).tolist() == [["grants:G1"]]
    assert "now works in 外科" in f.iloc[0]["summary"]
    assert run("rights.after_leaving", ctx_of(users, g), check_transfers=False).empty


# -- rights.unused --------------------------------------------------------------------------------
def _unused_ctx(events, grants, window=("2026-09-10", "2026-09-11"), baseline=None, **kw):
    ctx = ctx_of([{"user_id": "u1", "role": "nurse"}], grants, events=events, window=window,
                 patients=[{"patient_id": "p1"}, {"patient_id": "p2",
                                                  "sensitive_class": "精神"}], **kw)
    if baseline is not None:
        ctx.baseline["rights_usage"] = baseline
    return ctx


HISTORY = [ev("u1", "p1", "2026-06-01 09:00")]       # watched since June 1st


@pytest.mark.parametrize("last, flagged", [("2026-06-12 23:00", True),
                                           ("2026-06-13 01:00", False)])
def test_unused_boundary_at_the_horizon(last, flagged):
    # as of 2026-09-11 00:00 with 90 days: the horizon is 2026-06-13 00:00
    events = HISTORY + [ev("u1", "p1", last, "print")]
    f = run("rights.unused", _unused_ctx(events, [grant("G1", "u1", "打印")]))
    assert (len(f) == 1) == flagged
    if flagged:
        e = f.iloc[0]
        assert e["evidence"]["last_used"].startswith("2026-06-12")
        assert e["evidence"]["rule"] == "unused.last" and e["severity"] == "low"


def test_use_on_another_class_does_not_count_and_all_counts_any_permission():
    events = HISTORY + [ev("u1", "p1", "2026-09-01 10:00")]           # ordinary record
    g = [grant("C", "u1", "查阅", record_class="精神"), grant("A", "u1", "全部")]
    f = run("rights.unused", _unused_ctx(events, g))
    assert f["evidence"].map(lambda e: e["refs"]).tolist() == [["grants:C"]]
    assert f.iloc[0]["severity"] == "medium"             # a sensitive class
    assert f.iloc[0]["evidence"]["rule"] == "unused.never"


def test_young_grants_unseen_permissions_and_departed_holders_are_not_judged():
    g = [grant("Y", "u1", "打印", granted_at="2026-07-01"), grant("M", "u1", "授权"),
         grant("X", "gone", "打印")]
    users = [{"user_id": "u1", "role": "nurse"},
             {"user_id": "gone", "role": "nurse", "status": "terminated"}]
    ctx = make_ctx(HISTORY, window=("2026-09-10", "2026-09-11"), users=users, grants=g)
    assert run("rights.unused", ctx).empty


def test_too_short_a_watch_is_said_once_and_stored_usage_extends_it():
    events = [ev("u1", "p1", "2026-08-20 09:00")]
    ctx = _unused_ctx(events, [grant("G1", "u1", "打印")])
    assert run("rights.unused", ctx).empty
    assert [n for n in ctx.notes if n.startswith("rights.unused")] == [
        "rights.unused: account activity has been watched for 21 days; grants are judged "
        "once 90 days are watched"]
    stored = pd.DataFrame({"user_id": ["u1"], "permission": ["*"], "record_class": ["*"],
                           "first_used": [pd.Timestamp("2026-04-01", tz=TZ)],
                           "last_used": [pd.Timestamp("2026-04-01", tz=TZ)]})
    f = run("rights.unused", _unused_ctx(events, [grant("G1", "u1", "打印")],
                                         baseline=stored))
    assert len(f) == 1 and f.iloc[0]["evidence"]["watched_since"].startswith("2026-04-01")


def test_a_partition_judges_with_the_stored_usage_the_scan_process_handed_it():
    """A partitioned scan gives its partitions the population, not ctx.baseline: without the
    stored usage the watch looks 21 days long, nothing is judged, and the usage saved after
    the scan would forget what was seen before."""
    events = [ev("u1", "p1", "2026-08-20 09:00")]
    stored = pd.DataFrame({"user_id": ["u1"], "permission": ["*"], "record_class": ["*"],
                           "first_used": [pd.Timestamp("2026-04-01", tz=TZ)],
                           "last_used": [pd.Timestamp("2026-04-01", tz=TZ)]})
    parent = _unused_ctx([], [grant("G1", "u1", "打印")], baseline=stored)
    get("rights.unused")().population_prepare(parent)     # in the scan's own process
    part = _unused_ctx(events, [grant("G1", "u1", "打印")])
    part.population = dict(parent.population)
    f = run("rights.unused", part)
    assert len(f) == 1 and f.iloc[0]["evidence"]["watched_since"].startswith("2026-04-01")
    saved = part.outputs["rights_usage"]
    anyrow = saved[(saved["permission"] == "*") & (saved["record_class"] == "*")]
    assert anyrow["first_used"].min() == pd.Timestamp("2026-04-01", tz=TZ)


def test_state_findings_are_reproduced_with_the_same_ids_on_another_night():
    g = [grant("S", "u1", granted_by="u1")]
    a = run("rights.unapproved", ctx_of(None, g))
    b = run("rights.unapproved", ctx_of(None, g, window=("2026-09-20", "2026-09-21")))
    assert a["finding_id"].tolist() == b["finding_id"].tolist()
    assert a["start"].tolist() == b["start"].tolist()
