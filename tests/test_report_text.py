"""Finding sentences from data: every message in both languages, plurals, masking, clauses,
findings stored before messages, case headlines and the case history's own notes."""

from __future__ import annotations

import json
import re

import pytest

from emraudit.detectors.base import findings_frame
from emraudit.detectors.message import Clause, Message
from emraudit.reports.masking import Masker
from emraudit.reports.text import (ARG_KINDS, case_sentence, english_summary, feed_gap_sentence,
                                   finding_sentence, format_arg, history_note, history_value,
                                   messages, render)

CJK = re.compile(r"[\u4e00-\u9fff]")
# plausible arguments for every name the built-in messages use
ARGS = {"user": "U0011", "account": "U0012", "acting": "U0013", "coworker": "U0014",
        "patient": "P00012367", "day": "2026-09-10", "department": "心内科",
        "ward": "心内科一病区", "from": "本部", "to": "东院",
        "start": "2026-09-10T08:00:00+08:00", "end": "2026-09-10T17:30:00+08:00",
        "until": "2026-09-01T00:00:00+08:00", "end_date": "2026-08-01T00:00:00+08:00",
        "role": "nurse", "flags": ["vip", "employee"], "places": ["本部/心内科", "东院/骨科"],
        "basis": "roster", "family": ["declared_contact", "same_address"],
        "relation": "spouse", "group": "nurse|心内科", "percent": 99.5,
        "drivers": [{"feature": "output_records", "value": 133.0, "peer_median": 0.0,
                     "peer_p99": 1.0, "own_median": None, "own_days": 4}],
        "lookup": True, "outputs": True, "imaging": True, "edited": True, "trainee": True,
        "unexplained": True, "same_department": True, "off_duty": True, "night": True,
        "hops": 3}


def _args(msg: Message) -> dict:
    names = set()
    for text in msg.msgids():
        names |= set(re.findall(r"%\((\w+)\)s", text))
    for c in (msg, *msg.clauses):
        if c is not msg:
            names.add(c.when)
        if getattr(c, "count", None):
            names.add(c.count)
    return {n: ARGS.get(n, 7) for n in names}


def test_every_message_renders_in_both_languages_with_every_clause():
    msgs = messages()
    assert len(msgs) >= 25
    for mid, msg in msgs.items():
        args = _args(msg)
        en = render(msg, args, "en", Masker())
        zh = render(msg, args, "zh", Masker())
        assert "—" not in en and "—" not in zh, (mid, en, zh)   # every placeholder filled
        assert not CJK.search(en.replace("心内科一病区", "").replace("心内科", "")
                              .replace("本部", "").replace("东院", "").replace("骨科", "")), en
        assert CJK.search(zh) and not re.search(r"\b(the|of|and|with|was)\b", zh), (mid, zh)
        assert "P0*****67" in en + zh or "patient" not in args, mid   # masked
        assert "P00012367" not in en + zh, mid


def test_plural_forms_follow_the_count_in_english_and_stay_one_in_chinese():
    msg = messages()["snoop.vip"]
    one = render(msg, {"user": "u", "patient": "p", "accesses": 1}, "en", Masker(False))
    many = render(msg, {"user": "u", "patient": "p", "accesses": 3}, "en", Masker(False))
    assert "p 1 time with" in one and "p 3 times with" in many
    zh = render(msg, {"user": "u", "patient": "p", "accesses": 3}, "zh", Masker(False))
    assert zh == "u 在无诊疗关系、也无其他正当理由的情况下查阅重点人员（VIP）患者 p 的病历 3 次"


def test_arguments_are_formatted_by_kind():
    zh, m = "zh", Masker()
    from emraudit.reports.i18n import Lang
    zh = Lang("zh")
    assert format_arg("patient", "P00012367", zh, m) == "P0*****67"
    assert format_arg("patient", "P00012367", zh, Masker(False)) == "P00012367"
    assert format_arg("user", "U0011", zh, m) == "U0011"            # staff are not masked
    assert format_arg("role", "nurse", zh, m) == "护士"
    assert format_arg("role", None, zh, m) == "岗位不详"
    assert format_arg("flags", ["vip", "employee"], zh, m) == "VIP、本院职工"
    assert format_arg("start", "2026-09-10T08:00:00+08:00", zh, m) == "2026-09-10 08:00"
    assert format_arg("until", "2026-09-01T00:00:00+08:00", zh, m) == "2026-09-01"
    assert format_arg("group", "nurse|心内科", zh, m) == "护士 · 心内科"
    assert format_arg("group", "all", zh, m) == "全体人员"
    assert format_arg("count", 1849, zh, m) == "1,849"
    assert format_arg("minutes", 6.125, zh, m) == "6.12"
    # free text is scrubbed of known patient names and ids
    m.learn(["P00012367"], ["张三明"])
    assert format_arg("note", "张三明 asked", zh, m) == "张*明 asked"
    assert set(ARG_KINDS) >= {"user", "patient", "role", "flags", "drivers"}


