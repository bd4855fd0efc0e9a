"""Legitimate accesses: what a real hospital's log is made of, and where false alarms come from.

Every generator works on arrays (stay segments × shifts, patient-days, relations) expanded
with `np.repeat`; no loop runs per event. Each access is backed by something an auditor can
check: a care relation of the user or of the user's ward/department active at the time, a
float-cover shift on the patient's ward, a consult or order of the user's department, a
prior treatment (follow-up after discharge), or a records role in office hours. Finally
`duty_filter` keeps only accesses inside the user's own duty (with half an hour of overtime)
and outside leave and surgery, and `sessions` adds logins, logouts, workstations and sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.demo.events import A, M, SRC, EventBuf, choose, expand
from emraudit.demo.roster import DAY, H, slot_bounds, slot_of


def _times(rng, a, b, snap=None, p_snap=0.0):
    """Uniform times in [a, b); a share snapped to the charting grid (every `snap` seconds)
    plus a store-time lag (median ~14 min, as in MIMIC's storetime - charttime)."""
    t = a + (rng.random(len(a)) * (b - a)).astype(np.int64)
    if snap:
        s = rng.random(len(a)) < p_snap
        grid = (t // snap) * snap + (rng.exponential(900, len(a))).astype(np.int64)
        t = np.where(s & (grid >= a) & (grid < b), grid, t)
    return t


def _day_times(rng, day_start, n):
    """Office-day times: a morning peak (rounds, 09-11) and an afternoon block."""
    am = rng.random(n) < 0.6
    off = np.where(am, 8 * H + rng.integers(0, 4 * 3600, n),
                   13 * H + 1800 + rng.integers(0, 4 * 3600, n))
    return day_start + off


def patient_days(w) -> pd.DataFrame:
    """(segment, day) for inpatients present at 10:00 of a window day."""
    s = w.seg[w.seg.kind.isin(["ward", "icu"])]
    ref = w.t0 + 10 * H
    d0 = np.ceil((s.start.to_numpy() - ref) / DAY).astype(np.int64)
    d1 = np.floor((s.end.to_numpy() - 1 - ref) / DAY).astype(np.int64)
    d0 = np.maximum(d0, 0)
    d1 = np.minimum(d1, w.days - 1)
    cnt = np.maximum(d1 - d0 + 1, 0)
    i = expand(cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    day = d0[i] + (np.arange(len(i)) - first)
    out = s.iloc[i].reset_index(drop=True)
    out["day"] = day
    out["day_start"] = w.t0 + day * DAY
    out["weekday"] = (w.weekday0 + day) % 7 < 5
    return out


def _slots(w, seg, scheme):
    """(segment, slot) rows for segments in wards of one shift scheme, clipped to the window."""
    a = np.maximum(seg.start.to_numpy(), w.t0)
    b = np.minimum(seg.end.to_numpy(), w.t_end)
    ok = b > a
    seg, a, b = seg[ok], a[ok], b[ok]
    s0 = slot_of(scheme, a, w.t0)
    s1 = slot_of(scheme, b - 1, w.t0)
    cnt = s1 - s0 + 1
    i = expand(cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    slot = s0[i] + (np.arange(len(i)) - first)
    ss, se = slot_bounds(scheme, slot, w.t0)
    out = seg.iloc[i].reset_index(drop=True)
    out["slot"] = slot
    out["a"] = np.maximum(a[i], ss)
    out["b"] = np.minimum(b[i], se)
    return out[out.b > out.a].reset_index(drop=True)


def nurse_charting(w, buf: EventBuf):
    """Ward nurses chart their patients through every shift (ICU hourly, wards 4-hourly)."""
    rng = w.rng
    sch = dict(zip(w.wards.ward, np.where(w.wards.kind.isin(["icu", "ed"]), "h12", "h8")))
    for scheme in ("h8", "h12"):
        seg = w.seg[w.seg.ward.map(sch) == scheme]
        ps = _slots(w, seg, scheme)
        if ps.empty:
            continue
        pool = ps.ward.map(lambda x: w.roster.pools.get(f"N:{x}", -1)).to_numpy()
        nurse = w.roster.pick(pool, scheme, ps.a.to_numpy(), rng.random(len(ps)))
        kind = ps.kind.to_numpy()
        # ICU nurses chart about hourly whatever the hospital's size (never under one every
        # two hours); ward and ED rates scale with the intensity
        rate = np.where(kind == "icu", max(0.5, w.intensity),
                        np.where(kind == "ed", 0.7, 0.3) * w.intensity)
        hours = (ps.b - ps.a).to_numpy() / 3600
        n = rng.poisson(rate * hours)
        n[nurse < 0] = 0
        i = expand(n)
        a = ps.a.to_numpy()[i]
        b = ps.b.to_numpy()[i]
        icu = kind[i] == "icu"
        t = np.where(icu, _times(rng, a, b, 3600, 0.7), _times(rng, a, b, 4 * 3600, 0.5))
        act = choose(rng, len(i), {A["create"]: 40, A["update"]: 25, A["view"]: 30,
                                   A["sign"]: 5})
        mod = choose(rng, len(i), {M["护理记录"]: 45, M["体温单"]: 30, M["医嘱"]: 25})
        buf.add(t, nurse[i], ps.patient.to_numpy()[i], act, mod, ps["loc"].to_numpy()[i],
                ps.enc_idx.to_numpy()[i], src=SRC["nurse"])


def ward_day_staff(w, pdays, buf):
    """Head and day nurses (医嘱处理) and trainees (进修/实习) on weekday days."""
    rng = w.rng
    pd_ = pdays[pdays.weekday & pdays.kind.eq("ward")]
    for prefix, lam, src, acts in (
            ("D", 1.2, "nurse_day", {A["view"]: 50, A["update"]: 40, A["print"]: 10}),
            ("T", 0.5, "trainee", {A["view"]: 60, A["create"]: 30, A["update"]: 10})):
        pool = pd_.ward.map(lambda x: w.roster.pools.get(f"{prefix}:{x}", -1)).to_numpy()
        n = rng.poisson(lam * w.intensity, len(pd_))
        i = expand(n)
        t = _day_times(rng, pd_.day_start.to_numpy()[i], len(i))
        who = w.roster.pick(pool[i], "p", t, rng.random(len(i)))
        keep = (who >= 0) & (t < pd_.end.to_numpy()[i])
        i, t, who = i[keep], t[keep], who[keep]
        mod = choose(rng, len(i), {M["医嘱"]: 60, M["护理记录"]: 25, M["病程记录"]: 15})
        buf.add(t, who, pd_.patient.to_numpy()[i], choose(rng, len(i), acts), mod,
                pd_["loc"].to_numpy()[i], pd_.enc_idx.to_numpy()[i], src=SRC[src])


def rounds(w, buf):
    """Responsible physicians and residents see their patients on their duty days."""
    rng = w.rng
    rel = w.rel[w.rel.role.isin(["attending", "resident"]) & (w.rel.user >= 0)]
    seg_kind = w.seg.kind.to_numpy()[rel.seg.to_numpy()]
    rel = rel[seg_kind == "ward"]
    a = np.maximum(rel.start.to_numpy(), w.t0)
    b = np.minimum(rel.end.to_numpy(), w.t_end)
    d0 = (a - w.t0) // DAY
    d1 = (b - 1 - w.t0) // DAY
    cnt = np.where(b > a, d1 - d0 + 1, 0)
    i = expand(cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    day = d0[i] + (np.arange(len(i)) - first)
    lam = np.where(rel.role.to_numpy()[i] == "resident", 2.5, 1.2) * w.intensity
    n = rng.poisson(lam)
    j = expand(n)
    ii = i[j]
    t = _day_times(rng, w.t0 + day[j] * DAY, len(j))
    ok = (t >= a[ii]) & (t < b[ii])
    ii, t = ii[ok], t[ok]
    res = rel.role.to_numpy()[ii] == "resident"
    act = np.where(res, choose(rng, len(ii), {A["create"]: 30, A["update"]: 25, A["view"]: 35,
                                              A["sign"]: 10}),
                   choose(rng, len(ii), {A["view"]: 60, A["sign"]: 30, A["update"]: 10}))
    mod = choose(rng, len(ii), {M["病程记录"]: 35, M["医嘱"]: 35, M["检验"]: 15, M["影像"]: 10,
                                M["病历"]: 5})
    seg = w.seg.iloc[rel.seg.to_numpy()[ii]]
    user = rel.user.to_numpy()[ii]
    # many EMRs record the acting physician on documents: usually the account owner
    acting = np.where((act == A["create"]) | (act == A["sign"]), user, -1)
    acting = np.where(rng.random(len(ii)) < 0.4, acting, -1)
    buf.add(t, user, rel.patient.to_numpy()[ii], act, mod, w.users["_loc"].to_numpy()[user],
            seg.enc_idx.to_numpy(), acting=acting, src=SRC["round"])


def night_cover(w, buf):
    """On-call physicians at night; ICU and ED physicians on 12-hour shifts."""
    rng = w.rng
    seg = w.seg[w.seg.kind == "ward"]
    ps = _slots(w, seg, "p")
    ps = ps[(ps.slot % 2 == 1) | ~(((w.weekday0 + ps.slot // 2) % 7) < 5)]
    pool = ps.department.map(lambda x: w.roster.pools.get(f"C:{x}", -1)).to_numpy()
    pick = rng.random(len(ps)) < 0.25 * min(1.0, w.intensity * 2)
    ps, pool = ps[pick], pool[pick]
    # at weekends the day block is covered by the 24-hour caller too (same pool, day slot)
    who = w.roster.pick(pool, "p", ps.a.to_numpy(), rng.random(len(ps)))
    n = np.where(who >= 0, 1 + rng.poisson(0.8, len(ps)), 0)
    i = expand(n)
    t = _times(rng, ps.a.to_numpy()[i], ps.b.to_numpy()[i])
    buf.add(t, who[i], ps.patient.to_numpy()[i],
            choose(rng, len(i), {A["view"]: 60, A["update"]: 25, A["create"]: 15}),
            choose(rng, len(i), {M["医嘱"]: 40, M["病程记录"]: 30, M["检验"]: 30}),
            w.users["_loc"].to_numpy()[who[i]], ps.enc_idx.to_numpy()[i], src=SRC["oncall"])
    for kind in ("icu", "ed"):
        seg = w.seg[w.seg.kind == kind]
        if seg.empty:
            continue
        ps = _slots(w, seg, "h12")
        pool = ps.department.map(lambda x: w.roster.pools.get(f"P:{x}", -1)).to_numpy()
        who = w.roster.pick(pool, "h12", ps.a.to_numpy(), rng.random(len(ps)))
        hours = (ps.b - ps.a).to_numpy() / 3600
        n = np.where(who >= 0, rng.poisson((0.35 if kind == "icu" else 0.8) * hours
                                           * w.intensity), 0)
        i = expand(n)
        t = _times(rng, ps.a.to_numpy()[i], ps.b.to_numpy()[i])
        buf.add(t, who[i], ps.patient.to_numpy()[i],
                choose(rng, len(i), {A["view"]: 45, A["create"]: 25, A["update"]: 20,
                                     A["sign"]: 10}),
                choose(rng, len(i), {M["医嘱"]: 35, M["病程记录"]: 35, M["检验"]: 20,
                                     M["影像"]: 10}),
                ps["loc"].to_numpy()[i], ps.enc_idx.to_numpy()[i], src=SRC["icu_doc"])


def consults(w, pdays, buf, rel_out: list):
    """会诊: a physician of another department is asked, gets a consult relation, reads."""
    rng = w.rng
    p = pdays[pdays.weekday].reset_index(drop=True)
    prob = np.where(p.kind == "icu", 0.08, 0.025)
    p = p[rng.random(len(p)) < prob].reset_index(drop=True)
    deps = np.array(sorted(d for d in w.roster.pools if d.startswith("P:")
                           and d[2:] not in ("急诊科", "重症医学科")))
    dep2 = np.array([x[2:] for x in deps])
    pick = dep2[rng.integers(0, len(dep2), len(p))]
    same = pick == p.department.to_numpy()
    pick = np.where(same, dep2[(rng.integers(1, len(dep2), len(p)) + np.searchsorted(
        dep2, pick)) % len(dep2)], pick)
    t_req = p.day_start.to_numpy() + 9 * H + rng.integers(0, 5 * 3600, len(p))
    t_come = t_req + rng.integers(1800, 4 * 3600, len(p))
    pool = np.array([w.roster.pools[f"P:{d}"] for d in pick], np.int64)
    doc = w.roster.pick(pool, "p", t_come, rng.random(len(p)))
    ok = (doc >= 0) & (t_come + 1800 < p.end.to_numpy()) & (t_req > p.start.to_numpy())
    p, pick, t_req, t_come, doc = p[ok], pick[ok], t_req[ok], t_come[ok], doc[ok]
    rel_out.append(pd.DataFrame({"patient": p.patient.to_numpy(), "user": doc,
                                 "department": pick, "ward": None, "kind": "consult",
                                 "start": t_req, "end": t_req + 48 * H,
                                 "seg": p.seg.to_numpy(), "role": "consult"}))
    n = 2 + rng.poisson(1.0, len(p))
    i = expand(n)
    t = t_come[i] + np.concatenate([np.arange(k) for k in n]) * 300 + rng.integers(0, 240,
                                                                               len(i))
    last = np.r_[i[1:] != i[:-1], True]
    act = np.where(last, A["sign"], choose(rng, len(i), {A["view"]: 70, A["create"]: 30}))
    mod = np.where(act == A["view"], choose(rng, len(i), {M["病程记录"]: 40, M["检验"]: 30,
                                                          M["影像"]: 30}), M["会诊记录"])
    buf.add(t, doc[i], p.patient.to_numpy()[i], act, mod, w.users["_loc"].to_numpy()[doc[i]],
            p.enc_idx.to_numpy()[i], src=SRC["consult"])


def _pick_service(w, dep, scheme, campus, t):
    """A member of the service department on duty at t, from the patient's campus when
    someone is on duty there, else from the other campus (samples and images travel, the
    staff do not). Returns (user, same_campus)."""
    rng = w.rng
    pools = w.roster.pools
    campus = np.asarray(campus, dtype=object)
    out = np.full(len(t), -1, np.int64)
    same = np.zeros(len(t), bool)
    camps = ("本部", "东院")
    for c in camps:
        pid = pools.get(f"S:{dep}@{c}")
        m = campus == c
        if pid is None or not m.any():
            continue
        out[m] = w.roster.pick(np.full(int(m.sum()), pid), scheme, t[m], rng.random(int(m.sum())))
        same[m] = out[m] >= 0
    for c in camps:
        pid = pools.get(f"S:{dep}@{c}")
        m = (out < 0) & (campus != c)
        if pid is None or not m.any():
            continue
        out[m] = w.roster.pick(np.full(int(m.sum()), pid), scheme, t[m], rng.random(int(m.sum())))
    return out, same


def orders(w, pdays, buf, rel_out: list):
    """Orders to the lab, imaging, pharmacy, rehabilitation and respiratory therapy, and the
    receiving department's staff acting on them (relation: kind=order, that department)."""
    rng = w.rng
    pools = w.roster.pools
    home = w.users["_loc"].to_numpy()

    def rel(p, dep, start, end):
        rel_out.append(pd.DataFrame({"patient": p.patient.to_numpy(), "user": -1,
                                     "department": dep, "ward": None, "kind": "order",
                                     "start": start, "end": end, "seg": p.seg.to_numpy(),
                                     "role": "order"}))

    # morning bloods: ordered the evening before, resulted by the lab early morning
    f = min(1.0, w.intensity * 2.5)
    p = pdays[rng.random(len(pdays)) < 0.5 * f].reset_index(drop=True)
    t_ord = p.day_start.to_numpy() - rng.integers(2 * 3600, 10 * 3600, len(p))
    t_ord = np.maximum(t_ord, p.start.to_numpy())
    t_res = p.day_start.to_numpy() + 6 * H + rng.integers(0, 4 * 3600, len(p))
    keep = t_res + 900 < p.end.to_numpy()
    p, t_ord, t_res = p[keep].reset_index(drop=True), t_ord[keep], t_res[keep]
    rel(p, "检验科", t_ord, t_ord + 36 * H)
    tech, _ = _pick_service(w, "检验科", "h8", p.campus.to_numpy(), t_res)
    n = np.where(tech >= 0, rng.poisson(1.5 * w.intensity, len(p)), 0)
    i = expand(n)
    buf.add(t_res[i] + rng.integers(0, 900, len(i)), tech[i], p.patient.to_numpy()[i],
            choose(rng, len(i), {A["create"]: 50, A["sign"]: 30, A["view"]: 20}), M["检验"],
            home[tech[i]], p.enc_idx.to_numpy()[i], src=SRC["lab"])
    # imaging: radiographer, then the radiologist's report
    p = pdays[rng.random(len(pdays)) < 0.12 * f].reset_index(drop=True)
    t_ord = p.day_start.to_numpy() + 8 * H + rng.integers(0, 8 * 3600, len(p))
    keep = (t_ord < p.end.to_numpy()) & (t_ord > p.start.to_numpy())
    p, t_ord = p[keep].reset_index(drop=True), t_ord[keep]
    rel(p, "放射科", t_ord, t_ord + 72 * H)
    t_img = t_ord + rng.integers(1800, 3 * 3600, len(p))
    tech, _ = _pick_service(w, "放射科", "h8", p.campus.to_numpy(), t_img)
    ok = tech >= 0
    buf.add(t_img[ok], tech[ok], p.patient.to_numpy()[ok],
            choose(rng, int(ok.sum()), {A["create"]: 60, A["view"]: 40}), M["影像"],
            home[tech[ok]], p.enc_idx.to_numpy()[ok], src=SRC["imaging"])
    t_rep = t_img + rng.integers(1800, 5 * 3600, len(p))
    pool_r = pools.get("D:放射科", -1)
    doc = w.roster.pick(np.full(len(p), pool_r), "p", t_rep, rng.random(len(p)))
    ok = doc >= 0
    k = int(ok.sum())
    for act in (A["view"], A["create"], A["sign"]):
        buf.add(t_rep[ok] + (act == A["sign"]) * 600 + (act == A["create"]) * 120, doc[ok],
                p.patient.to_numpy()[ok], np.full(k, act), M["影像"],
                home[doc[ok]], p.enc_idx.to_numpy()[ok], src=SRC["radiologist"])
    # pharmacy: long-term orders for the whole stay; daily review (审方)
    segs = w.seg[w.seg.kind.isin(["ward", "icu"])]
    rel_out.append(pd.DataFrame({"patient": segs.patient.to_numpy(), "user": -1,
                                 "department": "药剂科", "ward": None, "kind": "order",
                                 "start": segs.start.to_numpy(), "end": segs.end.to_numpy(),
                                 "seg": segs.seg.to_numpy(), "role": "order"}))
    p = pdays[rng.random(len(pdays)) < 0.35 * f].reset_index(drop=True)
    t = p.day_start.to_numpy() + 9 * H + rng.integers(0, 6 * 3600, len(p))
    ph, _ = _pick_service(w, "药剂科", "h8", p.campus.to_numpy(), t)
    ok = (ph >= 0) & (t < p.end.to_numpy()) & (t >= p.start.to_numpy())
    buf.add(t[ok], ph[ok], p.patient.to_numpy()[ok],
            choose(rng, int(ok.sum()), {A["view"]: 80, A["sign"]: 20}), M["医嘱"],
            home[ph[ok]], p.enc_idx.to_numpy()[ok], src=SRC["pharmacy"])
    # rehabilitation and respiratory therapy: therapists who serve every ward
    for dep, share, src, scheme, mod in (("康复医学科", 0.10, "rehab", "p", M["康复记录"]),
                                         ("呼吸治疗科", 0.0, "resp", "h12", M["呼吸治疗记录"])):
        if not any(k.startswith(f"S:{dep}@") for k in pools):
            continue
        segs = w.seg[w.seg.kind.isin(["ward", "icu"])]
        prob = np.full(len(segs), share)
        if dep == "呼吸治疗科":
            prob = np.where(segs.kind == "icu", 0.7,
                            np.where(segs.department == "呼吸内科", 0.35, 0.03))
        segs = segs[rng.random(len(segs)) < prob]
        rs = segs.start.to_numpy() + (dep == "康复医学科") * DAY
        rel_out.append(pd.DataFrame({"patient": segs.patient.to_numpy(), "user": -1,
                                     "department": dep, "ward": None, "kind": "order",
                                     "start": rs, "end": segs.end.to_numpy(),
                                     "seg": segs.seg.to_numpy(), "role": "order"}))
        segs = segs.assign(start=np.maximum(rs, segs.start.to_numpy()))
        ps = _slots(w, segs, scheme)
        if scheme == "p":
            ps = ps[(ps.slot % 2 == 0) & (((w.weekday0 + ps.slot // 2) % 7) < 5)]
        ps = ps[rng.random(len(ps)) < 0.7].reset_index(drop=True)
        who, same = _pick_service(w, dep, scheme, ps.campus.to_numpy(), ps.a.to_numpy())
        n = np.where(who >= 0, 1 + rng.poisson(0.7 * w.intensity, len(ps)), 0)
        i = expand(n)
        t = _times(rng, ps.a.to_numpy()[i], ps.b.to_numpy()[i])
        # at the bedside on their own campus; from their room for the other campus
        loc = np.where(same[i], ps["loc"].to_numpy()[i], home[np.maximum(who[i], 0)])
        buf.add(t, who[i], ps.patient.to_numpy()[i],
                choose(rng, len(i), {A["create"]: 50, A["view"]: 50}), mod,
                loc, ps.enc_idx.to_numpy()[i], src=SRC[src])


def discharges(w, buf):
    """Discharge day: the resident writes and prints the 出院小结 (a few pages)."""
    rng = w.rng
    s = w.seg
    last = ~s.duplicated("enc2", keep="last")
    m = last & (s.kind == "ward") & ~s.died & (s.end >= w.t0) & (s.end < w.t_end)
    d = s[m]
    r = w.rel[(w.rel.role.isin(["resident", "attending"])) & w.rel.seg.isin(d.seg)]
    r = r.sort_values(["seg", "role"], ascending=[True, False]).drop_duplicates("seg")
    seg = s.iloc[r.seg.to_numpy()]
    lasting = r.end.to_numpy() >= seg.end.to_numpy()   # the relation lasts to discharge
    r, seg = r[lasting], seg[lasting]
    t = seg.end.to_numpy() - rng.integers(1800, 3 * 3600, len(r))
    for k, act in enumerate((A["create"], A["sign"], A["print"])):
        rc = rng.integers(1, 4, len(r)) if act == A["print"] else 1
        buf.add(t + k * 300, r.user.to_numpy(), r.patient.to_numpy(), np.full(len(r), act),
                M["出院小结"], w.users["_loc"].to_numpy()[r.user.to_numpy()],
                seg.enc_idx.to_numpy(), rc=rc,
                src=SRC["discharge"])


def followups(w, buf):
    """Doctors look again at their discharged patients within weeks (prior treatment)."""
    rng = w.rng
    r = w.rel[w.rel.role.isin(["attending"]) & (w.rel.user >= 0)]
    seg = w.seg.iloc[r.seg.to_numpy()]
    last = ~w.seg.duplicated("enc2", keep="last").to_numpy()[r.seg.to_numpy()]
    ok = last & ~seg.died.to_numpy() & (seg.kind.to_numpy() == "ward") & (r.end.to_numpy()
                                                                        < w.t_end)
    r, seg = r[ok], seg[ok]
    pick = rng.random(len(r)) < 0.15
    r, seg = r[pick], seg[pick]
    day = (r.end.to_numpy() - w.t0) // DAY + rng.integers(3, 25, len(r))
    t = _day_times(rng, w.t0 + day * DAY, len(r))
    keep = (t >= w.t0) & (t < w.t_end)
    n = np.where(keep, 1 + (rng.random(len(r)) < 0.4), 0)
    i = expand(n)
    buf.add(t[i] + rng.integers(0, 600, len(i)), r.user.to_numpy()[i], r.patient.to_numpy()[i],
            A["view"], choose(rng, len(i), {M["检验"]: 40, M["病历"]: 30, M["影像"]: 30}),
            w.users["_loc"].to_numpy()[r.user.to_numpy()[i]], seg.enc_idx.to_numpy()[i],
            src=SRC["followup"])


def office_roles(w, buf):
    """病案室 coding and copying, 质控科 record review, 医保办 claims review, 医务处: office
    hours, many patients each, mostly discharged ones."""
    rng = w.rng
    s = w.seg
    last = ~s.duplicated("enc2", keep="last")
    disch = s[last & s.kind.isin(["ward", "icu"]) & (s.end < w.t_end)]
    u = w.users
    plan = (("medical_records", 10, (1, 10), "records", {A["view"]: 55, A["update"]: 40,
                                                         A["print"]: 5}, M["病案首页"]),
            ("quality_control", 6, None, "qc", {A["view"]: 90, A["update"]: 10}, M["病程记录"]),
            ("insurance", 5, (1, 15), "insurance", {A["view"]: 100}, M["费用"]),
            ("admin", 1.5, None, "admin", {A["view"]: 100}, M["病历"]))
    dend = disch.end.to_numpy()
    o = np.argsort(dend, kind="stable")
    disch, dend = disch.iloc[o], dend[o]
    pdays = patient_days(w).sort_values(["day", "seg"], kind="stable")
    pday = pdays.day.to_numpy()
    wdays = np.array([d for d in range(w.days) if (w.weekday0 + d) % 7 < 5], np.int64)
    for role, lam, window, src, acts, mod in plan:
        staff = u[(u.role == role) & (u._kind == "office")].index.to_numpy()
        if not len(staff) or not len(wdays):
            continue
        su = np.repeat(staff, len(wdays))
        sd = np.tile(wdays, len(staff))
        day0 = w.t0 + sd * DAY
        k = rng.poisson(lam * min(3.0, max(0.3, w.intensity * 2)), len(su))
        if window:
            lo = np.searchsorted(dend, day0 - window[1] * DAY, "left")
            hi = np.searchsorted(dend, day0 - window[0] * DAY + 9 * H, "right")
            src_df = disch
        else:
            lo = np.searchsorted(pday, sd, "left")
            hi = np.searchsorted(pday, sd, "right")
            src_df = pdays
        k = np.where(hi > lo, k, 0)
        j = expand(k)
        pick = lo[j] + (rng.random(len(j)) * (hi - lo)[j]).astype(np.int64)
        per = 1 + rng.poisson(1.2, len(j))
        i = expand(per)
        jj = j[i]
        t = day0[jj] + 8 * H + 1800 + rng.integers(0, 9 * 3600, len(i))
        act = choose(rng, len(i), acts)
        rc = np.where(act == A["print"], rng.integers(2, 12, len(i)), 1)
        users_ = su[jj]
        buf.add(t, users_, src_df.patient.to_numpy()[pick[i]], act, mod,
                u["_loc"].to_numpy()[users_], src_df.enc_idx.to_numpy()[pick[i]], rc=rc,
                src=SRC[src])


def clinics(w, buf, rel_out: list):
    """Outpatient visits: a patient search, the record, the prescription; lab and pharmacy."""
    rng = w.rng
    v = w.visits
    if v.empty:
        return
    n = len(v)
    rel_out.append(pd.DataFrame({"patient": v.patient.to_numpy(), "user": v.user.to_numpy(),
                                 "department": v.department.to_numpy(), "ward": None,
                                 "kind": "outpatient",
                                 "start": v.start.to_numpy() - rng.integers(600, 7200, n),
                                 "end": (v.start.to_numpy() // DAY + 1) * DAY - 1,
                                 "seg": -1, "role": "clinic", "enc": v.enc_idx.to_numpy()}))
    k = 2 + rng.poisson(1.5 * min(1.5, w.intensity * 2), n)
    i = expand(k)
    first = np.r_[True, i[1:] != i[:-1]]
    step = np.concatenate([np.arange(x) for x in k]) if n else np.zeros(0, np.int64)
    t = v.start.to_numpy()[i] + step * 120 + rng.integers(0, 100, len(i))
    q = first & (rng.random(len(i)) < 0.35)
    act = np.where(q, A["query"], choose(rng, len(i), {A["view"]: 45, A["create"]: 35,
                                                       A["sign"]: 20}))
    mod = np.where(q, M["病历"], choose(rng, len(i), {M["门诊病历"]: 50, M["处方"]: 30,
                                                     M["检验"]: 20}))
    buf.add(t, v.user.to_numpy()[i], v.patient.to_numpy()[i], act, mod, v["loc"].to_numpy()[i],
            v.enc_idx.to_numpy()[i], src=SRC["clinic"])
    campus = v.campus.to_numpy()
    for dep, share, delay, src, mod in (("检验科", 0.3, (1800, 4 * 3600), "clinic_lab", M["检验"]),
                                        ("药剂科", 0.6, (600, 3600), "clinic_pharm", M["处方"])):
        m = rng.random(n) < share
        t = v.start.to_numpy()[m] + rng.integers(*delay, int(m.sum()))
        rel_out.append(pd.DataFrame({"patient": v.patient.to_numpy()[m], "user": -1,
                                     "department": dep, "ward": None, "kind": "order",
                                     "start": v.start.to_numpy()[m], "end": t + 24 * H,
                                     "seg": -1, "role": "order",
                                     "enc": v.enc_idx.to_numpy()[m]}))
        who, _ = _pick_service(w, dep, "h8", campus[m], t)
        ok = who >= 0
        buf.add(t[ok], who[ok], v.patient.to_numpy()[m][ok],
                choose(rng, int(ok.sum()), {A["view"]: 50, A["create"]: 30, A["sign"]: 20}),
                mod, w.users["_loc"].to_numpy()[who[ok]], v.enc_idx.to_numpy()[m][ok],
                src=SRC[src])


def emergency_btg(w, buf):
    """Break-the-glass in the ED at night, followed by the ED registration and admission."""
    rng = w.rng
    s = w.seg
    m = ((s.kind == "ed") & s["first"] & (s.start >= w.t0 + 3600) & (s.start < w.t_end))
    tod = (s.start - w.t0) % DAY
    night = (tod >= 20 * H) | (tod < 6 * H)
    admitted = s.enc.isin(s.loc[s.kind != "ed", "enc"])
    cand = s[m & night & admitted]
    cand = cand[rng.random(len(cand)) < 0.35]
    r = w.rel[(w.rel.role == "attending") & w.rel.seg.isin(cand.seg)].drop_duplicates("seg")
    seg = s.iloc[r.seg.to_numpy()]
    t = seg.start.to_numpy() - rng.integers(60, 600, len(r))
    reason = rng.integers(1, 4, len(r))
    buf.add(t, r.user.to_numpy(), r.patient.to_numpy(), A["break_glass"], M["病历"],
            seg["loc"].to_numpy(), seg.enc_idx.to_numpy(), reason=reason, src=SRC["btg"])
    buf.add(seg.start.to_numpy() + rng.integers(30, 300, len(r)), r.user.to_numpy(),
            r.patient.to_numpy(), A["view"], M["病历"], seg["loc"].to_numpy(),
            seg.enc_idx.to_numpy(), src=SRC["btg"])


# filters and sessions ------------------------------------------------------------------------

def one_place(w, ev: dict) -> np.ndarray:
    """A person is in one place at a time: within each two hours keep a user's accesses at the
    location where most of them happen (a clinic session and rounds do not interleave)."""
    n = len(ev["ts"])
    if n == 0:
        return np.ones(0, bool)
    key = ev["user"].astype(np.int64) * 100_000 + (ev["ts"] - w.t0) // 7200
    loc = ev["loc"].astype(np.int64)
    kl = key * 100_000 + loc
    uk, inv, cnt = np.unique(kl, return_inverse=True, return_counts=True)
    k_of = uk // 100_000
    l_of = uk % 100_000
    o = np.lexsort((l_of, -cnt, k_of))
    first = np.r_[True, k_of[o][1:] != k_of[o][:-1]]
    mode_key = k_of[o][first]
    mode_loc = l_of[o][first]
    pos = np.searchsorted(mode_key, key)
    return mode_loc[pos] == loc


def _merged_intervals(user, start, end):
    """Union of intervals per user: sorted (user, start, end) with overlaps merged."""
    o = np.lexsort((start, user))
    u, s, e = user[o], start[o], end[o]
    if len(u) == 0:
        return u, s, e
    newu = np.r_[True, u[1:] != u[:-1]]
    # running max of end within user
    big = np.int64(1) << 40
    ce = np.maximum.accumulate(e + u.astype(np.int64) * big) - u.astype(np.int64) * big
    prev_max = np.r_[np.int64(-1), ce[:-1]]
    new = newu | (s > prev_max)
    gid = np.cumsum(new) - 1
    gs = s[new]
    ge = np.zeros(gid[-1] + 1, np.int64)
    np.maximum.at(ge, gid, e)
    return u[new], gs, ge


def in_intervals(ev_user, ev_ts, iu, is_, ie):
    """True where (user, ts) falls inside one of the user's merged intervals."""
    big = np.int64(1) << 32
    key = iu.astype(np.int64) * big + is_
    q = ev_user.astype(np.int64) * big + ev_ts
    pos = np.searchsorted(key, q, "right") - 1
    ok = pos >= 0
    pos = np.maximum(pos, 0)
    return ok & (iu[pos] == ev_user) & (ev_ts < ie[pos]) if len(key) else np.zeros(len(q), bool)


def duty_filter(w, ev: dict) -> np.ndarray:
    """Keep accesses inside the user's duty (+30 min overtime), outside leave and surgery, before
    the user left and before a trainee's or vendor's access ended; office roles in office hours."""
    u = w.users
    d = w.roster.duty
    iu, is_, ie = _merged_intervals(d.user.to_numpy(np.int64), d.start.to_numpy(np.int64),
                                    d.end.to_numpy(np.int64) + 1800)
    user, ts = ev["user"], ev["ts"]
    rostered = np.zeros(len(u), bool)
    rostered[np.unique(d.user.to_numpy())] = True
    keep = np.where(rostered[user], in_intervals(user, ts, iu, is_, ie), True)
    b = w.roster.blocks
    if len(b):
        bu, bs, be = _merged_intervals(b.user.to_numpy(np.int64), b.start.to_numpy(np.int64),
                                       b.end.to_numpy(np.int64))
        keep &= ~in_intervals(user, ts, bu, bs, be)
    office = ~rostered[user]
    tod = (ts - w.t0) % DAY
    wd = (w.weekday0 + (ts - w.t0) // DAY) % 7 < 5
    keep &= ~office | (wd & (tod >= 8 * H + 1800) & (tod < 17 * H + 1800))
    end = u["_end_ts"].to_numpy()[user]
    until = u["_until_ts"].to_numpy()[user]
    keep &= ~((end >= 0) & (ts >= end)) & ~((until >= 0) & (ts >= until))
    keep &= (ts >= w.t0) & (ts < w.t_end)
    return keep
