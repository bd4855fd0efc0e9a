"""Daily behaviour features: one row per user and site-local day, computed vectorized.

The anomaly detectors compare a user's day with their peers' days and with their own recent
days. This module turns the access log (plus the care-relation explanations and the duty
schedule, when those engines are available) into that table. Everything is a group-by on
integer codes: ids are factorized once, a (user, day) pair becomes one integer, and counts
are `np.bincount`s; there is no Python loop per event.

`FEATURES` documents every feature in one place; reports read it for labels and meanings.

Definitions worth knowing:
- *day* is the site's calendar day (`ctx.tz`) of the event's `ts`.
- *new patient*: a patient this user did not access in the `history_days` calendar days
  before this day. Where `ctx.events` does not reach `history_days` back from a day (the
  first days of a look-back), the value is unknown (NaN) rather than inflated.
- *department / ward of a patient* at an access: those of the patient's latest care relation
  (any kind, any user) that started at or before the patient's first access by this user that
  day; when none started yet, the patient's earliest relation. A relation without a ward
  leaves the ward unknown; a patient with no relation counts under no department.
- *longest burst*: the most distinct patients accessed within any `burst_minutes` window of
  that day (windows do not cross midnight).
- *unexplained share* comes from the explanation engine (`emraudit.detectors.explain`),
  *off-duty share* from the duty schedule (`emraudit.detectors.schedule`). When an engine is
  not installed or fails, its feature is NaN for every row and a note says so; the models
  then treat it as "at the peer median" (no information), never as zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emraudit.model import OUTPUT_ACTIONS
from emraudit.fastops import local_days, local_ns, stable_order

NS_PER_DAY = 86_400 * 10**9

# name -> documentation. `kind`: count (log-scaled by models) or share (0..1).
# `item`: the rectification item the feature evidences when it drives an anomaly.
FEATURES: dict[str, dict[str, Any]] = {
    "events": dict(kind="count", item="9", en="events", zh="操作次数",
                   doc="access-log rows of this user on this day (every action)"),
    "patients": dict(kind="count", item="9", en="distinct patients", zh="涉及患者数",
                     doc="distinct patients whose records the user touched"),
    "new_patients": dict(kind="count", item="9", en="new patients", zh="新接触患者数",
                         doc="distinct patients this user had not accessed in the previous "
                             "history_days days (NaN where the history does not reach back)"),
    "unexplained": dict(kind="count", item="9", en="unexplained accesses", zh="无诊疗关系查阅次数",
                        doc="patient accesses the care-relation engine could not explain"),
    "unexplained_share": dict(kind="share", item="9", en="share unexplained",
                              zh="无诊疗关系查阅占比",
                              doc="unexplained patient accesses / patient accesses"),
    "off_duty_share": dict(kind="share", item="9", en="share off duty", zh="非当班操作占比",
                           doc="events outside the user's duty hours (roster or inferred) / events"),
    "outputs": dict(kind="count", item="8", en="prints/exports/copies", zh="打印导出复制次数",
                    doc="print, export, copy and download actions"),
    "output_records": dict(kind="count", item="8", en="records output", zh="打印导出记录数",
                           doc="records in those prints/exports (sum of record_count)"),
    "departments": dict(kind="count", item="9", en="patient departments", zh="涉及科室数",
                        doc="distinct departments of the patients touched"),
    "wards": dict(kind="count", item="9", en="patient wards", zh="涉及病区数",
                  doc="distinct wards of the patients touched"),
    "workstations": dict(kind="count", item="9", en="workstations", zh="终端数",
                         doc="distinct workstations used"),
    "ips": dict(kind="count", item="9", en="IP addresses", zh="IP地址数",
                doc="distinct IP addresses used"),
    "vip_accesses": dict(kind="count", item="8", en="unexplained VIP accesses",
                         zh="无诊疗关系VIP患者查阅次数",
                         doc="unexplained accesses to patients flagged VIP (the VIP's own care "
                             "team is not unusual; all accesses when no explanation engine)"),
    "employee_accesses": dict(kind="count", item="8", en="unexplained employee-patient accesses",
                              zh="无诊疗关系职工患者查阅次数",
                              doc="unexplained accesses to patients who are staff members"),
    "sensitive_accesses": dict(kind="count", item="8", en="unexplained sensitive-record accesses",
                               zh="无诊疗关系敏感病历查阅次数",
                               doc="unexplained accesses to patients flagged sensitive"),
    "burst_patients": dict(kind="count", item="9", en="longest burst", zh="30分钟内最多患者数",
                           doc="most distinct patients within any burst_minutes window"),
    "queries": dict(kind="count", item="9", en="searches", zh="检索次数",
                    doc="search/query actions (patient look-ups)"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)     # daily features, stored per user-day

# Trailing features: derived by the anomaly detector from the daily rows (stored baseline plus
# computed days), never stored. They let a slow insider's small daily excess accumulate.
TRAILING: dict[str, tuple[str, int]] = {
    "unexplained_7d": ("unexplained", 7),
    "new_patients_7d": ("new_patients", 7),
}
FEATURES.update({
    "unexplained_7d": dict(kind="count", item="9", en="unexplained accesses, 7 days",
                           zh="近7天无诊疗关系查阅次数", derived=True,
                           doc="unexplained accesses on this day and the 6 days before"),
    "new_patients_7d": dict(kind="count", item="9", en="new patients, 7 days",
                            zh="近7天新接触患者数", derived=True,
                            doc="new patients on this day and the 6 days before"),
})
ALL_FEATURES: tuple[str, ...] = tuple(FEATURES)     # daily + trailing (what models may use)


def add_trailing(df: pd.DataFrame) -> pd.DataFrame:
    """Add the TRAILING columns: per user, sums over calendar days (gaps count as zero);
    NaN where the day's own value is unknown."""
    out = df.copy()
    if df.empty:
        for name in TRAILING:
            out[name] = pd.Series(dtype=float)
        return out
    days = pd.to_datetime(df["day"].astype(str)).to_numpy("datetime64[D]").astype(np.int64)
    di = days - days.min()
    nd = int(di.max()) + 1
    uc, _ = pd.factorize(df["user_id"])
    nu = int(uc.max()) + 1
    for name, (src, width) in TRAILING.items():
        v = df[src].to_numpy(float)
        M = np.zeros((nu, nd + 1))
        np.add.at(M, (uc, di + 1), np.nan_to_num(v))
        C = np.cumsum(M, axis=1)
        lo = np.clip(di + 1 - width, 0, None)
        out[name] = np.where(np.isnan(v), np.nan, C[uc, di + 1] - C[uc, lo])
    return out
