"""The his-grants-zh profile: a HIS permission export (GB18030, Chinese headers) read through
the csv connector onto the canonical grants and roles tables."""

from __future__ import annotations

import pandas as pd

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector
from emraudit.connectors.profile import load_profile

TZ = "Asia/Shanghai"
GRANTS = ("授权编号,用户工号,用户姓名,角色,权限,病历类别,授权范围,授权科室,授权时间,授权人,审批人,"
          "撤销时间,有效期至,授权原因\n"
          "A1,0101,张三,,查阅;打印,精神,本科室,精神科,2026-01-05 09:30,0900,0801,,,会诊\n"
          "A2,,,主治医师,病历导出权限,,全院,,2026-01-06 10:00,0900,NULL,,9999-12-31,\n"
          "A3,0102,李四,精神科医护组,,,,精神科,2026-01-07 11:00,0102,无,2026-03-01 08:00,,\n"
          "A4,0103,王五,,体温单录入,HIV,,,2026-01-08,0900,0801,,,\n"
          "A5,0104,赵六,,查阅,,,,,0900,0801,,,\n")


def _config(tmp_path, name: str, text: str, table: str) -> object:
    (tmp_path / name).write_bytes(text.encode("gb18030"))
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text(f'[sources.{table}]\nconnector = "csv"\npath = "{name}"\n'
                   f'profile = "his-grants-zh"\n', encoding="utf-8")
    return load_config(cfg)


def _read(cfg, table):
    batches = list(open_connector(table, cfg).batches(None))
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    return model.validate(table, frame, TZ, table)


def test_grants_export_maps_onto_canonical_grants(tmp_path):
    v = _read(_config(tmp_path, "grants_his.csv", GRANTS, "grants"), "grants")
    # the grant without 授权时间 cannot be audited: quarantined with its line
    assert v.quarantine["reason"].tolist() == ["missing required 'granted_at'"]
    assert v.quarantine["source_ref"].tolist() == ["grants_his.csv:6"]
    a = v.accepted.set_index("grant_id")
    assert a.loc["A1", "permission"] == "read;print"
    assert a.loc["A1", "record_class"] == "psychiatric" and a.loc["A1", "scope"] == "own"
    assert str(a.loc["A1", "granted_at"]) == "2026-01-05 09:30:00+08:00"
    assert a.loc["A2", "role"] == "physician" and a.loc["A2", "permission"] == "export"
    assert pd.isna(a.loc["A2", "approved_by"]) and pd.isna(a.loc["A2", "expires_at"])
    assert a.loc["A3", "role"] == "精神科医护组" and pd.isna(a.loc["A3", "permission"])
    assert pd.isna(a.loc["A3", "approved_by"]) and a.loc["A3", "granted_by"] == "0102"
    assert a.loc["A4", "permission"] == "体温单录入"             # kept as written, not guessed
    assert a.loc["A4", "record_class"] == "infectious"
    assert a.loc["A1", "用户姓名"] == "张三"                      # extra columns kept


def test_roles_export_and_provenance(tmp_path):
    text = ("角色名称,权限,病历类别,授权范围,审批人,说明\n"
            "医师,查阅;书写;打印,,本科室,0801,岗位基本权限\n"
            "精神科医护组,查阅,精神,本科室,,精神科\n")
    v = _read(_config(tmp_path, "roles_his.csv", text, "roles"), "roles")
    assert v.quarantine.empty
    assert v.accepted["role"].tolist() == ["physician", "精神科医护组"]
    assert v.accepted["permissions"].tolist() == ["read;write;print", "read"]
    prov = load_profile("his-grants-zh").provenance("grants")
    assert prov["granted_at"].startswith("his-grants-zh: column '授权时间'")
