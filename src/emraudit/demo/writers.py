"""Writers: the canonical CSVs, the Chinese HIS export (GB18030) and FHIR AuditEvent NDJSON.

The access log is built as Arrow columns (dictionary `take` for every id and word, C++
strftime for times) and written by Arrow's CSV writer, so ten million rows take seconds.
Reference tables are small and go through pandas. Values never contain commas or quotes, so
CSV fields are written unquoted; line ends are "\\n"; output is byte-for-byte reproducible.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emraudit.demo.events import ACTION_ZH, MODULES, REASONS
from emraudit.model import ACTIONS, TABLES

CHUNK = 1_000_000


_TOD: list = []


def _fmt_ts(sec: np.ndarray, sep: str = " ", null: np.ndarray | None = None) -> pa.Array:
    """Local epoch seconds as "YYYY-MM-DD HH:MM:SS" (sep "T" for ISO), by dictionary lookups
    of the day and of the second of the day (much faster than strftime per value)."""
    sec = np.asarray(sec, np.int64)
    if not _TOD:
        t = np.arange(86400)
        _TOD.append(pa.array([f"{h:02d}:{m:02d}:{x:02d}" for h, m, x in
                              zip(t // 3600, t // 60 % 60, t % 60)], pa.string()))
    if len(sec) == 0:
        return pa.array([], pa.string())
    day = sec // 86400
    tod = sec - day * 86400
    d0, d1 = int(day.min()), int(day.max())
    dates = pa.array(np.datetime_as_string(np.arange(d0, d1 + 1).astype("datetime64[D]")).tolist(),
                     pa.string())
    out = pc.binary_join_element_wise(dates.take(pa.array(day - d0)), _TOD[0].take(pa.array(tod)),
                                      sep)
    if null is not None and null.any():
        out = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), out)
    return out


def _take(dictionary, idx: np.ndarray) -> pa.Array:
    """dictionary[idx], null where idx < 0."""
    idx = np.asarray(idx, np.int64)
    d = pa.array(list(dictionary), pa.string())
    return d.take(pa.array(np.maximum(idx, 0), mask=idx < 0))


def _ids(prefix: str, n: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pa.array(np.asarray(n, np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _write_csv(table: pa.Table, path: Path, encoding: str = "utf-8") -> None:
    header = (",".join(table.column_names) + "\n").encode(encoding)
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "wb") as fh:
        fh.write(header)
        for start in range(0, max(table.num_rows, 1), CHUNK):
            part = table.slice(start, CHUNK)
            if part.num_rows == 0:
                break
            if encoding == "utf-8":
                pacsv.write_csv(part, fh, opts)
            else:
                b = io.BytesIO()
                pacsv.write_csv(part, b, opts)
                fh.write(b.getvalue().decode("utf-8").encode(encoding))


def _frame_csv(df: pd.DataFrame, path: Path) -> None:
    cols = {}
    for c in df.columns:
        v = df[c]
        if isinstance(v.dtype, pd.ArrowDtype) or pd.api.types.is_string_dtype(v.dtype) \
                or v.dtype == object:
            arr = v.to_numpy(dtype=object, na_value=None)
            cols[c] = pa.array([None if (x is None or x != x) else str(x) for x in arr],
                               pa.string())
        else:
            cols[c] = pa.array(v.to_numpy())
    _write_csv(pa.table(cols), path)


def _date(sec, with_time=True):
    sec = np.asarray(sec, np.int64)
    a = _fmt_ts(np.maximum(sec, 0), null=sec < 0)
    if not with_time:
        a = pc.utf8_slice_codeunits(a, 0, 10)
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=object)


# canonical ------------------------------------------------------------------------------------

def event_columns(w) -> dict[str, pa.Array]:
    """The access log as Arrow arrays in canonical names (shared by every layout)."""
    e = w.events
    n = len(e["ts"])
    width = max(7, len(str(n)))
    order = np.arange(1, n + 1)
    # sessions numbered by their first appearance in time order
    sess = e["session"]
    uniq, first_pos = np.unique(sess, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first_pos, kind="stable")] = np.arange(len(uniq))
    srank = rank[np.searchsorted(uniq, sess)]
    failed = e["action"] == ACTIONS.index("login_failed")
    ws = w.workstations
    swidth = max(6, len(str(len(uniq))))
    return {
        "event_id": _ids("E", order, width),
        "ts": _fmt_ts(e["ts"]),
        "user_id": _take(w.users.user_id, e["user"]),
        "patient_id": _take(w.patient_ids, e["patient"]),
        "action": _take(ACTIONS, e["action"]),
        "action_raw": pa.nulls(n, pa.string()),
        "module": _take([m or None for m in MODULES], e["module"]),
        "workstation": _take(ws.workstation, e["ws"]),
        "ip": _take(ws.ip, e["ws"]),
        "session_id": pc.if_else(pa.array(failed), pa.scalar(None, pa.string()),
                                 _ids("S", srank + 1, swidth)),
        "record_count": pa.array(e["rc"].astype(np.int64)),
        "encounter_id": _take(w.enc_ids, e["enc"]),
        "facility": _take(ws.campus, e["ws"]),
        "acting_user_id": _take(w.users.user_id, e["acting"]),
        "outcome": pc.if_else(pa.array(failed), "failure", "success"),
        "reason": _take([r or None for r in REASONS], np.where(e["reason"] > 0, e["reason"], -1)),
    }


def reference_tables(w) -> dict[str, pd.DataFrame]:
    u = w.users
    users = pd.DataFrame({
        "user_id": u.user_id, "name": u.name, "role": u.role, "department": u.department,
        "ward": u.ward, "status": u.status, "start_date": _date(u._start_ts, False),
        "end_date": _date(u._end_ts, False), "access_until": _date(u._until_ts, False),
        "supervisor_id": u.supervisor_id, "patient_id": u.patient_id, "address": u.address,
        "phone": u.phone, "title": u.title})
    p = w.patients
    n = len(p)
    patients = pd.DataFrame({
        "patient_id": w.patient_ids[:n], "name": p.name, "sex": p.sex,
        "birth_date": _date(p._birth, False), "address": p.address, "phone": p.phone,
        "vip": p.vip.astype(int), "sensitive": p.sensitive.astype(int),
        "watch": p.watch.astype(int), "watch_team": p.watch_team,
        "deceased_date": _date(p._deceased), "employee_user_id": p.employee_user_id,
        "sensitive_class": p.sensitive_class})
    r = w.rel
    r = r[(r.start < w.t_end)].copy()
    r["end"] = np.where(r.end.to_numpy() >= w.t_end, -1, r.end.to_numpy())
    seg_enc = w.seg.enc_idx.to_numpy()
    enc = np.where(r.seg.to_numpy() >= 0, seg_enc[np.maximum(r.seg.to_numpy(), 0)], -1)
    if "enc" in r.columns:   # outpatient relations carry their visit's number
        enc = np.where(r["enc"].fillna(-1).to_numpy() >= 0, r["enc"].fillna(-1).to_numpy(),
                       enc).astype(np.int64)
    rel = pd.DataFrame({
        "patient_id": w.patient_ids[r.patient.to_numpy()],
        "user_id": np.where(r.user.to_numpy() >= 0,
                            u.user_id.to_numpy()[np.maximum(r.user.to_numpy(), 0)], None),
        "department": r.department.to_numpy(), "ward": r.ward.to_numpy(),
        "kind": r.kind.to_numpy(), "_start": r.start.to_numpy(), "start": _date(r.start),
        "end": _date(r.end),
        "encounter_id": np.where(enc >= 0, w.enc_ids[np.maximum(enc, 0)], None)})
    rel = rel.sort_values(["_start", "patient_id", "kind", "user_id", "department"],
                          kind="stable", na_position="first")
    rel = rel[["patient_id", "user_id", "department", "ward", "kind", "start", "end",
               "encounter_id"]]
    c = w.contacts
    contacts = pd.DataFrame({"patient_id": w.patient_ids[c.patient.to_numpy()],
                             "name": c.name.to_numpy(), "relation": c.relation.to_numpy(),
                             "phone": c.phone.to_numpy(), "address": c.address.to_numpy()})
    from emraudit.demo.roster import shift_rows
    s = shift_rows(w.roster, w.t_end)
    s = s[(s.end > w.t0 - 86400) & (s.start < w.t_end)]
    shifts = pd.DataFrame({"user_id": u.user_id.to_numpy()[s.user.to_numpy()],
                           "start": _date(s.start), "end": _date(s.end), "kind": s.kind.to_numpy(),
                           "ward": s.ward.to_numpy(), "location": s.location.to_numpy()})
    ws = w.workstations
    wst = pd.DataFrame({"workstation": ws.workstation, "ip": ws.ip, "department": ws.department,
                        "campus": ws.campus, "location": ws.location})
    from emraudit.demo.hospital import department_table
    return {"users": users, "patients": patients, "care_relations": rel,
            "patient_contacts": contacts, "shifts": shifts, "workstations": wst,
            "departments": department_table(w.departments, u),
            "grants": w.grants_table, "roles": w.roles_table}


def truth_table(w, event_ids: pa.Array) -> pd.DataFrame:
    case = w.events["case"]
    m = case >= 0
    ids = np.asarray(event_ids.to_numpy(zero_copy_only=False))[m]
    viol = np.array([v for v, _ in w.cases], dtype=object)
    key = np.array([k for _, k in w.cases], dtype=object)
    events = pd.DataFrame({"event_id": ids, "violation": viol[case[m]],
                           "case_key": key[case[m]], "ref": None})
    # problems of rights held (a grant, a role) have no event: the row they rest on instead
    refs = pd.DataFrame(w.rights_truth, columns=["violation", "case_key", "ref"])
    return pd.concat([events, refs.assign(event_id=None)[events.columns]], ignore_index=True)


def write_all(w, out: Path, formats) -> None:
    cols = event_columns(w)
    names = [n for n in TABLES["access_log"].names if n in cols]   # no site_id: one site
    table = pa.table({k: cols[k] for k in names})
    if "canonical" in formats:
        _write_csv(table, out / "access_log.csv")
    for name, df in reference_tables(w).items():
        _frame_csv(df, out / f"{name}.csv")
    _frame_csv(truth_table(w, cols["event_id"]), out / "truth.csv")
    if "his-zh" in formats:
        write_his(w, cols, out / "access_log_his.csv")
        write_his_grants(w, out / "grants_his.csv")
    if "fhir" in formats:
        write_fhir(w, cols, out / "access_log_fhir.ndjson")


# Chinese HIS export of the grants (授权记录), read with the his-grants-zh profile ----------------
HIS_GRANT_COLUMNS = {"grant_id": "授权编号", "user_id": "用户工号", "role": "角色",
                     "permission": "权限", "record_class": "病历类别", "scope": "授权范围",
                     "department": "授权科室", "granted_at": "授权时间", "granted_by": "授权人",
                     "approved_by": "审批人", "revoked_at": "撤销时间", "expires_at": "有效期至",
                     "reason": "授权原因"}


def write_his_grants(w, path) -> None:
    """The grants as a HIS permission system exports them: GB18030, Chinese headers, the
    holder's name beside the id, times without seconds."""
    g = w.grants_table
    names = dict(zip(w.users.user_id, w.users.name))
    out = pd.DataFrame({HIS_GRANT_COLUMNS[c]: g[c] for c in HIS_GRANT_COLUMNS})
    out.insert(2, "用户姓名", g["user_id"].map(names))
    for c in ("授权时间", "撤销时间", "有效期至"):
        out[c] = out[c].map(lambda v: v[:16] if isinstance(v, str) else v)
    out["授权范围"] = out["授权范围"].fillna("")
    _frame_csv(out, path)
    raw = path.read_bytes().decode("utf-8")
    path.write_bytes(raw.encode("gb18030"))


