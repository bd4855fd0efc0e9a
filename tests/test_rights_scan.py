"""The rights detectors in the nightly scan: state findings kept stable from night to night,
usage kept in the store, and a hospital without a grants table told once."""

from __future__ import annotations

import json

import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store, case_history, rights_usage, scans
from test_report_rights import EVENTS, _site


def _scan(cfg, *extra):
    r = CliRunner().invoke(main, ["scan", "--config", str(cfg), *extra])
    assert r.exit_code == 0, r.output
    return r.output


def _rights(store):
    f = store.read_findings()
    return f[f["detector"].str.startswith("rights.")].set_index("finding_id")


def test_state_findings_stay_put_and_usage_is_kept(tmp_path):
    cfg = _site(tmp_path)
    _scan(cfg)
    store = Store(load_config(cfg).store_url)
    first = _rights(store)
    assert {"rights.unapproved", "rights.after_leaving", "rights.outside_grant",
            "rights.beyond_role"} <= set(first["detector"])
    # a role's finding belongs to no staff member: its case still opens, beside the others
    role = first[first["user_id"] == "role:进修组"].iloc[0]
    assert role["case_id"] and role["start"].startswith("2026-04-01")
    self_granted = first[first["detector"] == "rights.unapproved"].iloc[0]
    assert self_granted["event_ids"] == [] and self_granted["start"].startswith("2026-02-01")
    with store.engine.connect() as c:
        used = c.execute(sa.select(sa.func.count()).select_from(rights_usage)).scalar()
        hist = c.execute(sa.select(sa.func.count()).select_from(case_history)).scalar()
    assert used > 0
    # the next night: one new access; the grants have not changed
    (tmp_path / "access_log.csv").write_text(
        EVENTS + "e4,2026-09-11 09:00:00,N2,P00005678,view\n", encoding="utf-8")
    out = _scan(cfg)
    assert "days scanned: 2026-09-11 .. 2026-09-11" in out
    second = _rights(store)
    state = first[first["event_ids"].map(len) == 0]
    assert set(state.index) <= set(second.index)
    assert (second.loc[state.index, "case_id"] == state["case_id"]).all()
    assert (second.loc[state.index, "start"] == state["start"]).all()
    assert second["retracted_scan"].isna().all()
    with store.engine.connect() as c:
        touched = c.execute(sa.select(case_history.c.case_id).where(
            case_history.c.id > hist)).scalars().all()
    assert not set(touched) & set(state["case_id"])          # no history written for them


def test_a_hospital_without_grants_is_told_once(tmp_path):
    cfg = _site(tmp_path)
    text = cfg.read_text(encoding="utf-8")
    for t in ("grants", "roles"):
        text = text.replace(f'[sources.{t}]\nconnector = "csv"\npath = "{t}.csv"\n\n', "")
    cfg.write_text(text, encoding="utf-8")
    out = _scan(cfg)
    lines = [x for x in out.splitlines() if "needs table grants" in x]
    assert lines == ["skipped, needs table grants (not loaded): rights.after_leaving, "
                     "rights.beyond_role, rights.outside_grant, rights.unapproved, "
                     "rights.unused"]
    assert any(x.startswith("rights.generic_account") and " ran " in x
               for x in out.splitlines())
    store = Store(load_config(cfg).store_url)
    assert _rights(store).empty
    summary = json.loads(store.read_table(scans)["summary"].iloc[-1])
    assert summary["detectors"]["rights.unused"]["status"] == "skipped"
