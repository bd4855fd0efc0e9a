"""Why was this record opened? The explanation engine shared by the care and snooping detectors.

Every patient access is tested against the legitimate reasons a hospital has for it, in a fixed
order, and the first that holds is recorded (issue 4):

1. own_relation     the user's own care relation (admission, care team, transfer, outpatient,
                    document …) active then, widened by grace_before/after_days;
2. unit_relation    the user's department or ward has a relation to the patient then (nurses
                    belong to wards, doctors to departments: both are matched);
3. duty_ward        the user is rostered on duty (shifts kind duty) on a ward where the patient
                    lies then — float and cover staff;
4. request_relation the user holds a consult, order, appointment or access request for the
                    patient (their own grace: kind_grace_before/after_days);
5. prior_treatment  the user treated the patient before: an own relation that ended, or an
                    access explained by 1-4/6, within lookback_days;
6. documentation    the user documented on the patient (create/update/sign) within
                    documentation_window_hours or in the same encounter — charting is strong
                    evidence of care (known limitation: a note written to cover a look-up
                    explains it too; `documentation_explains = false` turns it off);
7. break_glass      the user broke the glass on this patient shortly before (btg.unjustified
                    judges those);
8. record_role      the user's role reads records for a living (medical records, quality
                    control, insurance …) and it is within that role's office hours.

Everything is vectorized. Interval tests use one sorted join per key (`merge_asof` on the
interval starts with a running maximum of the ends), so a patient with many relations and
many accesses never produces a cross product. Ids are factorized to integers first.
Parameters are those of `care.no_relationship` (ctx.params_for).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context
from emraudit.model import PATIENT_ACTIONS

EXPLANATIONS = ("own_relation", "unit_relation", "duty_ward", "request_relation",
                "prior_treatment", "documentation", "break_glass", "record_role")
REQUEST_KINDS = ("consult", "order", "appointment", "access_request")
DOC_ACTIONS = ("create", "update", "sign")

_US = 1_000_000            # microseconds per second
_FAR = 2 ** 52             # "never ends" in microseconds (exact in float64)
_DAY_US = 86_400 * _US
_HOUR_US = 3_600 * _US


def explain_accesses(ctx: Context) -> pd.DataFrame:
    """One row per patient access in ctx.events (patient_id set and a patient action).

    Same order and index as ctx.events restricted to those rows. Columns: event_id, user_id,
    patient_id, ts, in_window, explained (bool), explanation (first that held, '' if none),
    detail (human-readable), plus one boolean column `x_<name>` per explanation tried.
    Cached in ctx.memo under "explain".
    """
    return ctx.cached("explain", lambda: _explain(ctx))


def explanation_params(ctx: Context) -> dict:
    """The parameters in force (those of care.no_relationship), with safe fallbacks."""
    p = dict(_DEFAULTS)
    p.update(ctx.params_for("care.no_relationship") or {})
    return p


# Fallbacks when care.no_relationship is not registered (the declarations in care.py are the
# documented source of truth; keep these equal).
_DEFAULTS = {
    "grace_before_days": 3.0, "grace_after_days": 30.0,
    "kind_grace_before_days": 1.0, "kind_grace_after_days": 14.0,
    "unit_match_user_rows": True, "duty_grace_minutes": 60.0,
    "lookback_days": 30.0, "documentation_explains": True,
    "documentation_window_hours": 24.0, "btg_window_hours": 12.0,
    "record_roles": ["medical_records", "quality_control", "insurance"],
    "record_role_hours": {}, "record_roles_workdays_only": True,
}


# --- helpers ---------------------------------------------------------------------------------

def _us(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC); NaT becomes _FAR."""
    s = pd.Series(s)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = s.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(arr)
    out = arr.astype("int64") // 1000
    out[nat] = _FAR
    return out


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Integer code of each value in `index`, -1 when missing or unknown."""
    v = values.astype("string")
    codes = index.get_indexer(v.fillna("\x00"))
    return np.asarray(codes, dtype=np.int64)


def interval_hit(akey: np.ndarray, at: np.ndarray, rkey: np.ndarray, rlo: np.ndarray,
                 rhi: np.ndarray, rid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each access (key, t): is some interval [lo, hi] of the same key covering t?

    Returns (hit, which) where `which` is the id of the interval with the latest end among
    those started by t (-1 when none). Sorted join on `lo` with a running max of `hi` per key:
    O((n + m) log(n + m)), no cross product.
    """
    n = len(akey)
    hit = np.zeros(n, dtype=bool)
    which = np.full(n, -1, dtype=np.int64)
    rmask = rkey >= 0
    amask = akey >= 0
    if not rmask.any() or not amask.any():
        return hit, which
    r = pd.DataFrame({"k": rkey[rmask], "lo": rlo[rmask], "hi": rhi[rmask],
                      "rid": rid[rmask]})
    r = r.sort_values(["k", "lo", "hi"], kind="stable")
    r["cm"] = r.groupby("k", sort=False)["hi"].cummax()
    best = pd.Series(np.where(r["hi"].to_numpy() == r["cm"].to_numpy(), r["rid"].to_numpy(),
                              -1), index=r.index)
    best = best.where(best >= 0)
    r["best"] = best.groupby(r["k"].to_numpy(), sort=False).ffill()
    r = r.sort_values("lo", kind="stable")
    pos = np.flatnonzero(amask)
    a = pd.DataFrame({"k": akey[amask], "t": at[amask], "pos": pos})
    a = a.sort_values("t", kind="stable")
    m = pd.merge_asof(a, r[["k", "lo", "cm", "best"]], left_on="t", right_on="lo", by="k",
                      direction="backward")
    cm = m["cm"].to_numpy(dtype="float64", na_value=np.nan)
    ok = cm >= m["t"].to_numpy(dtype="float64")
    p = m["pos"].to_numpy()
    hit[p] = ok
    b = m["best"].to_numpy(dtype="float64", na_value=np.nan)
    which[p] = np.where(np.isnan(b), -1, b).astype(np.int64)
    return hit, which


