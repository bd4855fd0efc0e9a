"""Connector profiles map every fixture to the same canonical frames, byte for byte, as the
recorded reference (`tests/fixtures/profiles/frames.json`, written from the if/elif profile
code this replaced): column order, dtypes, every value and missing marker, the batch notes,
the columns a profile reads and produces, and the exact message of each profile error.

Cases: each built-in profile on its own fixtures (test_profiles.FIXTURES and the edge rows
of its tests), hand-made profiles that use every step kind and option together, the sample
hospital's seven tables through the csv connector, and every FHIR AuditEvent example through
the fhir connector. After a deliberate change of behaviour, rewrite the reference with
`python tests/test_profile_frames.py --write` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from test_profiles import FIXTURES, frame  # noqa: E402

from emraudit.config import load_config  # noqa: E402
from emraudit.connectors import open_connector  # noqa: E402
from emraudit.connectors.profile import builtin_profiles, load_profile, parse_profile  # noqa: E402
from emraudit.errors import ConfigError  # noqa: E402
from emraudit.model import TABLES  # noqa: E402

REFERENCE = HERE / "fixtures" / "profiles" / "frames.json"
SAMPLE = HERE.parent / "sample_logs"
FHIR = HERE / "fixtures" / "connectors" / "fhir"


# --- a stable fingerprint of a frame ---------------------------------------------------------

def _token(v) -> str:
    """One value, tagged with its kind, so that NA, NaN, NaT, None and '' all differ."""
    if v is None:
        return "None"
    if v is pd.NA:
        return "NA"
    if v is pd.NaT:
        return "NaT"
    if isinstance(v, pd.Timestamp):
        return f"T{v.isoformat()}/{v.unit}/{v.tz}"
    if isinstance(v, datetime):
        return f"D{v.isoformat()}"
    if isinstance(v, pd.Timedelta):
        return f"TD{v.value}"
    if isinstance(v, bool):
        return f"B{v}"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"F{v!r}"
    if isinstance(v, int):
        return f"I{v}"
    if isinstance(v, str):
        return f"S{v}"
    return f"{type(v).__name__}:{v!r}"


def fingerprint(df: pd.DataFrame) -> dict:
    """Column order, each column's dtype and a digest of its values, and the index."""
    cols = {}
    for name in df.columns:
        s = df[name]
        text = "\x1f".join(_token(v) for v in s.tolist())
        cols[str(name)] = [repr(s.dtype), len(s), hashlib.sha256(text.encode()).hexdigest()[:20]]
    return {"columns": [str(c) for c in df.columns], "index": repr(df.index)[:200],
            "values": cols}


# --- hand-made profiles using every step kind -----------------------------------------------

EVERY_STEP = """
[profile]
description = "every step kind and option"

[access_log]
optional = ["备注", "不在"]

[access_log.columns]
user_id = "工号"
acting_user_id = "工号"
action = "动作"
patient_id = "病人"
outcome = "结果"
module = "模块"
ip = "地址"
facility = "不在"

[access_log.combine.ts]
date = "日期"
time = "时间"

[access_log.combine.session_id]
columns = ["工号", "终端"]
sep = "@"
prefix = "S:"

[access_log.json.encounter_id]
column = "详情"
key = "visit"

[access_log.json.record_count]
column = "详情"
key = "n"

[access_log.json.patient_id]
column = "详情"
key = "pid"

[access_log.extract.reason]
column = "备注"
regex = '理由[:：]\\s*(.+)$'

[access_log.extract.workstation]
column = "终端"
regex = '^(WS-\\d+)'

[access_log.missing]
"*" = ["", "-"]
workstation = ["WS-0"]
ip = ["0.0.0.0"]
facility = ["x"]

[access_log.values.action]
"看" = "view"
"Print" = "print"
"登录" = "login"
"退出" = "logout"

[access_log.values.outcome]
"0" = "failure"
"1" = "success"

[access_log.patterns.action]
'^导出' = "export"
'^copy(?!-fail)' = "copy"

[access_log.patterns.module]
'^病程' = "病历"
'^(医嘱|处方)' = "医嘱"

[access_log.constants]
encounter_id = "E-none"
record_count = 1
"""