KEY_COLUMNS = ("user_id", "day", "role", "department")


def _codes(s: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for missing) and the distinct values, cheaply for categoricals."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(np.int64), pd.Index(s.cat.categories)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


def _distinct_per_group(group: np.ndarray, value: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct non-negative `value`s per group (both integer arrays)."""
    ok = value >= 0
    if not ok.any():
        return np.zeros(n_groups)
    nv = int(value[ok].max()) + 1
    pairs = pd.unique(group[ok].astype(np.int64) * nv + value[ok])
    return np.bincount(pairs // nv, minlength=n_groups).astype(float)


def _relation_codes(rel: pd.DataFrame, p_index: pd.Index, p_code: np.ndarray,
                    when: np.ndarray, tz: str) -> dict[str, np.ndarray]:
    """Department and ward codes (-1: none) of each access's patient at `when` (site-local
    wall-clock ns): those of the patient's latest relation started at or before it, else of
    the patient's earliest relation. A sorted search on one int64 key (patient, second)
    instead of a join: no sort of the accesses is needed."""
    out = {c: np.full(len(p_code), -1, dtype=np.int64) for c in ("department", "ward")}
    if rel is None or rel.empty or len(p_code) == 0:
        return out
    rp = p_index.get_indexer(rel["patient_id"])
    keep = rp >= 0
    if not keep.any():
        return out
    r = rel[keep]
    rp = rp[keep]
    start_s = local_ns(r["start"], tz) // 10**9
    t0 = min(int(start_s.min()), int(when.min() // 10**9)) - 1
    key_r = rp.astype(np.int64) * (1 << 32) + np.clip(start_s - t0, 0, (1 << 32) - 1)
    o = stable_order(key_r)
    key_r, rp_s = key_r[o], rp[o]
    key_l = p_code.astype(np.int64) * (1 << 32) + np.clip(when // 10**9 - t0, 0, (1 << 32) - 1)
    i = np.searchsorted(key_r, key_l, side="right") - 1
    hit = (i >= 0) & (rp_s[np.clip(i, 0, None)] == p_code)
    j = np.searchsorted(key_r, p_code.astype(np.int64) * (1 << 32), side="left")
    j_ok = (j < len(key_r)) & (rp_s[np.clip(j, None, len(key_r) - 1)] == p_code)
    pick = np.where(hit, i, np.where(j_ok, j, -1))
    for c in ("department", "ward"):
        if c not in r.columns:
            continue
        vcode, _ = pd.factorize(r[c].astype("string").to_numpy()[o], use_na_sentinel=True)
        out[c] = np.where(pick >= 0, vcode[np.clip(pick, 0, None)], -1).astype(np.int64)
    return out


def _engine_explained(ctx) -> pd.DataFrame | None:
    """The explanation engine's verdicts, or None (with a note) when it is unavailable."""
    try:
        from emraudit.detectors.explain import explain_accesses
    except ImportError:
        ctx.notes.append("features: explanation engine not installed; unexplained_share is NaN")
        return None
    try:
        return explain_accesses(ctx)
    except Exception as exc:  # an optional input must not stop the behaviour features
        ctx.notes.append(f"features: explanation engine failed ({type(exc).__name__}: {exc}); "
                         "unexplained_share is NaN")
        return None