def nearest_within(akey: np.ndarray, at: np.ndarray, bkey: np.ndarray, bt: np.ndarray,
                   before_us: int, after_us: int, *, strict_before: bool = False
                   ) -> np.ndarray:
    """Does some point (same key) fall within [t - before_us, t + after_us] of each access?"""
    n = len(akey)
    hit = np.zeros(n, dtype=bool)
    bmask = bkey >= 0
    amask = akey >= 0
    if not bmask.any() or not amask.any():
        return hit
    b = pd.DataFrame({"k": bkey[bmask], "bt": bt[bmask]}).sort_values("bt", kind="stable")
    pos = np.flatnonzero(amask)
    a = pd.DataFrame({"k": akey[amask], "t": at[amask], "pos": pos}).sort_values(
        "t", kind="stable")
    res = np.zeros(len(a), dtype=bool)
    t = a["t"].to_numpy(dtype="float64")
    if before_us > 0 or not strict_before:
        m = pd.merge_asof(a, b, left_on="t", right_on="bt", by="k", direction="backward",
                          allow_exact_matches=not strict_before)
        bt_ = m["bt"].to_numpy(dtype="float64", na_value=np.nan)
        res |= (t - bt_) <= before_us
    if after_us > 0:
        m = pd.merge_asof(a, b, left_on="t", right_on="bt", by="k", direction="forward")
        bt_ = m["bt"].to_numpy(dtype="float64", na_value=np.nan)
        res |= (bt_ - t) <= after_us
    hit[a["pos"].to_numpy()] = res
    return hit


def _fmt_day(us: np.ndarray, tz: str) -> np.ndarray:
    """Microsecond times as 'YYYY-MM-DD' in the site timezone ('' when open-ended)."""
    us = np.asarray(us, dtype=np.int64)
    far = us >= _FAR
    ts = pd.to_datetime(np.where(far, 0, us), unit="us", utc=True).tz_convert(tz)
    out = np.asarray(ts.strftime("%Y-%m-%d"), dtype=object)
    out[far] = ""
    return out


# --- the engine ------------------------------------------------------------------------------

