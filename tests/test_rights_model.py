"""The rights tables (grants, roles, sensitive classes), effective rights and stored usage."""

from __future__ import annotations

import pandas as pd

from detector_frames import TZ, ev, frame, make_ctx
from emraudit.entitlements import grant_held_at, held_at, holdings
from emraudit.model import describe_schema, validate
from emraudit.rights_state import load_usage, save_usage
from emraudit.rights_usage import merge_usage, observed_since, usage, usage_from_events
from emraudit.store import Store


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=TZ)


def _grants(rows):
    return validate("grants", pd.DataFrame(rows), TZ, "g.csv")


# -- validation ---------------------------------------------------------------------------------
def test_grant_words_are_normalized_and_unknown_words_kept():
    v = _grants([{"user_id": "U1", "permission": "查阅；打印", "record_class": "精神、传染病/HIV",
                  "scope": "全院", "granted_at": "2026-01-01"},
                 {"user_id": "U2", "permission": "读写,病历导出", "record_class": "涉密",
                  "scope": "心内科", "granted_at": "2026-01-01"},
                 {"role": "主治医师", "permission": "全部", "granted_at": "2026-01-01"}])
    a = v.accepted
    assert len(v.quarantine) == 0
    assert a["permission"].tolist() == ["read;print", "read;write;export", "all"]
    assert a["record_class"].tolist()[:2] == ["psychiatric;infectious", "涉密"]
    assert a["scope"].tolist()[:2] == ["all", "心内科"]
    assert a["role"].iloc[2] == "physician"          # a role synonym meets users.role


def test_grant_rows_that_cannot_be_audited_are_quarantined_with_the_reason():
    v = _grants([{"permission": "查阅", "granted_at": "2026-01-01"},
                 {"user_id": "U1", "granted_at": "2026-01-01"},
                 {"user_id": "U1", "permission": "查阅", "granted_at": "2026-02-01",
                  "revoked_at": "2026-01-01"},
                 {"user_id": "U1", "permission": "查阅", "granted_at": ""},
                 {"user_id": "U1", "role": "精神科组", "granted_at": "2026-01-01"}])
    assert v.quarantine["reason"].tolist() == [
        "a grant names neither a user nor a role",
        "a grant names no permission (nor a role given to a user)",
        "grant revoked before it was granted", "missing required 'granted_at'"]
    assert v.accepted["role"].tolist() == ["精神科组"]      # a role given to an account


def test_derived_grant_ids_depend_on_content_not_source_or_line():
    rows = [{"user_id": "U1", "permission": "查阅", "granted_at": "2026-01-01"},
            {"user_id": "U2", "permission": "查阅", "granted_at": "2026-01-01"}]
    a = validate("grants", pd.DataFrame(rows), TZ, "one").accepted["grant_id"].tolist()
    b = validate("grants", pd.DataFrame(rows[::-1]), TZ, "other").accepted["grant_id"].tolist()
    assert a == b[::-1] and len(set(a)) == 2 and all(x.startswith("G") for x in a)
    twice = validate("grants", pd.DataFrame(rows + rows[:1]), TZ, "x")
    assert twice.duplicates == 1 and len(twice.accepted) == 2
    given = _grants([{"grant_id": "SQ-1", **rows[0]}]).accepted["grant_id"].tolist()
    assert given == ["SQ-1"]


def test_roles_rows_add_up_and_sensitive_classes_normalize():
    r = validate("roles", pd.DataFrame({"role": ["医师", "医师", "精神科组"],
                                        "permissions": ["查阅", "打印", "浏览"],
                                        "record_class": ["", "", "精神"]}), TZ, "r")
    assert r.duplicates == 0 and r.accepted["role"].tolist() == ["physician", "physician",
                                                                "精神科组"]
    p = validate("patients", pd.DataFrame({"patient_id": ["p1", "p2", "p3"],
                                           "sensitive_class": ["HIV;精神", "", "VIP、封存"]}),
                 TZ, "p").accepted
    assert p["sensitive_class"].tolist()[0] == "psychiatric;infectious"
    assert pd.isna(p["sensitive_class"].iloc[1]) and p["sensitive_class"].iloc[2] == "vip;sealed"


def test_schema_describes_the_new_tables():
    text = describe_schema()
    for word in ("grants:", "roles:", "sensitive_class", "approved_by", "revoked_at"):
        assert word in text


# -- effective rights ---------------------------------------------------------------------------
def _world():
    users = frame("users", [{"user_id": "u1", "role": "nurse"},
                            {"user_id": "u2", "role": "physician"}])
    roles = frame("roles", [{"role": "护士", "permissions": "查阅;书写"},
                            {"role": "精神科组", "permissions": "查阅", "record_class": "精神",
                             "approved_by": "m"}])
    grants = frame("grants", [
        {"grant_id": "A", "user_id": "u1", "role": "精神科组", "granted_at": "2026-01-01",
         "revoked_at": "2026-03-01", "approved_by": "m"},
        {"grant_id": "D", "user_id": "u2", "permission": "导出", "granted_at": "2026-02-01",
         "expires_at": "2026-02-10"},
        {"grant_id": "R", "role": "physician", "permission": "打印", "record_class": "传染病",
         "granted_at": "2026-01-05"}])
    return users, grants, roles


