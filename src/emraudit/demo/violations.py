"""Planted violations, each kind at several strengths, with their ground truth.

Every case is a list of events tagged with its case number; `truth.csv` lists each event with
the violation name (the detector id expected to catch it, where one exists) and a case key
(`<violation>:<user>:<patient or episode>`). A case is planted so that it is not accidentally
explained: the snooping user has no relation of any kind to the patient (own, ward,
department, consult, order, float shift) at any time; credential cases use the owner's own
patients so that only the credential rule fires. Loops here run per case (a few dozen).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.demo.events import A, M, SRC, EventBuf, Groups
from emraudit.demo.legit import _merged_intervals
from emraudit.demo.roster import DAY, H

# violation kinds and how many cases of each a small hospital gets (scaled for larger ones)
KINDS = [
    "care.no_relationship", "snoop.vip", "snoop.coworker", "snoop.family", "snoop.neighbor",
    "snoop.self", "snoop.deceased", "snoop.watchlist", "snoop.query_then_open",
    "cred.concurrent_use", "cred.impossible_travel", "cred.off_duty_use",
    "cred.inactive_account", "cred.expired_access", "cred.acting_mismatch", "bulk.off_hours",
    "bulk.volume", "copy.bulk_export", "btg.unjustified", "anomaly.slow_insider",
    # access rights (emraudit.demo.rights): the last three kinds are problems of grants held,
    # with truth rows naming the grant instead of events
    "rights.generic_account", "rights.outside_grant", "rights.beyond_role",
    "rights.unapproved", "rights.after_leaving", "rights.unused",
]
# the use of the account itself is the violation: its logins belong to the case
ACCOUNT_KINDS = ("cred.concurrent_use", "cred.impossible_travel", "cred.off_duty_use",
                 "cred.inactive_account", "cred.expired_access", "rights.generic_account")


class Planter:
    def __init__(self, w, buf: EventBuf):
        self.w = w
        self.rng = w.rng
        self.buf = buf
        self.cases: list[tuple[str, str]] = []
        self.used_users: set[int] = set()
        u = w.users
        self.uid = u.user_id.to_numpy()
        self.pid = w.patient_ids
        rel = w.rel
        # patients each user could be explained for, at any time
        own = rel[rel.user >= 0]
        self.rel_user = Groups(own.user.to_numpy(), own.patient.to_numpy())
        # a relation row of a department or ward counts for all its staff, whoever it names
        # (a detector may read "the user's department has one" that way): stay clear of both
        grp = rel
        self.rel_dept = Groups(grp.department.to_numpy(), grp.patient.to_numpy())
        gw = grp[grp.ward.notna()]
        self.rel_ward = Groups(gw.ward.to_numpy(), gw.patient.to_numpy())
        d = w.roster.duty
        dw = d[d.ward.notna()][["user", "ward"]].drop_duplicates()
        self.duty_wards = Groups(dw.user.to_numpy(), dw.ward.to_numpy())
        iu, is_, ie = _merged_intervals(d.user.to_numpy(np.int64), d.start.to_numpy(np.int64),
                                        d.end.to_numpy(np.int64))
        self.duty_iv = pd.DataFrame({"user": iu, "start": is_, "end": ie})
        self._iv_user, self._iv_start, self._iv_end = iu, is_, ie
        b = w.roster.blocks
        self.blocks = b
        self._bl_user = b.user.to_numpy(np.int64)
        self._bl_start = b.start.to_numpy(np.int64)
        self._bl_end = b.end.to_numpy(np.int64)
        seg = w.seg
        self.inpat = seg[seg.kind.isin(["ward", "icu"]) & (seg.end > w.t0 + DAY)
                         & (seg.start < w.t_end - DAY)]

    # helpers -------------------------------------------------------------------------------
    def related(self, u: int) -> set:
        w = self.w
        dep = w.users.at[u, "department"]
        ward = w.users.at[u, "ward"]
        s = set(self.rel_user.get(u, set())) | set(self.rel_dept.get(dep, set()))
        if isinstance(ward, str):
            s |= self.rel_ward.get(ward, set())
        for wd in self.duty_wards.get(u, set()):
            s |= self.rel_ward.get(wd, set())
        return s

    def unrelated(self, u: int, cands) -> np.ndarray:
        rel = self.related(u)
        c = np.asarray(list(cands), np.int64)
        return c[~np.isin(c, np.fromiter(rel, np.int64, len(rel)))] if len(rel) else c

    def duty_times(self, u: int, n: int, t_min=None, t_max=None, margin=1800) -> np.ndarray:
        """n sorted times inside the user's duty, away from leave/surgery and shift edges."""
        m = self._iv_user == u
        a = self._iv_start[m] + margin
        b = self._iv_end[m] - margin
        lo = self.w.t0 if t_min is None else t_min
        hi = self.w.t_end if t_max is None else t_max
        a, b = np.maximum(a, lo), np.minimum(b, hi)
        ok = b > a
        a, b = a[ok], b[ok]
        if not len(a):
            if t_min is not None:
                return np.zeros(0, np.int64)
            a = np.array([self.w.t0 + 9 * H + 1800])   # no duty left: a weekday morning
            b = a + 3 * H
        bm = self._bl_user == u
        bs, be = self._bl_start[bm], self._bl_end[bm]
        k = self.rng.integers(0, len(a), 50 * n)
        t = (a[k] + self.rng.random(50 * n) * (b[k] - a[k])).astype(np.int64)
        blocked = ((bs[None, :] <= t[:, None]) & (be[None, :] > t[:, None])).any(axis=1)
        out = t[~blocked][:n].tolist()
        while len(out) < n:   # leave/surgery everywhere: take the first duty minutes
            out.append(int(a[0] + self.rng.random() * (b[0] - a[0])))
        return np.sort(np.array(out, np.int64))

    def home_loc(self, u: int) -> int:
        return int(self.w.users.at[u, "_loc"])

    def users_where(self, mask, exclude_used=True) -> np.ndarray:
        idx = np.flatnonzero(np.asarray(mask))
        if exclude_used:
            idx = idx[~np.isin(idx, list(self.used_users))]
        has_duty = np.isin(idx, self.duty_iv.user.to_numpy())
        return idx[has_duty]

    def pick_user(self, mask) -> int:
        c = self.users_where(mask)
        if not len(c):
            c = self.users_where(mask, exclude_used=False)
        u = int(c[self.rng.integers(0, len(c))])
        self.used_users.add(u)
        return u

    def enc_of(self, p: int) -> int:
        e = self.w.patient_last_enc
        return int(e[p]) if p < len(e) else -1

    def case(self, violation: str, u: int, tag) -> int:
        tag = self.pid[tag] if isinstance(tag, (int, np.integer)) else tag
        self.cases.append((violation, f"{violation}:{self.uid[u]}:{tag}"))
        return len(self.cases) - 1

    def emit(self, case, ts, u, p, action="view", module="病历", loc=None, ws=-1, rc=1,
             acting=-1, reason=0):
        ts = np.atleast_1d(np.asarray(ts, np.int64))
        n = len(ts)
        if n == 0:
            return
        if not isinstance(action, str):
            action = list(action)[:n]
        if not isinstance(module, str):
            module = list(module)[:n]
        if np.ndim(p) == 1:
            p = np.asarray(p)[:n]
        if np.ndim(reason) == 1:
            reason = np.asarray(reason)[:n]
        if np.ndim(rc) == 1:
            rc = np.asarray(rc)[:n]
        p = np.broadcast_to(np.asarray(p, np.int64), (n,))
        act = np.broadcast_to(np.asarray([A[a] for a in np.atleast_1d(action)], np.int16)
                              if not isinstance(action, str) else np.int16(A[action]), (n,))
        mod = (np.broadcast_to(np.asarray([M[m] for m in module], np.int16), (n,))
               if not isinstance(module, str) else np.int16(M[module]))
        self.buf.add(ts, u, p, act, mod, self.home_loc(u) if loc is None else loc,
                     np.array([self.enc_of(int(x)) for x in p]), rc=rc, acting=acting,
                     reason=reason, src=SRC["violation"], ws=ws, case=case)

    def inpatients_at(self, t, exclude_dept=None, exclude_campus=None) -> pd.DataFrame:
        s = self.inpat
        m = (s.start <= t) & (s.end > t)
        if exclude_dept is not None:
            m &= s.department != exclude_dept
        return s[m]

    # the kinds -----------------------------------------------------------------------------
    def no_relationship(self, k):
        w, rng = self.w, self.rng
        clin = w.users.role.isin(["physician", "nurse"]) & w.users._kind.isin(
            ["attending", "resident", "rot", "day"])
        for s in ["single", "repeat", "browse", "single", "repeat", "browse_small"] * k:
            u = self.pick_user(clin)
            dep = w.users.at[u, "department"]
            if s == "single":
                t = self.duty_times(u, 1)
                c = self.unrelated(u, self.inpatients_at(t[0], dep).patient)
                p = int(rng.choice(c))
                self.emit(self.case("care.no_relationship", u, p), t, u, p,
                          module=rng.choice(["病历", "检验", "影像"]))
            elif s == "repeat":
                t = self.duty_times(u, int(rng.integers(4, 9)))
                c = self.unrelated(u, self.inpatients_at(t[0], dep).patient)
                p = int(rng.choice(c))
                self.emit(self.case("care.no_relationship", u, p), t, u, p,
                          module=list(rng.choice(["病历", "检验", "影像", "病程记录"], len(t))))
            else:
                t0 = self.duty_times(u, 1, margin=3 * 3600)[0]
                c = self.unrelated(u, self.inpatients_at(t0, dep).patient.unique())
                n = min(len(c), int(rng.integers(15, 30)) if s == "browse" else 8)
                ps = rng.choice(c, n, replace=False)
                ts = t0 + np.sort(rng.integers(0, 5400, n))
                day = pd.Timestamp(int(t0), unit="s").strftime("%Y-%m-%d")
                cs = self.case("care.no_relationship", u, f"browse-{day}")
                self.emit(cs, ts, u, ps)

    def _patient_cases(self, violation, targets, users, counts, modules=("病历", "检验")):
        rng = self.rng
        for p, u, n in zip(targets, users, counts):
            t = self.duty_times(u, n)
            if not len(t):
                continue
            acts = ["view"] * len(t)
            if n >= 4:
                acts[-1] = "print"
            self.emit(self.case(violation, u, int(p)), t, u, int(p), action=acts,
                      module=list(rng.choice(list(modules), len(t))), rc=1)

    def vip(self, k):
        w = self.w
        vips = w.vip_inpatients
        clin = w.users.role.isin(["physician", "nurse", "technician"]) & ~w.users._kind.isin(
            ["office", "vendor", "trainee"])
        for j in range(2 * k + 2):
            p = int(vips[j % len(vips)])
            for _ in range(20):
                u = self.pick_user(clin)
                if p not in self.related(u):
                    break
            n = [6, 1, 2, 1, 3, 1][j % 6]
            self._patient_cases("snoop.vip", [p], [u], [n])

    def people(self, violation, pairs, counts):
        """pairs: (user, patient) planted by the population builder (family, coworker …)."""
        for (u, p), n in zip(pairs, counts):
            if p in self.related(u):
                continue
            self.used_users.add(u)
            self._patient_cases(violation, [p], [u], [n])

    def deceased(self, k):
        clin = self.w.users.role.isin(["physician", "nurse"])
        for j, p in enumerate(self.w.old_deceased[:2 * k]):
            u = self.pick_user(clin)
            self._patient_cases("snoop.deceased", [int(p)], [u], [[5, 1, 2, 1][j % 4]])

    def watchlist(self, k):
        w = self.w
        for j, (p, team) in enumerate(w.watch_list[:2 * k]):
            p = int(p)
            if j % 2 == 0:
                clin = w.users.role.isin(["physician", "nurse"])
                u = self.pick_user(clin)
                t = self.duty_times(u, 4)
                self.emit(self.case("snoop.watchlist", u, p), t, u, p,
                          action=["view", "view", "view", "copy"], module="病历")
            else:
                # subtle: a nurse of the patient's last ward, explained by the ward relation
                # but outside the sealed record's team
                ward = w.seg.loc[w.seg.patient == p, "ward"].iloc[-1]
                m = (w.users.ward == ward) & (w.users.role == "nurse") & ~w.users.index.isin(
                    team)
                u = self.pick_user(m)
                t = self.duty_times(u, 1)
                self.emit(self.case("snoop.watchlist", u, p), t, u, p)

    def query_then_open(self, k):
        w, rng = self.w, self.rng
        clin = w.users.role.isin(["physician", "nurse"]) & w.users._kind.isin(
            ["attending", "resident", "rot"])
        for j in range(2 * k):
            u = self.pick_user(clin)
            t = self.duty_times(u, 1)[0]
            c = self.unrelated(u, self.inpatients_at(t, w.users.at[u, "department"]).patient)
            p = int(rng.choice(c))
            cs = self.case("snoop.query_then_open", u, p)
            n_open = 1 if j % 2 else 4
            ts = t + np.r_[0, 40 + np.arange(n_open) * 90]
            acts = ["query"] + ["view"] * n_open
            self.emit(cs, ts, u, p, action=acts, module="病历")

    def concurrent(self, k):
        """The account works at its ward while someone else uses it elsewhere."""
        w, rng = self.w, self.rng
        ws = w.workstations
        made = 0
        for j in range(12 * k):
            if made >= 2 * k:
                break
            nurse = w.users.role.isin(["nurse", "physician"]) & w.users._kind.isin(
                ["rot", "attending", "resident"]) & w.users.ward.notna()
            u = self.pick_user(nurse)
            t = self.duty_times(u, 1, margin=2 * 3600)[0]
            camp = w.users_campus[u]
            blatant = made % 2 == 0
            other = w.wards[(w.wards.campus != camp) if blatant else
                            ((w.wards.campus == camp) & (w.wards.ward != w.users.at[u, "ward"]))]
            other = other[other.kind == "ward"]
            wrow = other.iloc[rng.integers(0, len(other))]
            loc2 = int(w.locations.loc[w.locations.name == wrow.ward, "loc_idx"].iloc[0])
            ws2 = int(ws[(ws["loc"] == loc2) & (ws._tag == "D")].index[0])
            n = 10 if blatant else 3
            pats = self.inpatients_at(t)
            pats = pats[pats.ward == wrow.ward].patient.to_numpy()
            pats = self.unrelated(u, pats) if len(pats) else pats
            if not len(pats):
                continue
            made += 1
            cs = self.case("cred.concurrent_use", u, f"{wrow.ward}-{j}")
            ts = t + np.sort(rng.integers(0, (1800 if blatant else 600), n))
            self.emit(cs, ts, u, rng.choice(pats, n), loc=loc2, ws=ws2)
            # the owner keeps working at the home ward in the same minutes
            home = self.home_loc(u)
            tl = t + np.sort(rng.integers(0, (1800 if blatant else 600), n))
            op = self._own_patients_at(u, t, ward_only=True)
            if len(op):
                pp = rng.choice(op, n)
                self.buf.add(tl, u, pp, A["view"], M["护理记录"], home,
                             np.array([self.enc_of(int(x)) for x in pp]),
                             src=SRC["violation"])

    def travel(self, k):
        w, rng = self.w, self.rng
        ws = w.workstations
        made = 0
        for j in range(12 * k):
            if made >= k:
                break
            m = w.users.role.isin(["physician"]) & w.users._kind.isin(["attending", "resident"])
            u = self.pick_user(m)
            t = self.duty_times(u, 1, margin=2 * 3600)[0]
            camp = w.users_campus[u]
            other = w.wards[(w.wards.campus != camp) & (w.wards.kind == "ward")]
            if other.empty:
                continue
            wrow = other.iloc[rng.integers(0, len(other))]
            loc2 = int(w.locations.loc[w.locations.name == wrow.ward, "loc_idx"].iloc[0])
            ws2 = int(ws[(ws["loc"] == loc2) & (ws._tag == "D")].index[0])
            op = self._own_patients_at(u, t)
            if not len(op):
                continue
            made += 1
            # a legitimate-looking view at home, then the same account on the other campus
            self.buf.add(np.array([t]), u, op[:1], A["view"], M["病程记录"], self.home_loc(u),
                         np.array([self.enc_of(int(op[0]))]), src=SRC["violation"])
            cs = self.case("cred.impossible_travel", u, f"{wrow.ward}-{j}")
            ts = t + 420 + np.arange(3) * 120
            self.emit(cs, ts, u, rng.choice(op, 3), loc=loc2, ws=ws2)

    def _own_patients_at(self, u, t, ward_only=False):
        """Patients lying in the user's department (or ward) at t: explained by the relation."""
        s = self.w.seg
        m = (s.start.to_numpy() <= t) & (s.end.to_numpy() > t + 3600)
        if ward_only:
            m &= s.ward.to_numpy() == self.w.users.at[u, "ward"]
        else:
            m &= s.department.to_numpy() == self.w.users.at[u, "department"]
        return s.patient.to_numpy()[m]

    def off_duty(self, k):
        w, rng = self.w, self.rng
        b = self.blocks
        lv = b[(b.kind == "leave") & (b.start >= w.t0) & (b.end <= w.t_end)
               & ~b.user.isin(w.users.index[w.users._longleave])]
        lv = lv[w.users.role.to_numpy()[lv.user.to_numpy()] == "physician"]
        sg = b[(b.kind == "surgery") & (b.start >= w.t0)]
        plans = [("leave", 8), ("surgery", 2), ("leave", 3)] * k
        for kind, n in plans:
            src = lv if kind == "leave" else sg
            src = src[~src.user.isin(list(self.used_users))]
            if src.empty:
                continue
            row = src.iloc[rng.integers(0, len(src))]
            u = int(row.user)
            self.used_users.add(u)
            lo, hi = int(row.start) + 1800, int(row.end) - 1800
            if kind == "leave":
                day = lo // DAY * DAY
                lo, hi = day + 9 * H, min(hi, day + DAY + 17 * H)
            ts = np.sort(lo + rng.integers(0, max(600, hi - lo), n))
            op = self._own_patients_at(u, ts[0])
            if not len(op):
                continue
            cs = self.case("cred.off_duty_use", u, f"{kind}-{pd.Timestamp(int(ts[0]), unit='s'):%Y-%m-%d}")
            self.emit(cs, ts, u, rng.choice(op, n), module="医嘱",
                      action=list(rng.choice(["view", "update", "create"], n)))

    def inactive(self, k):
        w, rng = self.w, self.rng
        u_ = w.users
        term = np.flatnonzero((u_.status == "terminated").to_numpy())
        before = [i for i in term if u_.at[i, "_end_ts"] < w.t0]
        during = [i for i in term if u_.at[i, "_end_ts"] >= w.t0]
        plans = [(before, 6, 5), (during, 1, 2)] * k
        for pool, n, delay in plans:
            pool = [i for i in pool if i not in self.used_users]
            if not pool:
                continue
            u = int(pool[rng.integers(0, len(pool))])
            self.used_users.add(u)
            start = max(int(u_.at[u, "_end_ts"]) + delay * DAY, w.t0 + DAY)
            if start >= w.t_end - DAY:
                start = w.t_end - 2 * DAY
            day = start // DAY * DAY
            ts = np.sort(day + 9 * H + rng.integers(0, 8 * 3600, n))
            op = self._own_patients_at(u, ts[0])
            if not len(op):
                continue
            cs = self.case("cred.inactive_account", u, f"{pd.Timestamp(int(ts[0]), unit='s'):%Y-%m-%d}")
            self.emit(cs, ts, u, rng.choice(op, n))

    def expired(self, k):
        w, rng = self.w, self.rng
        u_ = w.users
        until = u_._until_ts.to_numpy()
        for role in ["trainee", "vendor"] * k:
            m = (u_._kind == role).to_numpy() & (until > w.t0 + 2 * DAY) & (
                until < w.t_end - 3 * DAY)
            c = [i for i in np.flatnonzero(m) if i not in self.used_users]
            if not c:
                continue
            u = int(c[rng.integers(0, len(c))])
            self.used_users.add(u)
            day = (int(until[u]) // DAY + int(rng.integers(1, 3))) * DAY
            n = 4 if role == "trainee" else 2
            ts = np.sort(day + 9 * H + rng.integers(0, 7 * 3600, n))
            if role == "trainee":
                op = self._own_patients_at(u, ts[0])
            else:
                op = self.inpatients_at(ts[0]).patient.to_numpy()
            if not len(op):
                continue
            cs = self.case("cred.expired_access", u, f"{pd.Timestamp(int(ts[0]), unit='s'):%Y-%m-%d}")
            self.emit(cs, ts, u, rng.choice(op, n))

    def acting(self, k):
        """A resident works under the attending's login (登录医师 ≠ 操作医师)."""
        w, rng = self.w, self.rng
        for j in range(2 * k):
            u = self.pick_user((w.users._kind == "attending")
                               & w.users.department.isin(w.wards.department))
            dep = w.users.at[u, "department"]
            res = np.flatnonzero(((w.users._kind == "resident") & (w.users.department == dep))
                                 .to_numpy())
            if not len(res):
                continue
            actor = int(res[rng.integers(0, len(res))])
            n = 5 if j % 2 == 0 else 1
            t = self.duty_times(u, 1, margin=2 * 3600)[0]
            op = self._own_patients_at(u, t)
            if not len(op):
                continue
            cs = self.case("cred.acting_mismatch", u, f"{w.users.at[actor, 'user_id']}-{j}")
            ts = t + np.arange(n) * 240
            self.emit(cs, ts, u, rng.choice(op, n), action=(["create", "sign"] * 3)[:n],
                      module="病程记录", acting=actor)

    def off_hours(self, k):
        """A day worker opening many records at night (blatant 40 at 02:00, subtle 12)."""
        w, rng = self.w, self.rng
        d = w.roster.duty
        night_workers = set(d.loc[d.scheme.isin(["h8", "h12"]) | (d.slot % 2 == 1), "user"])
        day_only = (w.users._kind.isin(["day", "head", "attending"])
                    & w.users.department.isin(w.wards.department)
                    & ~w.users.index.isin(list(night_workers)) & w.users.role.isin(
                        ["nurse", "physician"]))
        for j, (n, hour) in enumerate([(40, 2), (12, 22)] * k):
            u = self.pick_user(day_only)
            day = int(rng.integers(1, max(2, w.days - 1)))
            t = w.t0 + day * DAY + hour * H + int(rng.integers(0, 1200))
            own = list(self.rel_dept.get(w.users.at[u, "department"], set()))
            s = w.seg[w.seg.patient.isin(own) & (w.seg.start < t)
                      & (w.seg.end > t - 14 * DAY)].patient.unique()
            if len(s) < n:
                n = len(s)
            ps = rng.choice(s, n, replace=False)
            ts = t + np.sort(rng.integers(0, 50 * 60 if n > 20 else 30 * 60, n))
            cs = self.case("bulk.off_hours", u, f"{pd.Timestamp(int(t), unit='s'):%Y-%m-%d}")
            self.emit(cs, ts, u, ps, module=list(rng.choice(["病历", "病程记录", "检验"], n)))

    def volume(self, k):
        w, rng = self.w, self.rng
        for j, n in enumerate([70, 30] * k):
            u = self.pick_user(w.users._kind.isin(["attending", "resident"])
                               & w.users.department.isin(w.wards.department))
            t = self.duty_times(u, 1, margin=3 * 3600)[0]
            own = list(self.rel_dept.get(w.users.at[u, "department"], set()))
            s = w.seg[w.seg.patient.isin(own) & (w.seg.start < t)].patient.unique()
            n = min(n, len(s))
            ps = rng.choice(s, n, replace=False)
            ts = t + np.sort(rng.integers(0, 5400, n))
            cs = self.case("bulk.volume", u, f"{pd.Timestamp(int(t), unit='s'):%Y-%m-%d}")
            self.emit(cs, ts, u, ps, module=list(rng.choice(["病历", "病案首页", "检验"], n)))

    def export(self, k):
        w, rng = self.w, self.rng
        plans = [("imaging", 25), ("copy", 15), ("print", 6)] * k
        for kind, n in plans:
            if kind == "imaging":
                u = self.pick_user((w.users.department == "放射科") & (w.users.role == "technician"))
            else:
                u = self.pick_user(w.users._kind.isin(["rot", "resident", "attending"]))
            t = self.duty_times(u, 1, margin=2 * 3600)[0]
            s = self.inpatients_at(t)
            s = s[s.start < t].patient.unique()
            if kind != "imaging":
                s = self.unrelated(u, s)
            n = min(n, len(s))
            ps = rng.choice(s, n, replace=False)
            ts = t + np.sort(rng.integers(0, 1800, n))
            cs = self.case("copy.bulk_export", u, f"{kind}-{pd.Timestamp(int(t), unit='s'):%Y-%m-%d}")
            if kind == "imaging":
                self.emit(cs, ts, u, ps, action="export", module="影像",
                          rc=rng.integers(20, 120, n))
            elif kind == "copy":
                self.emit(cs, ts, u, ps, action=list(rng.choice(["copy", "download"], n)),
                          module="病历", rc=rng.integers(3, 15, n))
            else:
                self.emit(cs, ts, u, ps, action="print", module="病历", rc=rng.integers(5, 11, n))

    def btg(self, k):
        w, rng = self.w, self.rng
        for j in range(2 * k):
            blatant = j % 2 == 0
            m = (w.users._kind == "attending") if blatant else (w.users.department == "急诊科")
            u = self.pick_user(m & w.users.role.eq("physician"))
            t = self.duty_times(u, 1)[0]
            # a patient who never arrives anywhere near this user afterwards
            pool = (w.vip_inpatients if blatant else w.outpatient_only)
            c = self.unrelated(u, pool)
            if not len(c):
                continue
            p = int(rng.choice(c))
            cs = self.case("btg.unjustified", u, p)
            n = 5 if blatant else 1
            ts = t + np.r_[0, 60 + np.arange(n) * 180]
            self.emit(cs, ts, u, p, action=["break_glass"] + ["view"] * n, module="病历",
                      reason=np.r_[6 if blatant else 5, np.zeros(n, int)])

    def slow_insider(self, k):
        """Daily unexplained views creeping up over the weeks: 0-1, then 2, 4, 7 a day."""
        w, rng = self.w, self.rng
        for j in range(k):
            # someone who works most days of the window (not on leave)
            c = self.users_where(w.users._kind.isin(["rot"]).to_numpy())
            n_iv = np.array([(self._iv_user == x).sum() for x in c])
            top = c[n_iv >= np.quantile(n_iv, 0.75)]
            u = int(top[rng.integers(0, len(top))])
            self.used_users.add(u)
            cs = self.case("anomaly.slow_insider", u, "creep")
            dep = w.users.at[u, "department"]
            for d in range(w.days):
                level = d / max(1, w.days - 1)
                lam = 0.3 + 7 * level ** 2
                n = int(rng.poisson(lam))
                if n == 0:
                    continue
                ts = self.duty_times(u, n, w.t0 + d * DAY, w.t0 + (d + 1) * DAY)
                if not len(ts):
                    continue
                c = self.unrelated(u, self.inpatients_at(ts[0], dep).patient.unique())
                ps = rng.choice(c, len(ts), replace=False)
                self.emit(cs, ts, u, ps, module=list(rng.choice(["病历", "检验", "影像"], len(ts))))


def plant(w, buf: EventBuf, k: int = 1) -> list[tuple[str, str]]:
    """Plant every kind (k = multiplier on the number of cases); returns the case list."""
    p = Planter(w, buf)
    steps = [
        ("no_relationship", (k,)), ("vip", (k,)),
        ("people", ("snoop.coworker", w.coworker_pairs, [4, 1, 2, 1, 3, 1] * k)),
        ("people", ("snoop.family", w.family_pairs, [3, 1, 5, 1, 2] * k)),
        ("people", ("snoop.neighbor", w.neighbor_pairs, [1, 3, 1] * k)),
        ("people", ("snoop.self", w.self_pairs, [1, 4, 1] * k)),
        ("deceased", (k,)), ("watchlist", (k,)), ("query_then_open", (k,)),
        ("concurrent", (k,)), ("travel", (k,)), ("off_duty", (k,)), ("inactive", (k,)),
        ("expired", (k,)), ("acting", (k,)), ("off_hours", (k,)), ("volume", (k,)),
        ("export", (k,)), ("btg", (k,)), ("slow_insider", (k,)),
    ]
    for name, args in steps:
        try:
            getattr(p, name)(*args)
        except (IndexError, ValueError):
            # a tiny hospital or a very short window may lack candidates for a strength;
            # the cases planted so far stay, the rest of this kind is skipped
            continue
    return p.cases