# Chinese HIS export ------------------------------------------------------------------------------

def write_his(w, cols, path: Path) -> None:
    """The HIS operation-log export: GB18030, Chinese headers and action words.

    `流水号` (the log's serial number) carries the event id so that truth.csv still applies;
    `住院号` is filled for inpatient encounters only; the record count of a print/export is in
    `操作内容` as "(N份)"."""
    e = w.events
    users = w.users
    act_zh = [ACTION_ZH[a] for a in ACTIONS]
    verb = _take(act_zh, e["action"])
    mod = _take([m or None for m in MODULES], e["module"])
    content = pc.binary_join_element_wise(verb, pc.fill_null(mod, "系统"), "")
    rc = pa.array(e["rc"].astype(np.int64)).cast(pa.string())
    out_act = np.isin(e["action"], [ACTIONS.index(a) for a in ("print", "export", "copy",
                                                               "download")])
    content = pc.if_else(pa.array(out_act),
                         pc.binary_join_element_wise(content, "(", rc, "份)", ""), content)
    reason = _take([r or None for r in REASONS], np.where(e["reason"] > 0, e["reason"], -1))
    content = pc.if_else(pc.is_valid(reason),
                         pc.binary_join_element_wise(content, "：", pc.fill_null(reason, ""),
                                                     ""), content)
    enc = cols["encounter_id"]
    zy = pc.if_else(pc.starts_with(pc.fill_null(enc, ""), "Z"), enc,
                    pa.scalar(None, pa.string()))
    t = pa.table({
        "流水号": cols["event_id"], "操作时间": cols["ts"], "操作人工号": cols["user_id"],
        "操作人姓名": _take(users.name, e["user"]), "科室": _take(users.department, e["user"]),
        "患者ID": cols["patient_id"], "住院号": zy, "操作类型": verb, "操作内容": content,
        "终端IP": cols["ip"], "计算机名": cols["workstation"]})
    _write_csv(t, path, encoding="gb18030")


