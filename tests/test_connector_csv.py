"""The csv connector: encodings, delimiters, malformed lines, incremental reads, errors."""

from __future__ import annotations

import pandas as pd
import pytest

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector
from emraudit.errors import ConfigError, SourceError, UserError

HEADER = "event_id,ts,user_id,patient_id,action,module,ip\n"
ROWS = [
    "e1,2025-07-01 08:03:15,u1,p1,view,病历,10.0.0.1\n",
    "e2,2025/07/01 8:03,u2,p2,print,医嘱,10.0.0.2\n",
    "e3,20250701080315,u3,p3,export,病历,\n",
]


def make(tmp_path, files: dict, source: str = "", table: str = "access_log"):
    for name, content in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    cfg = tmp_path / "emraudit.toml"
    first = next(iter(files))
    body = source or f'path = "{first}"'
    cfg.write_text(f"[sources.{table}]\n{body}\n", encoding="utf-8")
    return load_config(cfg)


def read_all(cfg, name="access_log", wm=None):
    batches = list(open_connector(name, cfg).batches(wm))
    frame = pd.concat([b.frame for b in batches], ignore_index=True) if batches else pd.DataFrame()
    quarantine = pd.concat([b.quarantine for b in batches], ignore_index=True) \
        if batches else model.empty_quarantine()
    for b in batches:
        assert b.read == len(b.frame) + len(b.quarantine)
    return batches, frame, quarantine


def test_canonical_csv_reads_every_row_with_line_refs(tmp_path):
    cfg = make(tmp_path, {"access_log.csv": HEADER + "".join(ROWS)})
    batches, frame, q = read_all(cfg)
    assert list(frame["event_id"]) == ["e1", "e2", "e3"]
    assert list(frame["_source_ref"]) == ["access_log.csv:2", "access_log.csv:3",
                                          "access_log.csv:4"]
    assert q.empty
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert len(v.accepted) == 3 and v.quarantine.empty
    assert v.accepted["ts"].dt.hour.tolist() == [8, 8, 8]


def test_gb18030_file_with_chinese_headers_is_detected(tmp_path):
    text = ("操作时间,操作人工号,患者ID,操作类型\n"
            "2025-07-01 08:00:00,0101,P1,查看\n2025-07-01 09:00:00,0102,P2,打印\n")
    cfg = make(tmp_path, {"his.csv": text.encode("gb18030")},
               'path = "his.csv"\nprofile = "his-zh"')
    _, frame, q = read_all(cfg)
    assert q.empty
    assert list(frame["action"]) == ["view", "print"]
    assert list(frame["action_raw"]) == ["查看", "打印"]
    assert list(frame["user_id"]) == ["0101", "0102"]


def test_utf8_bom_and_tab_delimiter_are_detected(tmp_path):
    text = "\ufeff" + HEADER.replace(",", "\t") + "".join(r.replace(",", "\t") for r in ROWS)
    cfg = make(tmp_path, {"a.tsv": text})
    _, frame, q = read_all(cfg)
    assert "event_id" in frame.columns and len(frame) == 3 and q.empty


def test_semicolon_and_quoted_fields_with_newlines(tmp_path):
    text = ('event_id;ts;user_id;patient_id;action;module;reason\n'
            'e1;2025-07-01 08:00:00;u1;p1;view;病历;"two\nlines; and a ""quote"""\n'
            'e2;2025-07-01 08:01:00;u1;p2;view;病历;plain\n')
    cfg = make(tmp_path, {"a.csv": text})
    _, frame, q = read_all(cfg)
    assert q.empty
    assert frame["reason"].tolist() == ['two\nlines; and a "quote"', "plain"]
    assert frame["_source_ref"].tolist() == ["a.csv:2", "a.csv:4"]


def test_zero_byte_and_header_only_files_give_no_rows(tmp_path):
    cfg = make(tmp_path, {"logs/a.csv": b"", "logs/b.csv": HEADER},
               'path = "logs"')
    batches, frame, q = read_all(cfg)
    assert len(frame) == 0 and q.empty and sum(b.read for b in batches) == 0
    assert any("empty" in n for b in batches for n in b.notes)
    v = model.validate("access_log", frame, cfg.tz, "access_log")   # empty batch validates
    assert len(v.accepted) == 0


