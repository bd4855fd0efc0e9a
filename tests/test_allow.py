"""Allowlists: scopes, expiry at the day's end in the site's timezone, removal, CLI."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit import allow as A
from emraudit.cli import main
from emraudit.errors import UserError
from emraudit.store import Store

TZ = "Asia/Shanghai"
NOW = pd.Timestamp("2025-07-01T09:00:00+08:00")


def F(fid, user, patient="", detector="care.no_relationship",
      start="2025-07-10T10:00:00+08:00", end=None, evidence=None):
    return {"finding_id": fid, "detector": detector, "severity": "medium", "score": 1.0,
            "user_id": user, "patient_id": patient, "start": start, "end": end or start,
            "event_ids": ["e"], "rectification_item": "9", "summary": "s",
            "evidence": evidence or {}}


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


def add(store, **kw):
    base = dict(user="u1", until="2025-07-31", reason="approved cohort", by="officer",
                tz=TZ, now=NOW)
    base.update(kw)
    return A.add_entry(store, **base)


def sup(store, rows, **kw):
    out = A.apply_allowlist(store, pd.DataFrame(rows), NOW, **kw)
    return dict(zip(out["finding_id"], out["suppressed_by"]))


def test_patient_entry_suppresses_only_that_users_findings_on_that_patient(store):
    i = add(store, patient="p1")
    got = sup(store, [F("a", "u1", "p1"), F("b", "u1", "p2"), F("c", "u2", "p1"),
                      F("d", "u1", "")])
    assert got == {"a": i, "b": None, "c": None, "d": None}


def test_detector_entry_and_family(store):
    i = add(store, detector="bulk.*")
    j = add(store, user="u2", detector="care.no_relationship")
    got = sup(store, [F("a", "u1", "p1", detector="bulk.off_hours"),
                      F("b", "u1", "p1", detector="care.no_relationship"),
                      F("c", "u2", "", detector="care.no_relationship")])
    assert got == {"a": i, "b": None, "c": j}


def test_expiry_is_the_end_of_the_day_in_the_site_timezone(store):
    i = add(store, patient="p1", until="2025-07-31")
    got = sup(store, [
        F("last", "u1", "p1", start="2025-07-31T23:59:00+08:00"),
        F("after", "u1", "p1", start="2025-08-01T00:00:00+08:00"),
        # starts inside, ends after the entry expired: not wholly covered
        F("spans", "u1", "p1", start="2025-07-31T23:00:00+08:00",
          end="2025-08-01T00:30:00+08:00"),
        # 2025-07-31T16:30Z is 00:30 on 1 August in Shanghai
        F("utc", "u1", "p1", start="2025-07-31T16:30:00+00:00"),
    ])
    assert got == {"last": i, "after": None, "spans": None, "utc": None}


def test_removed_entry_never_suppresses(store):
    i = add(store, patient="p1")
    A.remove_entry(store, i, by="officer2", now=NOW)
    assert sup(store, [F("a", "u1", "p1")]) == {"a": None}
    with pytest.raises(UserError, match="already removed"):
        A.remove_entry(store, i, by="x")
    listed = A.list_entries(store, include_all=True, now=NOW, tz=TZ)
    assert listed.iloc[0]["state"] == "removed" and listed.iloc[0]["removed_by"] == "officer2"
    assert A.list_entries(store, now=NOW, tz=TZ).empty


def test_department_entry_uses_the_patients_care_relations_at_the_time(store):
    i = add(store, department="ICU")
    care = pd.DataFrame({
        "patient_id": ["p1", "p2", "p3"], "user_id": ["", "", ""],
        "department": ["ICU", "Cardiology", "Surgery"], "ward": ["", "", "ICU"],
        "start": pd.to_datetime(["2025-07-09", "2025-07-09", "2025-07-20"]).tz_localize(TZ),
        "end": pd.to_datetime(["2025-07-12", None, None]).tz_localize(TZ),
    })
    got = sup(store, [
        F("in_icu", "u1", "p1"),
        F("after_discharge", "u1", "p1", start="2025-07-15T10:00:00+08:00"),
        F("other_dept", "u1", "p2"),
        F("ward_not_yet", "u1", "p3"),                       # in the ICU ward only from 20th
        F("ward", "u1", "p3", start="2025-07-21T10:00:00+08:00"),
        F("evidence", "u1", "p9", evidence={"patient_ward": "ICU"}),
        F("account", "u1", ""),
    ], care_relations=care)
    assert got == {"in_icu": i, "after_discharge": None, "other_dept": None,
                   "ward_not_yet": None, "ward": i, "evidence": i, "account": None}


def test_oldest_matching_entry_is_named(store):
    i = add(store, patient="p1")
    add(store, detector="care.no_relationship")
    assert sup(store, [F("a", "u1", "p1")]) == {"a": i}


def test_add_validates_its_input(store):
    with pytest.raises(UserError, match="exactly one"):
        add(store, patient="p1", department="ICU")
    with pytest.raises(UserError, match="exactly one"):
        add(store)
    with pytest.raises(UserError, match="already past"):
        add(store, patient="p1", until="2025-06-30")
    with pytest.raises(UserError, match="reason"):
        add(store, patient="p1", reason=" ")
    with pytest.raises(UserError, match="unknown detector 'care.no_relation'; did you mean "
                                        "care.no_relationship"):
        add(store, detector="care.no_relation")
    with pytest.raises(UserError, match=r"no detector in that family 'crud\.\*'; did you "
                                        r"mean cred\.\*"):
        add(store, detector="crud.*")
    with pytest.raises(UserError, match="expected a date"):
        add(store, patient="p1", until="someday")


def test_findings_without_entries_get_an_empty_column(store):
    out = A.apply_allowlist(store, pd.DataFrame([F("a", "u1", "p1")]), NOW)
    assert list(out["suppressed_by"]) == [None]


def _config(tmp_path):
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[store]\nurl = "sqlite:///state.db"\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    return str(cfg)


def test_cli_add_list_remove(tmp_path):
    cfg = _config(tmp_path)
    r = CliRunner().invoke(main, ["allow", "add", "--config", cfg, "--user", "n042",
                                  "--department", "ICU", "--until", "2099-12-31",
                                  "--reason", "covering ICU nights in December",
                                  "--by", "head nurse"])
    assert r.exit_code == 0, r.output
    assert "#1" in r.output
    r = CliRunner().invoke(main, ["allow", "list", "--config", cfg])
    assert r.exit_code == 0, r.output
    assert "n042" in r.output and "ICU" in r.output and "2099-12-31" in r.output
    r = CliRunner().invoke(main, ["allow", "remove", "--config", cfg, "1", "--by", "officer"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["allow", "list", "--config", cfg])
    assert "n042" not in r.output
    r = CliRunner().invoke(main, ["allow", "list", "--config", cfg, "--all",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    import json
    data = json.loads(r.output)
    assert data[0]["state"] == "removed" and data[0]["removed_by"] == "officer"


def test_cli_add_without_scope_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["allow", "add", "--config", _config(tmp_path), "--user",
                                  "u", "--until", "2099-01-01", "--reason", "r", "--by", "b"])
    assert r.exit_code == 2
    assert "exactly one of --patient, --department or --detector" in r.output


def test_entries_of_every_scope_together(store):
    """Stored entries mixing scopes (the unused columns read back as missing values)."""
    i = add(store, patient="p1")
    j = add(store, detector="snoop.vip")
    k = add(store, user="u2", department="ICU")
    got = sup(store, [F("a", "u1", "p1"), F("b", "u1", "p7", detector="snoop.vip"),
                      F("c", "u2", "p3", evidence={"patient_department": "ICU"}),
                      F("d", "u1", "p7")])
    assert got == {"a": i, "b": j, "c": k, "d": None}
    listed = A.list_entries(store, now=NOW, tz=TZ)
    assert list(listed["scope"]) == ["patient", "detector", "department"]
    assert list(listed["value"]) == ["p1", "snoop.vip", "ICU"]
