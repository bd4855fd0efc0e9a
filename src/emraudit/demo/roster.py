"""Duty rosters (排班): who is on duty where and when, plus leave and surgery blocks.

Shift schemes, all on local wall-clock time:
- `h8`: three 8-hour shifts, night 00-08, day 08-16, evening 16-24 (ward nurses, lab,
  pharmacy, radiographers) on a five-day cycle 白-小夜-休-大夜-休;
- `h12`: 12-hour day 08-20 and night 20-08 on a four-day cycle 白-夜-休-休 (ICU, ED,
  respiratory therapists);
- `p`: the physicians' day, 08:00-17:30 on weekdays, and a department on-call rotation
  (17:30-08:00 on weekdays, 24 hours at weekends) with a free day after the call.

A *slot* is one shift instance of a scheme, numbered from the window start; a *pool* is the
group that covers a slot together (a ward's nurses, a department's physicians, a lab). Work
is handed out by `Roster.pick`, which draws one on-duty member of a pool for each request, so
every generated access falls in its user's duty. Float nurses appear in another ward's pool
with a shift row naming that ward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

H = np.int64(3600)
DAY = np.int64(86400)
P_DAY_START = 8 * H
P_DAY_END = 17 * H + 30 * 60


def slot_bounds(scheme: str, slot: np.ndarray, t0: np.int64) -> tuple[np.ndarray, np.ndarray]:
    slot = np.asarray(slot, dtype=np.int64)
    if scheme == "h8":
        s = t0 + slot * 8 * H
        return s, s + 8 * H
    if scheme == "h12":
        s = t0 + 8 * H + slot * 12 * H
        return s, s + 12 * H
    # p: even = day block 08:00-17:30, odd = night block 17:30-08:00 next day
    d = slot // 2
    night = (slot % 2) == 1
    s = t0 + d * DAY + np.where(night, P_DAY_END, P_DAY_START)
    e = t0 + d * DAY + np.where(night, DAY + P_DAY_START, P_DAY_END)
    return s, e


def slot_of(scheme: str, t: np.ndarray, t0: np.int64) -> np.ndarray:
    x = np.asarray(t, dtype=np.int64) - t0
    if scheme == "h8":
        return x // (8 * H)
    if scheme == "h12":
        return (x - 8 * H) // (12 * H)
    d = x // DAY
    sec = x - d * DAY
    night_prev = sec < P_DAY_START
    day_block = (sec >= P_DAY_START) & (sec < P_DAY_END)
    return np.where(night_prev, 2 * (d - 1) + 1, np.where(day_block, 2 * d, 2 * d + 1))


@dataclass
class Roster:
    duty: pd.DataFrame    # user, pool, scheme, slot, start, end, ward, location
    blocks: pd.DataFrame  # user, start, end, kind (leave/surgery), location
    pools: dict           # pool name -> pool id
    t0: np.int64
    rotations: list = field(default_factory=list)   # (user, first ward, second ward, day)

    def _index(self, scheme: str):
        cache = self.__dict__.setdefault("_pick_cache", {})
        if scheme not in cache:
            d = self.duty[self.duty.scheme == scheme]
            key = d["pool"].to_numpy(np.int64) * 1_000_000 + d["slot"].to_numpy(np.int64)
            order = np.lexsort((d["user"].to_numpy(), key))
            cache[scheme] = (key[order], d["user"].to_numpy(np.int64)[order])
        return cache[scheme]

    def pick(self, pool: np.ndarray, scheme: str, t: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each request (pool id, time), one on-duty member (user index) or -1."""
        key_d, users = self._index(scheme)
        slot = slot_of(scheme, t, self.t0)
        q = np.asarray(pool, np.int64) * 1_000_000 + slot
        lo = np.searchsorted(key_d, q, "left")
        hi = np.searchsorted(key_d, q, "right")
        k = hi - lo
        if not len(users):
            return np.full(len(q), -1, np.int64)
        idx = lo + np.minimum((np.asarray(u) * k).astype(np.int64), np.maximum(k - 1, 0))
        return np.where(k > 0, users[np.minimum(idx, len(users) - 1)], -1).astype(np.int64)