def _explain(ctx: Context) -> pd.DataFrame:
    p = explanation_params(ctx)
    ev = ctx.events
    tz = ctx.tz
    mask = ev["patient_id"].notna() & ev["action"].isin(PATIENT_ACTIONS)
    acc = ev.loc[mask]
    n = len(acc)
    out = pd.DataFrame({
        "event_id": acc["event_id"].astype("string"),
        "user_id": acc["user_id"].astype("string"),
        "patient_id": acc["patient_id"].astype("string"),
        "ts": acc["ts"],
        "in_window": acc["in_window"].astype(bool) if "in_window" in acc.columns else True,
    }, index=acc.index)
    flags = {name: np.zeros(n, dtype=bool) for name in EXPLANATIONS}
    detail = np.full(n, "", dtype=object)
    if n == 0:
        return _assemble(out, flags, detail)

    # integer codes ---------------------------------------------------------------------------
    ucode, uidx = pd.factorize(acc["user_id"].astype("string"))
    pcode, pidx = pd.factorize(acc["patient_id"].astype("string"))
    uidx, pidx = pd.Index(uidx), pd.Index(pidx)
    ucode = ucode.astype(np.int64)
    pcode = pcode.astype(np.int64)
    npat = len(pidx) + 1
    akey_up = ucode * npat + pcode
    at = _us(acc["ts"])
    action = acc["action"].astype("string").to_numpy(dtype=object, na_value="")
    enc = (acc["encounter_id"].astype("string") if "encounter_id" in acc.columns
           else pd.Series(pd.NA, index=acc.index, dtype="string"))

    rel = ctx.care_relations
    if rel is None:
        from emraudit.model import empty_table
        rel = empty_table("care_relations", tz)
    rel = rel.reset_index(drop=True)
    r_u = _codes(rel["user_id"], uidx)
    r_p = _codes(rel["patient_id"], pidx)
    r_start = _us(rel["start"])
    r_end = _us(rel["end"])
    r_kind = rel["kind"].astype("string").fillna("").to_numpy(dtype=object)
    r_has_user = rel["user_id"].notna().to_numpy()
    r_id = np.arange(len(rel), dtype=np.int64)
    r_ok = (r_p >= 0)
    r_desc = _relation_desc(rel, tz)

    gb = int(p["grace_before_days"] * _DAY_US)
    ga = int(p["grace_after_days"] * _DAY_US)
    kgb = int(p["kind_grace_before_days"] * _DAY_US)
    kga = int(p["kind_grace_after_days"] * _DAY_US)
    hi_ga = np.where(r_end >= _FAR, _FAR, r_end + ga)
    hi_kga = np.where(r_end >= _FAR, _FAR, r_end + kga)
    is_req = np.isin(r_kind, REQUEST_KINDS)
    which_rel = np.full(n, -1, dtype=np.int64)

    # 1. own relation --------------------------------------------------------------------------
    own = r_ok & r_has_user & (r_u >= 0) & ~is_req
    rkey = np.where(own, r_u * npat + r_p, -1)
    hit, which = interval_hit(akey_up, at, rkey, r_start - gb, hi_ga, r_id)
    flags["own_relation"] = hit
    which_rel = np.where(hit & (which_rel < 0), which, which_rel)

    # 2. the user's department or ward ---------------------------------------------------------
    users = ctx.users
    u_dept = np.full(len(uidx), -1, dtype=np.int64)
    u_ward = np.full(len(uidx), -1, dtype=np.int64)
    u_role = np.full(len(uidx), "", dtype=object)
    units = pd.Index(pd.concat([
        rel["department"].astype("string"), rel["ward"].astype("string"),
        users["department"].astype("string") if users is not None else pd.Series([], dtype="string"),
        users["ward"].astype("string") if users is not None else pd.Series([], dtype="string"),
    ], ignore_index=True).dropna().unique())
    nunit = len(units) + 1
    if users is not None and len(users):
        uu = users.drop_duplicates("user_id", keep="last")
        pos = _codes(uu["user_id"], uidx)
        known = pos >= 0
        u_dept[pos[known]] = _codes(uu["department"], units)[known]
        u_ward[pos[known]] = _codes(uu["ward"], units)[known]
        u_role[pos[known]] = uu["role"].astype("string").fillna("").to_numpy(dtype=object)[known]
    r_dept = _codes(rel["department"], units)
    r_ward = _codes(rel["ward"], units)
    unit_rows = r_ok & (~r_has_user | bool(p["unit_match_user_rows"]))
    acc_dept = u_dept[ucode]
    acc_ward = u_ward[ucode]
    for a_unit, r_unit in ((acc_dept, r_dept), (acc_ward, r_ward)):
        akey = np.where(a_unit >= 0, pcode * nunit + a_unit, -1)
        rk = np.where(unit_rows & (r_unit >= 0), r_p * nunit + r_unit, -1)
        hit, which = interval_hit(akey, at, rk, r_start - gb, hi_ga, r_id)
        flags["unit_relation"] |= hit
        which_rel = np.where(hit & (which_rel < 0), which, which_rel)

    # 3. on duty on the patient's ward ---------------------------------------------------------
    duty_ward = np.full(n, -1, dtype=np.int64)
    sh = ctx.shifts
    if sh is not None and len(sh):
        d = sh[(sh["kind"].astype("string") == "duty") & sh["ward"].notna()]
        if len(d):
            dg = int(p["duty_grace_minutes"] * 60 * _US)
            s_u = _codes(d["user_id"], uidx)
            s_w = _codes(d["ward"], units)
            s_id = np.arange(len(d), dtype=np.int64)
            hit, which = interval_hit(ucode, at, np.where(s_w >= 0, s_u, -1),
                                      _us(d["start"]) - dg, _us(d["end"]) + dg, s_id)
            duty_ward = np.where(hit, s_w[np.clip(which, 0, None)], -1)
            akey = np.where(duty_ward >= 0, pcode * nunit + duty_ward, -1)
            rk = np.where(r_ok & (r_ward >= 0), r_p * nunit + r_ward, -1)
            hit2, which2 = interval_hit(akey, at, rk, r_start - gb, hi_ga, r_id)
            flags["duty_ward"] = hit2
            which_rel = np.where(hit2 & (which_rel < 0), which2, which_rel)

    # 4. consult / order / appointment / access request --------------------------------------
    req = r_ok & r_has_user & (r_u >= 0) & is_req
    rkey = np.where(req, r_u * npat + r_p, -1)
    hit, which = interval_hit(akey_up, at, rkey, r_start - kgb, hi_kga, r_id)
    flags["request_relation"] = hit
    which_rel = np.where(hit & (which_rel < 0), which, which_rel)

    # 6. documentation (computed before 5, which builds on it) -------------------------------
    is_doc = np.isin(action, DOC_ACTIONS)
    if p["documentation_explains"]:
        w = int(p["documentation_window_hours"] * _HOUR_US)
        flags["documentation"] = nearest_within(akey_up, at, np.where(is_doc, akey_up, -1), at,
                                                w, w)
        has_enc = enc.notna().to_numpy()
        if has_enc.any() and is_doc.any():
            ecode, _ = pd.factorize(enc)
            ekey = pd.Series(akey_up.astype(np.int64) * (ecode.max() + 2) + ecode)
            doc_keys = set(ekey[is_doc & has_enc].tolist())
            flags["documentation"] |= has_enc & ekey.isin(doc_keys).to_numpy()

    # 5. prior treatment: an own relation that ended, or an explained access, in the look-back
    lb = int(p["lookback_days"] * _DAY_US)
    anyown = r_ok & r_has_user & (r_u >= 0)
    rkey = np.where(anyown, r_u * npat + r_p, -1)
    hit, _ = interval_hit(akey_up, at, rkey, r_start, np.where(r_end >= _FAR, _FAR, r_end + lb),
                          r_id)
    base = (flags["own_relation"] | flags["unit_relation"] | flags["duty_ward"]
            | flags["request_relation"] | flags["documentation"])
    hit |= nearest_within(akey_up, at, np.where(base, akey_up, -1), at, lb, 0,
                          strict_before=True)
    flags["prior_treatment"] = hit

    # 7. break the glass shortly before -------------------------------------------------------
    btg = action == "break_glass"
    if btg.any():
        w = int(p["btg_window_hours"] * _HOUR_US)
        flags["break_glass"] = nearest_within(akey_up, at, np.where(btg, akey_up, -1), at, w, 0)

    # 8. record-reading roles within their office hours --------------------------------------
    roles = list(p["record_roles"] or [])
    acc_role = u_role[ucode]
    rr = np.isin(acc_role, roles)
    if rr.any():
        local = acc["ts"].dt.tz_convert(tz)
        hour = (local.dt.hour + local.dt.minute / 60.0).to_numpy()
        wd = local.dt.dayofweek.to_numpy()
        hours = p.get("record_role_hours") or {}
        lo = np.array([float(hours.get(r, ctx.office_hours)[0]) for r in acc_role[rr]])
        hi = np.array([float(hours.get(r, ctx.office_hours)[1]) for r in acc_role[rr]])
        inside = (hour[rr] >= lo) & (hour[rr] < hi)
        if p["record_roles_workdays_only"]:
            inside &= np.isin(wd[rr], list(ctx.workdays))
        res = np.zeros(n, dtype=bool)
        res[rr] = inside
        flags["record_role"] = res

    # details ----------------------------------------------------------------------------------
    first = _first(flags)
    has_rel = which_rel >= 0
    rel_based = np.isin(first, ["own_relation", "unit_relation", "duty_ward", "request_relation"])
    use = rel_based & has_rel
    if use.any():
        detail[use] = r_desc[which_rel[use]]
    simple = {
        "prior_treatment": f"treated this patient within the last {p['lookback_days']:g} days",
        "documentation": "documented on this patient (create/update/sign) within "
                         f"{p['documentation_window_hours']:g} h or in the same encounter",
        "break_glass": f"break-the-glass on this patient within {p['btg_window_hours']:g} h "
                       "before",
    }
    for name, text in simple.items():
        detail[first == name] = text
    rrm = first == "record_role"
    if rrm.any():
        detail[rrm] = np.char.add("role ", acc_role[rrm].astype(str)).astype(object) + \
            " within office hours"
    if "duty_ward" in first:
        dm = first == "duty_ward"
        wards = np.asarray(units, dtype=object)[np.clip(duty_ward[dm], 0, None)]
        detail[dm] = np.char.add(np.char.add("on duty on ward ", wards.astype(str)),
                                 np.char.add("; ", detail[dm].astype(str))).astype(object)
    none = first == ""
    if none.any():
        detail[none] = _why_not(ctx, p, acc, none, rel, r_desc, r_p, r_start, r_end, pcode,
                                acc_dept, acc_ward, units, acc_role, duty_ward, roles)
    return _assemble(out, flags, detail, first)


