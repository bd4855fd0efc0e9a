"""The patient master and the people behind the snooping cases.

Patients get names drawn with real surname frequencies, sex and age fitting their ward,
addresses, phones and an emergency contact. Then the special populations: VIPs, employees
who are patients, employees' relatives (parents and children share surname, address and
phone; spouses share address and phone and are declared contacts), neighbours (same address,
other surname, no declared relation), sealed records (封存, with the team allowed to read) and
patients who died long ago. Many unrelated patients share 王/李/张/刘/陈 with staff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.demo.events import Groups
from emraudit.demo.hospital import draw_addresses, draw_names, draw_phones
from emraudit.demo.roster import DAY


def build_patients(w) -> None:
    """Fill w.patients, w.contacts and the special-population lists used by the planter."""
    rng = w.rng
    n = w.n_pat
    seg, vis = w.seg, w.visits
    sur, name = draw_names(rng, n)
    names = pd.Series(name, dtype=object)
    dep_of = pd.Series(pd.concat([seg.department, vis.department]).to_numpy(),
                       index=np.concatenate([seg.patient, vis.patient]))
    first_dep = dep_of.groupby(level=0).first().reindex(np.arange(n))
    sex = np.where(rng.random(n) < 0.5, "男", "女")
    sex = np.where(first_dep.to_numpy() == "妇产科", "女", sex)
    sex = np.where(first_dep.to_numpy() == "生殖医学科", np.where(rng.random(n) < 0.7, "女",
                                                                  "男"), sex)
    age = np.clip(rng.normal(56, 18, n), 18, 95)
    age = np.where(first_dep.to_numpy() == "妇产科", rng.uniform(20, 40, n), age)
    age = np.where(first_dep.to_numpy() == "生殖医学科", rng.uniform(24, 45, n), age)
    age = np.where(first_dep.to_numpy() == "儿科", rng.uniform(0.1, 14, n), age)
    birth = w.t0 - (age * 365.25 * DAY).astype(np.int64) - rng.integers(0, 300, n) * DAY
    birth = birth // DAY * DAY
    pats = pd.DataFrame({"name": names, "_surname": sur, "sex": sex, "_birth": birth,
                         "address": draw_addresses(rng, n), "phone": draw_phones(rng, n)})
    pats["vip"] = False
    pats["sensitive"] = False
    pats["watch"] = False
    pats["watch_team"] = None
    pats["_deceased"] = np.int64(-1)
    pats["employee_user_id"] = None
    sens_deps = set(w.departments.loc[w.departments.sensitive, "department"])
    sens = np.unique(np.concatenate([seg.patient[seg.department.isin(sens_deps)],
                                     vis.patient[vis.department.isin(sens_deps)]]))
    pats.loc[sens, "sensitive"] = True
    died = seg[seg.died]
    pats.loc[died.patient.to_numpy(), "_deceased"] = died.end.to_numpy()

    users = w.users
    rel = w.rel
    # who could be explained for whom (any time): used to keep planted pairs unexplained
    own = rel[rel.user >= 0]
    rel_user = Groups(own.patient.to_numpy(), own.user.to_numpy())
    grp = rel   # department/ward of any relation row, whoever it names
    rel_dep = Groups(grp.patient.to_numpy(), grp.department.to_numpy())
    gw = grp[grp.ward.notna()]
    rel_ward = Groups(gw.patient.to_numpy(), gw.ward.to_numpy())

    def free_for(p, u):
        if u in rel_user.get(p, set()):
            return False
        if users.at[u, "department"] in rel_dep.get(p, set()):
            return False
        return users.at[u, "ward"] not in rel_ward.get(p, set())

    taken: set[int] = set()
    inside = seg[seg.kind.isin(["ward", "icu"]) & (seg.start < w.t0 + (w.days // 2) * DAY)
                 & (seg.end > w.t0 + (w.days // 2) * DAY) & ~seg.died]
    inside = inside[~inside.department.isin(sens_deps)]
    vip = rng.choice(inside.patient.unique(), min(3 * w.k, inside.patient.nunique()),
                     replace=False)
    pats.loc[vip, "vip"] = True
    taken |= set(vip.tolist())
    extra_vip = rng.choice(n, max(1, n // 400), replace=False)
    pats.loc[extra_vip, "vip"] = True
    taken |= set(extra_vip.tolist())
    w.vip_inpatients = np.sort(vip)

    clin = users[users.role.isin(["physician", "nurse", "technician", "pharmacist"])
                 & (users.status == "active") & users._kind.isin(
                     ["attending", "resident", "rot", "day", "head", "service"])].index.to_numpy()
    order = rng.permutation(clin)
    pos = 0

    def next_staff():
        nonlocal pos
        u = int(order[pos % len(order)])
        pos += 1
        return u

    # patients with an encounter in window, candidates for conversion
    cand = np.unique(np.concatenate([seg.patient[seg.end > w.t0], vis.patient]))
    cand = cand[~pats.loc[cand, "sensitive"].to_numpy() & (pats.loc[cand, "_deceased"]
                                                           .to_numpy() < 0)]
    cand = rng.permutation(cand)
    cpos = 0

    def convert_for(u):
        nonlocal cpos
        for _ in range(len(cand)):
            p = int(cand[cpos % len(cand)])
            cpos += 1
            if p not in taken and free_for(p, u):
                taken.add(p)
                return p
        return None

    # employees who are patients (some looked up by a coworker, some by themselves)
    n_emp = max(8, len(users) // 40) + 6 * (w.k - 1)
    emp_pairs = []
    for _ in range(n_emp):
        u = next_staff()
        p = convert_for(u)
        if p is None:
            continue
        pats.loc[p, ["name", "_surname", "address", "phone"]] = [
            users.at[u, "name"], users.at[u, "_surname"], users.at[u, "address"],
            users.at[u, "phone"]]
        pats.at[p, "employee_user_id"] = users.at[u, "user_id"]
        users.at[u, "patient_id"] = w.patient_ids[p]
        emp_pairs.append((u, p))
    w.self_pairs = emp_pairs[:3 * w.k]
    cow = []
    for u, p in emp_pairs[3 * w.k:]:
        mates = users[(users.department == users.at[u, "department"]) & (users.index != u)
                      & users.role.isin(["physician", "nurse"]) & (users.status == "active")
                      & users._kind.isin(["attending", "resident", "rot", "day"])].index.to_numpy()
        mates = [m for m in rng.permutation(np.array(mates)) if free_for(p, int(m))]
        if mates:
            cow.append((int(mates[0]), p))
    w.coworker_pairs = cow[:6 * w.k]

    # relatives of staff: parents/children (same surname, address, often phone), spouses
    contacts = []
    fam = []
    n_rel = max(10, len(users) // 25) + 5 * (w.k - 1)
    for j in range(n_rel):
        u = next_staff()
        p = convert_for(u)
        if p is None:
            continue
        kind = ["parent", "child", "spouse", "parent", "spouse"][j % 5]
        if kind == "spouse":
            s2, nm = draw_names(rng, 1)
            while s2[0] == users.at[u, "_surname"]:
                s2, nm = draw_names(rng, 1)
        else:
            s2, nm = draw_names(rng, 1, np.array([users.at[u, "_surname"]]))
        phone = users.at[u, "phone"] if (kind != "child" and rng.random() < 0.6) else \
            pats.at[p, "phone"]
        pats.loc[p, ["name", "_surname", "address", "phone"]] = [nm[0], s2[0],
                                                                  users.at[u, "address"], phone]
        back = {"parent": "child", "child": "parent", "spouse": "spouse"}[kind]
        contacts.append((p, users.at[u, "name"], back, users.at[u, "phone"],
                         users.at[u, "address"]))
        fam.append((u, p))
    w.family_pairs = fam[:5 * w.k]

    # legitimate look-alikes: a nurse whose parent lies in her own ward (she charts them,
    # explained by the ward relation) and staff admitted to their own department
    in_win = seg[seg.kind.isin(["ward", "icu"]) & (seg.start < w.t_end - 2 * DAY)
                 & (seg.end > w.t0 + 2 * DAY) & ~seg.died]
    in_win = in_win[~in_win.patient.isin(list(taken)) & ~in_win.department.isin(sens_deps)]
    rot = users[(users._kind == "rot") & (users.status == "active")]
    w.legit_family = []
    w.legit_employee = []
    for j, wd in enumerate(sorted(in_win.ward.unique())[:2 + 2 * w.k]):
        cand_p = in_win[in_win.ward == wd].patient.unique()
        cand_u = rot[rot.ward == wd].index.to_numpy()
        if not len(cand_p) or not len(cand_u):
            continue
        p = int(cand_p[rng.integers(0, len(cand_p))])
        u = int(cand_u[rng.integers(0, len(cand_u))])
        taken.add(p)
        if j % 2 == 0:
            s2, nm = draw_names(rng, 1, np.array([users.at[u, "_surname"]]))
            pats.loc[p, ["name", "_surname", "address", "phone"]] = [
                nm[0], s2[0], users.at[u, "address"], users.at[u, "phone"]]
            contacts.append((p, users.at[u, "name"], "child", users.at[u, "phone"],
                             users.at[u, "address"]))
            w.legit_family.append((u, p))
        else:
            pats.loc[p, ["name", "_surname", "address", "phone"]] = [
                users.at[u, "name"], users.at[u, "_surname"], users.at[u, "address"],
                users.at[u, "phone"]]
            pats.at[p, "employee_user_id"] = users.at[u, "user_id"]
            users.at[u, "patient_id"] = w.patient_ids[p]
            w.legit_employee.append((u, p))

    # neighbours: same address, other surname, no declared relation
    nb = []
    for _ in range(3 * w.k):
        u = next_staff()
        p = convert_for(u)
        if p is None:
            continue
        if pats.at[p, "_surname"] == users.at[u, "_surname"]:
            s2, nm = draw_names(rng, 1, np.array(["欧阳"]))
            pats.loc[p, ["name", "_surname"]] = [nm[0], s2[0]]
        pats.at[p, "address"] = users.at[u, "address"]
        nb.append((u, p))
    w.neighbor_pairs = nb

    # sealed records (封存): patients discharged before the window, with their team
    last = seg[~seg.duplicated("enc2", keep="last") & (seg.kind == "ward") & ~seg.died
               & (seg.end < w.t0 - 3 * DAY) & (seg.end > w.t0 - 25 * DAY)]
    last = last[~last.patient.isin(list(taken))]
    qc = users[(users.role == "quality_control")].index.to_numpy()
    watch = []
    for p in rng.choice(last.patient.unique(), min(2 * w.k, last.patient.nunique()),
                        replace=False):
        p = int(p)
        team = sorted(set(rel_user.get(p, set())) - {int(qc[0])}) + [int(qc[0])]
        pats.at[p, "watch"] = True
        pats.at[p, "watch_team"] = ";".join(users.user_id.to_numpy()[team])
        taken.add(p)
        watch.append((p, team))
    w.watch_list = watch

    # patients who died long ago, never seen by anyone now
    k_old = 2 * w.k + 3
    s_old, n_old = draw_names(rng, k_old)
    old = pd.DataFrame({"name": n_old, "_surname": s_old,
                        "sex": np.where(rng.random(k_old) < 0.5, "男", "女"),
                        "_birth": (w.t0 - rng.integers(60, 90, k_old) * 365 * DAY) // DAY * DAY,
                        "address": draw_addresses(rng, k_old), "phone": draw_phones(rng, k_old),
                        "vip": False, "sensitive": False, "watch": False, "watch_team": None,
                        "_deceased": (w.t0 - rng.integers(400, 1500, k_old) * DAY) // DAY * DAY
                        + 3 * 3600, "employee_user_id": None})
    pats = pd.concat([pats, old], ignore_index=True)
    w.old_deceased = np.arange(n, n + k_old)
    w.n_pat = len(pats)

    # emergency contacts of inpatients: family names, sometimes a staff member's namesake
    inp = np.unique(seg.patient.to_numpy())
    inp = inp[~np.isin(inp, [c[0] for c in contacts])]
    k = len(inp)
    same = rng.random(k) < 0.55
    s_c, n_c = draw_names(rng, k)
    s_same, n_same = draw_names(rng, k, pats.loc[inp, "_surname"].to_numpy().astype(str))
    cname = np.where(same, n_same, n_c)
    crel = np.where(same, np.where(rng.random(k) < 0.5, "child", "parent"),
                    np.where(rng.random(k) < 0.7, "spouse", "emergency"))
    caddr = np.where(rng.random(k) < 0.75, pats.loc[inp, "address"].to_numpy(),
                     draw_addresses(rng, k))
    cdf = pd.DataFrame({"patient": inp, "name": cname, "relation": crel,
                        "phone": draw_phones(rng, k), "address": caddr})
    fam_df = pd.DataFrame(contacts, columns=["patient", "name", "relation", "phone", "address"])
    w.contacts = pd.concat([cdf, fam_df], ignore_index=True).sort_values(
        ["patient", "name"], kind="stable").reset_index(drop=True)
    w.patients = pats
    only_vis = np.setdiff1d(vis.patient.to_numpy(), seg.patient.to_numpy())
    w.outpatient_only = np.setdiff1d(only_vis, np.array(sorted(taken), np.int64))
