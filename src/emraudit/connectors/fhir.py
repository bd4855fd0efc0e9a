"""HL7 FHIR AuditEvent (R4 and R5): a Bundle, a single resource, a JSON array, or NDJSON.

Each AuditEvent is walked once (nested agents and entities make per-resource code the clear
way; NDJSON is still read in bounded blocks) and flattened to canonical columns:

- `user_id`: the agent with `requestor = true` (a human one first): `who.identifier.value`,
  else the id of `who.reference`, else `altId`, else `who.display`
- `acting_user_id`: another human agent (not a destination system or medium)
- `patient_id`: R5 `patient`, else the entity whose `what` references a Patient, else the
  entity with object-role 1 (Patient) by its identifier
- `action`: the first of the event's codes that the profile's action map knows, tried in this
  order: purpose of use (ETREAT, BTG), R4 `subtype` / R5 `code`, R4 `type` / R5 `category`,
  then the action letter C R U D E; `action_raw` keeps the letter and the code
- `ts` ← `recorded` (else `occurred[x]`/`period.start`), `outcome` ← R4 `outcome` / R5
  `outcome.code`, `ip`/`workstation` ← agent network addresses (requestor first; server URLs
  skipped), `reason` ← purposeOfEvent / authorization / purposeOfUse codes, `module` ← the
  resource type of the entity read (entity type 2), `encounter_id`, `facility` ← source.site

The fhir-auditevent profile maps the codes; validation then quarantines events without a
user, or without a patient where the action needs one, with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from emraudit.connectors.filebase import STRING, LineFileConnector, empty_frame
from emraudit.connectors.files import SAMPLE_BYTES, Block, detect_encoding, normalize_encoding
from emraudit.model import SOURCE_REF, TABLES

HUMAN_REFS = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
HUMAN_TYPES = {"humanuser", "ircp", "aut", "inf", "prov", "cst", "atnd", "cas", "enter",
               "verf", "wit", "pprf", "sprf"}
DESTINATION_TYPES = {"110152", "110154"}
LOCAL_ACTION_SYSTEM = "urn:emraudit:action"
DETAIL_COLUMNS = ("record_count", "session_id", "reason", "module")   # entity.detail types
_IP = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]+)$")


def _codes(x) -> list[str]:
    """Codes of a Coding, a CodeableConcept, or a list of either."""
    if x is None:
        return []
    if isinstance(x, list):
        out = []
        for item in x:
            out += _codes(item)
        return out
    if not isinstance(x, dict):
        return [str(x)]
    out = [str(x["code"])] if x.get("code") is not None else []
    for c in x.get("coding") or []:
        if isinstance(c, dict) and c.get("code") is not None:
            out.append(str(c["code"]))
    if isinstance(x.get("concept"), dict):      # R5 CodeableReference
        out += _codes(x["concept"])
    return out


def _local_actions(*xs) -> list[str]:
    """Codes in emraudit's own code system (`urn:emraudit:action`): a feeder that knows the
    canonical action (print, sign, copy …, which FHIR has no code for) may tag it so."""
    out = []
    for x in xs:
        items = x if isinstance(x, list) else [x]
        for item in items:
            if not isinstance(item, dict):
                continue
            for c in [item] + list(item.get("coding") or []):
                if isinstance(c, dict) and c.get("system") == LOCAL_ACTION_SYSTEM and c.get("code"):
                    out.append(str(c["code"]))
    return out


def _ref_id(ref) -> str | None:
    """'Patient/example/_history/1' → 'example'; contained '#x' → None."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return None
    ref = re.sub(r"/_history/[^/]+$", "", ref)
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        return ref
    return ref.rstrip("/").rsplit("/", 1)[-1] or None


def _ref_type(ref) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or "/" not in ref:
        return None
    parts = re.sub(r"/_history/[^/]+$", "", ref).split("/")
    return parts[-2] if len(parts) >= 2 else None


def _who_id(agent: dict) -> str | None:
    who = agent.get("who") or agent.get("reference") or {}
    ident = who.get("identifier") if isinstance(who, dict) else None
    if isinstance(ident, dict) and ident.get("value"):
        return str(ident["value"])
    rid = _ref_id(who)
    if rid:
        return rid
    if agent.get("altId"):
        return str(agent["altId"])
    for ext in agent.get("extension") or []:     # R5 AlternativeUserID extension
        if "AlternativeUserID" in str(ext.get("url", "")) and agent.get("requestor"):
            v = (ext.get("valueIdentifier") or {}).get("value")
            if v:
                return str(v)
    if isinstance(who, dict) and who.get("display"):
        return str(who["display"])
    return str(agent["name"]) if agent.get("name") else None


def _agent_types(agent: dict) -> set[str]:
    return {c.lower() for c in _codes(agent.get("type")) + _codes(agent.get("role"))}


def _is_human(agent: dict) -> bool:
    who = agent.get("who") or {}
    if _ref_type(who) in HUMAN_REFS:
        return True
    # a person by participation type; devices, applications and media are not
    return bool(_agent_types(agent) & HUMAN_TYPES)