EVERY_STEP_ROWS = [
    {"日期": "2025-07-01", "时间": "08:00:00", "工号": "u1", "动作": "看", "病人": "p1",
     "结果": "1", "模块": "病程记录", "地址": "10.0.0.1", "终端": "WS-1 内科",
     "详情": '{"visit": "V1", "n": 2, "pid": "x"}', "备注": "理由：会诊"},
    {"日期": "67387", "时间": "29000", "工号": "u1", "动作": " PRINT ", "病人": "",
     "结果": "1", "模块": "医嘱单", "地址": "0.0.0.0", "终端": "WS-0",
     "详情": '{"pid": "p9", "ok": true}', "备注": "-"},
    {"日期": "2025/07/01", "时间": "8:03:20.5", "工号": "u2", "动作": "登录", "病人": "-",
     "结果": "0", "模块": "", "地址": "", "终端": "",
     "详情": "", "备注": "理由: 抢救：昏迷"},
    {"日期": "abc", "时间": "08:00", "工号": "u3", "动作": "导出PDF", "病人": "p2",
     "结果": "1", "模块": "处方", "地址": "10.0.0.2", "终端": "PC9",
     "详情": "not json", "备注": ""},
    {"日期": "2025-07-02", "时间": "", "工号": "u3", "动作": "copy-fail", "病人": "p2",
     "结果": "", "模块": "影像", "地址": "10.0.0.3", "终端": "WS-22",
     "详情": '{"visit": "V\\"2", "n": -1.5}', "备注": "无"},
    {"日期": "", "时间": "", "工号": "", "动作": "copyall", "病人": "p3",
     "结果": "1", "模块": "-", "地址": " 0.0.0.0 ", "终端": "WS-5",
     "详情": '{"visit": ""}', "备注": "理由:"},
    {"日期": "2025-07-02", "时间": "23:59:59", "工号": "u4", "动作": "偷看", "病人": "p4",
     "结果": "1", "模块": "检验", "地址": "10.0.0.4", "终端": "WS-6",
     "详情": "{}", "备注": "理由：复查", "patient_id": "stray", "action_raw": ""},
    {"日期": "2025-07-02", "时间": "10:00", "工号": "u4", "动作": "退出", "病人": "p4",
     "结果": "1", "模块": None, "地址": None, "终端": None,
     "详情": None, "备注": None, "patient_id": "stray2", "action_raw": "logout-raw"},
]

STRICT = """
[access_log]
ignore_case = false
keep_raw = false

[access_log.columns]
ts = "t"
user_id = "u"
action = "a"
patient_id = "p"

[access_log.missing]
"*" = ["NULL"]

[access_log.values.action]
"View" = "view"
" Print " = "print"

[access_log.patterns.action]
'^EXP' = "export"

[access_log.constants]
record_count = 2
module = "病历"
"""

STRICT_ROWS = [
    {"t": "2025-07-01 08:00:00", "u": "u1", "a": "View", "p": "p1"},
    {"t": "2025-07-01 08:00:01", "u": "u1", "a": "view", "p": "p1"},
    {"t": "2025-07-01 08:00:02", "u": "u1", "a": "Print", "p": "NULL"},
    {"t": "2025-07-01 08:00:03", "u": "u1", "a": "EXPORT", "p": "p2"},
    {"t": "2025-07-01 08:00:04", "u": "u1", "a": "export", "p": "p2"},
    {"t": "NULL", "u": "NULL", "a": "NULL", "p": "p3"},
]

PATTERNS_ONLY = """
[access_log.columns]
ts = "when"
user_id = "who"
action = "what"

[access_log.patterns.action]
'^read' = "view"
'^READ_ALL' = "query"
'print' = "print"

[access_log.constants]
outcome = "success"
"""

PATTERNS_ONLY_ROWS = [
    {"when": "2025-07-01 08:00:00", "who": "u1", "what": "read-chart"},
    {"when": "2025-07-01 08:00:00", "who": "u1", "what": "READ_ALL"},
    {"when": "2025-07-01 08:00:00", "who": "u1", "what": "reprint"},
    {"when": "2025-07-01 08:00:00", "who": "u1", "what": " login "},
    {"when": "2025-07-01 08:00:00", "who": "u1", "what": None},
]