def _first(flags: dict[str, np.ndarray]) -> np.ndarray:
    n = len(next(iter(flags.values())))
    first = np.full(n, "", dtype=object)
    for name in reversed(EXPLANATIONS):
        first[flags[name]] = name
    return first


def _assemble(out: pd.DataFrame, flags: dict, detail: np.ndarray,
              first: np.ndarray | None = None) -> pd.DataFrame:
    if first is None:
        first = _first(flags) if len(out) else np.array([], dtype=object)
    out = out.copy()
    out["explained"] = first != ""
    out["explanation"] = pd.array(first.astype(str) if len(first) else [], dtype="string")
    out["detail"] = pd.array(detail.astype(str) if len(detail) else [], dtype="string")
    for name in EXPLANATIONS:
        out["x_" + name] = flags[name]
    return out


def _relation_desc(rel: pd.DataFrame, tz: str) -> np.ndarray:
    """'admission 2025-07-01..2025-07-09, department 心内科, ward 心内科一病区' per relation row."""
    if not len(rel):
        return np.array([], dtype=object)
    start = _fmt_day(_us(rel["start"]), tz)
    end = _fmt_day(_us(rel["end"]), tz)
    end = np.where(end == "", "ongoing", end)
    s = (rel["kind"].astype("string").fillna("") + " " + pd.Series(start, index=rel.index)
         + ".." + pd.Series(end, index=rel.index).astype("string"))
    for col, label in (("department", "department"), ("ward", "ward"), ("user_id", "user")):
        v = rel[col].astype("string")
        s = s + (", " + label + " " + v).fillna("")
    return s.astype(str).to_numpy(dtype=object)