def test_holdings_keep_every_route_with_its_interval():
    h = holdings(*_world())
    got = {(r.user_id, r.permission, r.record_class, r.via, r.grant_id if pd.notna(r.grant_id)
            else None) for r in h.itertuples()}
    assert got == {("u1", "read", "", "role", None), ("u1", "write", "", "role", None),
                   ("u1", "read", "psychiatric", "role", "A"),
                   ("u2", "export", "", "grant", "D"),
                   ("u2", "print", "infectious", "role_grant", "R")}
    psych = h[h["grant_id"] == "A"].iloc[0]
    assert psych["start"] == T("2026-01-01") and psych["end"] == T("2026-03-01")
    assert bool(psych["approved"])


def test_held_at_edges_granted_inclusive_revoked_and_expired_exclusive():
    h = holdings(*_world())
    ids = lambda t: set(held_at(h, T(t))["grant_id"].dropna())  # noqa: E731
    assert ids("2025-12-31 23:59") == set()
    assert ids("2026-01-01 00:00") == {"A"}
    assert ids("2026-02-01 00:00") == {"A", "D", "R"}
    assert ids("2026-02-10 00:00") == {"A", "R"}         # expired at that instant
    assert ids("2026-03-01 00:00") == {"R"}              # revoked at that instant
    g = _world()[1]
    assert grant_held_at(g, T("2026-02-09")).tolist() == [True, True, True]


# -- usage --------------------------------------------------------------------------------------
def _usage_ctx(baseline=None):
    ctx = make_ctx([ev("u1", "p1", "2026-09-01 10:00"), ev("u1", "p2", "2026-09-03 10:00",
                                                           "print"),
                    ev("u1", "p1", "2026-09-04 10:00", "export", outcome="failure"),
                    ev("u2", None, "2026-09-02 08:00", "login")],
                   window=("2026-09-03", "2026-09-05"),
                   patients=[{"patient_id": "p1", "sensitive_class": "精神"},
                             {"patient_id": "p2"}],
                   care_relations=[{"patient_id": "p2", "kind": "admission",
                                    "start": "2026-09-01", "encounter_id": "Z1",
                                    "sensitive_class": "生殖"}])
    if baseline is not None:
        ctx.baseline["rights_usage"] = baseline
    return ctx


def test_usage_from_events_by_permission_and_class_failed_accesses_excluded():
    u = usage_from_events(_usage_ctx())
    got = {(r.user_id, r.permission, r.record_class): r.last_used.strftime("%m-%d %H")
           for r in u.itertuples()}
    assert got == {("u1", "*", "*"): "09-03 10", ("u1", "read", ""): "09-01 10",
                   ("u1", "read", "psychiatric"): "09-01 10",
                   ("u1", "print", ""): "09-03 10", ("u2", "*", "*"): "09-02 08"}
    assert observed_since(u) == T("2026-09-01 10:00")


def test_encounter_class_counts_when_the_access_names_the_encounter():
    ctx = make_ctx([ev("u1", "p2", "2026-09-03 10:00", encounter_id="Z1")],
                   window=("2026-09-03", "2026-09-04"),
                   patients=[{"patient_id": "p2"}],
                   care_relations=[{"patient_id": "p2", "kind": "admission",
                                    "start": "2026-09-01", "encounter_id": "Z1",
                                    "sensitive_class": "生殖"}])
    u = usage_from_events(ctx)
    assert ("read", "reproductive") in set(zip(u["permission"], u["record_class"]))


def test_merged_usage_is_order_free_and_only_changes_are_saved(tmp_path):
    older = pd.DataFrame({"user_id": ["u1", "u9"], "permission": ["read", "read"],
                          "record_class": ["", ""],
                          "first_used": [T("2026-06-01"), T("2026-05-01")],
                          "last_used": [T("2026-06-02"), T("2026-05-02")]})
    fresh = usage_from_events(_usage_ctx())
    assert merge_usage(older, fresh, TZ).equals(merge_usage(fresh, older, TZ))
    ctx = _usage_ctx(baseline=older)
    merged = usage(ctx)
    row = merged[(merged["user_id"] == "u1") & (merged["permission"] == "read")
                 & (merged["record_class"] == "")].iloc[0]
    assert row["first_used"] == T("2026-06-01") and row["last_used"] == T("2026-09-01 10:00")
    saved = ctx.outputs["rights_usage"]
    assert "u9" not in set(saved["user_id"])             # unchanged: not written again
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.begin() as c:
        assert save_usage(c, saved, "scan1") == len(saved)
    back = load_usage(store, TZ)
    assert len(back) == len(saved) and back["last_used"].max() == T("2026-09-03 10:00")


def test_usage_round_trip_on_postgresql(pg_url):
    store = Store(pg_url)
    fresh = usage_from_events(_usage_ctx())
    with store.begin() as c:
        save_usage(c, fresh, "scan1")
        save_usage(c, fresh.assign(last_used=fresh["last_used"] + pd.Timedelta(days=1)),
                   "scan2")                                    # an upsert, not a duplicate
    back = load_usage(store, TZ)
    assert len(back) == len(fresh)
    assert back["last_used"].max() == T("2026-09-04 10:00")
