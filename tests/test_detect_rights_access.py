"""rights.outside_grant (and its evidence on care.no_relationship) and
rights.generic_account: edge cases on hand-made events."""

from __future__ import annotations

import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.registry import get

USERS = [{"user_id": "n1", "role": "nurse", "department": "内科", "ward": "W1"},
         {"user_id": "n2", "role": "nurse", "department": "内科", "ward": "W1"}]
PATIENTS = [{"patient_id": "p1", "sensitive_class": "精神"}, {"patient_id": "p2"},
            {"patient_id": "p3", "sensitive_class": "传染病"}]
RELATIONS = [{"patient_id": p, "user_id": None, "department": "内科", "ward": "W1",
              "kind": "admission", "start": "2026-09-01"} for p in ("p1", "p2", "p3")]


def run(det_id: str, ctx, **params):
    return get(det_id)(**params).run(ctx)


def octx(events, grants=(), roles=None, relations=RELATIONS, **kw):
    return make_ctx(events, window=("2026-09-10", "2026-09-11"), users=USERS,
                    patients=PATIENTS, care_relations=relations, grants=list(grants),
                    roles=roles, **kw)


def g(gid, user, perm="查阅", cls="精神", **kw):
    row = {"grant_id": gid, "user_id": user, "permission": perm, "record_class": cls,
           "granted_at": "2026-01-01", "granted_by": "it", "approved_by": "m"}
    row.update(kw)
    return row


# -- rights.outside_grant -------------------------------------------------------------------------
def test_explained_access_to_a_classed_record_without_a_grant_is_a_finding():
    events = [ev("n1", "p1", "2026-09-10 10:00"), ev("n1", "p1", "2026-09-10 11:00", "print"),
              ev("n1", "p2", "2026-09-10 10:30"), ev("n2", "p1", "2026-09-10 10:00")]
    f = run("rights.outside_grant", octx(events, [g("G2", "n2")]))
    assert len(f) == 1
    e = f.iloc[0]
    assert (e["user_id"], e["patient_id"]) == ("n1", "p1")
    assert len(e["event_ids"]) == 2 and e["severity"] == "high"      # a print among them
    assert e["evidence"]["classes_without_grant"] == ["psychiatric"]
    assert e["evidence"]["care_explanations"] == {"unit_relation": 2}
    assert "without a grant for that class" in e["summary"]


@pytest.mark.parametrize("grant_kw, flagged", [
    ({}, False),
    ({"revoked_at": "2026-09-10 09:00"}, True),          # revoked before the access
    ({"granted_at": "2026-09-10 10:30"}, True),          # granted after it
    ({"expires_at": "2026-09-10 10:00"}, True),          # lapsed at that instant
    ({"perm": "打印"}, True),                             # print does not allow a view
    ({"perm": "全部"}, False),
    ({"cls": "传染病"}, True),                             # another class
])
def test_the_grant_must_be_held_at_the_access_for_its_permission_and_class(grant_kw,
                                                                            flagged):
    kw = dict(grant_kw)
    row = g("G1", "n1", kw.pop("perm", "查阅"), kw.pop("cls", "精神"), **kw)
    f = run("rights.outside_grant", octx([ev("n1", "p1", "2026-09-10 10:00")], [row]))
    assert (len(f) == 1) == flagged


def test_a_role_reaching_the_class_is_a_grant():
    roles = [{"role": "nurse", "permissions": "查阅", "record_class": "精神"}]
    f = run("rights.outside_grant", octx([ev("n1", "p1", "2026-09-10 10:00")], [], roles))
    assert f.empty


def test_unexplained_and_break_the_glass_accesses_are_left_to_other_detectors():
    rel = [r for r in RELATIONS if r["patient_id"] != "p1"]
    events = [ev("n1", "p1", "2026-09-10 10:00")]
    assert run("rights.outside_grant", octx(events, relations=rel)).empty
    f = run("rights.outside_grant", octx(events, relations=rel), include_unexplained=True)
    assert f.iloc[0]["evidence"]["care_explanations"] == {"none": 1}
    btg = [ev("n1", "p1", "2026-09-10 09:58", "break_glass"),
           ev("n1", "p1", "2026-09-10 10:00")]
    assert run("rights.outside_grant", octx(btg, relations=rel),
               include_unexplained=True).empty


def test_classes_parameter_encounter_classes_and_failed_accesses():
    events = [ev("n1", "p3", "2026-09-10 10:00"),
              ev("n1", "p2", "2026-09-10 10:05", encounter_id="Z9"),
              ev("n1", "p1", "2026-09-10 10:10", outcome="failure")]
    rel = RELATIONS + [{"patient_id": "p2", "user_id": None, "department": "内科",
                        "ward": "W1", "kind": "admission", "start": "2026-09-01",
                        "encounter_id": "Z9", "sensitive_class": "生殖"}]
    f = run("rights.outside_grant", octx(events, relations=rel))
    assert sorted(f["patient_id"]) == ["p2", "p3"]                   # not the failed one
    f = run("rights.outside_grant", octx(events, relations=rel), classes=["reproductive"])
    assert f["patient_id"].tolist() == ["p2"]