def test_truncated_last_line_and_extra_column_are_quarantined(tmp_path):
    text = (HEADER + ROWS[0] + "e9,2025-07-01 08:05:00,u3,p3,view,病历,10.0.0.3,extra\n"
            + ROWS[1] + "e4,2025-07-01 09:00")
    cfg = make(tmp_path, {"access_log.csv": text})
    batches, frame, q = read_all(cfg)
    assert list(frame["event_id"]) == ["e1", "e2"]
    assert list(frame["_source_ref"]) == ["access_log.csv:2", "access_log.csv:4"]
    assert list(q["source_ref"]) == ["access_log.csv:3", "access_log.csv:5"]
    assert "extra field" in q["reason"][0] and "truncated" in q["reason"][1]
    assert q["raw"][1] == "e4,2025-07-01 09:00"
    assert sum(b.read for b in batches) == 4


def test_duplicate_event_and_bad_timestamp_through_validate(tmp_path):
    text = HEADER + ROWS[0] + ROWS[0] + "e5,not a time,u1,p1,view,病历,\n"
    cfg = make(tmp_path, {"access_log.csv": text})
    _, frame, _ = read_all(cfg)
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert v.counts == {"read": 3, "accepted": 1, "quarantined": 1, "duplicates": 1}
    assert v.quarantine["source_ref"].tolist() == ["access_log.csv:4"]
    assert "unparseable time" in v.quarantine["reason"][0]


def test_late_non_utf8_line_falls_back_without_crashing(tmp_path):
    good = HEADER + "".join(ROWS) * 2000     # the sample is plain UTF-8
    late = "e9,2025-07-02 08:00:00,u9,p9,view,病历,1.1.1.1\n".encode("gb18030")
    cfg = make(tmp_path, {"access_log.csv": good.encode("utf-8") + late})
    _, frame, q = read_all(cfg)
    assert q.empty
    assert frame["module"].iloc[-1] == "病历"


def test_undecodable_line_is_quarantined_with_reason(tmp_path):
    raw = (HEADER + ROWS[0]).encode() + b"e9,\xff\xff\xff,u,p,view,x,y\n" + ROWS[1].encode()
    cfg = make(tmp_path, {"access_log.csv": raw}, 'path = "access_log.csv"\nencoding = "utf-8"')
    _, frame, q = read_all(cfg)
    assert len(frame) == 3 or len(q) == 1  # either fell back to GB18030 or quarantined
    assert len(frame) + len(q) == 3


def test_small_batches_bounded_and_position_resumes_after_growth(tmp_path):
    rows = [f"e{i},2025-07-01 08:{i % 60:02d}:00,u{i},p{i},view,病历,10.0.0.1\n"
            for i in range(3000)]
    cfg = make(tmp_path, {"access_log.csv": HEADER + "".join(rows)},
               'path = "access_log.csv"\nbatch_rows = 500')
    batches, frame, _ = read_all(cfg)
    assert len(batches) >= 3 and len(frame) == 3000
    assert frame["_source_ref"].iloc[-1] == "access_log.csv:3001"
    pos = batches[-1].position
    # unchanged: nothing new
    assert read_all(cfg, wm=pos)[1].empty
    # grown: only the new rows, with the right line numbers
    with open(tmp_path / "access_log.csv", "a", encoding="utf-8") as fh:
        fh.write("n1,2025-07-02 08:00:00,u1,p1,view,病历,10.0.0.1\n")
    b2, f2, _ = read_all(cfg, wm=pos)
    assert f2["event_id"].tolist() == ["n1"] and f2["_source_ref"].tolist() == ["access_log.csv:3002"]
    # rewritten: read again from the start
    (tmp_path / "access_log.csv").write_text(HEADER + ROWS[0], encoding="utf-8")
    b3, f3, _ = read_all(cfg, wm=b2[-1].position)
    assert f3["event_id"].tolist() == ["e1"]
    assert any("changed" in n for b in b3 for n in b.notes)


