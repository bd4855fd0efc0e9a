"""The CSV connector's counts (issue 23), from the survivors of a run of every mutant of its
count functions (`_parse`, `_fast`, `_finish` and the line-file base's `batches` and
`quarantine_frame`): every line read is a row or a quarantined line with its reason and
line number, on the edges those mutants moved.
"""

from __future__ import annotations

from test_connector_csv import HEADER, make, read_all


def _refs(frame):
    return frame["_source_ref"].tolist()


def _quarantined(quarantine):
    return list(zip(quarantine["source_ref"], quarantine["reason"]))


def test_a_lone_short_line_without_a_final_newline_is_the_truncated_last_line(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER + "e1,2025-07-01 08:00:00,u1"})
    batches, frame, quarantine = read_all(cfg)
    assert frame.empty
    assert _quarantined(quarantine) == [
        ("a.csv:2", "line has 3 field(s), expected 7 (truncated last line)")]
    assert quarantine["raw"].tolist() == ["e1,2025-07-01 08:00:00,u1"]
    assert sum(b.read for b in batches) == 1


def test_a_blank_crlf_line_first_after_the_header_is_skipped(tmp_path):
    row = "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1"
    cfg = make(tmp_path, {"a.csv": HEADER.replace("\n", "\r\n") + "\r\n" + row + "\r\n"})
    batches, frame, quarantine = read_all(cfg)
    assert quarantine.empty
    assert _refs(frame) == ["a.csv:3"]
    assert frame["ip"].tolist() == ["10.0.0.1"]
    assert sum(b.read for b in batches) == 1


def test_a_carriage_return_before_the_last_character_of_the_file_is_quarantined(tmp_path):
    good = "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n"
    cfg = make(tmp_path, {"a.csv": HEADER + good + "e2,2025-07-01 09:00:00,u2,p2,view,病历,x\ry"})
    batches, frame, quarantine = read_all(cfg)
    assert _refs(frame) == ["a.csv:2"]
    assert _quarantined(quarantine) == [("a.csv:3", "line has a carriage return inside a field")]
    assert sum(b.read for b in batches) == 2


def test_quarantined_lines_keep_their_text_as_read(tmp_path):
    """The raw text of a rejected line is the line without its line ending: trailing spaces
    and letters kept, a carriage return inside it kept (CRLF file, scanning path)."""
    lines = [
        "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1",
        "e2,2025-07-01 09:00:00,u2,X  ",                              # short
        "e3,2025-07-01 09:00:00,u3,p3,view,病历,10.0.0.3,extraX",      # extra field
        "e4,2025-07-01 09:00:00,u4,p4,vi\rew,病历,10.0.0.4  ",         # stray CR
        "e5,2025-07-01 09:00:00,u5,p5,vi\rew,病历,10.0.0.X",
        "\re6,2025-07-01 09:00:00,u6,p6,view,病历,10.0.0.6",           # CR first
        "e7,2025-07-01 10:00:00,u7,p7,view,病历,10.0.0.7",
    ]
    cfg = make(tmp_path, {"a.csv": HEADER.replace("\n", "\r\n")
                          + "".join(x + "\r\n" for x in lines)})
    batches, frame, quarantine = read_all(cfg)
    assert _refs(frame) == ["a.csv:2", "a.csv:8"]
    assert frame["event_id"].tolist() == ["e1", "e7"]
    cr = "line has a carriage return inside a field"
    assert _quarantined(quarantine) == [
        ("a.csv:3", "line has 4 field(s), expected 7"),
        ("a.csv:4", "line has 8 fields, expected 7 (extra field)"),
        ("a.csv:5", cr), ("a.csv:6", cr), ("a.csv:7", cr)]
    assert quarantine["raw"].tolist() == lines[1:6]
    assert set(quarantine["source"]) == {"access_log"}
    assert sum(b.read for b in batches) == 7


def test_a_long_rejected_line_is_kept_to_its_first_2000_characters(tmp_path):
    long = "e2,2025-07-01 09:00:00,u2," + "p" * 2500                     # 4 fields
    good = "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n"
    cfg = make(tmp_path, {"a.csv": HEADER + good + long + "\n" + good.replace("e1", "e3")})
    batches, frame, quarantine = read_all(cfg)
    assert frame["event_id"].tolist() == ["e1", "e3"]
    assert _quarantined(quarantine) == [("a.csv:3", "line has 4 field(s), expected 7")]
    assert quarantine["raw"].tolist() == [long[:2000]]


def test_a_batch_says_how_its_action_words_were_mapped(tmp_path):
    (tmp_path / "mine.toml").write_text('[access_log.values.action]\n"看" = "view"\n',
                                        encoding="utf-8")
    rows = ["e1,2025-07-01 08:00:00,u1,p1,看,病历,10.0.0.1\n",
            "e2,2025-07-01 08:01:00,u1,p1,看,病历,10.0.0.1\n",
            "e3,2025-07-01 08:02:00,u1,p1,瞄,病历,10.0.0.1\n"]
    cfg = make(tmp_path, {"a.csv": HEADER + "".join(rows)},
               'path = "a.csv"\nprofile = "mine.toml"')
    (batch,), frame, quarantine = read_all(cfg)
    assert frame["action"].tolist()[:2] == ["view", "view"]
    assert "action: 2 by value map, 0 by pattern, 1 unmapped" in batch.notes


