"""The sample hospital's access rights: sensitive classes, roles, grants, planted problems.

How the hospital is set up (the legitimate part):
- patients of 精神科, 感染科 and 生殖医学科 carry the class 精神, 传染病 or 生殖;
- every account holds its staff-master role (roles.csv: 医师, 护士 … what each may do on
  ordinary records); staff of the three departments are given their department's role
  (精神科医护 …, reaching the class for their own department), and service and office staff
  (检验, 影像, 药剂, 康复, 呼吸治疗, 病案, 质控, 医保, 医务) the approved role 医技敏感病历;
  roles end with the account (revoked on the end date, lapsing with a trainee's period);
- anyone else who reads a classed record in the window (a consultant, the ED, a float nurse)
  holds a temporary grant for that class, approved by 医务处, from a day before the first
  access until a day after the last (授权有效期);
- 信息科 grants, 医务处 approves: never the same person, never the holder.

Planted (truth.csv; rows about grants name them in `ref`, with no event): a nurse exporting
hospital-wide and a pharmacist exporting (beyond role), an engineer granting himself all
rights and a psychiatric grant without approval (unapproved), a trainee role reaching
sensitive classes unapproved, grants kept after leaving, after a training period and after a
transfer, grants never used, a ward's nurse-station login, an admin login and a nurse's
account shared at three terminals at once (generic accounts, with events), and consultants
reading a classed record with the care relation but no grant (outside grant, with events).
All draws come from the hospital's own generator, in a fixed order: same seed, same rights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.access_rights import ACTION_PERMISSION
from emraudit.demo.events import A, M, SRC
from emraudit.demo.roster import DAY, H
from emraudit.demo.writers import _date
from emraudit.model import ACTIONS

CLASS_OF_DEPT = {"精神科": "精神", "感染科": "传染病", "生殖医学科": "生殖"}
DEPT_ROLE = {"精神科": "精神科医护", "感染科": "感染科医护", "生殖医学科": "生殖医学科医护"}
SERVICE_ROLE = "医技敏感病历"
SERVICE_DEPTS = ("检验科", "放射科", "药剂科", "康复医学科", "呼吸治疗科", "病案室", "质控科",
                 "医保办", "医务处")
TRAINEE_ROLE = "进修生组"          # planted: a role reaching classes, its definition unapproved
PERM_ZH = {"read": "查阅", "write": "书写", "print": "打印", "export": "导出",
           "break_glass": "紧急授权"}
# the staff master's roles as the HIS names them, and what each may do on ordinary records
BASE_ROLES = [("医师", "查阅;书写;打印", "本科室"), ("护士", "查阅;书写;打印", "本科室"),
              ("技师", "查阅;书写", "全院"), ("药师", "查阅", "全院"),
              ("进修生", "查阅;书写", "本科室"), ("病案室", "查阅;打印;导出", "全院"),
              ("质控科", "查阅", "全院"), ("医保办", "查阅", "全院"), ("医务处", "查阅", "全院"),
              ("信息科", "授权", "全院"), ("other", "查阅", "本科室")]
STATION = "HSZ01"                 # a ward's shared nurse-station login
ADMIN = "admin"


# -- accounts that exist only to be misused ------------------------------------------------------
def add_accounts(w) -> None:
    """Append the nurse-station login of the first ward and the system administrator login
    to the staff master (before the violations are planted: they have no legitimate use)."""
    u = w.users
    ward = w.wards[w.wards.kind == "ward"].iloc[0]
    nurse = u[(u.ward == ward.ward) & (u.role == "nurse")].iloc[0]
    it = u[u.department == "信息科"].iloc[0]
    rows = []
    for acct, name, base, title in ((STATION, f"{ward.ward}护士站", nurse, "公用账号"),
                                    (ADMIN, "系统管理员", it, "管理账号")):
        r = base.copy()
        r["user_id"], r["name"], r["title"], r["_kind"] = acct, name, title, "shared"
        r["supervisor_id"] = pd.NA
        r["address"], r["phone"], r["_surname"] = None, None, None
        r["status"], r["_end_ts"], r["_until_ts"] = "active", np.int64(-1), np.int64(-1)
        r["_start_ts"] = w.t0 - 900 * DAY
        rows.append(r)
    w.users = pd.concat([u, pd.DataFrame(rows)], ignore_index=True)
    w.users_campus = np.append(w.users_campus, [w.users_campus[nurse.name],
                                                w.users_campus[it.name]])


def sensitive_classes(w) -> None:
    """patients.sensitive_class from where each patient was treated."""
    parts = []
    for dep, cls in CLASS_OF_DEPT.items():
        p = np.unique(np.concatenate([w.seg.patient[w.seg.department == dep].to_numpy(),
                                      w.visits.patient[w.visits.department == dep].to_numpy()]))
        parts.append(pd.Series(cls, index=p))
    both = pd.concat(parts).groupby(level=0).agg(lambda s: ";".join(sorted(set(s))))
    col = np.full(len(w.patients), None, dtype=object)
    idx = both.index.to_numpy()
    col[idx[idx < len(col)]] = both.to_numpy()[idx < len(col)]
    w.patients["sensitive_class"] = col


# -- planted accounts (events; called by violations.plant) -------------------------------------
def plant_accounts(w, buf, rng, k: int, busy: set, legit: dict) -> list[tuple[str, str]]:
    """The nurse-station login used at the ward's terminals all day, every day; the admin
    login signing in now and then; a nurse's account used at three terminals at once (not
    one of the `busy` accounts of other planted cases), on the days and patients of her own
    `legit` work: only the terminals give it away. Returns w.cases extended."""
    from emraudit.demo.violations import Planter
    p = Planter(w, buf)
    p.rng = rng
    p.cases = list(w.cases)
    p.used_users |= set(int(x) for x in busy)
    _plant_accounts(p, k, legit)
    return p.cases


def _plant_accounts(p, k: int, legit: dict) -> None:
    w, rng = p.w, p.rng
    uid = list(w.users.user_id)
    ws = w.workstations
    station = uid.index(STATION)
    loc = int(w.users.at[station, "_loc"])
    terms = ws.index[ws["loc"] == loc].to_numpy()
    ward = w.users.at[station, "ward"]
    seg = w.seg
    cs = p.case("rights.generic_account", station, "station")
    for d in range(w.days):
        for hour in (9,):
            t = w.t0 + d * DAY + hour * H + int(rng.integers(0, 1800))
            here = seg[(seg.ward == ward) & (seg.start < t) & (seg.end > t + H)].patient
            if not len(here):
                continue
            n = len(terms)
            ts = t + np.sort(rng.integers(0, 1200, n))
            pats = rng.choice(here.to_numpy(), n)
            for j in range(n):
                p.emit(cs, ts[j:j + 1], station, int(pats[j]), action="view", module="护理记录",
                       loc=loc, ws=int(terms[j]))
    admin = uid.index(ADMIN)
    it_ws = ws.index[ws["loc"] == int(w.users.at[admin, "_loc"])].to_numpy()
    cs = p.case("rights.generic_account", admin, "logins")
    for d in sorted(rng.choice(np.arange(w.days), min(w.days, 3 + 2 * k), replace=False)):
        t = w.t0 + int(d) * DAY + 14 * H + int(rng.integers(0, 3 * 3600))
        p.buf.add(np.array([t]), admin, -1, A["login"], M[""], int(w.users.at[admin, "_loc"]),
                  -1, src=SRC["violation"], ws=int(it_ws[0]), case=cs)
    # a ward nurse's own account, used at three terminals at once every day
    wards = w.wards[(w.wards.kind == "ward") & (w.wards.ward != ward)]
    for wd in wards.ward:
        lw = w.users[(w.users.ward == wd) & (w.users._kind == "rot")].index
        lw = [x for x in lw if x not in p.used_users]
        loc2 = w.locations.loc[w.locations.name == wd, "loc_idx"]
        t2 = ws.index[ws["loc"] == int(loc2.iloc[0])].to_numpy() if len(loc2) else []
        if lw and len(t2) >= 3:
            break
    else:
        return
    nurse = int(lw[int(rng.integers(0, len(lw)))])
    p.used_users.add(nurse)
    cs = p.case("rights.generic_account", nurse, "shared")
    mine = (legit["user"] == nurse) & (legit["patient"] >= 0)
    days = (legit["ts"][mine] - w.t0) // DAY
    for d in np.unique(days):
        # the day's own patients, read again at three terminals within a quarter of an hour
        own = np.unique(legit["patient"][mine][days == d])
        t = w.t0 + int(d) * DAY + 10 * H + int(rng.integers(0, 3600))
        ts = t + np.sort(rng.integers(0, 900, 3))
        pats = rng.choice(own, 3)
        for j in range(3):
            p.emit(cs, ts[j:j + 1], nurse, int(pats[j]), action="view", module="护理记录",
                   loc=int(loc2.iloc[0]), ws=int(t2[j]))


# -- roles, grants and the planted grant problems ------------------------------------------------
class _Grants:
    """Grant rows in the making, with the truth rows of the planted ones."""

    def __init__(self, w):
        self.w = w
        self.rows: list[dict] = []
        u = w.users
        self.it = u.user_id[(u.department == "信息科") & (u._kind == "office")].tolist()
        self.med = u.user_id[u.department == "医务处"].tolist()
        self.qc = u.user_id[u.department == "质控科"].tolist()
        self.truth: list[tuple[str, str, int]] = []       # (violation, case key, row number)

    def add(self, user=None, role=None, perm=None, cls=None, scope=None, dept=None, at=0,
            by=None, approved="default", revoked=-1, expires=-1, reason=None) -> int:
        if approved == "default":       # 医务处 approves, never its own member's grant
            approved = next(m for m in self.med + self.qc if m != user)
        self.rows.append({
            "user": user, "role": role, "permission": perm, "record_class": cls,
            "scope": scope, "department": dept, "granted_at": int(at),
            "granted_by": self.it[0] if by is None else by, "approved_by": approved,
            "revoked_at": int(revoked), "expires_at": int(expires), "reason": reason})
        return len(self.rows) - 1

    def plant(self, violation: str, user: str, tag: str, row: int) -> None:
        self.truth.append((violation, f"{violation}:{user}:{tag}", row))


def _at(w, rng, days_before: float) -> int:
    """A working-hours moment `days_before` days before the window."""
    return int(w.t0 - int(days_before) * DAY + 9 * H + int(rng.integers(0, 6 * 3600)))


def _roles_table(w) -> pd.DataFrame:
    med = w.users.user_id[w.users.department == "医务处"].iloc[0]
    rows = [(r, p, None, s, med, "岗位基本权限") for r, p, s in BASE_ROLES]
    for dep, role in DEPT_ROLE.items():
        rows.append((role, "查阅;书写;打印", CLASS_OF_DEPT[dep], "本科室", med,
                     f"{dep}医护人员查阅本科室{CLASS_OF_DEPT[dep]}类病历"))
    rows.append((SERVICE_ROLE, "查阅;书写;打印", "精神;传染病;生殖", "全院", med,
                 "医技、药学及职能科室查阅敏感类别病历"))
    rows.append((TRAINEE_ROLE, "查阅", "精神;传染病", "全院", None, "进修生教学查阅"))
    return pd.DataFrame(rows, columns=["role", "permissions", "record_class", "scope",
                                       "approved_by", "description"])


def build_rights(w) -> None:
    """w.roles_table, w.grants_table and w.rights_truth from the finished hospital; tags the
    planted outside-grant accesses in w.events (their case numbers follow w.cases)."""
    rng = w.rng
    u = w.users
    g = _Grants(w)
    start = u._start_ts.to_numpy()
    end = u._end_ts.to_numpy()
    until = u._until_ts.to_numpy()
    # department and service roles, ending with the account
    for i, r in u.iterrows():
        role = DEPT_ROLE.get(r.department) or (SERVICE_ROLE if r.department in SERVICE_DEPTS
                                               else None)
        if role is None or r._kind == "shared":
            continue
        at = max(int(start[i]), int(w.t0 - 700 * DAY)) + 9 * H
        g.add(r.user_id, role, at=at, revoked=end[i] if end[i] >= 0 else -1,
              expires=until[i] if until[i] >= 0 else -1,
              dept=r.department if r.role != "trainee" else None)
    _plant_grants(w, rng, g)
    holders = _class_holders(w, g)
    _outside_grant(w, rng, holders)
    _temporary_grants(w, rng, g, holders)
    w.roles_table = _roles_table(w)
    w.grants_table, w.rights_truth = _grant_frame(w, g)


def _pick(rng, cands) -> int:
    cands = list(cands)
    return int(cands[int(rng.integers(0, len(cands)))])


def _plant_grants(w, rng, g: _Grants) -> None:
    u = w.users
    uid = u.user_id.to_numpy()
    groups = u[u._kind == "rot"].groupby(["role", "department"]).size()
    big = [d for (r, d), n in groups.items() if r == "nurse" and n >= 7]
    nurse = _pick(rng, u.index[(u._kind == "rot") & u.department.isin(big)])
    row = g.add(uid[nurse], perm="导出", scope="全院", at=_at(w, rng, 150),
                dept=u.at[nurse, "department"], reason="科研数据整理")
    g.plant("rights.beyond_role", uid[nurse], "export", row)
    pharm = _pick(rng, u.index[u.role == "pharmacist"])
    row = g.add(uid[pharm], perm="导出", at=_at(w, rng, 100), dept="药剂科", reason="处方点评")
    g.plant("rights.unused", uid[pharm], "export", row)
    eng = [i for i in u.index[(u.department == "信息科") & (u._kind == "office")]]
    me = int(eng[-1])
    row = g.add(uid[me], perm="全部", scope="全院", at=_at(w, rng, 60), by=uid[me],
                approved=None, reason="系统维护")
    g.plant("rights.unapproved", uid[me], "self", row)
    ortho = _pick(rng, u.index[(u.department == "骨科") & (u._kind == "attending")])
    row = g.add(uid[ortho], perm="查阅", cls="精神", at=_at(w, rng, 45), approved=None,
                dept="骨科", reason="会诊")
    g.plant("rights.unapproved", uid[ortho], "psych", row)
    phys = _pick(rng, u.index[(u.department == "心内科") & (u._kind == "attending")])
    row = g.add(uid[phys], perm="查阅;打印", at=_at(w, rng, 500), dept="神经内科",
                reason="轮转")
    g.plant("rights.after_leaving", uid[phys], "transferred", row)
    left = [i for i in u.index[(u.status == "terminated") & (u._end_ts < w.t0)]]
    if left:
        gone = _pick(rng, left)
        row = g.add(uid[gone], perm="打印", at=_at(w, rng, 400), dept=u.at[gone, "department"],
                    reason="出院小结打印")
        g.plant("rights.after_leaving", uid[gone], "departed", row)
    tr = [i for i in u.index[(u._kind == "trainee") & (u._until_ts >= w.t0)
                             & (u._until_ts < w.t_end - 2 * DAY)]]
    if tr:
        trainee = _pick(rng, tr)
        row = g.add(uid[trainee], perm="打印", at=_at(w, rng, 20),
                    dept=u.at[trainee, "department"], reason="进修期间打印病历")
        g.plant("rights.after_leaving", uid[trainee], "expired", row)
    gyn = _pick(rng, u.index[(u.department == "骨科") & (u._kind == "resident")])
    row = g.add(uid[gyn], perm="查阅", cls="生殖", at=_at(w, rng, 90), dept="骨科",
                reason="科研")
    g.plant("rights.unused", uid[gyn], "reproductive", row)
    # the trainee role: given (with approval) to two trainees still in training
    still = [i for i in u.index[(u._kind == "trainee") & (u._until_ts >= w.t_end)]]
    for i in sorted(rng.choice(still, min(2, len(still)), replace=False)) if still else []:
        row = g.add(uid[i], TRAINEE_ROLE, at=_at(w, rng, 30), expires=u.at[i, "_until_ts"],
                    dept=u.at[i, "department"])
    g.role_truth = ("rights.beyond_role", f"rights.beyond_role:role:{TRAINEE_ROLE}",
                    f"roles:{TRAINEE_ROLE}")


ROLE_PERMS = {"read", "write", "print"}       # what the class roles allow (查阅;书写;打印)


def _class_holders(w, g: _Grants) -> dict[tuple[str, str], set[int]]:
    """(class, permission) -> accounts holding it through a role at any time in the window
    (the roles of departed staff end before their last access). Planted grants are left
    out: the demo gives their holders temporary grants like anyone else."""
    uid_to_idx = {x: i for i, x in enumerate(w.users.user_id)}
    reach = {role: ({CLASS_OF_DEPT[dep]}, ROLE_PERMS) for dep, role in DEPT_ROLE.items()}
    reach[SERVICE_ROLE] = (set(CLASS_OF_DEPT.values()), ROLE_PERMS)
    reach[TRAINEE_ROLE] = ({"精神", "传染病"}, {"read"})
    out: dict[tuple[str, str], set[int]] = {}
    for r in g.rows:
        if r["permission"] is not None or r["role"] not in reach:
            continue
        classes, perms = reach[r["role"]]
        for c in classes:
            for perm in perms:
                out.setdefault((c, perm), set()).add(uid_to_idx[r["user"]])
    return out


def _classed_legit(w, holders) -> pd.DataFrame:
    """Legitimate patient events on classed records by accounts without a role allowing
    the event's permission on the class."""
    e = w.events
    cls = w.patients.sensitive_class.to_numpy()
    pat = e["patient"]
    ok = (pat >= 0) & (pat < len(cls)) & (e["case"] < 0)
    i = np.flatnonzero(ok)
    c = cls[pat[i]]
    has = pd.notna(c)
    i, c = i[has], c[has]
    perm = np.array([ACTION_PERMISSION.get(ACTIONS[a]) for a in e["action"][i]], dtype=object)
    rows = []
    for klass in CLASS_OF_DEPT.values():
        m = np.array([klass in str(x).split(";") for x in c]) & (perm != None)  # noqa: E711
        j, pj = i[m], perm[m]
        held = np.array([e["user"][x] in holders.get((klass, q), ()) for x, q in zip(j, pj)],
                        dtype=bool)
        j, pj = j[~held], pj[~held]
        rows.append(pd.DataFrame({"row": j, "user": e["user"][j], "klass": klass,
                                  "ts": e["ts"][j], "perm": pj, "src": e["src"][j]}))
    return pd.concat(rows, ignore_index=True)