def assign_status(rng: np.random.Generator, users: pd.DataFrame, t0: np.int64, days: int
                  ) -> pd.DataFrame:
    """HR status: a few left before the window, a few leave during it, a few on long leave."""
    u = users
    clin = np.flatnonzero(u["_kind"].isin(["rot", "resident"]).to_numpy())
    pick = rng.permutation(clin)
    n = len(u)
    n_before = max(3, n // 100)
    n_during = max(2, n // 150)
    n_leave = max(2, n // 150)
    before = pick[:n_before]
    during = pick[n_before:n_before + n_during]
    longleave = pick[n_before + n_during:n_before + n_during + n_leave]
    u.loc[before, "status"] = "terminated"
    u.loc[before, "_end_ts"] = t0 - rng.integers(3, 120, len(before)) * DAY
    u.loc[during, "status"] = "terminated"
    u.loc[during, "_end_ts"] = t0 + rng.integers(max(1, days // 4), max(2, days - 2),
                                                 len(during)) * DAY
    u.loc[longleave, "status"] = "leave"
    u["_longleave"] = False
    u.loc[longleave, "_longleave"] = True
    return u


def build_roster(rng: np.random.Generator, users: pd.DataFrame, wards: pd.DataFrame,
                 t0: np.int64, days: int, weekday0: int) -> Roster:
    pools: dict[str, int] = {}

    def pool_id(name: str) -> int:
        return pools.setdefault(name, len(pools))

    rows = []   # user, pool, scheme, slot, ward, location
    dn = np.arange(days + 1)   # one extra day so night shifts crossing the end exist
    wd = (weekday0 + dn) % 7
    weekday = wd < 5
    ward_scheme = dict(zip(wards.ward, np.where(wards.kind.isin(["icu", "ed"]), "h12", "h8")))
    ward_campus = dict(zip(wards.ward, wards.campus))
    u = users
    grp = u["_group"].to_numpy()
    kind = u["_kind"].to_numpy()

    def add(user, pool, scheme, slots, ward, location):
        for s in slots:
            rows.append((user, pool, scheme, int(s), ward, location))

    # rotating ward nurses
    cyc8 = np.array(["D", "E", "-", "N", "-"])
    cyc12 = np.array(["D", "N", "-", "-"])
    for ward, idx in u[u._group.isin(["n8", "n12"])].groupby("ward").groups.items():
        idx = np.sort(np.asarray(idx))
        sch = ward_scheme[ward]
        pid = pool_id(f"N:{ward}")
        cyc = cyc8 if sch == "h8" else cyc12
        for j, i in enumerate(idx):
            off = j % len(cyc)
            pat = cyc[(dn + off) % len(cyc)]
            if sch == "h8":
                slots = np.concatenate([dn[pat == "N"] * 3, dn[pat == "D"] * 3 + 1,
                                        dn[pat == "E"] * 3 + 2])
            else:
                slots = np.concatenate([dn[pat == "D"] * 2, dn[pat == "N"] * 2 + 1])
            add(i, pid, sch, np.sort(slots), ward, ward)
            # on some rest days a nurse covers a shift in another ward of the same campus
            rest = dn[(pat == "-") & (rng.random(len(dn)) < 0.04)]
            others = [w for w in ward_scheme if ward_scheme[w] == "h8" and w != ward
                      and ward_campus[w] == ward_campus[ward]]
            if sch == "h8" and others:
                for d in rest:
                    w2 = others[rng.integers(0, len(others))]
                    add(i, pool_id(f"N:{w2}"), "h8", [d * 3 + 1], w2, w2)
    # float pool (护理部机动护士): a shift most days in whichever ward needs cover
    h8w = [w for w in ward_scheme if ward_scheme[w] == "h8"]
    for i in np.flatnonzero(grp == "float"):
        work = rng.random(len(dn)) < 0.7
        for d in dn[work]:
            w2 = h8w[rng.integers(0, len(h8w))]
            add(i, pool_id(f"N:{w2}"), "h8", [d * 3 + rng.integers(0, 3)], w2, w2)
    # day staff of a ward (主班 nurses, head nurses, trainees, radiologists, clinic nurses)
    for i in np.flatnonzero(np.isin(grp, ["day_ward", "office_ward", "day"])):
        w = u.at[i, "ward"]
        loc = w if isinstance(w, str) else u.at[i, "_locname"]
        pname = f"D:{loc}" if kind[i] != "trainee" else f"T:{loc}"
        if u.at[i, "department"] in ("康复医学科",):
            pname = f"S:康复医学科@{u.at[i, '_campus']}"
        add(i, pool_id(pname), "p", dn[weekday] * 2, w if isinstance(w, str) else None, loc)
    # service departments on shifts
    for dep, idx in u[u._group.isin(["h8", "h12"]) & (u._kind == "service")].groupby(
            "department").groups.items():
        idx = np.sort(np.asarray(idx))
        sch = u.at[idx[0], "_group"]
        cyc = cyc8 if sch == "h8" else cyc12
        for j, i in enumerate(idx):
            pid = pool_id(f"S:{dep}@{u.at[i, '_campus']}")
            pat = cyc[(dn + j // 2) % len(cyc)]
            if sch == "h8":
                slots = np.concatenate([dn[pat == "N"] * 3, dn[pat == "D"] * 3 + 1,
                                        dn[pat == "E"] * 3 + 2])
            else:
                slots = np.concatenate([dn[pat == "D"] * 2, dn[pat == "N"] * 2 + 1])
            add(i, pid, sch, np.sort(slots), None, dep)
    # ED and ICU physicians: 12-hour shifts
    for dep, idx in u[u._group.isin(["ed12", "icu12"])].groupby("department").groups.items():
        idx = np.sort(np.asarray(idx))
        ward = u.at[idx[0], "ward"]
        pid = pool_id(f"P:{dep}")
        for j, i in enumerate(idx):
            pat = cyc12[(dn + j) % 4]
            slots = np.concatenate([dn[pat == "D"] * 2, dn[pat == "N"] * 2 + 1])
            add(i, pid, "h12", np.sort(slots), ward, ward)
    # ward physicians: weekday days plus an on-call rotation per department
    for dep, idx in u[u._group == "phys"].groupby("department").groups.items():
        idx = np.sort(np.asarray(idx))
        pid = pool_id(f"P:{dep}")
        oncall_pid = pool_id(f"C:{dep}")
        callers = idx[u.loc[idx, "title"].to_numpy() != "主任医师"]
        call_of_day = callers[(dn + rng.integers(0, len(callers))) % len(callers)]
        for i in idx:
            loc = u.at[i, "_locname"]
            ward = u.at[i, "ward"] if isinstance(u.at[i, "ward"], str) else None
            my_call = dn[call_of_day == i]
            post = set((my_call + 1).tolist())
            day_slots = [d * 2 for d in dn[weekday] if d not in post]
            add(i, pid, "p", day_slots, ward, loc)
            for d in my_call:
                if not weekday[d]:
                    add(i, pid, "p", [d * 2], ward, loc)
                add(i, oncall_pid, "p", [d * 2 + 1], ward, loc)
    # rotating residents: weekdays in one ward, then another ward from the rotation day
    rot_wards = wards[wards.kind == "ward"].ward.tolist()
    rotations = []
    for i in np.flatnonzero(grp == "rotate"):
        a, b = rng.choice(len(rot_wards), 2, replace=False)
        switch = int(rng.integers(max(1, days // 4), max(2, 3 * days // 4)))
        for d in dn[weekday]:
            w = rot_wards[a] if d < switch else rot_wards[b]
            add(i, pool_id(f"R:{w}"), "p", [d * 2], w, w)
        rotations.append((i, rot_wards[a], rot_wards[b], switch))
    duty = pd.DataFrame(rows, columns=["user", "pool", "scheme", "slot", "ward", "location"])
    duty = duty.drop_duplicates(["user", "scheme", "slot"]).reset_index(drop=True)
    s = np.zeros(len(duty), np.int64)
    e = np.zeros(len(duty), np.int64)
    for sch in ("h8", "h12", "p"):
        m = (duty.scheme == sch).to_numpy()
        s[m], e[m] = slot_bounds(sch, duty.slot.to_numpy()[m], t0)
    duty["start"] = s
    duty["end"] = e

    # leave and surgery blocks
    brows = []
    for i in np.flatnonzero(u["_longleave"].to_numpy()):
        brows.append((i, t0 - 20 * DAY, t0 + (days + 40) * DAY, "leave", None))
    rostered = np.unique(duty.user.to_numpy())
    cand = rostered[rng.random(len(rostered)) < 0.12]
    for i in cand:
        d0 = int(rng.integers(0, max(1, days - 2)))
        ln = int(rng.integers(2, 7))
        brows.append((i, t0 + d0 * DAY, t0 + (d0 + ln) * DAY, "leave", None))
    surg_dep = set(wards.loc[wards.surgical, "department"])
    for i in np.flatnonzero((grp == "phys") & u.department.isin(surg_dep).to_numpy()
                            & (kind == "attending")):
        for d in dn[weekday][:-1]:
            if rng.random() < 0.35:
                am = rng.random() < 0.6
                s0 = t0 + d * DAY + (9 * H if am else 13 * H + 1800)
                brows.append((i, s0, s0 + (4 * H if am else 3 * H + 1800), "surgery", "手术室"))
    blocks = pd.DataFrame(brows, columns=["user", "start", "end", "kind", "location"])
    blocks = blocks.sort_values(["user", "start"]).reset_index(drop=True)

    # drop duty overlapping leave, duty after leaving / after a trainee's access_until
    if len(blocks):
        lv = blocks[blocks.kind == "leave"]
        m = duty.merge(lv[["user", "start", "end"]], on="user", how="left",
                       suffixes=("", "_lv"))
        overl = (m.start_lv < m.end) & (m.end_lv > m.start)
        bad = m.loc[overl.fillna(False), ["user", "scheme", "slot"]].drop_duplicates()
        duty = duty.merge(bad.assign(_bad=True), how="left", on=["user", "scheme", "slot"])
        duty = duty[duty._bad.isna()].drop(columns="_bad")
    end_ts = u["_end_ts"].to_numpy()
    until = u["_until_ts"].to_numpy()
    du = duty.user.to_numpy()
    ok = ~((end_ts[du] >= 0) & (duty.end.to_numpy() > end_ts[du]))
    ok &= ~((until[du] >= 0) & (duty.end.to_numpy() > until[du]))
    duty = duty[ok].reset_index(drop=True)
    return Roster(duty=duty, blocks=blocks, pools=pools, t0=t0, rotations=rotations)


def shift_rows(roster: Roster, t_end: np.int64) -> pd.DataFrame:
    """The roster as the canonical `shifts` table: contiguous duty merged, leave, surgery."""
    d = roster.duty.sort_values(["user", "start", "end"]).reset_index(drop=True)
    d = d[d.start < t_end]
    # merge back-to-back rows of one user in one place (a weekend 24-hour call)
    u = d.user.to_numpy()
    s = d.start.to_numpy()
    e = d.end.to_numpy()
    loc = d.location.fillna("").to_numpy()
    new = np.ones(len(d), bool)
    if len(d) > 1:
        new[1:] = (u[1:] != u[:-1]) | (s[1:] > e[:-1]) | (loc[1:] != loc[:-1])
    gid = np.cumsum(new) - 1
    g = pd.DataFrame({"user": u, "start": s, "end": e, "gid": gid,
                      "ward": d.ward.to_numpy(), "location": d.location.to_numpy()})
    agg = g.groupby("gid", sort=True).agg(user=("user", "first"), start=("start", "min"),
                                          end=("end", "max"), ward=("ward", "first"),
                                          location=("location", "first"))
    agg["kind"] = "duty"
    b = roster.blocks.copy()
    b["ward"] = None
    out = pd.concat([agg[["user", "start", "end", "kind", "ward", "location"]],
                     b[["user", "start", "end", "kind", "ward", "location"]]], ignore_index=True)
    return out.sort_values(["user", "start", "kind"], kind="stable").reset_index(drop=True)
