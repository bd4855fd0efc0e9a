"""The shared engines' own parameters (issue 22.1): `[explain]` and `[schedule]` in the
detector profile, validated like a detector's table, handed to detectors through the Context;
the keys that lived in care.no_relationship, snoop.* and bulk.off_hours before keep working
as deprecated aliases, so an existing profile does not break."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.detectors.profile import (context_args, resolve_detectors, tunable_params,
                                        with_value)
from emraudit.errors import ConfigError

SOURCE = '[sources.access_log]\npath = "a.csv"\n'

# a profile written against the declarations before [explain] and [schedule] existed
OLD_PROFILE = '''
["care.no_relationship"]
grace_after_days = 7.0
documentation_modules = ["病程记录"]
query_window_minutes = 10.0
min_accesses = 2

["snoop.vip"]
lookup_minutes = 10

["bulk.off_hours"]
roster_slack_minutes = 30
min_patients = 12
'''


def write(tmp_path, text, name="emraudit.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_in_force_without_a_profile_table(tmp_path):
    from emraudit.detectors.base import SECTIONS
    s = resolve_detectors({}, None)
    assert s.notes == []                   # the default profile uses no old key
    assert s.sections == {n: sec.defaults() for n, sec in SECTIONS.items()}
    det = s["care.no_relationship"].instantiate()
    assert det.section("explain")["grace_after_days"] == 30.0
    assert det.section("explain")["lookup_minutes"] == 30.0
    assert det.effective_lookback_days() == 30


def test_an_old_profile_still_sets_the_engines(tmp_path):
    write(tmp_path, OLD_PROFILE, "old.toml")
    cfg = write(tmp_path, SOURCE + '[detectors]\nprofile = "old.toml"\n')
    s = resolve_detectors(load_config(cfg).detectors, cfg)
    assert s.sections["explain"] == {"grace_after_days": 7.0,
                                      "documentation_modules": ["病程记录"],
                                      "lookup_minutes": 10.0}
    assert s.sections["schedule"] == {"roster_slack_minutes": 30}
    # the detectors' own keys stay theirs
    assert s["care.no_relationship"].params["min_accesses"] == 2
    assert s["bulk.off_hours"].params["min_patients"] == 12
    notes = "\n".join(s.notes)
    assert "care.no_relationship.grace_after_days" in notes and "explain.grace_after_days" in notes
    assert "snoop.vip.lookup_minutes" in notes and "explain.lookup_minutes" in notes
    assert "bulk.off_hours.roster_slack_minutes" in notes and "deprecated" in notes
    # and they reach the Context, and through it the engines
    args = context_args(s)
    assert args["sections"]["explain"]["grace_after_days"] == 7.0
    assert "grace_after_days" not in args["detector_params"]["care.no_relationship"]


def test_an_old_config_override_still_works_and_the_new_key_wins(tmp_path):
    cfg = write(tmp_path, SOURCE + '[detectors."care.no_relationship"]\n'
                'lookback_days = 3.0\n')
    s = resolve_detectors(load_config(cfg).detectors, cfg)
    assert s.sections["explain"]["lookback_days"] == 3.0
    assert s["care.no_relationship"].instantiate().effective_lookback_days() == 3
    cfg = write(tmp_path, SOURCE + '[detectors."care.no_relationship"]\nlookback_days = 3.0\n'
                '[detectors.explain]\nlookback_days = 5.0\n')
    s = resolve_detectors(load_config(cfg).detectors, cfg)
    assert s.sections["explain"]["lookback_days"] == 5.0
    assert any("ignored" in n for n in s.notes)


def test_the_sections_in_the_profile_and_the_config(tmp_path):
    write(tmp_path, '[explain]\nward_work_hours = 0.0\n[schedule]\ninfer_min_days = 5\n',
          "mine.toml")
    cfg = write(tmp_path, SOURCE + '[detectors]\nprofile = "mine.toml"\n'
                '[detectors.explain]\nbtg_window_hours = 2.0\n')
    s = resolve_detectors(load_config(cfg).detectors, cfg)
    assert s.sections == {"explain": {"ward_work_hours": 0.0, "btg_window_hours": 2.0},
                          "schedule": {"infer_min_days": 5}}
    assert s.notes == []


@pytest.mark.parametrize("text,key,expect", [
    ('[detectors.explain]\ngrace_afterdays = 1.0\n', "detectors.explain.grace_afterdays",
     "unknown parameter"),
    ('[detectors.explain]\nlookup_minutes = "30"\n', "detectors.explain.lookup_minutes",
     "expected a number"),
    ('[detectors.schedule]\ninfer_min_share = 2.0\n', "detectors.schedule.infer_min_share",
     "at most"),
    ('[detectors.explain]\nrecord_role_hours = {nurse = [9, 8]}\n',
     "detectors.explain.record_role_hours", "start < end"),
    ('[detectors.explian]\ngrace_after_days = 1.0\n', "detectors.explian", "unknown detector"),
    ('[detectors."care.no_relationship"]\ngrace_after_days = "7"\n',
     "detectors.care.no_relationship.grace_after_days", "expected a number"),
    # two old homes of one parameter that disagree cannot both hold
    ('[detectors."care.no_relationship"]\nquery_window_minutes = 30.0\n'
     '[detectors."snoop.vip"]\nlookup_minutes = 10\n',
     "detectors.care.no_relationship.query_window_minutes", "disagree"),
])
def test_section_mistakes_name_file_and_key(tmp_path, text, key, expect):
    p = write(tmp_path, SOURCE + text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and f"key '{key}'" in msg and expect in msg


def test_old_homes_that_agree_are_one_value(tmp_path):
    cfg = write(tmp_path, SOURCE + '[detectors."care.no_relationship"]\n'
                'query_window_minutes = 20.0\n[detectors."snoop.vip"]\nlookup_minutes = 20\n'
                '[detectors."snoop.self"]\nlookup_minutes = 20\n')
    s = resolve_detectors(load_config(cfg).detectors, cfg)
    assert s.sections["explain"]["lookup_minutes"] == 20.0


def test_a_section_mistake_is_exit_2_without_traceback(tmp_path):
    p = write(tmp_path, SOURCE + '[detectors.explain]\ngrace_after_days = -1.0\n')
    res = CliRunner().invoke(main, ["findings", "--config", str(p)])
    assert res.exit_code == 2, res.output
    assert "detectors.explain.grace_after_days" in res.output
    assert "Traceback" not in res.output


def test_tune_reaches_a_moved_key(tmp_path):
    s = resolve_detectors({}, None)
    care = s["care.no_relationship"]
    assert tunable_params(care.cls)["grace_after_days"].type is float
    assert tunable_params(care.cls)["query_window_minutes"].name == "lookup_minutes"
    v = with_value(care, "grace_after_days", 2.0)
    assert v.instantiate().section("explain")["grace_after_days"] == 2.0
    assert care.instantiate().section("explain")["grace_after_days"] == 30.0   # a copy
    assert context_args({"care.no_relationship": v})["sections"]["explain"][
        "grace_after_days"] == 2.0
    own = with_value(care, "min_accesses", 4)
    assert own.params["min_accesses"] == 4 and care.params["min_accesses"] == 1