def test_folder_and_glob_read_files_in_sorted_order(tmp_path):
    cfg = make(tmp_path, {"logs/2025-07-02.csv": HEADER + ROWS[1],
                          "logs/2025-07-01.csv": HEADER + ROWS[0]},
               'path = "logs/*.csv"')
    _, frame, _ = read_all(cfg)
    assert frame["event_id"].tolist() == ["e1", "e2"]
    assert frame["_source_ref"].tolist() == ["2025-07-01.csv:2", "2025-07-02.csv:2"]


def test_missing_file_is_a_source_error_naming_it(tmp_path):
    cfg = make(tmp_path, {"x.txt": ""}, 'path = "nope.csv"')
    with pytest.raises(SourceError, match="nope.csv.*not found"):
        list(open_connector("access_log", cfg).batches(None))


def test_missing_required_column_names_file_and_column(tmp_path):
    cfg = make(tmp_path, {"a.csv": "ts,patient_id,action\n2025-07-01,p,view\n"})
    with pytest.raises(SourceError, match=r"a\.csv.*'user_id'"):
        list(open_connector("access_log", cfg).batches(None))


def test_unknown_profile_is_a_config_error(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER}, 'path = "a.csv"\nprofile = "nosuch"')
    with pytest.raises(ConfigError, match="unknown connector profile 'nosuch'"):
        open_connector("access_log", cfg)


def test_reference_table_is_read_whole_every_time(tmp_path):
    users = "user_id,name,role,department\nu1,张三,主治医师,心内科\nu2,李四,护士,心内科\n"
    cfg = make(tmp_path, {"users.csv": users}, table="users")
    b1, f1, _ = read_all(cfg, "users")
    b2, f2, _ = read_all(cfg, "users", wm=b1[-1].position)
    assert len(f1) == len(f2) == 2
    assert b1[-1].position == b2[-1].position       # a fingerprint
    v = model.validate("users", f2, cfg.tz, "users")
    assert v.accepted["role"].tolist() == ["physician", "nurse"]


def test_cli_ingest_quarantine_and_coverage(tmp_path):
    from click.testing import CliRunner

    from emraudit.cli import main
    text = HEADER + "".join(ROWS) + "e9,2025-07-01 08:05:00,u3,p3,view,病历,1,extra\n"
    make(tmp_path, {"access_log.csv": text})
    cfgp = str(tmp_path / "emraudit.toml")
    runner = CliRunner()
    r = runner.invoke(main, ["ingest", "--config", cfgp])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["quarantine", "--config", cfgp])
    assert r.exit_code == 0, r.output
    assert "access_log.csv:5" in r.output and "extra field" in r.output
    assert "extra" not in r.output.split("extra field")[-1]    # raw only with --raw
    r = runner.invoke(main, ["quarantine", "--config", cfgp, "--raw"])
    assert "raw:" in r.output
    r = runner.invoke(main, ["coverage", "--config", cfgp])
    assert r.exit_code == 0, r.output
    assert "2025-07-01" in r.output and "67%" in r.output     # ip on 2 of 3 rows
    r = runner.invoke(main, ["quarantine", "--config", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_user_error_is_raised_not_traceback(tmp_path):
    # a delimiter a source cannot have is refused when the configuration is loaded
    with pytest.raises(UserError, match="one ASCII character"):
        make(tmp_path, {"a.csv": HEADER + ROWS[0]}, 'path = "a.csv"\ndelimiter = "::"')


def test_crlf_line_endings_and_no_final_newline(tmp_path):
    text = (HEADER + "".join(ROWS)).replace("\n", "\r\n").rstrip("\r\n")
    cfg = make(tmp_path, {"a.csv": text.encode("gb18030")})
    _, frame, q = read_all(cfg)
    assert q.empty and frame["event_id"].tolist() == ["e1", "e2", "e3"]
    assert frame["ip"].tolist()[:2] == ["10.0.0.1", "10.0.0.2"]     # no stray '\r'
    assert frame["_source_ref"].tolist()[-1] == "a.csv:4"


def test_blank_lines_are_skipped_not_counted(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER + ROWS[0] + "\n\r\n" + ROWS[1]})
    batches, frame, q = read_all(cfg)
    assert q.empty and frame["_source_ref"].tolist() == ["a.csv:2", "a.csv:5"]
    assert sum(b.read for b in batches) == 2


def test_unterminated_quote_at_end_is_quarantined(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER + ROWS[0] + 'e7,2025-07-01 08:00:00,u,p,view,"病历,x\n'})
    _, frame, q = read_all(cfg)
    assert frame["event_id"].tolist() == ["e1"]
    assert q["source_ref"].tolist() == ["a.csv:3"] and "unterminated" in q["reason"][0]


