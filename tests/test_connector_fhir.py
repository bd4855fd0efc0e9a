"""The fhir connector on every published AuditEvent example we hold: the FHIR R5 specification
examples and the IHE BALP R4 examples (tests/fixtures/connectors/fhir, see SOURCES.md), read
as single files, as one Bundle and as NDJSON."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from emraudit import model
from emraudit.config import load_config
from emraudit.connectors import open_connector

FIXTURES = Path(__file__).parent / "fixtures" / "connectors" / "fhir"
EXAMPLES = sorted(FIXTURES.glob("*.json"))

# what each example must become: (action, user_id, patient_id) or the quarantine reason
EXPECTED = {
    "AuditEvent-example-advanced-create": ("create", "Betty Jones", "example"),
    "AuditEvent-example-breakglass-start": ("break_glass", "f001", "example"),
    "AuditEvent-example-consent-permit-authz": ("query", "Org1", "example"),
    "AuditEvent-example-disclosure": ("export", "SomeIdiot@nowhere", "example"),
    "AuditEvent-example-error": "no patient for a patient action 'create'",
    "AuditEvent-example-login": ("login", "95", None),
    "AuditEvent-example-logout": ("logout", "95", None),
    "AuditEvent-example-media": ("export", "95", "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO"),
    "AuditEvent-example-pixQuery": ("query", "95", "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO"),
    "AuditEvent-example-rest-create-traceID": ("create", "95", "example"),
    "AuditEvent-example-rest": ("view", "95", "example"),
    "AuditEvent-example-search": "no patient for a patient action 'query'",
    "AuditEvent-example": "missing required 'user_id'",
    "BALP-ex-auditBasicCreateServer": ("create", "John Smith", "ex-patient"),
    "BALP-ex-auditBasicDeleteServer": ("delete", "John Smith", "ex-patient"),
    "BALP-ex-auditBasicQueryGetServer": ("query", "John Smith", "ex-patient"),
    "BALP-ex-auditBasicReadServer": ("view", "John Smith", "ex-patient"),
    "BALP-ex-auditBasicUpdate1": ("update", "Betty Jones", "ex-patient"),
}


def config(tmp_path, path: str, extra: str = ""):
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.access_log]\nconnector = "fhir"\npath = "{path}"\n{extra}\n', encoding="utf-8")
    return load_config(tmp_path / "emraudit.toml")


def ingest(cfg):
    batches = list(open_connector("access_log", cfg).batches(None))
    for b in batches:
        assert b.read == len(b.frame) + len(b.quarantine)
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    parse_q = pd.concat([b.quarantine for b in batches], ignore_index=True)
    v = model.validate("access_log", frame, cfg.tz, "access_log")
    return v, parse_q


def check(v):
    acc = v.accepted.set_index("event_id")
    q = dict(zip(v.quarantine["raw"].map(lambda r: json.loads(r)["event_id"]),
                 v.quarantine["reason"]))
    for name, want in EXPECTED.items():
        ev = "AuditEvent/" + json.loads((FIXTURES / f"{name}.json").read_text())["id"]
        if isinstance(want, str):
            assert q.get(ev) == want, (name, q.get(ev))
        else:
            assert ev in acc.index, (name, q.get(ev))
            row = acc.loc[ev]
            got = (row["action"], row["user_id"],
                   None if pd.isna(row["patient_id"]) else row["patient_id"])
            assert got == want, name
    assert len(acc) + len(q) == len(EXPECTED)


def test_every_example_is_covered():
    assert {p.stem for p in EXAMPLES} == set(EXPECTED)


def test_single_resource_files_in_a_folder(tmp_path):
    cfg = config(tmp_path, str(FIXTURES))
    v, parse_q = ingest(cfg)
    assert parse_q.empty
    check(v)


def test_one_bundle(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:x:{i}", "resource": json.loads(p.read_text())}
                        for i, p in enumerate(EXAMPLES)]
              + [{"resource": {"resourceType": "Patient", "id": "p1"}}]}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle, indent=2), encoding="utf-8")
    v, parse_q = ingest(config(tmp_path, "bundle.json"))
    check(v)
    assert parse_q["reason"].tolist() == ["not an AuditEvent (Patient)"]
    assert parse_q["source_ref"].tolist() == ["bundle.json:Patient/p1"]


def test_ndjson_with_a_broken_line(tmp_path):
    lines = [json.dumps(json.loads(p.read_text())) for p in EXAMPLES]
    lines.insert(3, '{"resourceType": "AuditEvent", "id": ')
    (tmp_path / "audit.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    v, parse_q = ingest(config(tmp_path, "audit.ndjson", "batch_rows = 5"))
    check(v)
    assert parse_q["source_ref"].tolist() == ["audit.ndjson:4"]
    assert parse_q["reason"][0].startswith("not valid JSON")


def test_fields_beyond_who_and_whom():
    from emraudit.connectors.fhir import flatten
    from emraudit.connectors.profile import load_profile
    known = set(load_profile("fhir-auditevent").rules("access_log").values["action"])
    read = flatten(json.loads((FIXTURES / "BALP-ex-auditBasicReadServer.json").read_text()), known)
    assert read["ip"] == "2001:0db8:85a3:0000:0000:8a2e:0370:7334"   # the client, not the server URL
    assert read["module"] == "List" and read["facility"] == "server.example.com"
    assert read["action_raw"] == "R:read"
    bg = flatten(json.loads((FIXTURES / "AuditEvent-example-breakglass-start.json").read_text()),
                 known)
    assert bg["reason"] == "ETREAT"
    err = flatten(json.loads((FIXTURES / "AuditEvent-example-error.json").read_text()), known)
    assert err["outcome"] == "error"
    # a second human agent is the acting user
    ev = json.loads((FIXTURES / "BALP-ex-auditBasicReadServer.json").read_text())
    ev["agent"].append({"type": {"coding": [{"code": "humanuser"}]},
                        "who": {"reference": "Practitioner/actual-doc"}, "requestor": False})
    assert flatten(ev, known)["acting_user_id"] == "actual-doc"


def test_error_outcome_becomes_failure(tmp_path):
    (tmp_path / "e.json").write_text((FIXTURES / "AuditEvent-example-login.json").read_text()
                                     .replace('"code": "0"', '"code": "8"'), encoding="utf-8")
    v, _ = ingest(config(tmp_path, "e.json"))
    assert v.accepted["action"].tolist() == ["login_failed"]
    assert v.accepted["outcome"].tolist() == ["failure"]


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]"])
def test_broken_files_never_crash(tmp_path, text):
    (tmp_path / "x.json").write_text(text, encoding="utf-8")
    v, parse_q = ingest(config(tmp_path, "x.json"))
    assert len(v.accepted) == 0
    assert len(parse_q) == (0 if text == "" else 1 if text.startswith("{") else 2)


def test_cli_ingest_of_the_published_examples(tmp_path):
    from click.testing import CliRunner

    from emraudit.cli import main
    (tmp_path / "emraudit.toml").write_text(
        f'[sources.fhir_audit]\ntable = "access_log"\nconnector = "fhir"\npath = "{FIXTURES}"\n',
        encoding="utf-8")
    cfgp = str(tmp_path / "emraudit.toml")
    r = CliRunner().invoke(main, ["ingest", "--config", cfgp])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("fhir_audit"))
    assert line.split()[2:6] == ["18", "15", "3", "0"]       # read accepted quarantined dup
    r = CliRunner().invoke(main, ["quarantine", "--config", cfgp])
    assert "AuditEvent-example-search.json" in r.output and "no patient" in r.output


def test_emraudit_action_codes_and_entity_details():
    """A feeder may tag the canonical action (print has no FHIR code) and give the record
    count, session and module in the entity; the R4 entity.name names the module."""
    from emraudit.connectors.fhir import flatten
    from emraudit.connectors.profile import load_profile
    known = set(load_profile("fhir-auditevent").rules("access_log").values["action"])
    ev = json.loads((FIXTURES / "BALP-ex-auditBasicReadServer.json").read_text())
    ev["subtype"].append({"system": "urn:emraudit:action", "code": "print"})
    ev["entity"][1]["name"] = "病案首页"
    ev["entity"][1]["detail"] = [{"type": "record_count", "valueString": "12"},
                                 {"type": "session_id", "valueString": "S9"}]
    row = flatten(ev, known)
    assert row["action"] == "print" and row["action_raw"] == "R:print"
    assert row["module"] == "病案首页"
    assert row["record_count"] == "12" and row["session_id"] == "S9"
