"""Multi-site (issue 21): site_id on the canonical tables, relations and rosters within their
site, findings with their site, `report sites` and `cases list --site`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.detectors.base import Context
from emraudit.detectors.schedule import duty_mask

TZ = "Asia/Shanghai"
A, B = "H-A", "H-B"

USERS = """site_id,user_id,name,role,department,ward,status
H-A,U1,甲医生,physician,心内科,心内科病区,active
H-A,U2,乙医生,physician,心内科,心内科病区,active
H-B,U1,丙医生,physician,骨科,骨科病区,active
H-B,U3,丁医生,physician,骨科,骨科病区,active
"""
# P1 is a patient of both hospitals (the same number at each); U1 treats P1 at A only
RELATIONS = """site_id,patient_id,user_id,department,ward,kind,start,end
H-A,P1,U1,心内科,心内科病区,admission,2026-09-01 08:00,2026-09-10 12:00
H-B,P2,U3,骨科,骨科病区,admission,2026-09-01 08:00,2026-09-10 12:00
"""


def _events(rows: list[tuple]) -> str:
    out = ["event_id,site_id,ts,user_id,patient_id,action,module"]
    out += [",".join(r) for r in rows]
    return "\n".join(out) + "\n"


# U1 opens P1 at A (its own admission: explained) and at B, an hour later (no relation at B)
EVENTS = [
    ("EA1", A, "2026-09-05 10:00:00", "U1", "P1", "view", "病历"),
    ("EB1", B, "2026-09-05 11:00:00", "U1", "P1", "view", "病历"),
    ("EB2", B, "2026-09-05 11:05:00", "U3", "P2", "view", "病历"),
    ("EA2", A, "2026-09-05 11:10:00", "U2", "P1", "view", "病历"),   # unit relation at A
]


def _config(folder: Path, *, site: str | None = None, extra: str = "",
            source_site: str | None = None) -> Path:
    (folder / "access_log.csv").write_text(_events(EVENTS), encoding="utf-8")
    (folder / "users.csv").write_text(USERS, encoding="utf-8")
    (folder / "care_relations.csv").write_text(RELATIONS, encoding="utf-8")
    text = f"""[site]