def test_quoted_field_spanning_a_block_boundary(tmp_path):
    long = "x" * 70_000 + "\n" + "y" * 70_000          # a field with a newline, > one block
    text = HEADER.replace("ip", "reason") + ROWS[0] + \
        f'e8,2025-07-01 08:00:00,u,p,view,病历,"{long}"\n' + ROWS[1]
    cfg = make(tmp_path, {"a.csv": text}, 'path = "a.csv"\nbatch_rows = 10')
    _, frame, q = read_all(cfg)
    assert q.empty and frame["event_id"].tolist() == ["e1", "e8", "e2"]
    assert frame["reason"][1] == long and frame["_source_ref"].tolist()[2] == "a.csv:5"


def test_odd_bytes_never_crash(tmp_path):
    """Regressions found by fuzzing: a stray CR inside a field or the header, epoch
    milliseconds, a mistyped year."""
    text = ("event_id,ts,user_id,patient_id,action,module,i\rp\n"
            "e1,2025-07-01 08:03:15,u1\r,p1,view,病历,10.0.0.1\n"
            "e2,1751328195123,u2,p2,view,病历,10.0.0.2\n"
            "e3,207/01 8:03,u3,p3,view,病历,10.0.0.3\n")
    cfg = make(tmp_path, {"a.csv": text})
    _, frame, q = read_all(cfg)
    assert q["source_ref"].tolist() == ["a.csv:2"] and "carriage return" in q["reason"][0]
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    assert str(v.accepted["ts"][0]) == "2025-07-01 08:03:15.123000+08:00"
    assert "unparseable time" in v.quarantine["reason"][0]


def test_jsonl_file_of_one_undecodable_byte(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"\xff")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\nconnector = "jsonl"\npath = "a.jsonl"\nencoding = "utf-8"\n',
        encoding="utf-8")
    batches = list(open_connector("access_log", load_config(tmp_path / "emraudit.toml"))
                   .batches(None))
    assert sum(b.read for b in batches) == sum(len(b.quarantine) for b in batches)


def test_preparsed_times_validate_exactly_like_text():
    from emraudit.connectors.csv import preparse_times
    text = pd.Series(["2025-07-01 08:03:15", "2025-03-09 23:59:59", None],
                     dtype=pd.StringDtype("pyarrow"))
    fast = preparse_times(text)
    assert pd.api.types.is_datetime64_dtype(fast.dtype)
    df = pd.DataFrame({"user_id": ["u"] * 3, "patient_id": ["p"] * 3, "action": ["view"] * 3})
    a = model.validate("access_log", df.assign(ts=text), "Asia/Shanghai", "s")
    b = model.validate("access_log", df.assign(ts=fast), "Asia/Shanghai", "s")
    pd.testing.assert_series_equal(a.accepted["ts"], b.accepted["ts"])
    assert a.accepted["event_id"].tolist() == b.accepted["event_id"].tolist()
    assert a.quarantine["reason"].tolist() == b.quarantine["reason"].tolist()
    # one value in another layout: the column stays text, validation parses it
    mixed = pd.Series(["2025-07-01 08:03:15", "2025/07/01 8:03"], dtype=pd.StringDtype("pyarrow"))
    assert preparse_times(mixed) is mixed


