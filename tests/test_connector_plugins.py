"""Connector kinds are opened through entry points (group `emraudit.connectors`): the built-ins
are entry points too, a package's kind becomes a valid `connector =` in the configuration and
is ingested like the built-ins. Two packages declaring one kind is a configuration error; a
broken entry point or a class that is not a connector fails its source with one line."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pandas as pd
import pytest
from click.testing import CliRunner

import emraudit.connectors as connectors
from emraudit.cli import main
from emraudit.config import load_config
from emraudit.connectors import GROUP, Batch, Connector, connector_class, connector_kinds
from emraudit.connectors.csv import CsvConnector
from emraudit.errors import ConfigError
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.model import SOURCE_REF
from emraudit.store import Store


class PipeConnector(Connector):
    """A third party's kind: `ts|user|patient|word` lines, mapped by the source's profile."""

    kind = "pipe"

    def batches(self, watermark):
        path = self.config.resolve(self.source.path)
        lines = path.read_text(encoding="utf-8").splitlines()
        cols = list(zip(*(line.split("|") for line in lines)))
        df = pd.DataFrame({name: pd.Series(c, dtype="string")
                           for name, c in zip(("ts", "user_id", "patient_id", "word"), cols)})
        df[SOURCE_REF] = pd.Series([f"{path.name}:{i + 1}" for i in range(len(df))],
                                   dtype="string")
        yield Batch(self.profile.apply(self.table, df), {"rows": len(df)}, len(df))


NotAConnector = dict


@pytest.fixture
def plugins(monkeypatch):
    """Install entry points for the test, as a package's metadata would declare them."""
    def install(*pairs: tuple[str, str]):
        eps = [EntryPoint(name, value, GROUP) for name, value in pairs]
        monkeypatch.setattr(connectors, "entry_points",
                            lambda group: [e for e in eps if e.group == group])
        connector_kinds.cache_clear()
    yield install
    connector_kinds.cache_clear()


def site(tmp_path, connector: str):
    (tmp_path / "log.txt").write_text("2025-07-01 08:00:00|u1|p1|打印\n"
                                      "2025-07-01 08:05:00|u1|p2|查看\n", encoding="utf-8")
    (tmp_path / "pipe.toml").write_text('[access_log.columns]\naction = "word"\n'
                                        '[access_log.values.action]\n"打印" = "print"\n'
                                        '"查看" = "view"\n', encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\nconnector = "{connector}"\npath = "log.txt"\n'
        'profile = "pipe.toml"\n', encoding="utf-8")
    return tmp_path / "emraudit.toml"


def test_builtin_kinds_are_entry_points_of_the_group(plugins):
    plugins()
    kinds = connector_kinds()
    assert list(kinds) == ["csv", "jsonl", "sql", "fhir"]
    assert all(ep.group == GROUP for ep in kinds.values())
    assert connector_class("csv") is CsvConnector


def test_a_plugin_kind_is_configured_and_ingested(tmp_path, plugins):
    plugins(("pipe", "test_connector_plugins:PipeConnector"))
    assert connector_class("pipe") is PipeConnector
    cfg = load_config(site(tmp_path, "pipe"))
    store = Store(cfg.store_url)
    lake = Lake(cfg.lake_dir, cfg.tz)
    [res] = ingest(cfg, store, lake)
    assert (res.status, res.accepted, res.quarantined) == ("ok", 2, 0)
    ev = lake.read_events(store.committed_runs())
    assert sorted(ev["action"]) == ["print", "view"]
    assert sorted(ev["action_raw"]) == ["打印", "查看"]


def test_an_unknown_kind_names_the_installed_ones(tmp_path, plugins):
    plugins(("pipe", "test_connector_plugins:PipeConnector"))
    with pytest.raises(ConfigError) as err:
        load_config(site(tmp_path, "ftp"))
    assert err.value.key == "sources.access_log.connector"
    assert "unknown connector 'ftp' (expected one of csv, fhir, jsonl, pipe, sql)" in str(err.value)


def test_two_packages_declaring_one_kind_is_a_configuration_error_exit_2(tmp_path, plugins):
    plugins(("csv", "test_connector_plugins:PipeConnector"))
    res = CliRunner().invoke(main, ["ingest", "--config", str(site(tmp_path, "csv"))])
    assert res.exit_code == 2, res.output
    assert "connector 'csv' is declared twice: emraudit.connectors.csv:CsvConnector and " \
        "test_connector_plugins:PipeConnector" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


@pytest.mark.parametrize("value, message", [
    ("no_such_module:PipeConnector", "connector 'pipe' cannot be loaded from "
                                     "no_such_module:PipeConnector: No module named"),
    ("test_connector_plugins:Nothing", "cannot be loaded from test_connector_plugins:Nothing"),
    ("test_connector_plugins:NotAConnector", "connector 'pipe' (test_connector_plugins:"
                                             "NotAConnector) is not a Connector class"),
])
def test_a_broken_plugin_fails_its_source_with_one_line(tmp_path, plugins, value, message):
    plugins(("pipe", value))
    cfg_path = site(tmp_path, "pipe")
    with pytest.raises(ConfigError) as err:
        connectors.open_connector("access_log", load_config(cfg_path))
    assert (err.value.file, err.value.key) == (str(cfg_path), "sources.access_log.connector")
    assert message in str(err.value)
    # like an unreadable source: reported with its error, exit 1, no traceback
    res = CliRunner().invoke(main, ["ingest", "--config", str(cfg_path)])
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output


def test_the_same_entry_point_declared_again_is_not_a_clash(plugins):
    plugins(("csv", "emraudit.connectors.csv:CsvConnector"))
    assert connector_class("csv") is CsvConnector
