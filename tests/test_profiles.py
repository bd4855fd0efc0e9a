"""Connector profiles: every built-in profile loads and maps a small fixture; mistakes in a
profile are errors naming the file and key; the steps are registered classes that run in
order, say what they do, and rebuild from their records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pytest

from emraudit import model
from emraudit.connectors.profile import TableRules, builtin_profiles, load_profile, parse_profile
from emraudit.connectors.steps import STEP_KINDS, Step, from_record, step_kind
from emraudit.errors import ConfigError, SourceError

TZ = "Asia/Shanghai"


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows).astype("string")
    df["_source_ref"] = [f"f.csv:{i + 2}" for i in range(len(df))]
    return df


# one small raw fixture per built-in profile: (rows, expected actions after validation)
FIXTURES = {
    "canonical": ([
        {"ts": "2025-07-01 08:00:00", "user_id": "u1", "patient_id": "p1", "action": "view",
         "ip": "NULL"},
    ], ["view"]),
    "his-zh": ([
        {"操作时间": "2025-07-01 08:00:00", "操作人工号": "0101", "操作人姓名": "张三", "科室": "心内科",
         "患者ID": "P1", "住院号": "Z1", "操作类型": "查看", "操作内容": "病历", "终端IP": "UNKNOW",
         "计算机名": "PC-01"},
        {"操作时间": "2025-07-01 08:01:00", "操作人工号": "0101", "操作人姓名": "张三", "科室": "心内科",
         "患者ID": "P1", "住院号": "Z1", "操作类型": "紧急授权", "操作内容": "病历", "终端IP": "10.1.1.1",
         "计算机名": "PC-01"},
    ], ["view", "break_glass"]),
    "emr-cache-grid": ([
        {"患者姓名": "王某", "登记号": "0000123", "病案号": "B1", "操作名称": "EMR.OP.Print.OK",
         "日期": "67387", "时间": "29000", "操作者": "ys01", "科室": "心内科", "安全组": "医生",
         "IP地址": "10.0.0.9", "MAC地址": "aa", "计算机名": "WS1",
         "详情": '{"patientID":"123","episodeID":"E9","userID":"ys01"}'},
        {"患者姓名": "王某", "登记号": "", "病案号": "B1", "操作名称": "EMR.OP.Export.PDF",
         "日期": "2025-07-01", "时间": "08:03", "操作者": "ys01", "科室": "心内科", "安全组": "医生",
         "IP地址": "UNKNOW", "MAC地址": "aa", "计算机名": "WS1",
         "详情": '{"patientID":"123","episodeID":"E9"}'},
    ], ["print", "export"]),
    "emr-blsjrz": ([
        {"JLXH": "1", "CZGH": "0101", "RZNR": "打开病历", "SJXM": "1006", "XTSJ": "2025-07-01 08:00:00",
         "YWID1": "Z100", "IPDZ": "UNKNOW", "JSJM": "UNKNOW", "JGID": "H1"},
        {"JLXH": "2", "CZGH": "0101", "RZNR": "签名", "SJXM": "1004", "XTSJ": "2025-07-01 08:05:00",
         "YWID1": "Z100", "IPDZ": "10.0.0.1", "JSJM": "PC", "JGID": "H1"},
    ], ["view", "sign"]),
    "openemr": ([
        {"id": "10", "date": "2025-07-01 08:00:00", "event": "patient-record-select",
         "category": "patient-record", "user": "admin", "groupname": "Default", "comments": "",
         "patient_id": "4", "success": "1"},
        {"id": "11", "date": "2025-07-01 08:01:00", "event": "login", "category": "login",
         "user": "admin", "groupname": "Default", "comments": "failure: 10.0.0.1",
         "patient_id": "0", "success": "0"},
    ], ["view", "login_failed"]),
    "fhir-auditevent": ([
        {"ts": "2025-07-01T08:00:00Z", "user_id": "95", "patient_id": "example", "action": "vread",
         "outcome": "0"},
    ], ["view"]),
}


# profiles of other tables than the access log, tested with their own tables (the grants
# export: tests/test_connector_grants.py)
OTHER_TABLES = {"his-grants-zh": "grants"}


def test_every_builtin_profile_has_a_fixture():
    assert set(builtin_profiles()) == set(FIXTURES) | set(OTHER_TABLES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_builtin_profile_maps_its_fixture(name):
    prof = load_profile(name)
    rows, actions = FIXTURES[name]
    raw = frame(rows)
    prof.check_columns("access_log", [c for c in raw.columns if c != "_source_ref"], "f.csv")
    notes: list[str] = []
    mapped = prof.apply("access_log", raw, notes)
    v = model.validate("access_log", mapped, TZ, name)
    assert v.quarantine.empty, v.quarantine.to_dict("records")
    assert v.accepted["action"].tolist() == actions
    assert v.accepted["ts"].notna().all()
    assert prof.provenance("access_log")   # an audit trail of where columns came from


def test_cache_grid_horolog_and_seconds_and_json_fallback():
    prof = load_profile("emr-cache-grid")
    out = prof.apply("access_log", frame(FIXTURES["emr-cache-grid"][0]))
    v = model.validate("access_log", out, TZ, "grid")
    # $H 67387 = 2025-07-01; 29000 s = 08:03:20
    assert str(v.accepted["ts"][0]) == "2025-07-01 08:03:20+08:00"
    assert str(v.accepted["ts"][1]) == "2025-07-01 08:03:00+08:00"
    assert v.accepted["patient_id"].tolist() == ["0000123", "123"]   # JSON fills the blank
    assert v.accepted["encounter_id"].tolist() == ["E9", "E9"]
    assert v.accepted["ip"].isna().tolist() == [False, True]         # UNKNOW is missing
    assert v.accepted["action_raw"].tolist() == ["EMR.OP.Print.OK", "EMR.OP.Export.PDF"]


def test_blsjrz_placeholders_and_prefixed_ids():
    prof = load_profile("emr-blsjrz")
    v = model.validate("access_log", prof.apply("access_log", frame(FIXTURES["emr-blsjrz"][0])),
                       TZ, "bl")
    assert v.accepted["event_id"].tolist() == ["EMR_BLSJRZ:1", "EMR_BLSJRZ:2"]
    assert v.accepted["ip"].isna().tolist() == [True, False]
    assert v.accepted["workstation"].isna().tolist() == [True, False]
    assert v.accepted["patient_id"].tolist() == ["Z100", "Z100"]


def test_openemr_zero_patient_and_failed_login():
    prof = load_profile("openemr")
    v = model.validate("access_log", prof.apply("access_log", frame(FIXTURES["openemr"][0])),
                       TZ, "oe")
    assert v.accepted["patient_id"].isna().tolist() == [False, True]
    assert v.accepted["outcome"].tolist() == ["success", "failure"]


def test_unknown_word_keeps_raw_and_is_quarantined():
    prof = load_profile("his-zh")
    rows = [dict(FIXTURES["his-zh"][0][0], 操作类型="偷看")]
    notes: list[str] = []
    v = model.validate("access_log", prof.apply("access_log", frame(rows), notes), TZ, "his")
    assert v.quarantine["reason"].tolist() == ["unknown action '偷看'"]
    assert any("1 unmapped" in n for n in notes)


PROFILE_ERRORS = [
    ('[profile]\ncolour = "x"\n', "profile.colour"),
    ('[profile]\nformat = "xml"\n', "profile.format"),
    ('[access_log]\ncolumn = { ts = "a" }\n', "access_log.column"),
    ('[access_log.columns]\ntimestamp = "a"\n', "access_log.columns.timestamp"),
    ('[access_log.values.action]\n"看" = "peek"\n', "access_log.values.action.看"),
    ('[acces_log.columns]\nts = "a"\n', "acces_log"),
    ('[access_log.combine.ts]\ndate = "d"\nzone = "x"\n', "access_log.combine.ts.zone"),
    ('[access_log.patterns.action]\n"(" = "view"\n', "access_log.patterns.action.("),
    ('[access_log.json.patient_id]\ncolumn = "d"\n', "access_log.json.patient_id"),
]


@pytest.mark.parametrize("text,key", PROFILE_ERRORS)
def test_profile_mistakes_name_file_and_key(text, key):
    with pytest.raises(ConfigError) as err:
        parse_profile(text.encode(), "mine", "/x/mine.toml")
    assert err.value.file == "/x/mine.toml" and err.value.key == key, str(err.value)


def test_mapping_to_a_column_the_source_lacks_names_profile_key(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[access_log.columns]\nts = "时间"\nuser_id = "工号"\naction = "类型"\n',
                 encoding="utf-8")
    prof = load_profile(str(p))
    with pytest.raises(ConfigError) as err:
        prof.check_columns("access_log", ["时间", "工号", "操作"], "log.csv")
    assert err.value.key == "access_log.columns.action" and "log.csv" in str(err.value)
    assert "类型" in str(err.value)


def test_missing_required_column_after_mapping_is_a_source_error():
    prof = load_profile("canonical")
    with pytest.raises(SourceError, match="'user_id'"):
        prof.check_columns("access_log", ["ts", "action"], "log.csv")


def test_profile_file_not_found_and_unknown_builtin(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_profile("nothere.toml", tmp_path)
    with pytest.raises(ConfigError, match="unknown connector profile"):
        load_profile("his-xx")


def test_cache_grid_bad_dates_and_times_are_quarantined_with_their_text():
    prof = load_profile("emr-cache-grid")
    base = FIXTURES["emr-cache-grid"][0][0]
    cases = [("999999", "29000"), ("abc", "08:00"), ("67387", "99999"), ("67387", "25:61"),
             ("0207-01-01", "08:00:00"), ("2025/07/01", "8:03:20.5")]
    rows = [dict(base, 日期=d, 时间=t) for d, t in cases]
    v = model.validate("access_log", prof.apply("access_log", frame(rows)), TZ, "grid")
    assert v.quarantine["reason"].tolist()[:2] == [
        "unparseable time in 'ts': 日期=999999 时间=29000",
        "unparseable time in 'ts': 日期=abc 时间=08:00"]
    assert len(v.quarantine) == 5
    assert str(v.accepted["ts"][0]) == "2025-07-01 08:03:20.500000+08:00"


def test_his_content_gives_module_copies_and_reason():
    prof = load_profile("his-zh")
    base = FIXTURES["his-zh"][0][0]
    rows = [dict(base, 操作类型="打印", 操作内容="打印病案首页(3份)"),
            dict(base, 操作类型="紧急授权", 操作内容="紧急授权病历：抢救：患者昏迷"),
            dict(base, 操作类型="登录", 操作内容="登录系统", 患者ID="")]
    raw = frame(rows)
    raw["流水号"] = ["S1", "S2", "S3"]
    v = model.validate("access_log", prof.apply("access_log", raw), TZ, "his")
    acc = v.accepted
    assert acc["event_id"].tolist() == ["S1", "S2", "S3"]
    assert acc["module"].tolist()[:2] == ["病案首页", "病历"] and pd.isna(acc["module"][2])
    assert acc["record_count"].tolist() == [3, 1, 1]
    assert acc["reason"].tolist()[1] == "抢救：患者昏迷" and pd.isna(acc["reason"][0])


def test_extract_step_is_validated():
    with pytest.raises(ConfigError, match="group") as err:
        parse_profile('[access_log.extract.module]\ncolumn = "c"\nregex = "x+"\n'.encode(), "m",
                      "/m.toml")
    assert err.value.key == "access_log.extract.module.regex"


@pytest.mark.parametrize("spec, key, message", [
    ('json.patient_id = { column = "d", kee = "x" }', "json.patient_id.kee",
     "unknown key (expected column, key)"),
    ('json.patient_id = { column = "d" }', "json.patient_id", "expected both 'column' and 'key'"),
    ('extract.patient_id = { column = "d", rx = "(x)" }', "extract.patient_id.rx",
     "unknown key (expected column, regex)"),
    ('extract.patient_id = { column = "d" }', "extract.patient_id",
     "expected both 'column' and 'regex'"),
    ('extract.patient_id = { column = "d", regex = 3 }', "extract.patient_id.regex",
     "expected a string (got 3)"),
])
def test_json_and_extract_specs_name_the_bad_key(spec, key, message):
    with pytest.raises(ConfigError) as err:
        parse_profile(f"[access_log]\n{spec}\n".encode(), "p", "p.toml")
    assert str(err.value) == f"p.toml, key 'access_log.{key}': {message}"


# --- the steps as registered classes ---------------------------------------------------------

def test_each_profile_key_is_a_registered_step_kind():
    assert set(STEP_KINDS) == {"columns", "combine", "json", "extract", "missing", "values",
                               "patterns", "constants"}
    for kind, cls in STEP_KINDS.items():
        assert cls.kind == kind
        for method in ("apply", "provenance"):
            assert getattr(cls, method) is not getattr(Step, method), (kind, method)
        assert cls.parse is not Step.parse or cls.parse_column is not Step.parse_column, kind
    orders = [cls.order for cls in STEP_KINDS.values()]
    assert len(set(orders)) == len(orders)


def test_steps_run_in_the_documented_order_then_the_profile_order():
    keys = [s.key for s in load_profile("his-zh").rules("access_log").steps]
    assert keys == [
        "access_log.columns", "access_log.extract.module", "access_log.extract.record_count",
        "access_log.extract.reason", "access_log.missing.*", "access_log.missing.ip",
        "access_log.missing.workstation", "access_log.missing.patient_id",
        "access_log.missing.module", "access_log.keep_raw", "access_log.values.action",
        "access_log.login_failed"]
    grid = [s.kind for s in load_profile("emr-cache-grid").rules("access_log").steps]
    assert grid == ["columns", "combine", "json", "json", "missing", "missing", "missing",
                    "keep_raw", "values", "patterns", "login_failed"]
    # a table without a section still keeps the raw action word and maps failed logins
    assert [s.kind for s in load_profile("openemr").rules("users").steps] == []
    p = parse_profile(b'[users.columns]\nuser_id = "id"\n', "u", "u.toml")
    assert [s.kind for s in p.rules("access_log").steps] == ["keep_raw", "login_failed"]


def test_provenance_names_every_step_of_a_column_in_order():
    prov = load_profile("his-zh").provenance("access_log")
    assert prov["action"] == ("his-zh: column '操作类型' → values map (34 words) → "
                              "a failed login becomes login_failed")
    assert prov["patient_id"] == "his-zh: column '患者ID' → '0' as missing"
    assert prov["*"] == "his-zh: '', 'NULL', 'null', '-', '无' as missing"
    assert prov["record_count"].startswith("his-zh: extract /[(（](\\d+)")
    grid = load_profile("emr-cache-grid").provenance("access_log")
    assert grid["ts"] == "emr-cache-grid: combine 日期 + 时间"
    assert grid["patient_id"] == "emr-cache-grid: column '登记号' → json 详情.patientID where empty"
    assert grid["action"].endswith("values map (18 words) → patterns (5) → "
                                   "a failed login becomes login_failed")
    assert load_profile("emr-blsjrz").provenance("access_log")["event_id"] == \
        "emr-blsjrz: combine JLXH with prefix 'EMR_BLSJRZ:'"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_recorded_steps_rebuild_the_same_pipeline(name):
    prof = load_profile(name)
    rules = prof.rules("access_log")
    stored = json.loads(json.dumps(prof.records("access_log")))   # as read from the store
    assert stored == prof.records("access_log")
    rebuilt = [from_record(rec) for rec in stored]
    assert [s.record() for s in rebuilt] == stored
    raw = frame(FIXTURES[name][0])
    again = TableRules(rules.table, rebuilt, rules.ignore_case, rules.keep_raw, rules.optional)
    pd.testing.assert_frame_equal(again.apply(raw), prof.apply("access_log", raw))


def test_digest_follows_the_steps_and_the_name():
    text = load_profile("his-zh")
    again = load_profile("his-zh")
    assert text.digest("access_log") == again.digest("access_log")
    edited = parse_profile(b'[access_log.values.action]\n"x" = "view"\n', "his-zh", "a.toml")
    other = parse_profile(b'[access_log.values.action]\n"x" = "print"\n', "his-zh", "a.toml")
    renamed = parse_profile(b'[access_log.values.action]\n"x" = "view"\n', "mine", "a.toml")
    assert len({edited.digest("access_log"), other.digest("access_log"),
                renamed.digest("access_log"), text.digest("access_log")}) == 4
    # the file a profile came from is not part of its mapping
    moved = parse_profile(b'[access_log.values.action]\n"x" = "view"\n', "his-zh", "b.toml")
    assert moved.digest("access_log") == edited.digest("access_log")


@dataclass(frozen=True)
class UpperStep(Step):
    """A third party's step kind: upper-case a column."""

    kind: ClassVar[str] = "upper"
    order: ClassVar[int] = 65

    @classmethod
    def parse_column(cls, col, spec, where, key):
        if spec is not True:
            raise ConfigError("expected true", file=where.file, key=key)
        return cls(where.table, col)

    def apply(self, run):
        if self.column in run.out.columns:
            run.out[self.column] = run.out[self.column].astype("string").str.upper()

    def provenance(self):
        return {self.column: "upper-cased"}


def test_a_registered_step_kind_is_a_profile_key(monkeypatch):
    monkeypatch.setitem(STEP_KINDS, "upper", UpperStep)
    prof = parse_profile('[access_log.upper]\nmodule = true\n'.encode(), "up", "up.toml")
    out = prof.apply("access_log", frame([{"ts": "2025-07-01 08:00:00", "user_id": "u",
                                           "action": "view", "module": "emr"}]))
    assert out["module"].tolist() == ["EMR"]
    assert prof.provenance("access_log")["module"] == "up: upper-cased"
    assert from_record(prof.records("access_log")[0]) == prof.rules("access_log").steps[0]
    with pytest.raises(ConfigError) as err:
        parse_profile(b'[access_log.upper]\nmodule = 1\n', "up", "/x/up.toml")
    assert (err.value.file, err.value.key) == ("/x/up.toml", "access_log.upper.module")
    with pytest.raises(ConfigError, match="upper"):
        parse_profile(b'[access_log.uper]\nmodule = true\n', "up", "/x/up.toml")
    with pytest.raises(TypeError, match="registered twice"):
        step_kind(type("Other", (UpperStep,), {}))