def test_fully_quoted_export_keeps_line_refs_and_values(tmp_path):
    """Many HIS exports quote every value; a quoted line break anywhere still reads right."""
    rows = ['"e1","2025-07-01 08:00:00","u1","p1","view","病历","a, b"',
            '"e2","2025-07-01 08:01:00","u1","p2","view","病历","say ""hi"""',
            '"e3","2025-07-01 08:02:00","u1"',                                 # short row
            '"e4","2025-07-01 08:03:00","u2","p3","print","病历","x"']
    head = '"event_id","ts","user_id","patient_id","action","module","reason"\n'
    cfg = make(tmp_path, {"a.csv": head + "\n".join(rows) + "\n"})
    _, frame, q = read_all(cfg)
    assert frame["event_id"].tolist() == ["e1", "e2", "e4"]
    assert frame["reason"].tolist() == ["a, b", 'say "hi"', "x"]
    assert frame["_source_ref"].tolist() == ["a.csv:2", "a.csv:3", "a.csv:5"]
    assert q["source_ref"].tolist() == ["a.csv:4"]
    # a line break inside a quoted last field whose halves look like whole rows
    text = head + ('"e5","2025-07-01 09:00:00","u1","p1","view","病历","one\n'
                   'e6,2025-07-01 09:00:01,u1,p1,view,病历,two"\n'
                   '"e7","2025-07-01 09:01:00","u1","p1","view","病历","z"\n')
    cfg = make(tmp_path / "b", {"b.csv": text})
    _, frame, q = read_all(cfg)
    assert frame["event_id"].tolist() == ["e5", "e7"] and q.empty
    assert frame["reason"].iloc[0] == "one\ne6,2025-07-01 09:00:01,u1,p1,view,病历,two"
    assert frame["_source_ref"].tolist() == ["b.csv:2", "b.csv:4"]


def test_block_cut_keeps_quoted_line_breaks_whole():
    """The block cut searches the tail only; quote parity before the tail must carry over,
    and a quoted field longer than the searched tail widens the search."""
    from emraudit.connectors.files import _cut
    head = b'a,"x\ny"\n' * 20000                      # 160 kB of records with quoted breaks
    assert _cut(head + b'b,"open\nstill', True) == len(head)
    long_field = b'c,"' + b"z\n" * 100_000 + b'"\n'   # one 200 kB record
    assert _cut(head + long_field + b'd,"', True) == len(head) + len(long_field)
    assert _cut(b'e,"' + b"z\n" * 100_000, True) == 0  # no whole record yet
    assert _cut(b"plain\nlines\npart", False) == len(b"plain\nlines\n")


@pytest.mark.parametrize("values, fast", [
    (["2025-07-01 08:03:15", " ", None, "2025-03-09 23:59:59 "], True),
    (["2025-07-01", "", "2024-02-29"], True),
    (["2025-07-01 08:03:15", "2025-02-30 00:00:00"], False),   # pyarrow would say March 2
    (["2025-07-01", "2023-02-29"], False),
    (["2025-07-01 23:59:60"], False),                           # a leap second: pandas rolls
    (["0099-01-01 00:00:00"], False),                           # outside nanoseconds
    (["2025-07-01 08:03:15", "2025-07-01"], False),             # two layouts
    (["2025-7-1 8:03:15"], False),                              # not zero-padded
])
def test_fixed_width_times_parse_exactly_like_the_general_path(values, fast):
    from emraudit.timeparse import parse_fixed_width, parse_timestamps
    text = pd.Series(values, dtype=pd.StringDtype("pyarrow"))
    assert (parse_fixed_width(text) is not None) == fast
    general = parse_timestamps(pd.Series(values, dtype=object), "Asia/Shanghai")
    pd.testing.assert_series_equal(parse_timestamps(text, "Asia/Shanghai"), general)


def test_an_impossible_date_in_a_csv_is_quarantined_not_rolled_over(tmp_path):
    (tmp_path / "a.csv").write_text(
        "event_id,ts,user_id,patient_id,action\n"
        "E1,2025-07-01 08:00:00,u1,p1,view\nE2,2025-02-30 08:00:00,u1,p1,view\n",
        encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        '[sources.access_log]\nconnector = "csv"\npath = "a.csv"\n', encoding="utf-8")
    batches = list(open_connector("access_log", load_config(tmp_path / "emraudit.toml"))
                   .batches(None))
    v = model.validate("access_log", pd.concat([b.frame for b in batches]), "Asia/Shanghai",
                       "access_log")
    assert v.accepted["event_id"].tolist() == ["E1"]
    assert v.quarantine["reason"].str.contains("unparseable time").tolist() == [True]