REFERENCE_TABLES = """
[users.columns]
user_id = "工号"
name = "姓名"
role = "职务"
department = "科室"
status = "状态"

[users.missing]
"*" = ["", "无"]

[users.values.role]
"医生" = "physician"
"护士" = "nurse"

[users.patterns.role]
'进修|实习|规培' = "trainee"

[users.values.status]
"在职" = "active"
"离职" = "terminated"

[users.constants]
status = "active"

[care_relations.columns]
patient_id = "病人"
user_id = "医生"
department = "科室"

[care_relations.combine.start]
date = "入院日期"
date_kind = "text"

[care_relations.combine.end]
date = "出院日"
time = "出院秒"
date_kind = "horolog"
time_kind = "seconds"

[care_relations.constants]
kind = "admission"

[shifts.columns]
user_id = "工号"

[shifts.combine.start]
date = "日期"
time = "开始"
time_kind = "text"

[shifts.combine.end]
date = "日期"
time = "结束"

[shifts.values.kind]
"值班" = "duty"
"休假" = "leave"
"""

USERS_ROWS = [
    {"工号": "u1", "姓名": "张三", "职务": "医生", "科室": "心内科", "状态": "在职"},
    {"工号": "u2", "姓名": "李四", "职务": "进修医生", "科室": "心内科", "状态": ""},
    {"工号": "u3", "姓名": "无", "职务": "护士", "科室": "无", "状态": "离职"},
    {"工号": "u4", "姓名": "王五", "职务": "保洁", "科室": "后勤", "状态": "无"},
]
CARE_ROWS = [
    {"病人": "p1", "医生": "u1", "科室": "心内科", "入院日期": "2025-07-01", "出院日": "67390",
     "出院秒": "3600"},
    {"病人": "p2", "医生": "", "科室": "心内科", "入院日期": "2025/7/2", "出院日": "",
     "出院秒": ""},
    {"病人": "p3", "医生": "u2", "科室": "外科", "入院日期": "bad", "出院日": "x",
     "出院秒": "99999"},
]
SHIFT_ROWS = [
    {"工号": "u1", "日期": "2025-07-01", "开始": "08:00", "结束": "17:30", "kind": "值班"},
    {"工号": "u2", "日期": "67387", "开始": "20:00", "结束": "86399", "kind": "休假"},
    {"工号": "u3", "日期": "2025-07-01", "开始": "25:00", "结束": "", "kind": "手术"},
]


