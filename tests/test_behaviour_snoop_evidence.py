"""snoop.* findings as data (issue 23, from the sampled survivors of snoop.py), against the
real explanation engine: the evidence and message arguments of each detector pinned as
literals on small hand-made frames (the engine's verdicts, coworker and own-record facts,
the family basis of a contact declared by address, the days after death, the sealed-record
scores), and two household rules (a staff member's own record at their address, and the
keys held by few patients, index kept)."""

from __future__ import annotations

import pandas as pd

from detector_frames import ev, make_ctx, run
from emraudit.detectors.snoop import specific
from test_detect_snoop import STAFF as SNOOP_STAFF

DAY = ("2025-07-22", "2025-07-23")
# the snoop tests' staff (u1 王伟 ICU, u2 欧阳明 with patient record P_SELF, u3 李娜 ER) and
# u9, an ER nurse who is also a patient (P9)
STAFF = [*SNOOP_STAFF, {"user_id": "u9", "name": "赵磊", "role": "nurse", "department": "ER"}]


def snoop(detector, events, patients, **kw):
    kw.setdefault("users", STAFF)
    return run(detector, make_ctx(events, window=DAY, patients=patients, **kw))


def verdicts(finding):
    return [(x["explanation"], x["result"]) for x in finding["evidence"]["explanations"]]


NOTHING_HOLDS = [("own_relation", "failed"), ("unit_relation", "failed"),
                 ("duty_ward", "failed"), ("request_relation", "failed"),
                 ("prior_treatment", "failed"), ("documentation", "failed"),
                 ("worked_on_ward", "failed"), ("break_glass", "failed"),
                 ("record_role", "failed")]


def test_vip_evidence_carries_the_engines_verdicts():
    f = snoop("snoop.vip", [ev("u1", "V1", "2025-07-22 10:00")],
              [{"patient_id": "V1", "vip": True}])
    r = f.iloc[0]
    e = dict(r["evidence"])
    explanations = e.pop("explanations")
    assert e == {"date": "2025-07-22", "accesses": 1, "actions": ["view"], "explained": False,
                 "explained_by": [], "name_lookup_then_open": False, "vip": True,
                 "score": 3.0}
    assert verdicts(r) == NOTHING_HOLDS
    assert explanations[-1]["detail"] == {"role": "nurse", "record_role": False}
    assert explanations[1]["detail"]["department"] == "ICU"
    assert (r["severity"], r["score"]) == ("high", 3.0)
    assert r["message_args"] == {"user": "u1", "patient": "V1", "accesses": 1, "lookup": False}


# --------------------------------------------------------------------------- coworker
def test_coworker_evidence_other_and_same_department():
    pats = [{"patient_id": "P9", "employee_user_id": "u9"}]
    events = [ev("u1", "P9", "2025-07-22 10:00"), ev("u3", "P9", "2025-07-22 10:05")]
    f = snoop("snoop.coworker", events, pats).sort_values("user_id")
    assert f[["user_id", "severity", "score"]].values.tolist() == \
        [["u1", "medium", 2.0], ["u3", "high", 3.0]]
    other, same = f.iloc[0], f.iloc[1]
    assert (other["evidence"]["employee_user_id"], other["evidence"]["same_department"]) == \
        ("u9", False)
    assert (same["evidence"]["employee_user_id"], same["evidence"]["same_department"]) == \
        ("u9", True)
    assert same["message_args"] == {"user": "u3", "patient": "P9", "accesses": 1,
                                    "coworker": "u9", "same_department": True,
                                    "lookup": False}


# --------------------------------------------------------------------------- self
def test_own_record_created_is_an_edit_a_view_is_not():
    pats = [{"patient_id": "P_SELF"}]
    f = snoop("snoop.self", [ev("u2", "P_SELF", "2025-07-22 10:00", "create")], pats)
    r = f.iloc[0]
    assert r["severity"] == "high"
    assert r["message_args"] == {"user": "u2", "patient": "P_SELF", "accesses": 1,
                                 "edited": True, "lookup": False}
    assert (r["evidence"]["own_record"], r["evidence"]["edited"], r["score"]) == \
        (True, True, 1.0)
    f = snoop("snoop.self", [ev("u2", "P_SELF", "2025-07-22 10:00")], pats)
    r = f.iloc[0]
    assert (r["severity"], r["message_args"]["edited"], r["evidence"]["edited"]) == \
        ("medium", False, False)


