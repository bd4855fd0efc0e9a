"""The command line's rough edges (issue 19 point 7): one ISO date parser, inclusive day
ranges, detector ids checked with a suggestion, paths from the working directory, ambiguous
case-id prefixes, unknown patients."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from emraudit import dates
from emraudit.cli import main
from emraudit.errors import UserError
from test_report_fixture import CASE_A, CASE_OLD, CASE_P, PATIENT, TZ, build


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("emraudit: error:"), res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]


# -- the parser --------------------------------------------------------------------------
def test_iso_days_and_times_parse():
    assert dates.parse("2026-09-30").day == date(2026, 9, 30)
    w = dates.parse(" 2026-09-30T08:15 ", "--since")
    assert w.time.hour == 8 and w.time.minute == 15
    assert dates.parse("2026-09-30 08:15:30+08:00").start(TZ).isoformat() == \
        "2026-09-30T08:15:30+08:00"
    assert dates.parse("2026-09-30T00:30Z").first_day(TZ) == date(2026, 9, 30)   # 08:30 local
    assert dates.parse("2026-09-29T20:00Z").first_day(TZ) == date(2026, 9, 30)


@pytest.mark.parametrize("text", ["09/10/2026", "2026/09/30", "10.09.2026", "20260930",
                                  "Sept 30", "2026-9-30", "", "2026-09-30T8"])
def test_anything_but_iso_is_a_user_mistake_naming_the_option(text):
    with pytest.raises(UserError, match="--since: expected a date such as 2026-09-30"):
        dates.parse(text, "--since")


def test_impossible_dates_say_so():
    with pytest.raises(UserError, match="'2026-02-30' is not a real date"):
        dates.parse("2026-02-30", "--from")
    with pytest.raises(UserError, match="not a real date and time"):
        dates.parse("2026-02-10T25:00", "--from")
    with pytest.raises(UserError, match="expected a date"):
        dates.parse_day("2026-02-10T10:00", "--start")      # days only there


def test_day_ranges_include_both_ends():
    assert dates.day_range("2026-09-30", "2026-09-30", TZ) == ("2026-09-30", "2026-09-30")
    # an instant ends there: midnight ends with the day before, noon keeps the day
    assert dates.day_range(None, "2026-09-30T00:00", TZ) == (None, "2026-09-29")
    assert dates.day_range(None, "2026-09-30T12:00", TZ) == (None, "2026-09-30")
    with pytest.raises(UserError, match=r"--until \(2026-09-01\) is before --since"):
        dates.day_range("2026-09-30", "2026-09-01", TZ)


# -- verbs ---------------------------------------------------------------------------------
def test_scan_rejects_month_first_dates_before_doing_anything(tmp_path):
    build(tmp_path)
    conf = tmp_path / "emraudit.toml"
    _one_line_error(_run("scan", "--config", conf, "--since", "09/10/2026"), "--since",
                    "09/10/2026")
    _one_line_error(_run("scan", "--config", conf, "--since", "2025-07-03", "--until",
                         "2025-07-01"), "is before --since")
    assert not (tmp_path / "reports" / "emraudit.log").exists()   # failed before the scan


def test_same_day_since_and_until_scans_that_day(tmp_path):
    from emraudit.scan import window_days
    cfg, store, lake = build(tmp_path)
    days, _ = window_days(cfg, store, lake, since="2025-07-02", until="2025-07-02",
                          full=False)
    assert days == ["2025-07-02"]
    days, _ = window_days(cfg, store, lake, since="2025-07-02", until=None, full=False)
    assert days == ["2025-07-02", "2025-07-03"]
    days, _ = window_days(cfg, store, lake, since=None, until="2025-07-02T00:00",
                          full=False)
    assert days == ["2025-07-01"]


def test_every_verb_takes_the_same_dates(tmp_path):
    build(tmp_path)
    conf = tmp_path / "emraudit.toml"
    _one_line_error(_run("cases", "list", "--config", conf, "--since", "2026/09/30"),
                    "--since: expected a date such as 2026-09-30")
    _one_line_error(_run("report", "summary", "--config", conf, "--from", "07/01/2025",
                         "--to", "2025-07-31"), "--from")
    _one_line_error(_run("report", "patient", "--config", conf, PATIENT, "--from",
                         "2025-07-01", "--to", "31.07.2025"), "--to")
    _one_line_error(_run("allow", "add", "--config", conf, "--user", "U001", "--patient",
                         PATIENT, "--until", "12/31/2099", "--reason", "r", "--by", "b"),
                    "--until")
    _one_line_error(_run("demo", "generate", "--out", tmp_path / "d", "--start",
                         "09/07/2026"), "--start")
    # a case seen on 07-03 only: listed from that day, not from the day after
    res = _run("cases", "list", "--config", conf, "--since", "2025-07-03", "--status", "all")
    assert res.exit_code == 0, res.output
    assert CASE_A in res.output and CASE_OLD not in res.output
    res = _run("cases", "list", "--config", conf, "--since", "2025-07-04", "--status", "all")
    assert CASE_A not in res.output


def test_detector_ids_are_checked_with_a_suggestion(tmp_path):
    build(tmp_path)
    conf = tmp_path / "emraudit.toml"
    _one_line_error(_run("cases", "list", "--config", conf, "--detector",
                         "care.no_relationshp"),
                    "unknown detector 'care.no_relationshp'", "did you mean care.no_relationship")
    _one_line_error(_run("tune", "--config", conf, "bulk.of_hours", "min_patients", "5"),
                    "did you mean bulk.off_hours")
    _one_line_error(_run("cases", "list", "--config", conf, "--detector", "zzz"),
                    "unknown detector 'zzz'", "emraudit detectors list")
    res = _run("cases", "list", "--config", conf, "--detector", "snoop.vip")
    assert res.exit_code == 0 and CASE_P in res.output


def test_ambiguous_case_prefix_names_the_candidates(tmp_path):
    build(tmp_path)
    conf = tmp_path / "emraudit.toml"
    res = _run("cases", "show", "--config", conf, "C")
    _one_line_error(res, "case id 'C' is ambiguous", CASE_A, CASE_OLD, CASE_P,
                    "give more characters")
    _one_line_error(_run("cases", "show", "--config", conf, "Cp"), "too short",
                    CASE_P, "at least 4")
    _one_line_error(_run("cases", "show", "--config", conf, "Cx%"), "no case 'Cx%'")
    res = _run("cases", "show", "--config", conf, "Cpat")
    assert res.exit_code == 0 and f"case {CASE_P}" in res.output


def test_profile_paths_start_from_the_working_directory(tmp_path, monkeypatch):
    import shutil
    from importlib import resources
    build(tmp_path / "site")
    (tmp_path / "mine").mkdir()
    default = resources.files("emraudit") / "profiles" / "detectors" / "default.toml"
    shutil.copy(str(default), tmp_path / "mine" / "same.toml")
    monkeypatch.chdir(tmp_path)
    res = _run("detectors", "diff", "mine/same.toml", "--config", "site/emraudit.toml",
               "--days", "3", "--format", "json")
    assert res.exit_code == 0, res.output
    assert '"added": 0' in res.output
    _one_line_error(_run("detectors", "diff", "mine/nope.toml", "--config",
                         "site/emraudit.toml"),
                    str(tmp_path / "mine" / "nope.toml"), "working directory")


def test_unknown_patient_is_a_user_mistake(tmp_path):
    build(tmp_path)
    conf = tmp_path / "emraudit.toml"
    _one_line_error(_run("report", "patient", "--config", conf, "P9999999", "--from",
                         "2025-07-01", "--to", "2025-07-03"), "no such patient 'P9999999'")


def test_known_patient_without_accesses_is_not_an_engine_failure(tmp_path):
    from emraudit.reports.patient import build_patient_report
    cfg, store, lake = build(tmp_path)
    # P50001 is in the patients table; nobody opened it on 07-01
    model = build_patient_report(cfg, store, lake, "P50001", "2025-06-01", "2025-06-02")
    assert model["rows"] == [] and model["engine"] is True and model["n_unexplained"] == 0
