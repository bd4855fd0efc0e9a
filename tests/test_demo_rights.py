"""The sample hospital's access rights: classes, roles and grants that validate, planted
grant problems that are what their truth rows say, and every legitimate classed access
covered by a role or a grant (so rights.outside_grant stays quiet on legitimate work)."""

from __future__ import annotations

import pandas as pd
import pytest

from emraudit.demo.generate import generate
from emraudit.model import validate

TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def hosp(tmp_path_factory):
    out = tmp_path_factory.mktemp("rights")
    generate(out, seed=5, days=10, size="small", formats=("canonical", "his-zh"))

    def read(name):
        return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False) \
            .replace("", None)
    return out, {n: read(n) for n in ("grants", "roles", "users", "patients", "truth")}


def _valid(table, df):
    v = validate(table, df, TZ, table)
    assert v.quarantine.empty, v.quarantine["reason"].tolist()[:3]
    return v.accepted


def test_rights_tables_validate_and_classes_follow_the_departments(hosp):
    _, t = hosp
    g, r = _valid("grants", t["grants"]), _valid("roles", t["roles"])
    p = _valid("patients", t["patients"])
    assert set(p["sensitive_class"].dropna()) <= {"psychiatric", "infectious",
                                                  "reproductive",
                                                  "psychiatric;infectious",
                                                  "infectious;reproductive",
                                                  "psychiatric;reproductive"}
    assert p["sensitive_class"].notna().sum() > 20
    assert {"physician", "nurse", "精神科医护"} <= set(r["role"])
    assert g["grant_id"].is_unique and (g["granted_by"] != g["user_id"]).sum() >= len(g) - 1
    # approvers never approve their own grants, except where planted
    assert ((g["approved_by"] == g["user_id"]) & g["user_id"].notna()).sum() == 0


def test_planted_grants_are_what_the_truth_says(hosp):
    _, t = hosp
    g = _valid("grants", t["grants"]).set_index("grant_id")
    users = t["users"].set_index("user_id")
    refs = t["truth"].dropna(subset=["ref"])
    kinds = dict(zip(refs["case_key"], refs["ref"]))
    gid = {k.split(":", 1)[1]: v.split(":", 1)[1] for k, v in kinds.items()
           if v.startswith("grants:")}
    self_ = g.loc[gid[next(k for k in gid if k.endswith(":self"))]]
    assert self_["granted_by"] == self_["user_id"] and pd.isna(self_["approved_by"])
    gone = g.loc[gid[next(k for k in gid if k.endswith(":departed"))]]
    assert users.loc[gone["user_id"], "status"] == "terminated" and pd.isna(gone["revoked_at"])
    moved = g.loc[gid[next(k for k in gid if k.endswith(":transferred"))]]
    assert moved["department"] != users.loc[moved["user_id"], "department"]
    roles = _valid("roles", t["roles"]).set_index("role")
    assert pd.isna(roles.loc["进修生组", "approved_by"])
    assert roles.loc["进修生组", "record_class"] == "psychiatric;infectious"


def test_his_grants_export_reads_through_its_profile(hosp):
    out, t = hosp
    from emraudit.config import load_config
    from emraudit.connectors import open_connector
    assert (out / "grants_his.csv").read_bytes().decode("gb18030").startswith(
        "授权编号,用户工号,用户姓名,角色,权限")
    cfg = out / "his.toml"
    cfg.write_text('[sources.grants]\nconnector = "csv"\npath = "grants_his.csv"\n'
                   'profile = "his-grants-zh"\n', encoding="utf-8")
    frame = pd.concat([b.frame for b in open_connector("grants", load_config(cfg))
                       .batches(None)], ignore_index=True)
    his = _valid("grants", frame).set_index("grant_id")
    canon = _valid("grants", t["grants"]).set_index("grant_id")
    cols = ["user_id", "role", "permission", "record_class", "scope", "granted_by",
            "approved_by"]
    assert his[cols].fillna("").equals(canon[cols].fillna(""))
    # the export drops the seconds: the same minute
    assert (his["granted_at"].dt.floor("min") == canon["granted_at"].dt.floor("min")).all()