def _why_not(ctx, p, acc, none, rel, r_desc, r_p, r_start, r_end, pcode, acc_dept, acc_ward,
             units, acc_role, duty_ward, roles) -> np.ndarray:
    """Why each unexplained access failed every explanation (only for the few that did)."""
    idx = np.flatnonzero(none)
    unit_names = np.asarray(list(units) + [""], dtype=object)
    dept = np.where(acc_dept[idx] >= 0, unit_names[acc_dept[idx]], "")
    ward = np.where(acc_ward[idx] >= 0, unit_names[acc_ward[idx]], "")
    # the patient's relations, to say where the patient was instead (few rows per patient)
    pr = pd.DataFrame({"p": r_p, "desc": r_desc if len(r_desc) else np.array([], dtype=object),
                       "start": r_start, "end": r_end})
    pr = pr[pr["p"] >= 0]
    per_patient: dict[int, str] = {}
    wanted = set(pcode[idx].tolist())
    if len(pr):
        pr = pr[pr["p"].isin(wanted)].sort_values(["p", "start"])
        for pc, grp in pr.groupby("p", sort=False):   # one per unexplained patient, not event
            descs = grp["desc"].tolist()
            more = f" (+{len(descs) - 3} more)" if len(descs) > 3 else ""
            per_patient[int(pc)] = "; ".join(descs[-3:]) + more
    gtxt = f"-{p['grace_before_days']:g}/+{p['grace_after_days']:g} d grace"
    pat_rel = pd.Series(pcode[idx]).map(per_patient).fillna("none").to_numpy(dtype=object)
    dw = duty_ward[idx]
    duty_txt = np.where(dw < 0, "duty_ward: no duty shift on a ward at that time",
                        "duty_ward: on duty on ward '" + unit_names[np.clip(dw, 0, None)].astype(str)
                        + "', patient not there")
    role = acc_role[idx].astype(str)
    role_txt = np.where(np.isin(role, roles), "outside its office hours", "is not a record role")
    doc_txt = (f"documentation: no create/update/sign on this patient within "
               f"{p['documentation_window_hours']:g} h or in the same encounter"
               if p["documentation_explains"]
               else "documentation: not used (documentation_explains = false)")
    text = (f"own_relation: none active for this user ({gtxt})"
            + " | unit_relation: user's department '" + np.where(dept == "", "-", dept).astype(str)
            + "' / ward '" + np.where(ward == "", "-", ward).astype(str)
            + "' has none active; patient's relations: " + pat_rel.astype(str)
            + " | " + duty_txt
            + f" | request_relation: no consult/order/appointment/access request "
              f"(-{p['kind_grace_before_days']:g}/+{p['kind_grace_after_days']:g} d)"
            + f" | prior_treatment: none within {p['lookback_days']:g} days"
            + " | " + doc_txt
            + f" | break_glass: none within {p['btg_window_hours']:g} h before"
            + " | record_role: role '" + np.where(role == "", "-", role) + "' " + role_txt)
    return np.asarray(text, dtype=object)


def explanation_evidence(row: pd.Series | dict, params: dict | None = None) -> list[dict]:
    """The structured list [{explanation, result, detail}] for one explain row (evidence)."""
    parts = str(row.get("detail", "")).split(" | ")
    bymap = {}
    for part in parts:
        name, _, text = part.partition(": ")
        bymap[name] = text
    res = []
    for name in EXPLANATIONS:
        held = bool(row.get("x_" + name, False))
        res.append({"explanation": name, "result": "held" if held else "failed",
                    "detail": bymap.get(name, "") if not held else str(row.get("detail", ""))})
    return res