def _engine_on_duty(ctx, events: pd.DataFrame) -> np.ndarray | None:
    try:
        from emraudit.detectors.schedule import duty_mask
    except ImportError:
        ctx.notes.append("features: duty schedule not installed; off_duty_share is NaN")
        return None
    try:
        on_duty, _basis = duty_mask(ctx, events)
    except Exception as exc:
        ctx.notes.append(f"features: duty schedule failed ({type(exc).__name__}: {exc}); "
                         "off_duty_share is NaN")
        return None
    return pd.Series(on_duty).reindex(events.index).fillna(True).to_numpy(bool)


def _aligned_positions(ev: pd.DataFrame, ex: pd.DataFrame) -> np.ndarray | None:
    """Row positions of `ex` in `ev` when ex kept ev's RangeIndex labels (checked on a
    sample of event ids), else None."""
    if not isinstance(ev.index, pd.RangeIndex) or ev.index.start != 0 or ev.index.step != 1:
        return None
    if "event_id" not in ex.columns or "event_id" not in ev.columns:
        return None
    if not pd.api.types.is_integer_dtype(ex.index.dtype):
        return None
    pos = ex.index.to_numpy(np.int64)
    if len(pos) and (pos.min() < 0 or pos.max() >= len(ev)):
        return None
    probe = np.linspace(0, len(pos) - 1, num=min(len(pos), 1000)).astype(np.int64)
    a = ev["event_id"].iloc[pos[probe]].to_numpy().astype(str)
    b = ex["event_id"].iloc[probe].to_numpy().astype(str)
    return pos if (a == b).all() else None


def empty_features() -> pd.DataFrame:
    data = {"user_id": pd.Series(dtype="string"), "day": pd.Series(dtype="string"),
            "role": pd.Series(dtype="string"), "department": pd.Series(dtype="string")}
    data.update({f: pd.Series(dtype=float) for f in FEATURE_NAMES})
    data["in_window"] = pd.Series(dtype=bool)
    return pd.DataFrame(data)