def _addresses(agent: dict) -> list[tuple[str, str]]:
    """(kind, value) pairs: kind 'ip' or 'name'; server URLs are not where a user sat."""
    out = []
    net = agent.get("network")
    vals = []
    if isinstance(net, dict) and net.get("address"):
        kinds = _codes(net.get("type"))           # R4 network.type: 1 name, 2 IP, 5 URI
        vals.append((str(net["address"]), kinds[0] if kinds else ""))
    for k in ("networkString", "networkUri"):
        if agent.get(k):
            vals.append((str(agent[k]), ""))
    for value, kind in vals:
        v = value.strip()
        low = v.lower()
        if low.startswith(("urn:ipv4:", "urn:ipv6:")):
            out.append(("ip", v.split(":", 2)[2]))
        elif kind == "5" or "://" in v or low.startswith("urn:"):
            continue
        elif kind == "2" or _IP.match(v):
            out.append(("ip", v))
        elif kind in ("", "1"):
            out.append(("name", v))
    return out


class FhirConnector(LineFileConnector):
    kind = "fhir"
    suffixes = (".json", ".ndjson", ".jsonl")

    # --- reading -------------------------------------------------------------------------------
    def _open(self, path: Path) -> dict | None:
        with open(path, "rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
        if not sample.strip():
            return None
        enc, bom = detect_encoding(sample)
        enc = normalize_encoding(self.source.encoding or enc, str(path))
        fmt = self.profile.format
        if fmt not in ("ndjson", "json"):
            first = sample[bom:].lstrip().split(b"\n", 1)[0]
            try:
                fmt = "ndjson" if isinstance(json.loads(first.decode(enc, "replace")), dict) \
                    else "json"
            except ValueError:
                fmt = "json"
        return {"enc": enc, "data_start": bom, "data_line": 1, "sample": sample,
                "whole": fmt == "json"}

    def _whole_file(self, path: Path, info: dict, fname: str):
        try:
            doc = json.loads(path.read_bytes().decode(info["enc"]).lstrip("\ufeff"))
        except (ValueError, UnicodeDecodeError) as exc:
            q = self.quarantine_frame([(0, f"not valid JSON: {exc}", "")], fname, [fname])
            return empty_frame(self.profile, self.table), q, 1
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            items = [(e.get("resource"), e.get("fullUrl")) for e in doc.get("entry") or []
                     if isinstance(e, dict)]
        elif isinstance(doc, list):
            items = [(r, None) for r in doc]
        else:
            items = [(doc, None)]
        refs = []
        resources = []
        for i, (res, _url) in enumerate(items):
            rid = res.get("id") if isinstance(res, dict) else None
            kind = res.get("resourceType") if isinstance(res, dict) else None
            refs.append(f"{fname}:{kind}/{rid}" if rid and kind else
                        (fname if len(items) == 1 else f"{fname}:entry[{i}]"))
            resources.append(res)
        return self._frame(resources, refs, [])

    def _parse(self, block: Block, info: dict, fname: str):
        buf = block.data
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        ends = nl if len(buf) == 0 or buf.endswith(b"\n") else np.append(nl, len(buf))
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        resources, refs, bad = [], [], [(b.line, b.reason, b.raw) for b in block.bad]
        for i, (s, e) in enumerate(zip(starts, ends)):
            text = buf[int(s):int(e)].decode("utf-8", "replace").strip()
            if not text:
                continue
            line = block.first_line + i
            try:
                resources.append(json.loads(text))
                refs.append(f"{fname}:{line}")
            except json.JSONDecodeError as exc:
                bad.append((line, f"not valid JSON: {exc.msg} at column {exc.colno}", text[:2000]))
        return self._frame(resources, refs, bad, fname)

    # --- flattening ----------------------------------------------------------------------------
    def _frame(self, resources, refs, bad, fname: str = ""):
        rules = self.profile.rules(self.table)
        known = set(rules.values.get("action", {}))
        rows, row_refs = [], []
        for res, ref in zip(resources, refs):
            if not isinstance(res, dict) or res.get("resourceType") != "AuditEvent":
                kind = res.get("resourceType") if isinstance(res, dict) else type(res).__name__
                bad.append((0, f"not an AuditEvent ({kind})", json.dumps(res, ensure_ascii=False)[:2000],
                            ref))
                continue
            rows.append(flatten(res, known, rules.ignore_case))
            row_refs.append(ref)
        qrows = [(b[0], b[1], b[2]) for b in bad]
        qrefs = [b[3] if len(b) > 3 else f"{fname}:{b[0]}" for b in bad]
        order = sorted(range(len(qrows)), key=lambda i: qrows[i][0])
        quarantine = self.quarantine_frame([qrows[i] for i in order], fname,
                                           [qrefs[i] for i in order] or None)
        if not rows:
            return empty_frame(self.profile, self.table), quarantine, len(quarantine)
        cols = list(dict.fromkeys(k for r in rows for k in r))
        df = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=STRING) for c in cols})
        for c in TABLES[self.table].required:
            if c not in df.columns:
                df[c] = pd.Series(pd.NA, index=df.index, dtype=STRING)
        df[SOURCE_REF] = pd.Series(row_refs, index=df.index, dtype=STRING)
        frame = self.profile.apply(self.table, df)
        return frame, quarantine, len(frame) + len(quarantine)


