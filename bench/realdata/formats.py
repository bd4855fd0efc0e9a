"""The other real formats in the same run: the FHIR AuditEvent examples (tests/fixtures) and
an OpenEMR `log` table (the columns of openemr-log-notes.md) in SQLite, read by the sql
connector with the `openemr` profile. The OpenEMR table carries the converted MIMIC-III
accesses (and the planted ones) in OpenEMR's own vocabulary, a login per user-day and some
rows no access detector reads (security administration, a failed login), so that layout is
scanned at the size of a real ICU log and scored against the same truth."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from bench.realdata.site import scan, write_site

REPO = Path(__file__).resolve().parents[2]
FHIR = REPO / "tests" / "fixtures" / "connectors" / "fhir"
EVENT_OF_ACTION = {"update": "patient-record-update", "view": "view", "query": "query",
                   "print": "print", "export": "print", "create": "patient-record-insert"}
# What OpenEMR (5.0.2 and later) writes in `log.category` for a write, by the table its SQL
# names (EventAuditLogger::eventCategoryFinder): form_vitals -> Vitals, prescriptions ->
# Medication, procedure_order -> Lab Order, any other form_* or forms -> Encounter Form. Each
# MIMIC charting source goes to the OpenEMR table most like it; intake/output, procedures and
# other charting have no table of their own there and land in an encounter form.
CATEGORY_OF_MODULE = {"flowsheet": "Vitals", "medication": "Medication", "orders": "Lab Order",
                      "intake/output": "Encounter Form", "procedures": "Encounter Form"}
TABLE_OF_CATEGORY = {"Vitals": "form_vitals", "Medication": "prescriptions",
                     "Lab Order": "procedure_order", "Encounter Form": "forms"}


def fhir(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "emraudit.toml"
    cfg.write_text(f'[site]\ntimezone = "UTC"\n[reports]\ndir = "reports"\n'
                   f'[sources.access_log]\nconnector = "fhir"\npath = "{FHIR}/*.json"\n'
                   'profile = "fhir-auditevent"\n', encoding="utf-8")
    return scan(cfg)


def openemr_log(tables: dict) -> tuple[pd.DataFrame, pd.Series]:
    """The access log as OpenEMR `log` rows, and the event_id each row stands for."""
    acc = tables["access_log"].sort_values(["ts", "event_id"], kind="stable")
    rows = pd.DataFrame({"date": acc["ts"].dt.floor("s"),
                         "event": acc["action"].map(EVENT_OF_ACTION).fillna("view"),
                         "user": acc["user_id"], "patient_id": acc["patient_id"].astype("int64"),
                         "success": 1, "src": acc["event_id"]})
    # application events are their own category; SQL-audited writes name the kind of record
    rows["category"] = rows["event"].where(
        ~rows["event"].str.startswith("patient-record-"),
        acc["module"].map(CATEGORY_OF_MODULE).fillna("Encounter Form").to_numpy())
    table = rows["category"].map(TABLE_OF_CATEGORY)
    insert = rows["event"].str.endswith("-insert")
    sql = ("insert into " + table + " (pid, date) values (?, ?)").where(
        insert, "update " + table + " set date = ? where pid = ?")
    rows["comments"] = sql.where(table.notna(), "").map(_b64)
    first = acc.assign(day=acc["ts"].dt.normalize()).drop_duplicates(["user_id", "day"])
    logins = pd.DataFrame({"date": (first["ts"] - pd.Timedelta(minutes=1)).dt.floor("s"),
                           "event": "login", "category": "login", "user": first["user_id"],
                           "patient_id": 0, "success": 1, "src": ""})
    admin = pd.DataFrame({"date": [acc["ts"].min().floor("s")] * 2,
                          "event": ["security-administration-update", "login"],
                          "category": ["Security", "login"],
                          "user": ["admin", "admin"], "patient_id": [0, 0],
                          "success": [1, 0], "src": ["", ""]})
    log = pd.concat([rows, logins, admin], ignore_index=True).sort_values(
        ["date", "src"], kind="stable").reset_index(drop=True)
    log.insert(0, "id", range(1, len(log) + 1))
    log["comments"] = log["comments"].fillna("")
    log["groupname"], log["log_from"] = "Default", "open-emr"
    return log.drop(columns="src"), log["src"]


def _b64(text: str) -> str:
    """`log.comments` as OpenEMR stores it when audit-log encryption is off: base64."""
    return base64.b64encode(text.encode()).decode() if text else ""


def openemr(out: Path, tables: dict) -> tuple[dict, dict[str, str]]:
    """Scan the OpenEMR layout; returns the scan and {openemr event id: bench event id}."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "openemr.db"
    db.unlink(missing_ok=True)
    log, src = openemr_log(tables)
    eng = sa.create_engine(f"sqlite:///{db}")
    md = sa.MetaData()
    table = sa.Table("log", md, sa.Column("id", sa.BigInteger, primary_key=True),
                     sa.Column("date", sa.DateTime), sa.Column("event", sa.String(255)),
                     sa.Column("category", sa.String(255)), sa.Column("user", sa.String(255)),
                     sa.Column("groupname", sa.String(255)), sa.Column("comments", sa.Text),
                     sa.Column("user_notes", sa.Text), sa.Column("patient_id", sa.BigInteger),
                     sa.Column("success", sa.SmallInteger), sa.Column("checksum", sa.Text),
                     sa.Column("crt_user", sa.String(255)), sa.Column("log_from", sa.String(20)),
                     sa.Column("menu_item_id", sa.Integer), sa.Column("ccda_doc_id", sa.Integer))
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(table.insert(), log.to_dict("records"))
    eng.dispose()
    ref = {k: v for k, v in tables.items() if k != "access_log"}
    cfg = write_site(out, ref, "OpenEMR layout of the MIMIC-III demo",
                     f'\n[sources.access_log]\nconnector = "sql"\nurl = "sqlite:///{db}"\n'
                     'sql_table = "log"\nprofile = "openemr"\n')
    ids = {f"openemr:log:{i}": s for i, s in zip(log["id"], src) if s}
    return scan(cfg), ids
