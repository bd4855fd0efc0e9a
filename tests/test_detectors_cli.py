"""`emraudit detectors`: every registered detector with the settings in force."""

from __future__ import annotations

import json

from click.testing import CliRunner

from emraudit.cli import main
from emraudit.detectors.registry import all_detectors


def _int_param(det_id):
    return next(p for p in all_detectors()[det_id].params if p.type is int)


def _pick():
    return next(i for i, c in all_detectors().items()
                if c.enabled_by_default and any(p.type is int for p in c.params))


def test_lists_every_registered_detector_with_docs():
    r = CliRunner().invoke(main, ["detectors"])
    assert r.exit_code == 0, r.output
    for det_id, cls in all_detectors().items():
        assert det_id in r.output
        assert cls.name_zh in r.output
        for p in cls.params:
            assert f"{p.name} = " in r.output
    assert f"{len(all_detectors())} detectors" in r.output


def test_values_in_force_come_from_profile_and_config(tmp_path):
    det_id = _pick()
    p = _int_param(det_id)
    other = next(i for i in all_detectors() if i != det_id)
    value = p.default + 1 if p.max is None or p.default + 1 <= p.max else p.default - 1
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text(f'[detectors."{det_id}"]\n{p.name} = {value}\nseverity = "critical"\n'
                   f'[detectors."{other}"]\nenabled = false\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["detectors", "list", "--config", str(cfg), "--format",
                                  "json"])
    assert r.exit_code == 0, r.output
    items = {d["id"]: d for d in json.loads(r.output)}
    assert set(items) == set(all_detectors())
    mine = items[det_id]
    par = {x["name"]: x for x in mine["params"]}[p.name]
    assert par["value"] == value and par["default"] == p.default and par["changed"]
    assert par["doc"] == p.doc
    assert mine["severity"] == "critical" and mine["enabled"]
    assert items[other]["enabled"] is False
    for key in ("name_en", "name_zh", "item", "description", "note", "false_positives"):
        assert key in mine
    r = CliRunner().invoke(main, ["detectors", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert f"{p.name} = {value}" in r.output and f"(default {p.default})" in r.output
    assert "DISABLED" in r.output


def test_a_typo_in_the_config_is_exit_2(tmp_path):
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[detectors."no.such_detector"]\nx = 1\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["detectors", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "no.such_detector" in r.output


def test_diff_needs_stored_events(tmp_path):
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[store]\nurl = "sqlite:///s.db"\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    from emraudit.store import Store
    Store(f"sqlite:///{tmp_path / 's.db'}").dispose()
    r = CliRunner().invoke(main, ["detectors", "diff", "default", "--config", str(cfg)])
    assert r.exit_code == 2, r.output
    assert "no stored events" in r.output


def test_tune_on_an_empty_store_is_a_clear_error(tmp_path):
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[store]\nurl = "sqlite:///never.db"\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    det = _pick()
    r = CliRunner().invoke(main, ["tune", "--config", str(cfg), det, _int_param(det).name,
                                  str(_int_param(det).default)])
    assert r.exit_code == 2, r.output
    assert "run `emraudit scan` first" in r.output
    r = CliRunner().invoke(main, ["tune", "--config", str(cfg), det, "no_such_param", "1"])
    assert r.exit_code == 2 and "no parameter 'no_such_param'" in r.output


def test_group_options_reach_the_subcommands(tmp_path):
    det = _pick()
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text(f'[detectors."{det}"]\nenabled = false\n[sources.access_log]\npath = "access_log.csv"\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["detectors", "--config", str(cfg), "--format", "json",
                                  "list"])
    assert r.exit_code == 0, r.output
    assert {d["id"]: d for d in json.loads(r.output)}[det]["enabled"] is False
    r = CliRunner().invoke(main, ["detectors", "diff", "default"], env={"EMRAUDIT_CONFIG": ""})
    assert r.exit_code == 2 and "needs --config" in r.output