def test_a_missing_argument_reads_as_a_dash_and_a_clause_needs_its_argument():
    msg = Message("%(user)s saw %(patient)s", clauses=(Clause("x", "; and %(x)s"),))
    assert render(msg, {"user": "u"}, "en", Masker()) == "u saw —"
    assert render(msg, {"user": "u", "x": ""}, "en", Masker()) == "u saw —"
    assert render(msg, {"user": "u", "x": "y"}, "en", Masker()) == "u saw —; and y"
    with pytest.raises(TypeError):
        Message(("one %(n)s", "many %(n)s"))           # a plural needs its count


def test_the_stored_summary_is_the_english_sentence_unmasked():
    f = findings_frame("snoop.vip", [dict(
        key="k", user_id="U1", patient_id="P00012367", event_ids=["e1"],
        start="2026-09-10T08:00:00+08:00", end="2026-09-10T08:00:00+08:00",
        message_id="snoop.vip", message_args={"user": "U1", "patient": "P00012367",
                                              "accesses": 2})],
        default_item="8", default_severity="high")
    row = f.iloc[0].to_dict()
    assert row["summary"] == english_summary("snoop.vip", row["message_args"]) == (
        "U1 opened the record of VIP patient P00012367 2 times with no care relation or other "
        "explanation")
    assert finding_sentence(row, "en", Masker()) == row["summary"].replace("P00012367",
                                                                          "P0*****67")
    with pytest.raises(ValueError, match="not declared"):
        english_summary("snoop.vipp", {})


def test_the_summary_remembers_argument_texts_by_type_too():
    # english_summary keeps each argument's text by (name, type, value): True and 1 are equal
    # keys to a dict but read differently, and a remembered text must read as a fresh one
    from emraudit.reports.text import message
    for accesses in (1, True, 1, 1.0, True, "1"):
        args = {"user": "U1", "patient": "P00012367", "accesses": accesses}
        assert english_summary("snoop.vip", args) == render(
            message("snoop.vip"), args, "en", Masker(enabled=False))


def test_a_memo_of_masked_argument_texts_reads_as_a_fresh_render():
    # findings.jsonl shares one memo over a night's lines: keyed by language and type too,
    # and patients masked in it as without it
    from emraudit.reports.text import message
    m = Masker()
    m.learn(["P00012367"], ["赵小红"])
    memo: dict = {}
    for lang in ("en", "zh", "en"):
        for accesses in (1, True, 1.0, "1", 1):
            for user in ("U1", "U2"):
                args = {"user": user, "patient": "P00012367", "accesses": accesses}
                fresh = render(message("snoop.vip"), args, lang, m)
                assert render(message("snoop.vip"), args, lang, m, memo) == fresh
                assert "P00012367" not in fresh and "P0*****67" in fresh
    assert {k[0] for k in memo} == {"en", "zh"}


def test_findings_stored_before_messages_fall_back_without_english_on_zh_pages():
    old = {"detector": "snoop.vip", "user_id": "U1", "patient_id": "P00012367",
           "summary": "U1 looked at P00012367", "message_id": None, "message_args": None}
    m = Masker()
    m.learn(["P00012367"])
    assert finding_sentence(old, "en", m) == "U1 looked at P0*****67"
    assert finding_sentence(old, "zh", m) == "无故查阅重点人员病历：账号 U1，患者 P0*****67"
    acct = dict(old, patient_id="", detector="gone.detector")
    assert finding_sentence(acct, "zh", m) == "gone.detector：账号 U1"


