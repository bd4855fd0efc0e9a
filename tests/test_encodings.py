"""Files that mix UTF-8 and GB18030 lines (issue 17 item 2): the encoding is decided per line,
a line that is neither is quarantined with the reason, and no mojibake is ever stored —
wherever the mixed lines are (inside or after the 64 KB sample), in CSV and JSON Lines."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector
from emraudit.connectors.files import SAMPLE_BYTES

HEADER = "event_id,ts,user_id,patient_id,action,module\n"


def row(i: int, user: str, module: str = "病历") -> str:
    return f"E{i},2025-07-01 08:{i // 60 % 60:02d}:{i % 60:02d},{user},P{i},view,{module}\n"


def read(tmp_path, data: bytes, name: str = "a.csv", extra: str = "",
         connector: str = "csv"):
    (tmp_path / name).write_bytes(data)
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\nconnector = "{connector}"\npath = "{name}"\n{extra}',
        encoding="utf-8")
    cfg = load_config(tmp_path / "emraudit.toml")
    batches = list(open_connector("access_log", cfg).batches(None))
    for b in batches:
        assert b.read == len(b.frame) + len(b.quarantine)
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    q = pd.concat([b.quarantine for b in batches], ignore_index=True)
    notes = [n for b in batches for n in b.notes]
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    return v.accepted, q, notes


def test_the_issue_file_utf8_gb18030_utf8_reads_every_name(tmp_path):
    data = (HEADER.encode() + row(1, "张三").encode("utf-8") + row(2, "李四").encode("gb18030")
            + row(3, "王五").encode("utf-8"))
    ev, q, notes = read(tmp_path, data)
    assert q.empty
    assert list(ev["user_id"]) == ["张三", "李四", "王五"]
    assert set(ev["module"]) == {"病历"}
    assert not {"寮犱笁", "鐜嬩簲"} & set(ev["user_id"])        # the mojibake the issue saw


@pytest.mark.parametrize("majority", ["utf-8", "gb18030"])
def test_mixed_lines_anywhere_in_a_large_file_are_each_read_right(tmp_path, majority):
    """Thousands of lines of one encoding with lines of the other inside the sample and far
    after it: every line keeps its own text, whichever is the majority."""
    minority = "gb18030" if majority == "utf-8" else "utf-8"
    names = ["张三", "李四", "王五", "赵六", "欧阳小明"]
    parts, expect = [HEADER.encode()], []
    n = SAMPLE_BYTES // 30 * 3          # well past the detection sample
    for i in range(1, n):
        odd = i in (5, 7, n // 2, n - 3)
        name = names[i % len(names)]
        parts.append(row(i, name, "医嘱" if odd else "病历").encode(minority if odd else majority))
        expect.append((name, "医嘱" if odd else "病历"))
    ev, q, notes = read(tmp_path, b"".join(parts))
    assert q.empty
    assert list(zip(ev["user_id"], ev["module"])) == expect
    assert any("UTF-8" in n or "GB18030" in n for n in notes), notes


def test_a_line_that_is_neither_encoding_is_quarantined_with_the_reason(tmp_path):
    data = (HEADER.encode() + row(1, "李四").encode("gb18030")
            + b"E2,2025-07-01 08:00:02,\xff\xfe\x80,P2,view,x\n"
            + row(3, "王五").encode("utf-8") + row(4, "赵六").encode("gb18030"))
    ev, q, _ = read(tmp_path, data)
    assert list(ev["user_id"]) == ["李四", "王五", "赵六"]
    assert list(q["source_ref"]) == ["a.csv:3"]
    assert "neither UTF-8 nor GB18030" in q["reason"][0]


def test_gb18030_text_that_also_reads_as_utf8_is_read_as_gb18030(tmp_path):
    """'卢茂' in GB18030 is C2 AC C3 AF, which is also valid UTF-8 ('¬ï'): in a GB18030 file
    the plausible reading wins, so no Latin-1 look-alike is stored."""
    data = (HEADER.encode() + row(1, "卢茂").encode("gb18030") + row(2, "李四").encode("gb18030")
            + row(3, "王五").encode("utf-8"))
    ev, q, _ = read(tmp_path, data)
    assert q.empty
    assert list(ev["user_id"]) == ["卢茂", "李四", "王五"]


def test_utf8_header_with_chinese_columns_in_a_mostly_gb18030_file(tmp_path):
    header = "日志编号,操作时间,工号,病人ID,操作类型\n"
    body = "".join(f"L{i},2025-07-01 08:00:{i:02d},U{i},P{i},查看\n" for i in range(1, 40))
    data = header.encode("utf-8") + body.encode("gb18030")
    (tmp_path / "prof.toml").write_text(
        '[access_log.columns]\nevent_id = "日志编号"\nts = "操作时间"\nuser_id = "工号"\n'
        'patient_id = "病人ID"\naction = "操作类型"\n[access_log.values.action]\n"查看" = "view"\n',
        encoding="utf-8")
    ev, q, _ = read(tmp_path, data, extra='profile = "prof.toml"\n')
    assert q.empty and len(ev) == 39 and set(ev["action"]) == {"view"}


def test_jsonl_lines_are_decided_one_by_one_too(tmp_path):
    def line(i, user):
        return json.dumps({"event_id": f"E{i}", "ts": "2025-07-01 08:00:00", "user_id": user,
                           "patient_id": "P1", "action": "view"}, ensure_ascii=False) + "\n"
    data = line(1, "张三").encode("utf-8") + line(2, "李四").encode("gb18030") + \
        line(3, "王五").encode("utf-8") + b'{"event_id": "E4", "user_id": "\xff\x80"}\n'
    ev, q, _ = read(tmp_path, data, name="a.jsonl", connector="jsonl")
    assert list(ev["user_id"]) == ["张三", "李四", "王五"]
    assert list(q["source_ref"]) == ["a.jsonl:4"]
    assert "neither UTF-8 nor GB18030" in q["reason"][0]


def test_a_configured_encoding_still_refuses_mojibake(tmp_path):
    """encoding = "gb18030" in the source is the file's usual encoding, not a licence to
    read a UTF-8 line as GB18030."""
    data = HEADER.encode() + row(1, "李四").encode("gb18030") + row(2, "张三").encode("utf-8")
    ev, q, _ = read(tmp_path, data, extra='encoding = "gb18030"\n')
    assert q.empty and list(ev["user_id"]) == ["李四", "张三"]