def _edge_rows() -> dict[str, tuple[str, list[dict], str | None]]:
    """Rows from test_profiles' edge tests, per built-in profile: (profile, rows, extra)."""
    his = FIXTURES["his-zh"][0][0]
    grid = FIXTURES["emr-cache-grid"][0][0]
    oe = FIXTURES["openemr"][0]
    return {
        "his-zh/content": ("his-zh", [
            dict(his, 操作类型="打印", 操作内容="打印病案首页(3份)", 流水号="S1"),
            dict(his, 操作类型="紧急授权", 操作内容="紧急授权病历：抢救：患者昏迷", 流水号="S2"),
            dict(his, 操作类型="登录", 操作内容="登录系统", 患者ID="", 流水号="S3"),
            dict(his, 操作类型="偷看", 操作内容="-", 患者ID="0", 流水号="无"),
            dict(his, 操作类型=" 登陆 ", 操作内容="查看护理记录（2份）", 终端IP=" UNKNOW ",
                 流水号="S5"),
            dict(his, 操作类型="查看", 操作内容=None, 计算机名="UNKNOWN", 流水号=None)], None),
        "his-zh/no-optional": ("his-zh", [
            {k: v for k, v in his.items() if k not in ("住院号", "操作内容", "终端IP")}], None),
        "emr-cache-grid/dates": ("emr-cache-grid", [
            dict(grid, 日期=d, 时间=t) for d, t in
            [("999999", "29000"), ("abc", "08:00"), ("67387", "99999"), ("67387", "25:61"),
             ("0207-01-01", "08:00:00"), ("2025/07/01", "8:03:20.5"), ("", ""),
             ("67387", ""), ("", "29000")]], None),
        "emr-cache-grid/codes": ("emr-cache-grid", [
            dict(grid, 操作名称=c) for c in
            ["EMR.OP.Print.Fail", "EMR.OP.Print.Preview", "emr.op.browse", "打印", "EMR.OP.Sign.CA",
             "EMR.OP.Unknown", "EMR.OP.Export.Fail", "EMR.OP.Save.Draft", ""]], None),
        "emr-blsjrz/codes": ("emr-blsjrz", [
            dict(FIXTURES["emr-blsjrz"][0][0], SJXM=c, JLXH=str(i), IPDZ=ip)
            for i, (c, ip) in enumerate([("1001", "0.0.0.0"), ("1008", "UNKNOWN"),
                                         ("1009", "NULL"), ("1007", "10.1.1.1")])], None),
        "openemr/events": ("openemr", oe + [
            dict(oe[0], id="12", event="order-select", success="1"),
            dict(oe[0], id="13", event="lab-results-update", success="0"),
            dict(oe[0], id="14", event="security-administration-insert", patient_id="NULL"),
            dict(oe[1], id="15", event="login", success="1"),
            dict(oe[1], id="16", event="LOGIN", success="0")], None),
        "canonical/placeholders": ("canonical", [
            dict(FIXTURES["canonical"][0][0], ip=v, module=m) for v, m in
            [("", "NaN"), ("null", "None"), ("nan", "病历"), ("10.0.0.1", "")]], None),
        "fhir-auditevent/codes": ("fhir-auditevent", [
            dict(FIXTURES["fhir-auditevent"][0][0], action=a, outcome=o) for a, o in
            [("READ", "4"), ("110106", "error"), ("E", "0"), ("login", "8")]], None),
    }


def _apply(prof, table: str, rows: list[dict]) -> dict:
    raw = frame(rows)
    notes: list[str] = []
    out = prof.apply(table, raw, notes)
    return {"frame": fingerprint(out), "notes": notes}


def _declared(prof, table: str, header: list[str]) -> dict:
    return {"source_columns": prof.source_columns(table),
            "output_columns": prof.output_columns(table, header),
            "output_columns_empty": prof.output_columns(table, [])}


def _connector(tmp: Path, table: str, source: str, connector: str = "csv") -> dict:
    (tmp / "emraudit.toml").write_text(
        f'[sources.{table}]\nconnector = "{connector}"\npath = "{source}"\n', encoding="utf-8")
    cfg = load_config(tmp / "emraudit.toml")
    batches = list(open_connector(table, cfg).batches(None))
    out = {"frames": [fingerprint(b.frame) for b in batches],
           "quarantine": [fingerprint(b.quarantine) for b in batches],
           "notes": [b.notes for b in batches]}
    return out


def compute(tmp: Path) -> dict:
    """Everything the reference records, computed by the code under test."""
    got: dict = {}
    for name in builtin_profiles():
        if name not in FIXTURES:      # a profile of other tables (test_connector_grants)
            continue
        prof = load_profile(name)
        rows = FIXTURES[name][0]
        got[f"fixture/{name}"] = _apply(prof, "access_log", rows)
        got[f"declared/{name}"] = _declared(prof, "access_log", list(rows[0]))
        for table in TABLES:
            got[f"declared/{name}/{table}"] = _declared(prof, table, [])
    for case, (name, rows, _) in _edge_rows().items():
        got[f"edge/{case}"] = _apply(load_profile(name), "access_log", rows)
    made = {"every-step": (EVERY_STEP, [("access_log", EVERY_STEP_ROWS)]),
            "strict": (STRICT, [("access_log", STRICT_ROWS)]),
            "patterns-only": (PATTERNS_ONLY, [("access_log", PATTERNS_ONLY_ROWS)]),
            "reference": (REFERENCE_TABLES, [("users", USERS_ROWS), ("care_relations", CARE_ROWS),
                                             ("shifts", SHIFT_ROWS)])}
    for name, (text, runs) in made.items():
        prof = parse_profile(text.encode(), name, f"/x/{name}.toml")
        for table, rows in runs:
            got[f"made/{name}/{table}"] = _apply(prof, table, rows)
            header = list(dict.fromkeys(k for r in rows for k in r))
            got[f"declared/made/{name}/{table}"] = _declared(prof, table, header)
    for csv in sorted(SAMPLE.glob("*.csv")):
        if csv.stem in TABLES:
            (tmp / csv.stem).mkdir()
            got[f"sample/{csv.stem}"] = _connector(tmp / csv.stem, csv.stem, str(csv))
    (tmp / "fhir").mkdir()
    got["fhir/examples"] = _connector(tmp / "fhir", "access_log", str(FHIR), "fhir")
    got["errors"] = errors()
    return got