# FHIR AuditEvent ------------------------------------------------------------------------------------

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST = ('{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest",'
         '"display":"RESTful Operation"}')


def _type_for(action: str) -> tuple[str, str, str]:
    """(type coding, subtype codings, FHIR action code) per canonical action (IHE BALP)."""
    inter = "http://hl7.org/fhir/restful-interaction"
    local = f'{{"system":"urn:emraudit:action","code":"{action}"}}'
    if action in ("login", "logout", "login_failed"):
        sub = "110122" if action != "logout" else "110123"
        disp = "Login" if action != "logout" else "Logout"
        return (f'{{"system":"{_DCM}","code":"110114","display":"User Authentication"}}',
                f'[{{"system":"{_DCM}","code":"{sub}","display":"{disp}"}},{local}]', "E")
    if action in ("export", "copy", "download"):
        return (f'{{"system":"{_DCM}","code":"110106","display":"Export"}}', f"[{local}]", "R")
    if action == "query":
        return _REST, f'[{{"system":"{inter}","code":"search-type"}},{local}]', "E"
    code = {"create": ("create", "C"), "update": ("update", "U"), "delete": ("delete", "D"),
            "sign": ("update", "U")}.get(action, ("read", "R"))
    if action == "break_glass":
        code = ("read", "E")
    return _REST, f'[{{"system":"{inter}","code":"{code[0]}"}},{local}]', code[1]


