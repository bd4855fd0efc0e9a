"""Profile steps recorded per ingestion run, and explained after the fact: each run names the
digest of the steps it was mapped with, the steps are stored once per distinct mapping, an
edited profile starts a new mapping without rewriting old runs, and the case page says which
step turned the source's word into the canonical value, in Chinese and in English."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest
import sqlalchemy as sa

from emraudit.config import load_config
from emraudit.connectors.profile import load_profile
from emraudit.connectors.provenance import Mapped, ProfileTrail, record_steps
from emraudit.detectors import registry
from emraudit.detectors.base import Detector
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.scan import run_scan
from emraudit.store import Store, ingest_runs, profile_steps

HIS_HEADER = "流水号,操作时间,操作人工号,患者ID,操作类型,操作内容\n"


def his_site(tmp_path, rows: list[str], profile: str = "his-zh", extra: str = ""):
    (tmp_path / "his.csv").write_text(HIS_HEADER + "".join(rows), encoding="utf-8")
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\npath = "his.csv"\nprofile = "{profile}"\nencoding = "utf-8"\n'
        + extra, encoding="utf-8")
    return load_config(tmp_path / "emraudit.toml")


def run_ingest(cfg):
    store = Store(cfg.store_url)
    res = ingest(cfg, store, Lake(cfg.lake_dir, cfg.tz))
    assert all(r.status != "failed" for r in res), [r.error for r in res]
    return store


def runs(store) -> list:
    with store.engine.connect() as c:
        return c.execute(sa.select(ingest_runs.c.run_id, ingest_runs.c.profile_digest)
                         .order_by(ingest_runs.c.started)).fetchall()


def stored_steps(store) -> dict[str, list[dict]]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(profile_steps).order_by(profile_steps.c.digest,
                                                           profile_steps.c.seq)).fetchall()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.digest, []).append(json.loads(r.spec))
    return out


ROW1 = "S1,2025-07-01 08:00:00,0101,P1,打印,打印病历(2份)\n"
ROW2 = "S2,2025-07-01 08:05:00,0101,P1,调阅,病历\n"
ROW3 = "S3,2025-07-02 09:00:00,0102,P2,登录失败,登录系统\n"


def test_each_run_names_the_steps_it_was_mapped_with(tmp_path):
    cfg = his_site(tmp_path, [ROW1, ROW2])
    store = run_ingest(cfg)
    prof = load_profile("his-zh")
    digest = prof.digest("access_log")
    assert [r.profile_digest for r in runs(store)] == [digest]
    assert stored_steps(store) == {digest: prof.records("access_log")}
    with store.engine.connect() as c:
        keys = [r.step for r in c.execute(sa.select(profile_steps.c.step)
                                          .order_by(profile_steps.c.seq))]
    assert keys[0] == "access_log.columns" and "access_log.values.action" in keys
    # more rows, same profile: a new run, the same stored steps (not a second copy)
    with open(tmp_path / "his.csv", "a", encoding="utf-8") as fh:
        fh.write(ROW3)
    run_ingest(cfg)
    assert [r.profile_digest for r in runs(store)] == [digest, digest]
    assert list(stored_steps(store)) == [digest]


def test_an_edited_profile_is_a_new_mapping_and_old_runs_keep_theirs(tmp_path):
    mine = tmp_path / "mine.toml"
    builtin = resources.files("emraudit") / "profiles" / "connectors" / "his-zh.toml"
    mine.write_text(builtin.read_text(encoding="utf-8"), encoding="utf-8")
    cfg = his_site(tmp_path, [ROW2], profile="mine.toml")
    store = run_ingest(cfg)
    # the hospital decides that 调阅 (retrieving a record) is a query, not a view
    mine.write_text(mine.read_text(encoding="utf-8").replace('"调阅" = "view"', '"调阅" = "query"'),
                    encoding="utf-8")
    with open(tmp_path / "his.csv", "a", encoding="utf-8") as fh:
        fh.write("S4,2025-07-03 10:00:00,0103,P3,调阅,病历\n")
    run_ingest(cfg)
    first, second = [r.profile_digest for r in runs(store)]
    assert first != second and set(stored_steps(store)) == {first, second}
    trail = ProfileTrail.load(store)
    # each event is explained by the mapping that reproduces its stored value
    old = trail.how_mapped("access_log", {"action": "调阅"}, {"action": "view"})
    new = trail.how_mapped("access_log", {"action": "调阅"}, {"action": "query"})
    assert [(m.value, m.steps) for m in old] == [("view", ("access_log.values.action",))]
    assert [(m.value, m.steps) for m in new] == [("query", ("access_log.values.action",))]
    # without a stored value, the newest mapping of the source
    assert trail.how_mapped("access_log", {"action": "调阅"})[0].value == "query"


def test_how_mapped_names_value_map_pattern_and_failed_login_steps(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    digests = {name: record_steps(store, load_profile(name), "access_log")
               for name in ("his-zh", "emr-cache-grid", "openemr")}
    with store.begin() as c:
        c.execute(ingest_runs.insert(), [
            {"run_id": f"r{i}", "source": src, "table_name": "access_log",
             "started": pd.Timestamp("2025-07-01", tz="UTC").to_pydatetime(),
             "status": "committed", "profile_digest": digests[name]}
            for i, (src, name) in enumerate([("his", "his-zh"), ("grid", "emr-cache-grid"),
                                             ("oe", "openemr")])])
    trail = ProfileTrail.load(store)
    assert trail.how_mapped("his", {"action": " 打印 "}) == [
        Mapped("his", "his-zh", "action", " 打印 ", "print", ("access_log.values.action",))]
    got = trail.how_mapped("grid", {"action": "EMR.OP.Print.Preview"})
    assert [(m.profile, m.value, m.steps) for m in got] == [
        ("emr-cache-grid", "print", ("access_log.patterns.action",))]
    # the value map wins over a pattern that matches too
    assert trail.how_mapped("grid", {"action": "EMR.OP.Print.OK"})[0].steps == \
        ("access_log.values.action",)
    # a chain: the value map, then the failed login (openemr's own word is "login")
    got = trail.how_mapped("his", {"action": "登录", "outcome": "failure"})
    assert [(m.column, m.value, m.steps) for m in got] == [
        ("action", "login_failed", ("access_log.values.action", "access_log.login_failed"))]
    got = trail.how_mapped("oe", {"action": "login", "outcome": "failure"})
    assert [(m.column, m.raw, m.value, m.steps) for m in got] == [
        ("action", "login", "login_failed", ("access_log.login_failed",))]
    # a word the profile leaves alone, a source without runs, an empty word: nothing to say
    assert trail.how_mapped("his", {"action": "view"}) == []
    assert trail.how_mapped("nosuch", {"action": "打印"}) == []
    assert trail.how_mapped("his", {"action": ""}) == []
    # stored values no recorded mapping reproduces are not explained by a wrong one
    assert trail.how_mapped("his", {"action": "打印"}, {"action": "export"}) == []


def test_for_events_lists_each_distinct_mapping_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    digest = record_steps(store, load_profile("his-zh"), "access_log")
    with store.begin() as c:
        c.execute(ingest_runs.insert().values(
            run_id="r1", source="his", table_name="access_log", status="committed",
            started=pd.Timestamp("2025-07-01", tz="UTC").to_pydatetime(), profile_digest=digest))
    trail = ProfileTrail.load(store)
    events = [{"_source": "his", "action_raw": "打印", "action": "print", "outcome": "success"},
              {"_source": "his", "action_raw": "打印", "action": "print", "outcome": "success"},
              {"_source": "his", "action_raw": "查看", "action": "view", "outcome": pd.NA},
              {"_source": "his", "action_raw": pd.NA, "action": "view"},
              {"_source": "other", "action_raw": "打印", "action": "print"}]
    assert trail.for_events(events) == [
        {"source": "his", "profile": "his-zh", "column": "action", "raw": "打印", "value": "print",
         "steps": ["access_log.values.action"]},
        {"source": "his", "profile": "his-zh", "column": "action", "raw": "查看", "value": "view",
         "steps": ["access_log.values.action"]}]


class EveryPrint(Detector):
    """Flags every print: enough for a case page."""

    id = "test.every_print"
    name_en, name_zh, item, severity = "Every print", "打印", "8", "low"

    def run(self, ctx):
        ev = ctx.events[ctx.events["action"] == "print"]
        return self.findings(pd.DataFrame({
            "key": ev["event_id"], "user_id": ev["user_id"], "patient_id": ev["patient_id"],
            "event_ids": [[e] for e in ev["event_id"]], "start": ev["ts"], "end": ev["ts"],
            "summary": "printed", "evidence": [{"n": 1}] * len(ev)}))


@pytest.fixture
def only_every_print():
    registry.all_detectors()
    saved = dict(registry._REGISTRY)
    registry._REGISTRY.clear()
    registry.register(EveryPrint)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.mark.parametrize("lang, line", [
    ("zh", "按接入配置 his-zh 映射：action 打印 → print"),
    ("en", "mapped by profile his-zh: action 打印 → print"),
])
def test_case_page_says_how_the_word_was_mapped(tmp_path, only_every_print, lang, line):
    # the configuration (its detectors checked when loaded) names the stand-in's profile
    (tmp_path / "only-tests.toml").write_text("# the stand-in detector\n", encoding="utf-8")
    cfg = his_site(tmp_path, [ROW1, ROW2], extra=f'[detectors]\nprofile = "only-tests.toml"\n'
                                                f'[reports]\nlang = "{lang}"\n')
    res = run_scan(cfg, echo=lambda s: None)
    pages = list((res.report_dir / "cases").glob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text(encoding="utf-8")
    assert line in page
    assert "access_log.values.action" in page
    assert "调阅" not in page.split('id="mappings"')[1]   # only the flagged event's word
