"""emraudit.toml and detector profiles: typos are errors naming the file and the key."""

import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.detectors.base import Detector, Param
from emraudit.detectors.profile import resolve_detectors
from emraudit.detectors import registry
from emraudit.errors import ConfigError


def write(tmp_path, text, name="emraudit.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_relative_paths(tmp_path):
    p = write(tmp_path, '[sources.access_log]\npath = "logs/a.csv"\n')
    cfg = load_config(p)
    assert cfg.tz == "Asia/Shanghai"
    assert cfg.store_url == f"sqlite:///{tmp_path / 'emraudit.db'}"
    assert cfg.resolve(cfg.sources["access_log"].path) == tmp_path / "logs" / "a.csv"
    assert cfg.reports.mask_patients is True


@pytest.mark.parametrize("text,key,expect", [
    ('[site]\nnmae = "x"\n', "site.nmae", "unknown key"),
    ('[site]\ntimezone = "Mars/Base"\n', "site.timezone", "unknown timezone"),
    ('[reports]\nlang = "fr"\n', "reports.lang", "expected"),
    ('[reports]\nmask_patients = "maybe"\n', "reports.mask_patients", "valid boolean"),
    ('[sources.access_log]\nconnector = "csv"\n', "sources.access_log.path", "needs 'path'"),
    ('[sources.visits]\npath = "v.csv"\n', "sources.visits", "unknown table"),
    ('[sources.access_log]\nconnector = "ftp"\npath = "x"\n', "sources.access_log.connector",
     "expected"),
])
def test_config_mistakes_name_file_and_key(tmp_path, text, key, expect):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and f"key '{key}'" in msg and expect in msg


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[site\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_store_url_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("EMRAUDIT_STORE_URL", "sqlite:////tmp/other.db")
    assert load_config(write(tmp_path, "")).store_url == "sqlite:////tmp/other.db"


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    p = write(tmp_path, '[site]\nnmae = "x"\n')
    res = CliRunner().invoke(main, ["findings", "--config", str(p)])
    assert res.exit_code == 2
    assert "key 'site.nmae'" in res.output and "Traceback" not in res.output


@pytest.fixture
def fake_detector():
    class Fake(Detector):
        id = "test.fake"
        name_en, name_zh, item = "Fake", "测试", "9"
        params = (Param("threshold", int, 10, "how many", min=1, max=100),
                  Param("ratio", float, 2.0, "a ratio"),
                  Param("roles", list, ["nurse"], "roles", choices=("nurse", "physician")))

        def run(self, ctx):
            return self.findings([])
    registry.all_detectors()
    registry.register(Fake)
    yield Fake
    registry._REGISTRY.pop("test.fake")


def test_detector_overrides_validated(tmp_path, fake_detector):
    s = resolve_detectors({"test.fake": {"threshold": 20, "ratio": 3}}, tmp_path / "e.toml")
    assert s["test.fake"].params == {"threshold": 20, "ratio": 3.0, "roles": ["nurse"]}
    s = resolve_detectors({"test.fake": {"enabled": False}}, tmp_path / "e.toml")
    assert s["test.fake"].enabled is False


@pytest.mark.parametrize("section,key,expect", [
    ({"test.fak": {}}, "detectors.test.fak", "unknown detector"),
    ({"test.fake": {"treshold": 1}}, "detectors.test.fake.treshold", "unknown parameter"),
    ({"test.fake": {"threshold": "10"}}, "detectors.test.fake.threshold", "whole number"),
    ({"test.fake": {"threshold": 0}}, "detectors.test.fake.threshold", "at least 1"),
    ({"test.fake": {"threshold": 101}}, "detectors.test.fake.threshold", "at most 100"),
    ({"test.fake": {"roles": ["cook"]}}, "detectors.test.fake.roles", "expected one of"),
    ({"test.fake": {"enabled": "no"}}, "detectors.test.fake.enabled", "true or false"),
    ({"test.fake": {"severity": "huge"}}, "detectors.test.fake.severity", "expected one of"),
])
def test_detector_override_mistakes(tmp_path, fake_detector, section, key, expect):
    with pytest.raises(ConfigError) as err:
        resolve_detectors(section, tmp_path / "e.toml")
    assert f"key '{key}'" in str(err.value) and expect in str(err.value)


def test_profile_file_validated(tmp_path, fake_detector):
    prof = write(tmp_path, '["test.fake"]\nthreshold = 5\nbogus = 1\n', "strict.toml")
    with pytest.raises(ConfigError) as err:
        resolve_detectors({"profile": "strict.toml"}, tmp_path / "emraudit.toml")
    assert str(prof) in str(err.value) and "test.fake.bogus" in str(err.value)
    with pytest.raises(ConfigError, match="no built-in detector profile"):
        resolve_detectors({"profile": "nonexistent"}, tmp_path / "emraudit.toml")
