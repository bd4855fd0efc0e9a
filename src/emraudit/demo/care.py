"""Patients, encounters and care relations: who is entitled to read which record, when.

Inpatient stays are simulated bed by bed (length of stay by department, admissions in the
afternoon and evening, discharges late morning), some arriving through the emergency
department, ICU stays continuing on a ward (转科), some patients dying. Outpatient clinics
run weekday sessions. Each stay segment yields the relations a Chinese HIS holds: a ward-level
admission/transfer row (user empty: the whole ward team), the responsible physician, the
resident and the responsible nurse (诊疗小组), consultations (会诊) and orders whose receiving
department (检验科, 放射科, 药剂科, 康复医学科, 呼吸治疗科) is what makes their staff's access
legitimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emraudit.demo.roster import DAY, H, Roster

ED_DEPT = "急诊科"


@dataclass
class Care:
    segments: pd.DataFrame     # seg, enc, patient, ward, department, campus, loc, start, end, ...
    encounters: pd.DataFrame   # enc, enc_id, patient, kind (Z/J/M), start, end
    visits: pd.DataFrame       # outpatient visits: enc, patient, department, user, loc, start
    relations: pd.DataFrame    # canonical care_relations with internal ints (patient, user)


def _lognormal_days(rng, median, n, sigma=0.6):
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _admit_tod(rng, n):
    """Admission time of day: afternoon/evening heavy (MIMIC admittime profile)."""
    hours = np.arange(24)
    w = np.array([18, 11, 9, 3, 9, 5, 4, 18, 7, 4, 8, 10, 13, 9, 13, 15, 16, 12, 16, 16, 20,
                  16, 19, 21], float)
    h = rng.choice(hours, n, p=w / w.sum())
    return h * H + rng.integers(0, 3600, n)


def build_segments(rng, wards: pd.DataFrame, locations: pd.DataFrame, t0, days, warmup,
                   ed_per_day: float) -> pd.DataFrame:
    """Ward/ICU/ED stay segments over [t0 - warmup days, t0 + days)."""
    t_begin = t0 - warmup * DAY
    t_end = t0 + days * DAY
    span = (warmup + days) / 1.0
    loc_of = dict(zip(locations.name, locations.loc_idx))
    rows = []
    bedwards = wards[wards.kind.isin(["ward", "icu"])]
    for w in bedwards.itertuples():
        k = int(np.ceil(span / max(0.5, w.los * 0.4))) + 3
        los = np.maximum(_lognormal_days(rng, w.los, (w.beds, k)), 0.4)
        gap = rng.exponential(0.6, (w.beds, k))
        first = -rng.random((w.beds, 1)) * w.los   # beds already occupied at the start
        cum = np.cumsum(los + gap, axis=1) - los - gap + first
        start_d = cum.ravel()
        end_d = (cum + los).ravel()
        keep = (start_d < span) & (end_d > -w.los * 2)
        start_d, end_d = start_d[keep], end_d[keep]
        n = len(start_d)
        sday = np.floor(start_d).astype(np.int64)
        st = t_begin + sday * DAY + _admit_tod(rng, n)
        eday = np.maximum(np.floor(end_d).astype(np.int64), sday + 1)
        en = t_begin + eday * DAY + 9 * H + rng.integers(0, 4 * 3600, n)
        for a, b in zip(st, en):
            rows.append((w.ward, a, b))
    seg = pd.DataFrame(rows, columns=["ward", "start", "end"])
    wi = wards.set_index("ward")
    seg["kind"] = seg.ward.map(wi.kind)
    seg = seg.sort_values(["start", "ward"], kind="stable").reset_index(drop=True)
    n = len(seg)
    seg["enc"] = np.arange(n)
    seg["order"] = 0
    seg["died"] = False
    # ICU stays continue on a ward (转科) or end in death; ward deaths are rarer
    icu = (seg.kind == "icu").to_numpy()
    dies = rng.random(n) < np.where(icu, 0.08, 0.012)
    seg["died"] = dies
    general = wards[(wards.kind == "ward") & ~wards.sensitive].ward.to_numpy()
    cont = icu & ~dies & (rng.random(n) < 0.7)
    extra = seg[cont].copy()
    extra["ward"] = general[rng.integers(0, len(general), len(extra))]
    extra["start"] = seg.loc[cont, "end"].to_numpy()
    extra["end"] = extra["start"] + (_lognormal_days(rng, 5, len(extra)) * DAY).astype(np.int64)
    extra["kind"] = "ward"
    extra["order"] = 1
    extra["died"] = False
    # a few ward stays move to another department's ward (转科)
    wmove = (~icu) & ~dies & (rng.random(n) < 0.04)
    extra2 = seg[wmove].copy()
    extra2["ward"] = general[rng.integers(0, len(general), len(extra2))]
    extra2 = extra2[extra2.ward != seg.loc[wmove, "ward"].to_numpy()]
    mid = ((extra2.start + extra2.end) // 2).to_numpy()
    seg.loc[extra2.index, "end"] = mid
    extra2["start"] = mid
    extra2["order"] = 1
    # some arrive through the emergency department
    ed_ward = wards[wards.kind == "ed"].ward
    parts = [seg, extra, extra2]
    if len(ed_ward):
        via_ed = rng.random(n) < np.where(icu, 0.5, 0.3)
        pre = seg[via_ed].copy()
        pre["ward"] = ed_ward.iloc[0]
        pre["end"] = seg.loc[via_ed, "start"].to_numpy()
        pre["start"] = pre["end"] - (rng.uniform(1, 6, len(pre)) * H).astype(np.int64)
        pre["kind"] = "ed"
        pre["order"] = -1
        pre["died"] = False
        # standalone ED visits, diurnal
        n_ed = int(rng.poisson(ed_per_day * (warmup + days)))
        hours = np.arange(24)
        w = np.array([3, 2, 2, 2, 2, 2, 3, 4, 6, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 4, 4],
                     float)
        dd = rng.integers(0, warmup + days, n_ed)
        st = t_begin + dd * DAY + rng.choice(hours, n_ed, p=w / w.sum()) * H + rng.integers(
            0, 3600, n_ed)
        alone = pd.DataFrame({"ward": ed_ward.iloc[0], "start": st,
                              "end": st + (rng.uniform(0.7, 6, n_ed) * H).astype(np.int64),
                              "kind": "ed", "enc": n + np.arange(n_ed), "order": 0,
                              "died": rng.random(n_ed) < 0.002})
        parts += [pre, alone]
    seg = pd.concat(parts, ignore_index=True)
    seg = seg[(seg.end > t_begin) & (seg.start < t_end) & (seg.end > seg.start)]
    seg = seg.sort_values(["enc", "order", "start"], kind="stable").reset_index(drop=True)
    seg["department"] = seg.ward.map(wi.department)
    seg["campus"] = seg.ward.map(wi.campus)
    seg["loc"] = seg.ward.map(loc_of).astype(np.int64)
    seg["ward_idx"] = seg.ward.map(wi.ward_idx).astype(np.int64)
    # the ED part of an admission is its own encounter (急诊号); the stay gets a 住院号
    is_ed = (seg.kind == "ed").to_numpy()
    seg["enc_kind"] = np.where(is_ed, "J", "Z")
    seg["enc2"] = seg["enc"] * 2 + is_ed
    seg["first"] = ~seg.duplicated(["enc2"])
    seg["seg"] = np.arange(len(seg))
    return seg


def build_visits(rng, departments, roster: Roster, t0, days, per_session: float
                 ) -> pd.DataFrame:
    """Weekday clinic sessions (上午/下午门诊) per clinical department, one physician each."""
    deps = departments[departments.kind.isin(["ward", "clinic"])].department.tolist()
    wd0 = int(pd.Timestamp(int(t0), unit="s").weekday())
    deps = [d for d in deps if f"P:{d}" in roster.pools]
    days_w = np.array([d for d in range(days) if (wd0 + d) % 7 < 5], np.int64)
    # sessions: department x weekday x (morning, afternoon)
    dep_i = np.repeat(np.arange(len(deps)), len(days_w) * 2)
    day_i = np.tile(np.repeat(days_w, 2), len(deps))
    am = np.tile(np.array([True, False]), len(deps) * len(days_w))
    s0 = np.where(am, 8 * H, 13 * H + 1800)
    length = np.where(am, 4 * H, 3 * H + 1800)
    base = t0 + day_i * DAY + s0
    pool = np.array([roster.pools[f"P:{d}"] for d in deps], np.int64)[dep_i]
    doc = roster.pick(pool, "p", base + 600, rng.random(len(base)))
    k = np.where(doc >= 0, rng.poisson(per_session, len(base)), 0)
    i = np.repeat(np.arange(len(base)), k)
    start = base[i] + (rng.random(len(i)) * (length[i] - 900)).astype(np.int64)
    v = pd.DataFrame({"department": np.array(deps, dtype=object)[dep_i[i]], "user": doc[i],
                      "start": start})
    return v.sort_values(["start", "department"], kind="stable").reset_index(drop=True)


def assign_patients(rng, seg: pd.DataFrame, visits: pd.DataFrame) -> tuple[np.ndarray,
                                                                           np.ndarray, int]:
    """Patient index per encounter (segments share their encounter's patient) and visit."""
    encs = np.unique(seg["enc"].to_numpy())
    n_enc = len(encs)
    pat_enc = np.arange(n_enc)
    # readmissions: a share of encounters are earlier patients coming back
    re = np.flatnonzero(rng.random(n_enc) < 0.08)
    re = re[re > 10]
    pat_enc[re] = pat_enc[(rng.random(len(re)) * re).astype(np.int64)]
    next_id = n_enc
    nv = len(visits)
    pat_v = next_id + np.arange(nv)
    back = rng.random(nv) < 0.15   # a follow-up clinic visit of an earlier inpatient
    pat_v[back] = pat_enc[rng.integers(0, n_enc, int(back.sum()))]
    enc_pat = dict(zip(encs, pat_enc))
    seg_pat = seg["enc"].map(enc_pat).to_numpy()
    # compact the ids so that patient index space is dense
    allp = np.concatenate([seg_pat, pat_v])
    uniq, inv = np.unique(allp, return_inverse=True)
    return inv[:len(seg_pat)], inv[len(seg_pat):], len(uniq)


def relations(rng, seg: pd.DataFrame, users: pd.DataFrame, roster: Roster, t_end) -> pd.DataFrame:
    """Care relations for every segment: ward-level, responsible physician, resident, nurse."""
    u = users
    n = len(seg)
    dep = seg.department.to_numpy()
    ward = seg.ward.to_numpy()
    start = seg.start.to_numpy()
    end = seg.end.to_numpy()
    kind_seg = seg.kind.to_numpy()
    rel_kind = np.where(kind_seg == "ed", "outpatient",
                        np.where(seg["first"].to_numpy(), "admission", "transfer"))
    out = [pd.DataFrame({"patient": seg.patient.to_numpy(), "user": -1, "department": dep,
                         "ward": ward, "kind": rel_kind, "start": start, "end": end,
                         "seg": seg.seg.to_numpy(), "role": "ward"})]
    # responsible physician and resident: drawn from the department's staff
    att = u[u._kind == "attending"]
    res = u[u._kind == "resident"]
    att_by = att.groupby("department").groups
    res_by = res.groupby("department").groups
    pa = np.full(n, -1, np.int64)
    pr = np.full(n, -1, np.int64)
    r1 = rng.random(n)
    r2 = rng.random(n)
    for d in np.unique(dep):
        m = dep == d
        if d in att_by:
            c = np.sort(np.asarray(att_by[d]))
            pa[m] = c[(r1[m] * len(c)).astype(int)]
        if d in res_by:
            c = np.sort(np.asarray(res_by[d]))
            pr[m] = c[(r2[m] * len(c)).astype(int)]
    # ICU and ED: the physician on duty at arrival is the responsible one
    for k in ("icu", "ed"):
        m = kind_seg == k
        if m.any():
            d0 = dep[m][0]
            pid = roster.pools.get(f"P:{d0}")
            if pid is not None:
                pa[m] = roster.pick(np.full(m.sum(), pid), "h12", start[m], r1[m])
                pr[m] = -1
    # rotating residents take over the residency of patients in their current ward
    res_rows = []
    for (i, wa, wb, switch) in roster.rotations:
        sw = roster.t0 + switch * DAY + 8 * H
        for w, a, b in ((wa, -10**12, sw), (wb, sw, 10**13)):
            m = (ward == w) & (start < b) & (end > a)
            take = m & (rng.random(n) < 0.5)
            pr[take] = -1
            idx = np.flatnonzero(take)
            res_rows.append(pd.DataFrame({
                "patient": seg.patient.to_numpy()[idx], "user": i, "department": dep[idx],
                "ward": ward[idx], "kind": "care_team", "start": np.maximum(start[idx], a),
                "end": np.minimum(end[idx], b), "seg": idx, "role": "resident"}))
    # responsible nurse: a rotating nurse of the ward
    nur = u[u._kind == "rot"]
    nur_by = nur.groupby("ward").groups
    pn = np.full(n, -1, np.int64)
    r3 = rng.random(n)
    for w in np.unique(ward):
        if w in nur_by:
            c = np.sort(np.asarray(nur_by[w]))
            m = ward == w
            pn[m] = c[(r3[m] * len(c)).astype(int)]
    base = dict(patient=seg.patient.to_numpy(), department=dep, ward=ward, start=start,
                end=end, seg=seg.seg.to_numpy())
    for who, kind, role in ((pa, rel_kind, "attending"), (pr, "care_team", "resident"),
                            (pn, "care_team", "nurse")):
        f = pd.DataFrame({**base, "user": who, "kind": kind, "role": role})
        out.append(f[f.user >= 0])
    out += res_rows
    rel = pd.concat(out, ignore_index=True)
    rel = rel[rel.end > rel.start]
    return rel