def flatten(ev: dict, known_actions: set[str], ignore_case: bool = True) -> dict:
    """One AuditEvent (R4 or R5) → a dict of canonical columns (strings or None)."""
    row: dict[str, str | None] = {}
    row["event_id"] = f"AuditEvent/{ev['id']}" if ev.get("id") else None
    ts = ev.get("recorded") or ev.get("occurredDateTime") \
        or (ev.get("occurredPeriod") or {}).get("start") or (ev.get("period") or {}).get("start")
    row["ts"] = ts

    agents = [a for a in ev.get("agent") or [] if isinstance(a, dict)]
    requestors = [a for a in agents if a.get("requestor") is True]
    user = next((a for a in requestors if _is_human(a)), requestors[0] if requestors else None)
    row["user_id"] = _who_id(user) if user else None
    others = [a for a in agents if a is not user and _is_human(a)
              and not (_agent_types(a) & DESTINATION_TYPES)]
    acting = _who_id(others[0]) if others else None
    row["acting_user_id"] = acting if acting and acting != row["user_id"] else None

    ip = ws = None
    for a in ([user] if user else []) + [a for a in agents if a is not user]:
        for kind, value in _addresses(a):
            if kind == "ip" and ip is None:
                ip = value
            elif kind == "name" and ws is None:
                ws = value
    row["ip"], row["workstation"] = ip, ws

    entities = [e for e in ev.get("entity") or [] if isinstance(e, dict)]
    patient = _ref_id(ev.get("patient"))
    module = None
    details: dict[str, str] = {}
    for e in entities:
        for d in e.get("detail") or []:
            if not isinstance(d, dict):
                continue
            kind = d.get("type")
            kind = (_codes(kind) or [None])[0] if isinstance(kind, dict) else kind
            value = next((d[k] for k in ("valueString", "valueInteger", "valueCode")
                          if d.get(k) is not None), None)
            if kind in DETAIL_COLUMNS and value is not None and kind not in details:
                details[str(kind)] = str(value)
    encounter = _ref_id(ev.get("encounter"))
    for e in entities:
        what = e.get("what") or e.get("reference") or {}
        rtype = _ref_type(what)
        roles = _codes(e.get("role"))
        types = _codes(e.get("type"))
        if rtype == "Patient":
            patient = patient or _ref_id(what)
            continue
        if "1" in roles and (not types or "1" in types) and patient is None:
            ident = what.get("identifier") if isinstance(what, dict) else None
            patient = (ident or {}).get("value") or _ref_id(what)
            continue
        if rtype == "Encounter":
            encounter = encounter or _ref_id(what)
        if module is None and "24" not in roles and ("2" in types or not types):
            module = str(e["name"]) if e.get("name") else rtype   # R4 entity.name, else type
    module = details.pop("module", None) or module
    if module is None and patient is not None:
        module = "Patient"
    row["patient_id"], row["encounter_id"], row["module"] = patient, encounter, module

    purposes = _codes(ev.get("purposeOfEvent")) + _codes(ev.get("authorization"))
    for a in agents:
        purposes += _codes(a.get("purposeOfUse")) + _codes(a.get("authorization"))
    purposes = list(dict.fromkeys(purposes))
    row["reason"] = ";".join(purposes) or details.pop("reason", None)
    details.pop("reason", None)
    row.update(details)            # record_count, session_id from entity.detail

    letter = ev.get("action")
    r4_type = ev.get("type")
    local = _local_actions(ev.get("subtype"), ev.get("code"), r4_type, ev.get("category"))
    candidates = purposes + local + _codes(ev.get("subtype")) + _codes(ev.get("code")) + \
        _codes(r4_type) + _codes(ev.get("category")) + ([str(letter)] if letter else [])
    norm = (lambda c: c.strip().lower()) if ignore_case else (lambda c: c.strip())
    chosen = next((c for c in candidates if norm(c) in known_actions), None)
    row["action"] = chosen or (str(letter) if letter else (candidates[0] if candidates else None))
    raw = [str(letter)] if letter else []
    if chosen and chosen != letter:
        raw.append(chosen)
    row["action_raw"] = ":".join(raw) or None

    outcome = ev.get("outcome")
    if isinstance(outcome, dict):
        outcome = (_codes(outcome.get("code")) or [None])[0]
    row["outcome"] = str(outcome) if outcome is not None else None

    site = (ev.get("source") or {}).get("site")
    if isinstance(site, dict):
        site = ((site.get("identifier") or {}).get("value") or site.get("display")
                or _ref_id(site))
    row["facility"] = str(site) if site else None
    return row


__all__ = ["FhirConnector", "flatten"]