def _outside_grant(w, rng, holders) -> None:
    """Two consultants read a classed record with the consult relation but no grant: their
    accesses to that class are the planted case (no temporary grant is made for them)."""
    x = _classed_legit(w, holders)
    cons = x[x.src == SRC["consult"]]
    pairs = cons.drop_duplicates(["user", "klass"])[["user", "klass"]]
    pairs = pairs[pairs.user.map(lambda v: w.users.at[v, "_kind"] in ("attending",
                                                                    "resident"))]
    if not len(pairs):
        return
    pick = pairs.iloc[sorted(rng.choice(len(pairs), min(2, len(pairs)), replace=False))]
    for r in pick.itertuples():
        rows = x[(x.user == r.user) & (x.klass == r.klass)].row.to_numpy()
        w.cases.append(("rights.outside_grant",
                        f"rights.outside_grant:{w.users.at[r.user, 'user_id']}:{r.klass}"))
        w.events["case"][rows] = len(w.cases) - 1


def _temporary_grants(w, rng, g: _Grants, holders) -> None:
    """Everyone else who read a classed record got a grant for its class, valid from a day
    before the first access to a day after the last, with the permissions used."""
    x = _classed_legit(w, holders)
    if not len(x):
        return
    x["perm"] = x["perm"].map(PERM_ZH)
    uid = w.users.user_id.to_numpy()
    dept = w.users.department.to_numpy()
    for (user, klass), grp in x.groupby(["user", "klass"], sort=True):
        perms = [p for p in PERM_ZH.values() if p in set(grp.perm)]
        first, last = int(grp.ts.min()), int(grp.ts.max())
        g.add(uid[user], perm=";".join(perms), cls=klass, dept=dept[user],
              at=first // DAY * DAY - DAY + 8 * H + int(rng.integers(0, 8 * 3600)),
              expires=(last // DAY + 2) * DAY, reason="会诊/诊疗需要临时授权")


def _grant_frame(w, g: _Grants) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """The grants table in time order with ids G000001…, and the planted truth rows."""
    df = pd.DataFrame(g.rows)
    df["_row"] = np.arange(len(df))
    df = df.sort_values(["granted_at", "user", "role", "permission", "record_class"],
                        kind="stable", na_position="first").reset_index(drop=True)
    width = max(6, len(str(len(df))))
    df["grant_id"] = [f"G{i + 1:0{width}d}" for i in range(len(df))]
    gid = dict(zip(df["_row"], df["grant_id"]))
    out = pd.DataFrame({
        "grant_id": df["grant_id"], "user_id": df["user"], "role": df["role"],
        "permission": df["permission"], "record_class": df["record_class"],
        "scope": df["scope"], "department": df["department"],
        "granted_at": _date(df["granted_at"].to_numpy()),
        "granted_by": df["granted_by"], "approved_by": df["approved_by"],
        "revoked_at": _date(df["revoked_at"].to_numpy()),
        "expires_at": _date(df["expires_at"].to_numpy()), "reason": df["reason"]})
    truth = [(v, key, f"grants:{gid[row]}") for v, key, row in g.truth]
    truth.append(g.role_truth)
    return out, truth