def test_a_quote_inside_an_unquoted_field_never_cuts_a_line_to_fit(tmp_path):
    """Quotes opened inside a field hide a delimiter from the line scan, but not from the
    CSV reader: the line has one field too many and is quarantined, not accepted cut short;
    the other lines of its block are read as they are."""
    odd = "e2,2025-07-01 09:00:00,u2,p\"2,view\"x,病历,10.0.0.2,extra"
    rows = ["e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1", odd,
            "e3,2025-07-01 10:00:00,u3,p3,print,医嘱,10.0.0.3"]
    cfg = make(tmp_path, {"a.csv": HEADER + "".join(x + "\n" for x in rows)})
    batches, frame, quarantine = read_all(cfg)
    assert _refs(frame) == ["a.csv:2", "a.csv:4"]
    assert frame[["event_id", "action", "ip"]].values.tolist() == [
        ["e1", "view", "10.0.0.1"], ["e3", "print", "10.0.0.3"]]
    assert _quarantined(quarantine) == [("a.csv:3", "line has 8 fields, expected 7 (extra field)")]
    assert quarantine["raw"].tolist() == [odd]
    assert sum(b.read for b in batches) == 3


def test_a_folder_resumes_each_file_where_it_stopped(tmp_path):
    row = "{},2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n"
    cfg = make(tmp_path, {"logs/a.csv": HEADER + row.format("a1"),
                          "logs/b.csv": HEADER + row.format("b1")}, 'path = "logs"')
    batches, frame, _ = read_all(cfg)
    assert frame["event_id"].tolist() == ["a1", "b1"]
    pos = batches[-1].position
    # nothing new: no batch at all (not an empty one per file)
    assert read_all(cfg, wm=pos)[0] == []
    # the second file grows, the first does not: only the new line, after the unchanged file
    with open(tmp_path / "logs" / "b.csv", "a", encoding="utf-8") as fh:
        fh.write(row.format("b2"))
    b2, f2, _ = read_all(cfg, wm=pos)
    assert f2["event_id"].tolist() == ["b2"] and _refs(f2) == ["b.csv:3"]
    # and the position after it still holds the first file: nothing is read again
    assert read_all(cfg, wm=b2[-1].position)[0] == []


def test_a_position_of_another_shape_reads_every_file_from_the_start(tmp_path):
    row = "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n"
    cfg = make(tmp_path, {"a.csv": HEADER + row})
    for wm in ({"value": "2025-07-01", "type": "timestamp"}, {}, "r2025"):
        batches, frame, quarantine = read_all(cfg, wm=wm)
        assert _refs(frame) == ["a.csv:2"] and quarantine.empty


def test_an_empty_file_filled_later_is_read_as_new_not_as_changed(tmp_path):
    cfg = make(tmp_path, {"a.csv": ""})
    (batch,), frame, _ = read_all(cfg)
    assert frame.empty and batch.notes == ["a.csv is empty (0 bytes)"]
    (tmp_path / "a.csv").write_text(HEADER + "e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n",
                                    encoding="utf-8")
    batches, frame, _ = read_all(cfg, wm=batch.position)
    assert _refs(frame) == ["a.csv:2"]
    assert not any("changed" in n for b in batches for n in b.notes)


def test_an_empty_file_in_a_folder_is_noted_and_the_next_file_read(tmp_path):
    row = "b1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n"
    cfg = make(tmp_path, {"logs/a.csv": "", "logs/b.csv": HEADER + row}, 'path = "logs"')
    batches, frame, _ = read_all(cfg)
    assert _refs(frame) == ["b.csv:2"]
    assert batches[0].notes == ["a.csv is empty (0 bytes)"]
    # the empty file's batch already records it: read from there, only b.csv is new
    assert str(tmp_path / "logs" / "a.csv") in batches[0].position["files"]
    again, f2, _ = read_all(cfg, wm=batches[0].position)
    assert _refs(f2) == ["b.csv:2"] and not any(b.notes for b in again)


def test_a_header_only_file_records_where_its_rows_will_start(tmp_path):
    cfg = make(tmp_path, {"a.csv": HEADER})
    (batch,), frame, quarantine = read_all(cfg)
    assert frame.empty and quarantine.empty and batch.read == 0
    (state,) = batch.position["files"].values()
    assert state["line"] == 2
    with open(tmp_path / "a.csv", "a", encoding="utf-8") as fh:
        fh.write("e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1\n")
    batches, frame, _ = read_all(cfg, wm=batch.position)
    assert _refs(frame) == ["a.csv:2"]
    assert not any(b.notes for b in batches)                # appended, not changed
    # rewritten as a header only again: read from the start, and said so
    (tmp_path / "a.csv").write_text(HEADER, encoding="utf-8")
    (again,) = read_all(cfg, wm=batches[-1].position)[0]
    assert again.read == 0
    assert again.notes == ["a.csv changed since the last run (not only appended): "
                           "read again from the start"]