# ------------------------------------------------------------- the scanning path's edges (issue 23)
# A blank line makes pyarrow's row count fall short of the lines, so each of these blocks is
# read by the scanning path, where every line is accounted for one by one.

def test_one_character_lines_are_rows_not_blanks(tmp_path):
    cfg = make(tmp_path, {"d.csv": "department\nA\n\nB\r\nC"}, table="departments")
    batches, frame, q = read_all(cfg, "departments")
    assert q.empty and frame["department"].tolist() == ["A", "B", "C"]
    assert frame["_source_ref"].tolist() == ["d.csv:2", "d.csv:4", "d.csv:5"]
    assert sum(b.read for b in batches) == 3


def test_a_block_of_only_bad_lines_is_all_quarantined(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER + "\n" + ROWS[0].replace("\n", ",extra\n")})
    batches, frame, q = read_all(cfg)
    assert frame.empty and "event_id" in frame.columns
    assert q["source_ref"].tolist() == ["a.csv:3"]
    assert q["reason"].tolist() == ["line has 8 fields, expected 7 (extra field)"]
    assert sum(b.read for b in batches) == 1


def test_short_lines_say_whether_they_are_the_truncated_last_one(tmp_path):
    text = HEADER + "\n" + "e8,2025-07-01 08:00:00,u1\n" + ROWS[0] + "e9,2025-07-01"
    _, frame, q = read_all(make(tmp_path, {"a.csv": text}))
    assert frame["event_id"].tolist() == ["e1"]
    assert q["reason"].tolist() == ["line has 3 field(s), expected 7",
                                    "line has 2 field(s), expected 7 (truncated last line)"]


def test_unterminated_quote_after_a_blank_line_is_quarantined(tmp_path):
    text = HEADER + ROWS[0] + "\n" + 'e7,2025-07-01 08:00:00,u,p,view,"病历,x\n'
    _, frame, q = read_all(make(tmp_path, {"a.csv": text}))
    assert frame["event_id"].tolist() == ["e1"]
    assert q["source_ref"].tolist() == ["a.csv:4"]
    assert q["reason"].tolist() == ["unterminated quoted field at the end of the file"]


def test_a_lone_carriage_return_at_the_very_end_is_a_line_ending(tmp_path):
    text = HEADER + ROWS[0] + "\n" + ROWS[1].replace("\n", "\r")
    batches, frame, q = read_all(make(tmp_path, {"a.csv": text}))
    assert q.empty and frame["event_id"].tolist() == ["e1", "e2"]
    assert frame["ip"].tolist() == ["10.0.0.1", "10.0.0.2"]


def test_carriage_returns_inside_and_outside_quotes(tmp_path):
    # inside a quoted field a CR is part of the value; outside quotes it would end the record
    # for pyarrow but not for the line count: that line is quarantined (raw cut at 2,000)
    tail = "z" * 3000
    text = (HEADER + 'e1,2025-07-01 08:00:00,u1,p1,view,"病历\r首页",10.0.0.1\n'
            + f'e2,2025-07-01 09:00:00,u1,"p2",view,a\rb,{tail}\n'
            + "\n" + ROWS[2])
    batches, frame, q = read_all(make(tmp_path, {"a.csv": text}))
    assert frame["event_id"].tolist() == ["e1", "e3"]
    assert frame["module"].tolist()[0] == "病历\r首页"
    assert q["source_ref"].tolist() == ["a.csv:3"]
    assert q["reason"].tolist() == ["line has a carriage return inside a field"]
    assert len(q["raw"][0]) == 2000 and q["raw"][0].startswith("e2,2025-07-01 09:00:00")
    assert sum(b.read for b in batches) == 3