name = "区域平台"
{f'id = "{site}"' if site else ''}
[store]
url = "sqlite:///emraudit.db"
lake = "lake"
[sources.access_log]
path = "access_log.csv"
{f'site = "{source_site}"' if source_site else ''}
[sources.users]
path = "users.csv"
[sources.care_relations]
path = "care_relations.csv"
[reports]
dir = "reports"
lang = "zh"
{extra}
"""
    path = folder / "emraudit.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("region")
    conf = _config(folder)
    r = _run("scan", "--config", conf, "--since", "2026-09-05", "--until", "2026-09-06")
    assert r.exit_code == 0, r.output
    return conf


def _findings(conf: Path) -> list[dict]:
    r = _run("findings", "--config", conf, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.output.splitlines() if line.strip()]


def test_a_relation_at_one_site_does_not_explain_an_access_at_another(region):
    found = [f for f in _findings(region) if f["detector"] == "care.no_relationship"]
    events = {e for f in found for e in f["event_ids"]}
    # the access at B has no relation at B: a finding, of site B
    assert "EB1" in events
    assert {f["site_id"] for f in found if "EB1" in f["event_ids"]} == {B}
    # the same user and patient at A: explained by the admission at A (own and unit)
    assert "EA1" not in events and "EA2" not in events
    # and B's own relation still explains B's access
    assert "EB2" not in events


def test_one_site_explains_as_before(tmp_path):
    """Everything at one site: the B access is explained by the relation of the same
    numbers (the hospital's own), as it always was."""
    folder = tmp_path / "one"
    folder.mkdir()
    conf = _config(folder)
    for name in ("access_log.csv", "users.csv", "care_relations.csv"):
        p = folder / name
        p.write_text(p.read_text(encoding="utf-8").replace(B, A), encoding="utf-8")
    r = _run("scan", "--config", conf, "--since", "2026-09-05", "--until", "2026-09-06")
    assert r.exit_code == 0, r.output
    events = {e for f in _findings(conf) if f["detector"] == "care.no_relationship"
              for e in f["event_ids"]}
    assert "EB1" not in events


def test_default_site_when_no_column(tmp_path):
    """No site_id anywhere: rows are of [site] id ("default" when not set); a source's
    `site` names its rows' site."""
    for site, source_site, want in ((None, None, "default"), ("H9", None, "H9"),
                                    ("H9", "H-B", "H-B")):
        folder = tmp_path / f"{site}-{source_site}"
        folder.mkdir()
        conf = _config(folder, site=site, source_site=source_site)
        # U3 of 骨科 opens P1 of 心内科: unexplained wherever it happens
        rows = [r[:1] + r[2:] for r in EVENTS] + [("EX", "2026-09-05 11:20:00", "U3",
                                                   "P1", "view", "病历")]
        text = "\n".join(["event_id,ts,user_id,patient_id,action,module"]
                         + [",".join(r) for r in rows]) + "\n"
        (folder / "access_log.csv").write_text(text, encoding="utf-8")
        for name in ("users.csv", "care_relations.csv"):
            p = folder / name
            lines = p.read_text(encoding="utf-8").splitlines()
            p.write_text("\n".join(line.split(",", 1)[1] for line in lines) + "\n",
                         encoding="utf-8")
        r = _run("scan", "--config", conf, "--since", "2026-09-05", "--until", "2026-09-06")
        assert r.exit_code == 0, r.output
        from emraudit.config import load_config
        from emraudit.lake import Lake
        from emraudit.store import Store
        cfg = load_config(conf)
        ev = Lake(cfg.lake_dir, cfg.tz).read_events(Store(cfg.store_url).committed_runs())
        assert len(ev) == 5 and set(ev["site_id"].astype(str)) == {want}
        found = _findings(conf)
        assert found and {f["site_id"] for f in found} == {want}


@pytest.mark.parametrize("value, why", [("5", "expected a string"),
                                        ('""', "expected a site id"),
                                        ("true", "expected a string")])
def test_site_id_is_validated(tmp_path, value, why):
    conf = tmp_path / "emraudit.toml"
    conf.write_text(f'[site]\nid = {value}\n[sources.access_log]\npath = "a.csv"\n',
                    encoding="utf-8")
    r = CliRunner().invoke(main, ["findings", "--config", str(conf)])
    assert r.exit_code == 2
    assert "site.id" in r.output and why in r.output
    assert "Traceback" not in r.output


def test_source_site_on_a_shared_reference_table_is_refused(tmp_path):
    conf = tmp_path / "emraudit.toml"
    conf.write_text('[sources.access_log]\npath = "a.csv"\n'
                    '[sources.users_a]\ntable = "users"\npath = "a.csv"\nsite = "A"\n'
                    '[sources.users_b]\ntable = "users"\npath = "b.csv"\nsite = "B"\n',
                    encoding="utf-8")
    r = CliRunner().invoke(main, ["findings", "--config", str(conf)])
    assert r.exit_code == 2
    assert "sources.users_a.site" in r.output


def test_reference_keys_are_per_site(region):
    """Two hospitals' user U1 are two staff records: both kept."""
    from emraudit.lake import Lake
    from emraudit.store import Store
    from emraudit.config import load_config
    cfg = load_config(region)
    users = Lake(cfg.lake_dir, cfg.tz).read_snapshot("users",
                                                     Store(cfg.store_url).committed_runs())
    assert sorted(zip(users["site_id"], users["user_id"])) == [(A, "U1"), (A, "U2"),
                                                               (B, "U1"), (B, "U3")]


def _csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


@pytest.mark.parametrize("lang, head", [("zh", "机构"), ("en", "Site")])
def test_regional_report_matches_the_store(region, tmp_path, lang, head):
    from emraudit.config import load_config
    from emraudit.reports.sites import case_sites
    from emraudit.store import Store
    out = tmp_path / f"sites-{lang}.html"
    r = _run("report", "sites", "--config", region, "--lang", lang, "--out", out)
    assert r.exit_code == 0, r.output
    rows = _csv(out.with_suffix(".csv"))
    assert rows[0][0] == head
    got = {row[0]: row[1:] for row in rows[1:]}
    assert set(got) == {A, B, "default"} or set(got) == {A, B}
    cfg = load_config(region)
    store = Store(cfg.store_url)
    found = pd.DataFrame(_findings(region))
    by_case = case_sites(store, cfg.site.id)
    from emraudit.store import cases
    live = store.read_table(cases)
    live = live[~live["status"].isin(["suppressed", "retracted"])]
    for site, accesses in ((A, 2), (B, 2)):
        row = got[site]
        assert int(row[0]) == accesses
        assert int(row[2]) == int((found["site_id"] == site).sum())
        n_cases = int((live["case_id"].map(by_case) == site).sum())
        assert int(row[3]) == n_cases
        assert float(row[4]) == pytest.approx(round(10_000 * n_cases / accesses, 2))
        assert int(row[5]) == n_cases           # every case is open, none rectified yet
        assert int(row[6]) == 0                 # and none past its deadline today
    # explained share: A's two accesses explained, B's one of two (as the scan measured)
    assert float(got[A][1]) == 100.0 and float(got[B][1]) == 50.0
    # sorted by cases per 10k accesses: B (its unexplained access) first
    assert rows[1][0] == B
    html = out.read_text(encoding="utf-8")
    assert f'data-site="{B}"' in html and "<script" not in html.split("</head>")[0] \
        .replace("<script", "", 0)
    assert ("区域汇总" if lang == "zh" else "Regional summary") in html


def test_regional_report_counts_overdue_items(region, tmp_path):
    """A case opened long before today is past its deadline: overdue at its site."""
    import sqlalchemy as sa
    from emraudit.config import load_config
    from emraudit.reports.sites import case_sites
    from emraudit.store import Store, cases
    cfg = load_config(region)
    store = Store(cfg.store_url)
    b_case = case_sites(store, cfg.site.id)
    b_case = b_case.index[b_case == B][0]
    with store.begin() as c:
        old = c.execute(sa.select(cases.c.created).where(cases.c.case_id == b_case)).scalar()
        c.execute(cases.update().where(cases.c.case_id == b_case)
                  .values(created=pd.Timestamp("2020-01-01", tz="UTC").to_pydatetime()))
    try:
        out = tmp_path / "s.html"
        r = _run("report", "sites", "--config", region, "--out", out)
        assert r.exit_code == 0, r.output
        got = {row[0]: row[1:] for row in _csv(out.with_suffix(".csv"))[1:]}
        assert int(got[B][6]) == 1 and int(got[A][6]) == 0
    finally:
        with store.begin() as c:
            c.execute(cases.update().where(cases.c.case_id == b_case).values(created=old))


def test_cli_exit_codes_and_site_filter(region, tmp_path):
    r = CliRunner().invoke(main, ["report", "sites", "--config", str(region), "--from",
                                  "2026-09-01"])
    assert r.exit_code == 2 and "--to" in r.output
    r = _run("report", "sites", "--config", region, "--from", "2026-09-05", "--to",
             "2026-09-05", "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    r = _run("cases", "list", "--config", region, "--status", "all", "--format", "json",
             "--site", B)
    assert r.exit_code == 0, r.output
    b_cases = json.loads(r.output)
    assert b_cases and all(c["user_id"] in ("U1", "U3") for c in b_cases)
    r = _run("cases", "list", "--config", region, "--status", "all", "--format", "json",
             "--site", A)
    a_ids = {c["case_id"] for c in json.loads(r.output)}
    assert not a_ids & {c["case_id"] for c in b_cases}
    r = _run("cases", "list", "--config", region, "--site", "nowhere")
    assert r.exit_code == 0 and "no cases" in r.output


def test_roster_applies_within_its_site():
    """A duty shift at A puts the user on duty at A, not at B the same hour."""
    ts = pd.to_datetime(["2026-09-05 03:00", "2026-09-05 03:10"]).tz_localize(TZ)
    events = pd.DataFrame({"event_id": ["a", "b"], "ts": ts, "user_id": ["U1", "U1"],
                           "site_id": [A, B], "patient_id": ["P1", "P1"],
                           "action": ["view", "view"], "in_window": [True, True]})
    shifts = pd.DataFrame({"site_id": [A], "user_id": ["U1"],
                           "start": pd.to_datetime(["2026-09-05 00:00"]).tz_localize(TZ),
                           "end": pd.to_datetime(["2026-09-05 08:00"]).tz_localize(TZ),
                           "kind": ["duty"], "ward": ["W"]})
    ctx = Context(events=events, window_start=ts[0].floor("D"),
                  window_end=ts[0].floor("D") + pd.Timedelta(days=1), tz=TZ, shifts=shifts)
    on, basis = duty_mask(ctx)
    assert bool(on.iloc[0]) and basis.iloc[0] == "roster"
    assert not (bool(on.iloc[1]) and basis.iloc[1] == "roster")
    # one site: the same shift covers both (as before sites)
    one = Context(events=events.assign(site_id=A), window_start=ctx.window_start,
                  window_end=ctx.window_end, tz=TZ, shifts=shifts)
    on, basis = duty_mask(one)
    assert on.all() and (basis == "roster").all()


def test_his_profile_maps_a_site_column(tmp_path):
    """his-zh maps 机构代码 (a regional platform's export) onto site_id."""
    (tmp_path / "log.csv").write_bytes(
        "操作时间,操作人工号,患者ID,操作类型,机构代码\n"
        "2026-09-05 10:00:00,U1,P1,查看,H-A\n"
        "2026-09-05 10:01:00,U1,P1,查看,\n".encode("gb18030"))
    conf = tmp_path / "emraudit.toml"
    conf.write_text('[site]\nid = "H-Z"\n[sources.access_log]\npath = "log.csv"\n'
                    'profile = "his-zh"\n', encoding="utf-8")
    r = _run("ingest", "--config", conf)
    assert r.exit_code == 0, r.output
    from emraudit.config import load_config
    from emraudit.lake import Lake
    from emraudit.store import Store
    cfg = load_config(conf)
    ev = Lake(cfg.lake_dir, cfg.tz).read_events(Store(cfg.store_url).committed_runs())
    assert sorted(ev["site_id"].astype(str)) == ["H-A", "H-Z"]   # blank: the default site