def test_a_reference_table_s_position_is_the_fingerprint_of_all_its_files(tmp_path):
    cfg = make(tmp_path, {"users/a.csv": "", "users/b.csv": "user_id,role\n",
                          "users/c.csv": "user_id,role\nu1,nurse\n"},
               'path = "users"', table="users")
    batches, frame, _ = read_all(cfg, name="users")
    assert frame["user_id"].tolist() == ["u1"]
    assert len(batches) == 3
    for b in batches:
        assert set(b.position) == {"fingerprint", "files"}
        assert sorted(b.position["files"]) == sorted(
            str(tmp_path / "users" / n) for n in ("a.csv", "b.csv", "c.csv"))
    assert len({b.position["fingerprint"] for b in batches}) == 1


def test_a_missing_column_error_does_not_echo_the_header(tmp_path):
    import pytest
    from emraudit.errors import SourceError
    cfg = make(tmp_path, {"a.csv": "secret_a,secret_b\nx,y\n"})
    with pytest.raises(SourceError) as err:
        read_all(cfg)
    assert "not shown" in str(err.value)
    assert "secret_a" not in str(err.value)


def test_a_line_the_csv_reader_finds_short_is_quarantined_as_short(tmp_path):
    # the line scan sees 4 fields (two quoted stretches hide one comma), the CSV reader 3
    odd = 'u1,a"b,"c,d,"e"'
    cfg = make(tmp_path, {"u.csv": f"user_id,role,department,name\n{odd}\nu2,ok,fine,n\n"},
               table="users")
    batches, frame, quarantine = read_all(cfg, name="users")
    assert frame[["user_id", "role", "department", "name"]].values.tolist() == [
        ["u2", "ok", "fine", "n"]]
    assert _quarantined(quarantine) == [("u.csv:2", "line has 3 field(s), expected 4")]
    assert quarantine["raw"].tolist() == [odd]


def test_the_last_line_without_a_newline_is_read_after_a_quoted_line_break(tmp_path):
    rows = ['e1,2025-07-01 08:00:00,u1,p1,view,"病\n历",10.0.0.1',
            "e2,2025-07-01 09:00:00,u2,p2,view,病历,10.0.0.2"]
    cfg = make(tmp_path, {"a.csv": HEADER + rows[0] + "\n" + rows[1]})
    batches, frame, quarantine = read_all(cfg)
    assert _refs(frame) == ["a.csv:2", "a.csv:4"]
    assert frame["module"].tolist() == ["病\n历", "病历"]
    assert frame["ip"].tolist() == ["10.0.0.1", "10.0.0.2"]
    assert quarantine.empty


def test_a_whole_file_source_is_read_once_and_again_only_when_it_changes(tmp_path):
    # a FHIR Bundle is the line-file base's one whole-file format
    import json
    import os
    from emraudit.connectors import open_connector
    from test_connector_fhir import EXAMPLES, config
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": json.loads(p.read_text())} for p in EXAMPLES[:2]]}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, indent=2), encoding="utf-8")
    cfg = config(tmp_path, "bundle.json")
    (first,) = list(open_connector("access_log", cfg).batches(None))
    assert first.read == 2 and first.notes == []
    assert list(open_connector("access_log", cfg).batches(first.position)) == []
    bundle["entry"] = bundle["entry"][:1]
    path.write_text(json.dumps(bundle, indent=2), encoding="utf-8")
    os.utime(path, (1, 1))
    (again,) = list(open_connector("access_log", cfg).batches(first.position))
    assert again.read == 1
    assert again.notes == ["bundle.json changed since the last run (not only appended): "
                           "read again from the start"]


def test_lines_the_csv_reader_rejects_keep_their_text_as_read(tmp_path):
    odd = 'e{0},2025-07-01 09:00:00,u{0},p"{0},view"x,病历,10.0.0.{0},'
    lines = ["e1,2025-07-01 08:00:00,u1,p1,view,病历,10.0.0.1",
             odd.format(2) + "extraX", odd.format(3) + "extra  ", odd.format(4) + "y" * 2100]
    cfg = make(tmp_path, {"a.csv": HEADER.replace("\n", "\r\n")
                          + "".join(x + "\r\n" for x in lines)})
    batches, frame, quarantine = read_all(cfg)
    assert _refs(frame) == ["a.csv:2"]
    extra = "line has 8 fields, expected 7 (extra field)"
    assert _quarantined(quarantine) == [("a.csv:3", extra), ("a.csv:4", extra), ("a.csv:5", extra)]
    assert quarantine["raw"].tolist() == [lines[1], lines[2], lines[3][:2000]]