def test_no_relation_case_carries_the_class_grant_check_as_evidence():
    rel = [r for r in RELATIONS if r["patient_id"] not in ("p1", "p2")]
    events = [ev("n1", "p1", "2026-09-10 10:00"), ev("n1", "p2", "2026-09-10 10:00")]
    f = run("care.no_relationship", octx(events, relations=rel)).set_index("patient_id")
    assert f.loc["p1", "evidence"]["class_grants"] == {"classes": ["psychiatric"],
                                                       "granted": [],
                                                       "missing": ["psychiatric"]}
    assert "class_grants" not in f.loc["p2", "evidence"]               # no class
    f = run("care.no_relationship", octx(events, [g("G1", "n1")], relations=rel))
    assert f.set_index("patient_id").loc["p1", "evidence"]["class_grants"]["granted"] == [
        "psychiatric"]
    # without a grants table there is nothing to say
    ctx = make_ctx(events, window=("2026-09-10", "2026-09-11"), users=USERS,
                   patients=PATIENTS, care_relations=rel)
    assert "class_grants" not in run("care.no_relationship", ctx).iloc[0]["evidence"]


# -- rights.generic_account -----------------------------------------------------------------------
def gctx(events, users=None, window=("2026-09-10", "2026-09-11")):
    return make_ctx(events, window=window, users=users)


def test_generic_names_in_the_login_or_the_staff_name():
    users = [{"user_id": "U77", "name": "内科护士站", "role": "nurse"},
             {"user_id": "U78", "name": "王小明", "role": "nurse"}]
    events = [ev("admin", None, "2026-09-10 10:00", "login", workstation="A"),
              ev("U77", "p1", "2026-09-10 10:00", workstation="B"),
              ev("U78", "p1", "2026-09-10 10:00", workstation="C"),
              ev("TEST01", "p1", "2026-09-10 11:00", outcome="failure", action="login_failed")]
    f = run("rights.generic_account", gctx(events, users)).set_index("user_id")
    assert sorted(f.index) == ["U77", "admin"]                        # a failed try is not use
    assert f.loc["U77", "message_args"]["match"] == ["护士站"]
    assert f.loc["U77", "message_id"] == "rights.generic_account.name"
    assert f.loc["admin", "severity"] == "high"
    assert run("rights.generic_account", gctx(events, users),
               ignore_accounts=["admin", "U77"]).empty


def _shared_days(n_days: int, shared: int, terminals=3, minutes=10):
    out = []
    for d in range(n_days):
        k = terminals if d >= n_days - shared else 1        # the last days shared
        for j in range(k):
            out.append(ev("U5", "p1", f"2026-09-{d + 1:02d} 09:{j * minutes:02d}",
                          workstation=f"WS{j}"))
    return out


@pytest.mark.parametrize("shared, flagged", [(6, True), (5, False)])
def test_shared_on_most_days_boundary(shared, flagged):
    # 10 active days, min_share 0.6: 6 shared days are enough, 5 are not
    f = run("rights.generic_account", gctx(_shared_days(10, shared),
                                           window=("2026-09-10", "2026-09-11")))
    assert (len(f) == 1) == flagged
    if flagged:
        e = f.iloc[0]
        assert e["evidence"]["days_shared"] == 6 and e["evidence"]["active_days"] == 10
        assert e["start"].startswith("2026-09-05T09:00")    # the first shared day


def test_sharing_needs_terminals_at_once_enough_days_and_ignores_shared_hosts():
    # the same three terminals, 40 minutes apart: one person moving, not three at once
    assert run("rights.generic_account", gctx(_shared_days(10, 10, minutes=20)),
               window_minutes=30).empty
    assert run("rights.generic_account", gctx(_shared_days(4, 4),
                                              window=("2026-09-04", "2026-09-05"))).empty
    assert run("rights.generic_account", gctx(_shared_days(10, 10)),
               shared_workstations=["WS*"]).empty


def test_one_finding_per_account_and_month_with_a_bounded_event_list():
    ctx = gctx(_shared_days(10, 10), window=("2026-09-10", "2026-09-11"))
    f = run("rights.generic_account", ctx, max_events=10)
    e = f.iloc[0]
    assert e["evidence"]["events_total"] == 30 and len(e["event_ids"]) == 10
    assert e["evidence"]["month"] == "2026-09"
    again = run("rights.generic_account",
                gctx(_shared_days(10, 10), window=("2026-09-09", "2026-09-11")), max_events=10)
    assert again["finding_id"].tolist() == f["finding_id"].tolist()


def test_bad_pattern_is_a_parameter_error():
    with pytest.raises(ValueError, match="regular expression"):
        get("rights.generic_account")(name_patterns=["(unclosed"])
