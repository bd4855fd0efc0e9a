"""The sample-hospital generator: determinism, planted kinds, realistic legitimate behaviour."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.demo.generate import generate
from emraudit.demo.violations import KINDS

DAYS = 8
CLINICAL = ("physician", "nurse", "technician", "pharmacist", "trainee")
RECORDS = ("medical_records", "quality_control", "insurance", "admin")


def _read(d: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False).replace("", None)


@pytest.fixture(scope="module")
def hosp(tmp_path_factory):
    out = tmp_path_factory.mktemp("hosp")
    summary = generate(out, seed=11, days=DAYS, size="small", formats=("canonical", "his-zh",
                                                                      "fhir"))
    tables = {n: _read(out, n) for n in ("access_log", "users", "patients", "care_relations",
                                         "shifts", "truth", "patient_contacts", "workstations",
                                         "grants", "roles")}
    for t in ("access_log",):
        tables[t]["ts"] = pd.to_datetime(tables[t]["ts"])
    for t in ("care_relations", "shifts"):
        tables[t]["start"] = pd.to_datetime(tables[t]["start"])
        tables[t]["end"] = pd.to_datetime(tables[t]["end"])
    return out, summary, tables


def _digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, seed=3, days=4)
    generate(b, seed=3, days=4)
    generate(c, seed=4, days=4)
    assert _digest(a) == _digest(b)
    assert _digest(a)["access_log.csv"] != _digest(c)["access_log.csv"]


def test_every_planted_kind_present_with_real_events(hosp):
    _, summary, t = hosp
    truth, log = t["truth"], t["access_log"]
    assert set(truth.violation) == set(KINDS)
    # a problem of rights held names its grant or role instead of events
    by_ref = truth.event_id.isna()
    assert truth.loc[~by_ref, "event_id"].isin(log.event_id).all()
    assert truth.loc[by_ref, "ref"].str.match(r"^(grants|roles):").all()
    assert truth.loc[~by_ref, "ref"].isna().all()
    assert not truth[~by_ref].duplicated(["event_id", "case_key"]).any()
    # strengths: blatant and subtle cases of the same kind differ in size
    per_case = truth.groupby(["violation", "case_key"]).size()
    off = per_case["bulk.off_hours"]
    assert off.max() >= 30 and off.min() <= 15
    assert log.event_id.is_monotonic_increasing and log.ts.is_monotonic_increasing


def test_snooping_users_have_no_relation_to_the_patient(hosp):
    _, _, t = hosp
    truth, log, rel, users = t["truth"], t["access_log"], t["care_relations"], t["users"]
    snoop = truth[truth.violation.str.startswith("snoop.") & (truth.violation != "snoop.self")
                  & (truth.violation != "snoop.watchlist")]
    ev = log[log.event_id.isin(snoop.event_id) & log.patient_id.notna()]
    pairs = ev[["user_id", "patient_id"]].drop_duplicates()
    own = pairs.merge(rel[rel.user_id.notna()], on=["user_id", "patient_id"])
    assert own.empty
    u = pairs.merge(users[["user_id", "department", "ward"]], on="user_id")
    grp = rel[rel.user_id.isna()]
    dep = u.merge(grp, on=["patient_id", "department"])
    assert dep.empty


def _explained(t) -> pd.Series:
    """For clinicians' legitimate patient accesses: explained by a relation of the user, of the
    user's department or ward, a duty shift on the patient's ward, or a prior treatment."""
    log, rel, users, shifts, truth = (t["access_log"], t["care_relations"], t["users"],
                                      t["shifts"], t["truth"])
    ev = log[log.patient_id.notna() & ~log.event_id.isin(truth.event_id)]
    ev = ev.merge(users[["user_id", "role", "department", "ward"]], on="user_id")
    ev = ev[ev.role.isin(CLINICAL)][["event_id", "ts", "user_id", "patient_id", "department",
                                     "ward"]]
    grace = pd.Timedelta(minutes=15)
    end = rel["end"].fillna(pd.Timestamp("2100-01-01"))
    rel = rel.assign(end=end)
    ok = pd.Series(False, index=ev.event_id.to_numpy())

    def mark(m: pd.DataFrame, cond):
        ids = m.loc[cond, "event_id"].unique()
        ok[ids] = True

    own = ev.merge(rel[rel.user_id.notna()], on=["user_id", "patient_id"],
                   suffixes=("", "_r"))
    mark(own, (own.ts >= own.start - grace) & (own.ts <= own.end))
    # prior treatment: the user's own relation ended within 60 days before
    mark(own, (own.ts > own.end) & (own.ts <= own.end + pd.Timedelta(days=60)))
    grp = rel[rel.user_id.isna()].drop(columns="user_id")
    by_dep = ev.merge(grp, on=["patient_id", "department"], suffixes=("", "_r"))
    mark(by_dep, (by_dep.ts >= by_dep.start - grace) & (by_dep.ts <= by_dep.end))
    by_ward = ev[ev.ward.notna()].merge(grp[grp.ward.notna()], on=["patient_id", "ward"],
                                       suffixes=("", "_r"))
    mark(by_ward, (by_ward.ts >= by_ward.start - grace) & (by_ward.ts <= by_ward.end))
    # float cover: on duty on the ward where the patient lies at that time
    lying = ev.merge(grp[grp.ward.notna()][["patient_id", "ward", "start", "end"]],
                     on="patient_id", suffixes=("", "_p"))
    lying = lying[(lying.ts >= lying.start) & (lying.ts <= lying.end)]
    duty = shifts[(shifts.kind == "duty") & shifts.ward.notna()]
    cover = lying[["event_id", "ts", "user_id", "ward_p"]].merge(
        duty[["user_id", "ward", "start", "end"]], left_on=["user_id", "ward_p"],
        right_on=["user_id", "ward"])
    mark(cover, (cover.ts >= cover.start) & (cover.ts <= cover.end + pd.Timedelta(minutes=30)))
    return ok


def test_every_legitimate_clinician_access_is_explained(hosp):
    ok = _explained(hosp[2])
    assert len(ok) > 1000
    assert ok.all(), ok[~ok].index[:10].tolist()


def test_records_roles_read_in_office_hours_only(hosp):
    _, _, t = hosp
    log = t["access_log"].merge(t["users"][["user_id", "role"]], on="user_id")
    rec = log[log.role.isin(RECORDS) & log.patient_id.notna()
              & ~log.event_id.isin(t["truth"].event_id)]
    assert len(rec) > 50
    h = rec.ts.dt.hour
    assert ((h >= 8) & (h < 18)).all() and (rec.ts.dt.day_of_week < 5).all()


def test_night_shift_nurses_chart_at_night(hosp):
    _, _, t = hosp
    log = t["access_log"].merge(t["users"][["user_id", "role"]], on="user_id")
    night = log[(log.role == "nurse") & log.patient_id.notna() & (log.ts.dt.hour < 6)
                & ~log.event_id.isin(t["truth"].event_id)]
    assert len(night) > 100
    assert night.action.isin(["create", "update"]).mean() > 0.4
    # each of them is inside the nurse's own night shift
    s = t["shifts"]
    m = night.merge(s[s.kind == "duty"], on="user_id")
    inside = m[(m.ts >= m.start) & (m.ts <= m.end + pd.Timedelta(minutes=30))].event_id
    assert night.event_id.isin(inside).mean() > 0.99
    # ICU charting is hourly-ish: many distinct night hours
    assert night.ts.dt.hour.nunique() == 6


def test_false_positive_sources_are_present(hosp):
    _, _, t = hosp
    log, rel, shifts, users = t["access_log"], t["care_relations"], t["shifts"], t["users"]
    legit_btg = log[(log.action == "break_glass") & ~log.event_id.isin(t["truth"].event_id)]
    assert len(legit_btg) >= 1 and legit_btg.reason.notna().all()
    assert set(rel.kind) >= {"admission", "transfer", "consult", "order", "care_team",
                             "outpatient"}
    assert rel.user_id.isna().any()
    assert (shifts.kind == "leave").any() and (shifts.kind == "surgery").any()
    assert set(users.role) >= {"physician", "nurse", "technician", "pharmacist", "trainee",
                               "medical_records", "quality_control", "insurance", "it"}
    assert (users.status == "terminated").any() and users.access_until.notna().any()
    assert (log.action == "print").any() and log.acting_user_id.notna().any()
    assert set(log.facility.dropna()) == {"本部", "东院"}


def test_family_shares_surname_and_address_but_surname_alone_is_common(hosp):
    _, _, t = hosp
    users, pats, contacts = t["users"], t["patients"], t["patient_contacts"]
    staff = users[["user_id", "name", "phone", "address"]].rename(
        columns={"name": "staff_name", "address": "staff_address"})
    fam = contacts.merge(staff, left_on=["name", "phone"], right_on=["staff_name", "phone"])
    assert len(fam) >= 5
    fp = fam.merge(pats[["patient_id", "name", "address"]].rename(
        columns={"name": "patient_name", "address": "patient_address"}), on="patient_id")
    assert (fp.patient_address == fp.staff_address).all()
    blood = fp[fp.relation.isin(["parent", "child"])]
    assert len(blood) and (blood.patient_name.str[0] == blood.staff_name.str[0]).all()
    spouse = fp[fp.relation == "spouse"]
    assert len(spouse) and (spouse.patient_name.str[0] != spouse.staff_name.str[0]).all()
    # the big five surnames cover a large share of everyone
    sur = pats.name.str[0]
    assert sur.isin(["王", "李", "张", "刘", "陈"]).mean() > 0.2


def test_formats_keep_event_ids(hosp):
    out, _, t = hosp
    his = pd.read_csv(out / "access_log_his.csv", encoding="gb18030", dtype=str)
    assert list(his.columns)[:3] == ["流水号", "操作时间", "操作人工号"]
    assert {"查看", "登录"} <= set(his["操作类型"])
    assert (his["流水号"] == t["access_log"].event_id).all()
    lines = (out / "access_log_fhir.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(t["access_log"])
    objs = [json.loads(x) for x in lines[:2000]]
    assert all(o["resourceType"] == "AuditEvent" for o in objs)
    assert [o["id"] for o in objs] == t["access_log"].event_id[:2000].tolist()
    btg = [json.loads(x) for x in lines if '"code":"break_glass"' in x][0]
    assert btg["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert any(e["what"]["reference"].startswith("Patient/") for e in btg["entity"]
               if "what" in e)


def test_event_count_size(tmp_path):
    s = generate(tmp_path, seed=1, days=4, size=30000)
    assert 15000 <= s["events"] <= 60000


def test_cli_generate(tmp_path):
    r = CliRunner().invoke(main, ["demo", "generate", "--out", str(tmp_path / "h"), "--seed",
                                  "2", "--days", "4"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "h" / "emraudit.toml").exists()
    from emraudit.config import load_config
    cfg = load_config(tmp_path / "h" / "emraudit.toml")
    assert set(cfg.sources) == {"access_log", "users", "patients", "care_relations",
                                "patient_contacts", "shifts", "workstations", "departments",
                                "grants", "roles"}
    assert cfg.detectors["rights.unused"] == {"unused_days": 2}   # 4 days: judged after 2
    bad = CliRunner().invoke(main, ["demo", "generate", "--out", str(tmp_path / "x"),
                                    "--size", "huge"])
    assert bad.exit_code == 2 and "unknown size" in bad.output


def test_committed_sample_is_small_and_complete():
    d = Path(__file__).resolve().parents[1] / "sample_logs"
    if not (d / "truth.csv").exists():
        pytest.skip("sample_logs/ not generated yet")
    # what is shipped, not the state a scan in the checkout leaves (store, lock, log)
    shipped = [p for p in d.iterdir() if p.is_file()
               and p.suffix not in (".db", ".lock", ".log") and not p.name.endswith("-journal")]
    assert {"access_log.csv", "truth.csv", "emraudit.toml"} <= {p.name for p in shipped}
    assert sum(p.stat().st_size for p in shipped) < 5_000_000
    truth = pd.read_csv(d / "truth.csv")
    assert set(truth.violation) == set(KINDS)