# --------------------------------------------------------------------------- household
def test_the_staff_members_own_record_at_their_address_is_not_a_neighbour():
    pats = [{"patient_id": "P_OWN", "name": "王伟", "employee_user_id": "u1",
             "address": "北京市朝阳区建国路1号2-301"},
            {"patient_id": "P_NB", "name": "张三", "address": "北京市朝阳区建国路1号2-301"}]
    events = [ev("u1", "P_OWN", "2025-07-22 10:00"), ev("u1", "P_NB", "2025-07-22 10:05")]
    f = snoop("snoop.neighbor", events, pats)
    assert f["patient_id"].tolist() == ["P_NB"]
    assert f.iloc[0]["evidence"]["family_basis"] == ["same_address"]
    assert f.iloc[0]["score"] == 2.0


def test_contact_declared_by_address_with_the_patients_surname_is_family():
    # the patient lives elsewhere; the contact is u2 by name and address
    pats = [{"patient_id": "P5", "name": "欧阳红", "address": "上海市徐汇区1号"}]
    contacts = [{"patient_id": "P5", "name": "欧阳明", "relation": "子女",
                 "address": "北京市海淀区 中关村大街 5号 101"}]
    f = snoop("snoop.family", [ev("u2", "P5", "2025-07-22 10:00")], pats,
              patient_contacts=contacts)
    assert len(f) == 1
    r = f.iloc[0]
    assert (r["severity"], r["score"]) == ("high", round(10.97 / 4 + 3, 2))
    e = r["evidence"]
    assert {k: e[k] for k in ("family_basis", "declared_relation", "surname",
                              "surname_share_percent", "surname_common", "surname_bits",
                              "score")} == {
        "family_basis": ["declared_contact", "same_surname"], "declared_relation": "子女",
        "surname": "欧阳", "surname_share_percent": 0.05, "surname_common": False,
        "surname_bits": 10.97, "score": 5.74}
    assert r["message_args"] == {"user": "u2", "patient": "P5", "accesses": 1,
                                 "family": ["declared_contact", "same_surname"],
                                 "relation": "子女", "lookup": False}


def test_keys_held_by_few_patients_keep_their_index():
    keys = pd.Series(["a", "a", "b", None], index=[10, 20, 30, 40], dtype="string")
    out = specific(keys, 1)
    assert out.index.tolist() == [10, 20, 30, 40]
    assert out.tolist() == [False, False, True, False]


# --------------------------------------------------------------------------- deceased
def test_deceased_evidence():
    f = snoop("snoop.deceased", [ev("u1", "D1", "2025-07-22 10:00")],
              [{"patient_id": "D1", "deceased_date": "2024-07-22 10:00"}])
    r = f.iloc[0]
    assert {k: r["evidence"][k] for k in ("deceased_date", "days_after_death",
                                          "threshold_days", "score")} == {
        "deceased_date": "2024-07-22", "days_after_death": 365, "threshold_days": 30,
        "score": 2.0}
    assert (r["severity"], r["score"]) == ("high", 2.0)
    assert r["message_args"]["days"] == 365


# --------------------------------------------------------------------------- watchlist
def test_sealed_record_scores_explained_3_unexplained_4():
    pats = [{"patient_id": "S1", "watch": True, "watch_team": "u9"}]
    rel = [{"patient_id": "S1", "user_id": "u3", "kind": "admission",
            "start": "2025-07-20", "end": "2025-07-25"}]
    events = [ev("u3", "S1", "2025-07-22 10:00"), ev("u1", "S1", "2025-07-22 10:05")]
    f = snoop("snoop.watchlist", events, pats, care_relations=rel).sort_values("user_id")
    assert f[["user_id", "severity", "score"]].values.tolist() == \
        [["u1", "critical", 4.0], ["u3", "high", 3.0]]
    assert [r["unexplained"] for r in f["message_args"]] == [True, False]
    assert [r["evidence"]["explained_by"] for _, r in f.iterrows()] == [[], ["own_relation"]]