def write_fhir(w, cols, path: Path) -> None:
    """FHIR R4 AuditEvent, one JSON object a line, following the IHE BALP patterns: the user is
    the requestor agent (type IRCP, who.identifier.value = user id), the patient an entity
    `Patient/<id>` (type 1, role 1), break-the-glass carries purposeOfEvent/purposeOfUse ETREAT,
    exports the DICOM 110106 type. AuditEvent.id is the event id, so truth.csv applies."""
    e = w.events
    types = [_type_for(a) for a in ACTIONS]
    head = ['{"resourceType":"AuditEvent","id":"' for _ in ACTIONS]
    mid = [f'","type":{t},"subtype":{s},"action":"{c}","recorded":"' for t, s, c in types]
    etreat = ('{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason",'
              '"code":"ETREAT"}]}')
    act = e["action"]
    is_btg = act == ACTIONS.index("break_glass")
    failed = act == ACTIONS.index("login_failed")
    recorded = _fmt_ts(e["ts"], "T")
    purpose = pc.if_else(pa.array(is_btg), f',"purposeOfEvent":[{etreat}]', "")
    outcome = pc.if_else(pa.array(failed), '"4"', '"0"')
    agent_purpose = pc.if_else(pa.array(is_btg), f',"purposeOfUse":[{etreat}]', "")
    acting = cols["acting_user_id"]
    acting_part = pc.if_else(
        pc.is_valid(acting),
        pc.binary_join_element_wise(',{"who":{"identifier":{"value":"',
                                    pc.fill_null(acting, ""), '"}},"requestor":false}', ""), "")
    pat = cols["patient_id"]
    pat_part = pc.if_else(
        pc.is_valid(pat),
        pc.binary_join_element_wise(
            '{"what":{"reference":"Patient/', pc.fill_null(pat, ""),
            '"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type",'
            '"code":"1"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role",'
            '"code":"1"}},', ""), "")
    enc = cols["encounter_id"]
    enc_part = pc.if_else(pc.is_valid(enc), pc.binary_join_element_wise(
        '{"what":{"reference":"Encounter/', pc.fill_null(enc, ""), '"}},', ""), "")
    mod = cols["module"]
    name_part = pc.if_else(pc.is_valid(mod), pc.binary_join_element_wise(
        '"name":"', pc.fill_null(mod, ""), '",', ""), "")
    reason = cols["reason"]
    reason_part = pc.if_else(pc.is_valid(reason), pc.binary_join_element_wise(
        ',{"type":"reason","valueString":"', pc.fill_null(reason, ""), '"}', ""), "")
    sess = cols["session_id"]
    sess_part = pc.if_else(pc.is_valid(sess), pc.binary_join_element_wise(
        ',{"type":"session_id","valueString":"', pc.fill_null(sess, ""), '"}', ""), "")
    rc = cols["record_count"].cast(pa.string())
    entity = pc.binary_join_element_wise(
        ',"entity":[', pat_part, enc_part,
        '{"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2"},',
        name_part, '"detail":[{"type":"record_count","valueString":"', rc,
        '"}', sess_part, reason_part, ']}]', "")
    line = pc.binary_join_element_wise(
        _take(head, act), cols["event_id"], _take(mid, act), recorded, '+08:00","outcome":',
        outcome, purpose,
        ',"agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/'
        'v3-ParticipationType","code":"IRCP"}]},"who":{"identifier":{"value":"',
        cols["user_id"], '"}},"requestor":true', agent_purpose,
        ',"network":{"address":"', pc.fill_null(cols["ip"], ""), '","type":"2"}}', acting_part,
        '],"source":{"site":"', pc.fill_null(cols["facility"], ""),
        '","observer":{"display":"', pc.fill_null(cols["workstation"], ""), '"}}', entity,
        "}", "")
    with open(path, "wb") as fh:
        for start in range(0, len(line), CHUNK):
            part = line.slice(start, CHUNK)
            fh.write(("\n".join(part.to_pylist()) + "\n").encode("utf-8"))
