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
    ('[reports]\nmask_patients = "maybe"\n', "reports.mask_patients", "true or false"),
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
    cfg = load_config(write(tmp_path, '[sources.access_log]\npath = "a.csv"\n'))
    assert cfg.store_url == "sqlite:////tmp/other.db"


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


# -- strictness (issue 17 item 3): no coercion, ranges, no source, every key -------------------
SOURCE = '[sources.access_log]\npath = "a.csv"\n'


@pytest.mark.parametrize("text,key,expect", [
    ('[reports]\nmask_patients = "no"\n', "reports.mask_patients", "true or false"),
    ('[reports]\nmask_patients = 0\n', "reports.mask_patients", "true or false"),
    ('[scan]\nlookback_days = "35"\n', "scan.lookback_days", "whole number"),
    ('[scan]\nworkers = true\n', "scan.workers", "whole number"),
    ('[reports]\ndeadline_days = 30.0\n', "reports.deadline_days", "whole number"),
    ('[site]\noffice_hours = [25, -1]\n', "site.office_hours", "0 <= start < end <= 24"),
    ('[site]\noffice_hours = [18, 8]\n', "site.office_hours", "0 <= start < end <= 24"),
    ('[site]\noffice_hours = [8]\n', "site.office_hours", "[start, end]"),
    ('[site]\noffice_hours = ["8", "18"]\n', "site.office_hours", "'8'"),
    ('[site]\noffice_hours = [8.5, 18]\n', "site.office_hours", "8.5"),
    ('[site]\nworkdays = [0, 7]\n', "site.workdays", "0 (Monday) to 6"),
    ('[site]\nworkdays = [1, 1]\n', "site.workdays", "distinct"),
    ('[site]\nworkdays = []\n', "site.workdays", "distinct"),
    ('[site]\nname = 5\n', "site.name", "string"),
    ('[store]\nurl = "not a url"\n', "store.url", "database URL"),
    ('[store]\nlake = ""\n', "store.lake", "at least 1"),
    ('[sources.access_log]\npath = "a.csv"\nbatch_rows = "1000"\n',
     "sources.access_log.batch_rows", "whole number"),
    ('[sources.access_log]\npath = "a.csv"\nenabled = "yes"\n', "sources.access_log.enabled",
     "true or false"),
    ('[sources.access_log]\npath = "a.csv"\nexpected_daily = 1\n',
     "sources.access_log.expected_daily", "true or false"),
    ('[sources.access_log]\npath = "a.csv"\nencoding = "klingon"\n',
     "sources.access_log.encoding", "unknown encoding"),
    ('[sources.access_log]\npath = "a.csv"\nencoding = "utf-16"\n',
     "sources.access_log.encoding", "UTF-16"),
    ('[sources.access_log]\npath = "a.csv"\nquery = "select 1"\n', "sources.access_log",
     "'query' does not apply to the csv connector"),
    ('[sources.access_log]\nconnector = "jsonl"\npath = "a.jsonl"\ndelimiter = ","\n',
     "sources.access_log", "'delimiter' does not apply to the jsonl connector"),
    ('[sources.access_log]\nconnector = "sql"\nurl = "sqlite://"\nsql_table = "t"\n'
     'path = "a.csv"\n', "sources.access_log", "'path' does not apply to the sql connector"),
    ('[detectors."no.such_detector"]\nx = 1\n', "detectors.no.such_detector",
     "unknown detector"),
    ('[detectors."cred.concurrent_use"]\nshared_ip_ranges = ["10.0.0.0/33"]\n',
     "detectors.cred.concurrent_use", "not an IP range"),
    ('[detectors."cred.concurrent_use"]\nshared_ip_ranges = [10]\n',
     "detectors.cred.concurrent_use.shared_ip_ranges", "expected a string"),
    ('[detectors."cred.expired_access"]\nroles = ["cook"]\n',
     "detectors.cred.expired_access.roles", "expected one of"),
])
def test_strict_values_are_refused_naming_the_key(tmp_path, text, key, expect):
    p = write(tmp_path, text + ("" if text.startswith("[sources") else SOURCE))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and f"key '{key}'" in msg and expect in msg, msg


def test_every_key_refuses_a_value_of_another_type(tmp_path):
    """Each key of every section, given a value of the wrong type, is refused by name (so a
    key added later without strict typing fails here)."""
    from emraudit import config as config_mod
    sections = {"site": config_mod.SiteConfig, "store": config_mod.StoreConfig,
                "reports": config_mod.ReportsConfig, "scan": config_mod.ScanConfig,
                "sources.access_log": config_mod.SourceConfig}
    sql_keys = {"url", "password_env", "query", "sql_table", "watermark"}
    checked = []
    for section, model in sections.items():
        for name, field in model.model_fields.items():
            default = field.default
            text_like = isinstance(default, str) or (default is None
                                                     and name != "expected_daily")
            # a number for text keys, text for numbers, booleans and lists
            value = 12345 if text_like else '"12345"'
            if section.startswith("sources"):
                base = ('connector = "sql"\nurl = "sqlite://"\nsql_table = "t"\n'
                        if name in sql_keys else 'path = "a.csv"\n')
                if name in ("connector", "path", "url") or (name == "sql_table"):
                    base = "\n".join(ln for ln in base.splitlines()
                                     if not ln.startswith(f"{name} ")) + "\n"
                body = f"[{section}]\n{base}{name} = {value}\n"
            else:
                body = f"[{section}]\n{name} = {value}\n{SOURCE}"
            p = write(tmp_path, body)
            with pytest.raises(ConfigError) as err:
                load_config(p)
            assert f"key '{section}.{name}'" in str(err.value), (section, name, str(err.value))
            checked.append(f"{section}.{name}")
    assert "reports.mask_patients" in checked and "site.office_hours" in checked


@pytest.mark.parametrize("text", ["", "# nothing here\n", '[site]\nname = "H"\n',
                                  "[sources]\n"])
def test_a_configuration_without_sources_is_an_error(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "no source is configured" in str(err.value) and str(p) in str(err.value)
    # cron must see a failure, not "nothing new to scan"
    res = CliRunner().invoke(main, ["scan", "--config", str(p)])
    assert res.exit_code == 2, res.output
    assert "no source is configured" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("section,key,expect", [
    ({"test.fake": {"ratio": float("nan")}}, "detectors.test.fake.ratio", "finite"),
    ({"test.fake": {"ratio": True}}, "detectors.test.fake.ratio", "expected a number"),
    ({"test.fake": {"threshold": 10.0}}, "detectors.test.fake.threshold", "whole number"),
    ({"test.fake": {"roles": "nurse"}}, "detectors.test.fake.roles", "expected a list"),
    ({"test.fake": {"places": ["a", 1]}}, "detectors.test.fake.places", "expected a string"),
    ({"test.fake": {"hours": {"a": "5"}}}, "detectors.test.fake.hours", "expected a number"),
    ({"test.fake": {"severity": ["high"]}}, "detectors.test.fake.severity", "expected one of"),
])
def test_detector_values_are_strict_too(tmp_path, fake_detector, section, key, expect):
    fake_detector.params = fake_detector.params + (
        Param("places", list, ["ward"], "places"), Param("hours", dict, {"a": 1.5}, "hours"))
    with pytest.raises(ConfigError) as err:
        resolve_detectors(section, tmp_path / "e.toml")
    assert f"key '{key}'" in str(err.value) and expect in str(err.value), str(err.value)