# profile mistakes, one per key the parser checks: the exact message must not change
ERRORS = [
    '[profile]\ncolour = "x"\n',
    '[profile]\nformat = "xml"\n',
    '[profile]\ndelimiter = ";;"\n',
    '[profile]\nencoding = 8\n',
    'profile = 3\n',
    '[access_log]\ncolumn = { ts = "a" }\n',
    '[access_log]\ncolumns = "ts"\n',
    '[access_log.columns]\ntimestamp = "a"\n',
    '[access_log.columns]\nts = 3\n',
    '[access_log]\noptional = "a"\n',
    '[access_log]\nignore_case = "no"\n',
    '[access_log]\nkeep_raw = 1\n',
    '[access_log.values.action]\n"看" = "peek"\n',
    '[access_log.values.action]\n"看" = 3\n',
    '[access_log.values]\naction = "view"\n',
    '[access_log.values.colour]\n"a" = "b"\n',
    '[acces_log.columns]\nts = "a"\n',
    '[access_log.combine.ts]\ndate = "d"\nzone = "x"\n',
    '[access_log.combine.ts]\ntime = "t"\n',
    '[access_log.combine.ts]\ncolumns = "a"\n',
    '[access_log.combine.ts]\ndate = "d"\ndate_kind = "julian"\n',
    '[access_log.combine.ts]\ndate = "d"\ntime = "t"\ntime_kind = "ms"\n',
    '[access_log.combine.ts]\ndate = 3\n',
    '[access_log.combine]\nts = "d"\n',
    '[access_log.patterns.action]\n"(" = "view"\n',
    '[access_log.patterns.action]\n"^a" = "peek"\n',
    '[access_log.json.patient_id]\ncolumn = "d"\n',
    '[access_log.json.patient_id]\ncolumn = "d"\nkey = "k"\nx = "y"\n',
    '[access_log.extract.module]\ncolumn = "c"\nregex = "x+"\n',
    '[access_log.extract.module]\ncolumn = "c"\nregex = "(x"\n',
    '[access_log.missing]\nip = 3\n',
    '[access_log.missing]\nip = ["a", 3]\n',
    '[access_log.missing]\ncolour = ["a"]\n',
    '[access_log.constants]\naction = "peek"\n',
    '[access_log.constants]\nmodule = ["a"]\n',
    '[users.values.role]\n"医生" = "doctor"\n',
]


def errors() -> list[list[str]]:
    out = []
    for text in ERRORS:
        try:
            parse_profile(text.encode(), "mine", "/x/mine.toml")
            out.append(["no error"])
        except ConfigError as err:
            out.append([str(err.file), str(err.key), str(err)])
    return out


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return compute(tmp_path_factory.mktemp("frames"))


def reference() -> dict:
    """The recorded reference ({} before it is written: the coverage test then fails)."""
    if not REFERENCE.exists():
        return {}
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def test_reference_covers_every_case(computed):
    assert sorted(reference()) == sorted(computed)


@pytest.mark.parametrize("case", sorted(reference()))
def test_same_canonical_frames_as_the_reference(computed, case):
    assert computed[case] == reference()[case]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        data = compute(Path(d))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                         encoding="utf-8")
    print(f"wrote {REFERENCE} ({len(data)} cases)")