def _finding(fid, det, sev, score, **kw):
    return {"finding_id": fid, "detector": det, "severity": sev, "score": score,
            "user_id": "U1", "patient_id": "P00012367", "suppressed_by": None,
            "message_id": "snoop.vip",
            "message_args": {"user": "U1", "patient": "P00012367", "accesses": 1}, **kw}


def test_case_headline_names_the_top_finding_the_others_and_why_severity_rose():
    fs = [_finding("F1", "snoop.vip", "high", 3.0),
          _finding("F2", "care.no_relationship", "medium", 9.0, message_id="care.no_relationship",
                   message_args={"user": "U1", "patient": "P00012367", "accesses": 4,
                                 "day": "2026-09-10", "tried": 9, "flags": ["vip"]})]
    case = {"severity": "critical", "severity_base": "high", "top_finding": "F1",
            "severity_reasons": json.dumps([{"reason": "detectors_agree", "n": 2},
                                            {"reason": "repeat_offender", "n": 2}])}
    en = case_sentence(case, fs, "en", Masker())
    assert en.startswith("U1 opened the record of VIP patient P0*****67 1 time")
    assert en.endswith(" (+1 more finding); severity raised from high to critical: 2 "
                       "detectors agree, repeat offender: 2 earlier confirmed cases")
    zh = case_sentence(case, fs, "zh", Masker())
    assert zh.endswith("（另有 1 项发现）；严重程度由“高”升为“严重”：2 条规则同时命中、屡犯：此前 2 个"
                       "案件经核实属实")
    # stored before the case kept its reasons: derived from the levels and the detectors
    old = {"severity": "critical"}
    assert case_sentence(old, fs, "en", Masker()).endswith(
        "severity raised from high to critical: 2 detectors agree")
    assert case_sentence(old, fs[:1], "en", Masker()).endswith(
        "severity raised from high to critical: repeat offender (an earlier case of this "
        "account was confirmed)")
    # a suppressed finding is the headline only when nothing else is left
    fs[0]["suppressed_by"] = 3
    assert case_sentence({"severity": "medium"}, fs, "en", Masker()).startswith(
        "U1 opened the record of patient P0*****67 4 times on 2026-09-10")


def test_feed_gap_case_headline_from_its_stored_figures():
    case = {"kind": "feed_gap", "summary": "care relations explain 12% …",
            "severity_reasons": json.dumps([{
                "reason": "feed_gap", "dimension": "role", "value": "technician",
                "share": 0.12, "others_share": 0.93, "held": 40, "users": 3,
                "patients": 31}])}
    assert case_sentence(case, [], "zh", Masker()) == feed_gap_sentence(case, "zh", Masker())
    zh = feed_gap_sentence(case, "zh", Masker())
    assert zh.startswith("岗位 技师 的查阅中只有 12% 能由诊疗关系解释，全院其他部分为 93%")
    assert "3 名人员对 31 名患者的 40 次" in zh
    assert feed_gap_sentence(case, "en", Masker()).startswith(
        "care relations explain 12% of the accesses of the role technician against 93%")


def test_case_history_notes_written_by_the_scan_read_in_the_language():
    opened = {"by": "scan", "action": "opened",
              "note": "2 finding(s) by care.no_relationship, snoop.vip"}
    assert history_note(opened, "zh", Masker()) == "无诊疗关系查阅、无故查阅重点人员病历 共 2 项发现"
    assert history_note(opened, "en", Masker()) == \
        "2 findings by Record viewed without a care relationship, Unexplained access to a VIP " \
        "patient"
    reopened = {"by": "scan", "action": "reopened",
                "note": "1 new finding(s) from scan s1; previous disposition justified by 王审核"}
    assert history_note(reopened, "zh", Masker()) == \
        "扫描 s1 新增 1 项发现；原处置结论：有正当理由（王审核）"
    # a reviewer's note is theirs, in their words (scrubbed); an unknown scan note is not
    # shown as English on a Chinese page
    m = Masker()
    m.learn(["P00012367"])
    assert history_note({"by": "李", "note": "called P00012367"}, "zh", m) == "called P0*****67"
    assert history_note({"by": "scan", "action": "opened", "note": "odd"}, "zh", m) == ""
    assert history_value("detectors", '["snoop.vip"]', "zh") == "无故查阅重点人员病历"
    assert history_value("status", "resolved", "zh") == "已处理"