def user_day_features(ctx, *, history_days: int = 30, burst_minutes: int = 30,
                      events: pd.DataFrame | None = None,
                      first_day: str | None = None) -> pd.DataFrame:
    """One row per (user, site-local day) present in `ctx.events` (look-back and window).

    `first_day` ("YYYY-MM-DD"): the first day of the history the events are part of, when
    they are one partition of it (new patients are unknown within `history_days` of it);
    by default the events' own first day.

    Columns: user_id, day ("YYYY-MM-DD"), role, department (from ctx.users; "" when unknown),
    one float column per FEATURES entry, and in_window (the day holds an in-window event).
    Sorted by (day, user_id).
    """
    ev = ctx.events if events is None else events
    if ev is None or len(ev) == 0:
        return empty_features()
    n = len(ev)
    local = local_ns(ev["ts"], ctx.tz)
    day_abs = local // NS_PER_DAY
    d0 = int(day_abs.min())
    if first_day is not None:
        d0 = min(d0, int(np.datetime64(first_day, "D").astype(np.int64)))
    dayi = (day_abs - d0).astype(np.int64)
    nd = int(dayi.max()) + 1
    ucode, users = _codes(ev["user_id"])
    nu = len(users)
    if (ucode < 0).any():  # validated logs always carry a user; be safe anyway
        ucode = np.where(ucode < 0, nu, ucode)
        users = users.append(pd.Index([""]))
        nu += 1
    ud_full = ucode * nd + dayi
    present_counts = np.bincount(ud_full, minlength=nu * nd)
    present = np.flatnonzero(present_counts)
    remap = np.full(nu * nd, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    ud = remap[ud_full]
    G = len(present)
    feats: dict[str, np.ndarray] = {}
    feats["events"] = present_counts[present].astype(float)

    # actions -------------------------------------------------------------------------
    if "action" in ev.columns:
        acode, acts = _codes(ev["action"].astype("string") if not isinstance(
            ev["action"].dtype, pd.CategoricalDtype) else ev["action"])
        acts_l = pd.Index(acts.astype(str))
        is_out_a = np.append(acts_l.isin(OUTPUT_ACTIONS), False)
        is_q_a = np.append(acts_l == "query", False)
        is_out = is_out_a[acode]
        is_query = is_q_a[acode]
    else:
        is_out = np.zeros(n, bool)
        is_query = np.zeros(n, bool)
    feats["outputs"] = np.bincount(ud, weights=is_out, minlength=G)
    if "record_count" in ev.columns:
        rc = pd.to_numeric(ev["record_count"], errors="coerce").to_numpy(float)
        rc = np.where(np.isnan(rc), 1.0, rc)
    else:
        rc = np.ones(n)
    feats["output_records"] = np.bincount(ud, weights=np.where(is_out, rc, 0.0), minlength=G)
    feats["queries"] = np.bincount(ud, weights=is_query, minlength=G)

    # where from ----------------------------------------------------------------------
    for col, name in (("workstation", "workstations"), ("ip", "ips")):
        if col in ev.columns:
            c, _ = _codes(ev[col])
            feats[name] = _distinct_per_group(ud, c, G)
        else:
            feats[name] = np.full(G, np.nan)

    # patient accesses ----------------------------------------------------------------
    if "patient_id" in ev.columns:
        pcode_all, pats = _codes(ev["patient_id"])
    else:
        pcode_all, pats = np.full(n, -1, np.int64), pd.Index([])
    np_ = max(len(pats), 1)
    prow = np.flatnonzero(pcode_all >= 0)
    ts_ns = local  # wall-clock ns are fine for ordering and gaps within a day
    pair = ucode[prow] * np_ + pcode_all[prow]
    tsp = ts_ns[prow]
    if len(tsp) and (np.diff(tsp) < 0).any():          # ctx.events is sorted by ts already
        order0 = stable_order(tsp)
        order = order0[stable_order(pair[order0])]
    else:
        order = stable_order(pair)
    rows = prow[order]                   # patient rows sorted by (user, patient, ts)
    s_pair = pair[order]
    s_day = dayi[rows]
    s_ts = ts_ns[rows]
    s_ud = ud[rows]
    m = len(rows)
    same_pair = np.zeros(m, bool)
    same_pair[1:] = s_pair[1:] == s_pair[:-1]
    first_of_day = np.ones(m, bool)
    first_of_day[1:] = ~(same_pair[1:] & (s_day[1:] == s_day[:-1]))
    f = np.flatnonzero(first_of_day)
    feats["patients"] = np.bincount(s_ud[f], minlength=G).astype(float)

    prev_day = np.full(m, -10**9, dtype=np.int64)
    prev_day[1:] = s_day[:-1]
    seen_recently = same_pair & (s_day - prev_day <= history_days)
    is_new = first_of_day & ~seen_recently
    new_cnt = np.bincount(s_ud, weights=is_new, minlength=G)
    ud_day = present % nd
    feats["new_patients"] = np.where(ud_day >= history_days, new_cnt, np.nan)

    # longest burst: merged [first, last + W) intervals per (user, patient, day), swept
    W = int(burst_minutes) * 60 * 10**9
    gap_ok = np.zeros(m, bool)
    gap_ok[1:] = (s_ts[1:] - s_ts[:-1]) < W
    run_start = first_of_day | ~gap_ok
    rs = np.flatnonzero(run_start)
    re = np.append(rs[1:] - 1, m - 1) if m else rs
    if len(rs):
        r_ud = s_ud[rs]
        day_start = s_day[rs] * NS_PER_DAY + d0 * NS_PER_DAY
        t = np.concatenate([s_ts[rs] - day_start, s_ts[re] + W - day_start])
        delta = np.concatenate([np.ones(len(rs), np.int64), -np.ones(len(rs), np.int64)])
        g = np.concatenate([r_ud, r_ud])
        t_us = t // 1000                    # microseconds since the day's midnight
        if G < (1 << 24) and t_us.max() < (1 << 38):
            # one int64 key (user-day, time, end-before-start): a single sort
            key = (g << 39) | (t_us << 1) | (delta > 0)
            o = np.argsort(key)
        else:
            o = np.lexsort((delta, t, g))   # ends (-1) before starts at the same instant
        d_o = delta[o]
        cum = np.cumsum(d_o)
        burst = np.zeros(G)
        starts = d_o > 0
        gs = g[o][starts]
        vals = cum[starts]
        bnd = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        burst[gs[bnd]] = np.maximum.reduceat(vals, bnd)
        feats["burst_patients"] = burst
    else:
        feats["burst_patients"] = np.zeros(G)

    # departments and wards of the patients touched (first access of the patient that day)
    rel = getattr(ctx, "care_relations", None)
    fr = rows[f]
    codes = (_relation_codes(rel, pats, pcode_all[fr], ts_ns[fr], ctx.tz)
             if rel is not None and len(pats) else {})
    for col, name in (("department", "departments"), ("ward", "wards")):
        if rel is None or col not in rel.columns or len(pats) == 0:
            feats[name] = np.full(G, np.nan)
            continue
        feats[name] = _distinct_per_group(s_ud[f], codes[col], G)

    # explanation engine and duty schedule ---------------------------------------------
    ex = _engine_explained(ctx)
    unexp_ev = None                    # per event: an unexplained patient access
    if ex is not None and len(ex):
        pos = _aligned_positions(ev, ex)
        unexp = ~ex["explained"].to_numpy(bool)
        if pos is not None:        # the engine kept ctx.events' row labels: no string lookups
            eud = ud[pos]
            unexp_ev = np.zeros(n, bool)
            unexp_ev[pos] = unexp
        else:
            eu = users.get_indexer(ex["user_id"].astype("string"))
            eday = local_ns(ex["ts"], ctx.tz) // NS_PER_DAY - d0
            ok = (eu >= 0) & (eday >= 0) & (eday < nd)
            eud = remap[eu[ok] * nd + eday[ok]]
            ok2 = eud >= 0
            eud = eud[ok2]
            unexp = unexp[ok][ok2]
            if "event_id" in ex.columns and "event_id" in ev.columns:
                unexp_ev = ev["event_id"].astype("string").isin(
                    ex.loc[~ex["explained"].to_numpy(bool), "event_id"].astype("string")
                ).fillna(False).to_numpy(bool)
        tot = np.bincount(eud, minlength=G).astype(float)
        une = np.bincount(eud, weights=unexp, minlength=G)
        feats["unexplained"] = une
        feats["unexplained_share"] = np.divide(une, tot, out=np.zeros(G), where=tot > 0)
    elif ex is not None:
        unexp_ev = np.zeros(n, bool)
        feats["unexplained"] = np.zeros(G)
        feats["unexplained_share"] = np.zeros(G)
    else:
        feats["unexplained"] = np.full(G, np.nan)
        feats["unexplained_share"] = np.full(G, np.nan)

    # patient flags: unexplained accesses to VIP, employee and sensitive patients --------
    pt = getattr(ctx, "patients", None)
    ud_p = ud[prow]
    p_idx = (pats.get_indexer(pt["patient_id"]) if pt is not None and len(pats)
             else np.full(0 if pt is None else len(pt), -1))
    for flag, name in (("vip", "vip_accesses"), ("sensitive", "sensitive_accesses"),
                       ("employee_user_id", "employee_accesses")):
        if pt is None or flag not in pt.columns:
            feats[name] = np.full(G, np.nan)
            continue
        arr = np.zeros(np_, bool)
        idx = p_idx
        vals = (pt[flag].notna() & (pt[flag].astype("string").str.strip() != "")).to_numpy(bool) \
            if flag == "employee_user_id" else pt[flag].fillna(False).astype(bool).to_numpy()
        ok = idx >= 0
        arr[idx[ok]] = vals[ok]
        hit = arr[pcode_all[prow]]
        if unexp_ev is not None:     # the flagged patient's own care team is not unusual
            hit = hit & unexp_ev[prow]
        feats[name] = np.bincount(ud_p, weights=hit, minlength=G)

    on = _engine_on_duty(ctx, ev)
    if on is not None:
        off = np.bincount(ud, weights=~on, minlength=G)
        feats["off_duty_share"] = off / feats["events"]
    else:
        feats["off_duty_share"] = np.full(G, np.nan)

    # assemble ------------------------------------------------------------------------
    u_of = present // nd
    day_str = pd.Index(pd.to_datetime((np.arange(nd) + d0) * NS_PER_DAY).strftime("%Y-%m-%d"))
    uid = pd.Series(users.to_numpy()[u_of], dtype="string")
    role, dept = _user_attrs(ctx, uid)
    if "in_window" in ev.columns:
        inw = np.bincount(ud, weights=ev["in_window"].to_numpy(bool), minlength=G) > 0
    else:
        inw = np.ones(G, bool)
    out = pd.DataFrame({"user_id": uid, "day": pd.Series(day_str.to_numpy()[ud_day],
                                                         dtype="string"),
                        "role": role, "department": dept})
    for name in FEATURE_NAMES:
        out[name] = feats[name].astype(float)
    out["in_window"] = inw
    return out.sort_values(["day", "user_id"], kind="stable").reset_index(drop=True)


def _user_attrs(ctx, uid: pd.Series) -> tuple[pd.Series, pd.Series]:
    users = getattr(ctx, "users", None)
    if users is None or "user_id" not in users.columns:
        blank = pd.Series("", index=uid.index, dtype="string")
        return pd.Series("other", index=uid.index, dtype="string"), blank
    u = users.drop_duplicates("user_id", keep="last").set_index(
        users.drop_duplicates("user_id", keep="last")["user_id"].astype("string"))
    role = (u["role"].astype("string") if "role" in u.columns else
            pd.Series("other", index=u.index, dtype="string"))
    dept = (u["department"].astype("string") if "department" in u.columns else
            pd.Series("", index=u.index, dtype="string"))
    r = role.reindex(uid.to_numpy()).fillna("other").astype("string")
    d = dept.reindex(uid.to_numpy()).fillna("").astype("string")
    return r.reset_index(drop=True), d.reset_index(drop=True)


def day_event_rows(ctx, user_id: str, day: str) -> pd.DataFrame:
    """The events of one user-day (for a finding's evidence; called once per finding)."""
    sub = user_rows(ctx, user_id)
    d = local_days(sub["ts"], ctx.tz)
    return sub[d.to_numpy() == day]


def user_rows(ctx, user_id: str) -> pd.DataFrame:
    """All of one user's events in ctx.events, in their order there (for evidence)."""
    ev = ctx.events
    key = "features.rows_by_user"
    if key not in ctx.memo:
        ctx.memo[key] = _rows_by_user(ev["user_id"])
    lookup, order, bounds = ctx.memo[key]
    code = lookup.get(user_id)
    if code is None:
        return ev.iloc[0:0]
    return ev.iloc[order[bounds[code]:bounds[code + 1]]]


def _rows_by_user(user_id: pd.Series) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """(user -> code, row positions ordered by code then position, each code's bounds in
    that order): the rows of one user without a dict of arrays for every user."""
    if isinstance(user_id.dtype, pd.CategoricalDtype):
        codes, names = user_id.cat.codes.to_numpy(), user_id.cat.categories
    else:
        codes, names = pd.factorize(user_id)
    order = stable_order(codes)
    codes = np.asarray(codes, dtype=np.int64)
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return {str(n): i for i, n in enumerate(names)}, order, bounds
