"""A tiny hospital scanned once by the real pipeline, for the review app's tests.

Three staff, a handful of patients, one care relation and a few days of accesses: a nurse
who opens unrelated patients' records (one of them a VIP) late at night, a physician who
works normally on their own patient, a clerk who prints records in bulk. `emraudit scan`
turns them into the open cases the queue and case pages show, whatever the case model of
the day is. Built once per test process and copied for each test (a scan takes seconds):
import the fixtures `web_master` and `web_site` into a test module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

USERS = """user_id,name,role,department,ward,status
U001,赵护士,nurse,内科,内科一病区,active
U002,钱医生,physician,外科,外科病区,active
U003,孙文员,medical_records,病案室,,active
"""
PATIENTS = """patient_id,name,sex,vip,sensitive
P0000001,张三明,男,1,0
P0000002,李小红,女,0,0
P0000003,王大力,男,0,1
P0000004,刘芳,女,0,0
P0000005,陈晨,男,0,0
P0000006,杨洋,女,0,0
"""
RELATIONS = """patient_id,user_id,department,ward,kind,start,end
P0000006,U002,外科,外科病区,admission,2026-09-01 08:00:00,
P0000005,U002,外科,外科病区,admission,2026-09-01 08:00:00,
"""


def _events() -> str:
    rows = ["event_id,ts,user_id,patient_id,action,module,workstation,ip,record_count"]
    n = 0

    def add(ts, user, patient, action="view", module="病历", ws="WS-01", count=1):
        nonlocal n
        n += 1
        rows.append(f"E{n:05d},{ts},{user},{patient},{action},{module},{ws},10.0.0.{n % 250},"
                    f"{count}")

    for day in range(1, 8):
        d = f"2026-09-{day:02d}"
        for h in (9, 10, 11, 14, 15, 16):
            add(f"{d} {h:02d}:10:00", "U002", "P0000006", ws="WS-02")
            add(f"{d} {h:02d}:20:00", "U002", "P0000005", ws="WS-02")
            add(f"{d} {h:02d}:30:00", "U001", "P0000006", ws="WS-01")
    # the nurse, late at night on 09-08, opens unrelated records, a VIP among them
    for i, p in enumerate(["P0000001", "P0000002", "P0000003", "P0000004", "P0000001"]):
        add(f"2026-09-08 23:{10 + i * 5:02d}:00", "U001", p)
    # and again on 09-09
    for i, p in enumerate(["P0000002", "P0000003", "P0000001"]):
        add(f"2026-09-09 22:{10 + i * 5:02d}:00", "U001", p)
    # the clerk prints and exports many records at night on 09-09
    for i in range(12):
        add(f"2026-09-09 02:{i * 3:02d}:00", "U003", f"P000000{1 + i % 5}", action="print",
            module="病案首页", ws="WS-09", count=20)
    return "\n".join(rows) + "\n"


def write_site(folder: Path, store_url: str | None = None) -> Path:
    """The hospital's CSVs and emraudit.toml in `folder`; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.csv").write_text(USERS, encoding="utf-8")
    (folder / "patients.csv").write_text(PATIENTS, encoding="utf-8")
    (folder / "care_relations.csv").write_text(RELATIONS, encoding="utf-8")
    (folder / "access_log.csv").write_text(_events(), encoding="utf-8")
    store = f'url = "{store_url}"\n' if store_url else ""
    cfg = folder / "emraudit.toml"
    cfg.write_text(
        '[site]\nname = "测试医院"\ntimezone = "Asia/Shanghai"\n'
        f'[store]\n{store}lake = "lake"\n'
        + "".join(f'[sources.{t}]\npath = "{t}.csv"\n'
                  for t in ("access_log", "users", "patients", "care_relations"))
        + '[reports]\ndir = "reports"\nlang = "zh"\nmask_patients = true\n', encoding="utf-8")
    return cfg


def scan(cfg: Path) -> None:
    from click.testing import CliRunner

    from emraudit.cli import main
    res = CliRunner().invoke(main, ["scan", "--config", str(cfg)])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback
        raise AssertionError("".join(traceback.format_exception(*res.exc_info)))
    assert res.exit_code == 0, (res.exit_code, res.output)


@pytest.fixture(scope="session")
def web_master(tmp_path_factory) -> Path:
    """The tiny hospital, scanned once per test process (import this fixture)."""
    folder = tmp_path_factory.mktemp("web-master")
    scan(write_site(folder))
    return folder


@pytest.fixture
def cheap_hashes(monkeypatch):
    """argon2 with small parameters: the real ones take half a second a hash by design."""
    from argon2 import PasswordHasher

    from emraudit.web import accounts
    monkeypatch.setattr(accounts, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def web_site(web_master, tmp_path, cheap_hashes) -> Path:
    """A private copy of the scanned hospital with an account of every role; its config."""
    from emraudit.config import load_config
    from emraudit.store import Store
    from web_helpers import add_accounts

    dest = tmp_path / "site"
    shutil.copytree(web_master, dest)
    cfg = dest / "emraudit.toml"
    add_accounts(Store(load_config(cfg).store_url))
    return cfg
