"""The static hospital: campuses, departments (科室), wards (病区), workstations and staff.

Everything is drawn from one numpy Generator so that the same seed gives the same hospital.
Staff get realistic roles and titles (physicians by grade, nurses, technicians, pharmacists,
trainees 进修生/实习生, 病案室, 质控科, 医保办, 信息科 with vendors), a home department and
ward, HR status and dates, addresses and phones. Names follow real surname frequencies, so
many unrelated people share 王, 李, 张, 刘 or 陈 — surname alone must not look like family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CAMPUSES = {"本部": ("BB", 1), "东院": ("DY", 2)}

# department, code, ward names, campus, ward kind (ward/icu/ed), LOS median days, sensitive,
# surgical.  The first block is what a small hospital keeps; larger ones add the rest and
# multiply wards.
CLINICAL = [
    ("心内科", "XNK", ["心内科一病区", "心内科二病区"], "本部", "ward", 6.0, False, False),
    ("呼吸内科", "HXK", ["呼吸内科病区"], "本部", "ward", 7.0, False, False),
    ("神经内科", "SJK", ["神经内科病区"], "本部", "ward", 8.0, False, False),
    ("普外科", "PWK", ["普外科病区"], "本部", "ward", 6.0, False, True),
    ("骨科", "GKE", ["骨科病区"], "东院", "ward", 8.0, False, True),
    ("妇产科", "FCK", ["产科病区"], "本部", "ward", 3.5, False, True),
    ("肿瘤科", "ZLK", ["肿瘤科病区"], "东院", "ward", 7.0, False, False),
    ("感染科", "GRK", ["感染科病区"], "东院", "ward", 9.0, True, False),
    ("精神科", "JSK", ["精神科病区"], "东院", "ward", 18.0, True, False),
    ("重症医学科", "ICU", ["ICU"], "本部", "icu", 3.0, False, False),
    ("急诊科", "JZK", ["急诊抢救室"], "本部", "ed", 0.2, False, False),
    # outpatient-only sensitive department (生殖医学): clinics, no ward
    ("生殖医学科", "SZK", [], "本部", "clinic", 0.0, True, False),
    # medium/large hospitals also have these
    ("消化内科", "XHK", ["消化内科病区"], "本部", "ward", 6.0, False, False),
    ("内分泌科", "NFM", ["内分泌科病区"], "本部", "ward", 7.0, False, False),
    ("肾内科", "SNK", ["肾内科病区"], "本部", "ward", 8.0, False, False),
    ("神经外科", "SWK", ["神经外科病区"], "本部", "ward", 10.0, False, True),
    ("心胸外科", "XXW", ["心胸外科病区"], "本部", "ward", 9.0, False, True),
    ("泌尿外科", "MNW", ["泌尿外科病区"], "东院", "ward", 6.0, False, True),
    ("儿科", "EKE", ["儿科病区"], "东院", "ward", 5.0, False, False),
    ("血液科", "XYK", ["血液科病区"], "东院", "ward", 12.0, False, False),
]
N_SMALL_DEPTS = 12

# service departments: department, code, campus, role, title, schedule group
SERVICE = {
    "检验科": ("JYK", "本部", "technician", "检验技师", "h8"),
    "放射科": ("FSK", "本部", "technician", "影像技师", "h8"),
    "药剂科": ("YJK", "本部", "pharmacist", "药师", "h8"),
    "康复医学科": ("KFK", "东院", "technician", "康复治疗师", "day"),
    "呼吸治疗科": ("HZK", "本部", "technician", "呼吸治疗师", "h12"),
}
OFFICE = {
    "病案室": ("BAS", "本部", "medical_records", "病案编码员"),
    "质控科": ("ZKK", "本部", "quality_control", "质控专员"),
    "医保办": ("YBB", "本部", "insurance", "医保审核员"),
    "医务处": ("YWC", "本部", "admin", "医务处干事"),
    "信息科": ("XXK", "本部", "it", "工程师"),
}

# Surnames with their approximate share of the population (percent), then a rare tail.
SURNAMES = [
    ("王", 7.25), ("李", 7.19), ("张", 6.83), ("刘", 5.38), ("陈", 4.53), ("杨", 3.08),
    ("黄", 2.23), ("赵", 2.19), ("吴", 2.05), ("周", 1.89), ("徐", 1.48), ("孙", 1.30),
    ("马", 1.20), ("朱", 1.15), ("胡", 1.10), ("郭", 1.00), ("何", 0.95), ("林", 0.88),
    ("高", 0.87), ("罗", 0.85), ("郑", 0.80), ("梁", 0.72), ("谢", 0.60), ("宋", 0.55),
    ("唐", 0.52), ("许", 0.49), ("韩", 0.47), ("冯", 0.45), ("邓", 0.45), ("曹", 0.42),
    ("彭", 0.40), ("曾", 0.39), ("肖", 0.38), ("田", 0.37), ("董", 0.36), ("袁", 0.35),
    ("潘", 0.34), ("于", 0.33), ("蒋", 0.32), ("蔡", 0.31), ("余", 0.30), ("杜", 0.29),
    ("叶", 0.28), ("程", 0.27), ("苏", 0.26), ("魏", 0.25), ("吕", 0.24), ("丁", 0.23),
    ("任", 0.22), ("沈", 0.21), ("姚", 0.20), ("卢", 0.19), ("姜", 0.18), ("崔", 0.17),
    ("钟", 0.16), ("谭", 0.15), ("陆", 0.14), ("汪", 0.13), ("范", 0.12), ("金", 0.11),
    ("石", 0.10), ("廖", 0.10), ("贾", 0.09), ("夏", 0.09), ("韦", 0.08), ("付", 0.08),
    ("方", 0.08), ("白", 0.07), ("邹", 0.07), ("孟", 0.07), ("熊", 0.06), ("秦", 0.06),
    ("邱", 0.06), ("江", 0.06), ("尹", 0.05), ("薛", 0.05), ("闫", 0.05), ("段", 0.05),
    ("雷", 0.04), ("侯", 0.04), ("龙", 0.04), ("史", 0.04), ("陶", 0.04), ("黎", 0.04),
    ("贺", 0.03), ("顾", 0.03), ("毛", 0.03), ("郝", 0.03), ("龚", 0.03), ("邵", 0.03),
    ("万", 0.03), ("钱", 0.03), ("严", 0.02), ("覃", 0.02), ("武", 0.02), ("戴", 0.02),
    ("欧阳", 0.01), ("司马", 0.005), ("诸葛", 0.003), ("上官", 0.003), ("东方", 0.002),
    ("令狐", 0.002), ("皇甫", 0.002), ("闻人", 0.001), ("慕容", 0.001), ("尉迟", 0.001),
]
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英霞平刚桂兰华建国文玉珍红梅海波宁"
             "晨欣怡婷雪琳浩宇轩子涵博辰嘉瑞思佳俊凯鹏飞亮斌鑫倩颖慧琴萍燕晶莉凤")
STREETS = ["解放路", "人民路", "中山路", "建设路", "文三路", "延安路", "胜利街", "和平路",
           "长江路", "黄河路", "新华路", "青年路", "学院路", "滨江路", "东风路", "光明街",
           "朝阳路", "花园路", "幸福里", "湖滨路"]
DISTRICTS = ["江城区", "东湖区", "西山区", "南岸区", "北新区", "高新区"]
CITY = "江州市"


def surname_probs() -> tuple[np.ndarray, np.ndarray]:
    names = np.array([s for s, _ in SURNAMES])
    w = np.array([p for _, p in SURNAMES], dtype=float)
    return names, w / w.sum()


def draw_names(rng: np.random.Generator, n: int, surnames: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(surname, full name) arrays; given names of one or two characters."""
    names, p = surname_probs()
    sur = surnames if surnames is not None else names[rng.choice(len(names), n, p=p)]
    g = np.array(GIVEN)
    g1 = g[rng.integers(0, len(g), n)]
    g2 = g[rng.integers(0, len(g), n)]
    two = rng.random(n) < 0.7
    given = np.where(two, np.char.add(g1, g2), g1)
    return sur, np.char.add(sur.astype(str), given.astype(str))


def draw_addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    d = np.array(DISTRICTS)[rng.integers(0, len(DISTRICTS), n)]
    s = np.array(STREETS)[rng.integers(0, len(STREETS), n)]
    no = rng.integers(1, 400, n)
    unit = rng.integers(1, 6, n)
    room = rng.integers(1, 26, n) * 100 + rng.integers(1, 5, n)
    return np.array([f"{CITY}{a}{b}{c}号{u}单元{r}室" for a, b, c, u, r in
                     zip(d, s, no, unit, room)], dtype=object)


def draw_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    pre = np.array(["138", "139", "137", "136", "135", "150", "151", "158", "186", "188",
                    "177", "133", "189", "180"])[rng.integers(0, 14, n)]
    num = rng.integers(0, 100_000_000, n)
    return np.array([f"{p}{x:08d}" for p, x in zip(pre, num)], dtype=object)


@dataclass
class Hospital:
    wards: pd.DataFrame         # ward_idx, ward, code, department, campus, kind, beds, los, ...
    departments: pd.DataFrame   # department, code, campus, kind, sensitive, surgical
    users: pd.DataFrame         # staff master with internal columns (prefixed "_")
    workstations: pd.DataFrame  # workstation, ip, department, campus, location, loc
    locations: pd.DataFrame     # loc_idx, name, department, campus (wards, clinics, offices)


def build_hospital(rng: np.random.Generator, n_depts: int, wards_per_dept: int,
                   beds_per_ward: int, start: np.int64, days: int) -> Hospital:
    """Build departments, wards, locations, workstations and staff.

    `start` is the window start (local epoch seconds, midnight); HR dates are drawn around it.
    """
    depts = CLINICAL[:n_depts]
    drows, wrows = [], []
    num = "一二三四五六七八九十"
    for dep, code, wnames, campus, kind, los, sens, surg in depts:
        drows.append((dep, code, campus, kind, sens, surg))
        if not wnames:
            continue
        k = 1 if kind in ("icu", "ed") else wards_per_dept
        names = list(wnames)
        if k > len(names):
            base = dep
            names = [f"{base}{num[i] if i < 10 else i + 1}病区" for i in range(k)]
        for i, w in enumerate(names[:max(k, len(wnames))]):
            # large hospitals: the second campus gets some wards of big departments
            wc = campus if (i % 3 != 2) else ("东院" if campus == "本部" else "本部")
            beds = beds_per_ward
            if kind == "icu":
                beds = max(8, int(beds_per_ward * 0.6) * max(1, wards_per_dept // 2 + 1))
            elif kind == "ed":
                beds = max(6, int(beds_per_ward * 0.5) * max(1, wards_per_dept // 2 + 1))
            elif sens and dep == "精神科":
                beds = max(10, int(beds_per_ward * 0.8))
            wrows.append((w, f"{code}{i + 1}", dep, wc, kind, beds, los, sens, surg))
    for dep, (code, campus, *_rest) in {**SERVICE, **OFFICE}.items():
        drows.append((dep, code, campus, "service" if dep in SERVICE else "office", False, False))
    drows.append(("护理部", "HLB", "本部", "office", False, False))
    departments = pd.DataFrame(drows, columns=["department", "code", "campus", "kind",
                                               "sensitive", "surgical"])
    wards = pd.DataFrame(wrows, columns=["ward", "code", "department", "campus", "kind", "beds",
                                         "los", "sensitive", "surgical"])
    wards.insert(0, "ward_idx", np.arange(len(wards)))

    # locations: each ward; each clinical department's clinic (门诊); service/office rooms
    lrows = [(r.ward, r.department, r.campus, "ward", r.code) for r in wards.itertuples()]
    for r in departments.itertuples():
        if r.kind in ("ward", "clinic", "icu"):
            if r.kind == "icu":
                continue
            lrows.append((f"{r.department}门诊", r.department, r.campus, "clinic", r.code + "M"))
        elif r.kind in ("service", "office"):
            lrows.append((r.department, r.department, r.campus, r.kind, r.code))
            if r.kind == "service":
                other = "东院" if r.campus == "本部" else "本部"
                lrows.append((f"{r.department}({other})", r.department, other, r.kind,
                              r.code + "E"))
    lrows.append(("手术室", "麻醉科", "本部", "theatre", "SSS"))
    locations = pd.DataFrame(lrows, columns=["name", "department", "campus", "kind", "code"])
    locations.insert(0, "loc_idx", np.arange(len(locations)))

    # workstations: doctors' office and nurse station per ward, rooms elsewhere; IPs by campus
    ws = []
    for r in locations.itertuples():
        camp_code, camp_no = CAMPUSES[r.campus]
        if r.kind == "ward":
            n = 2 + int(wards.loc[wards.code == r.code, "beds"].iloc[0] >= 30)
            parts = [("N", "护士站", n), ("D", "医生办公室", n)]
        elif r.kind == "clinic":
            parts = [("M", "诊室", 3)]
        else:
            parts = [("W", "办公室", 3)]
        for tag, place, count in parts:
            for j in range(count):
                ws.append((f"{camp_code}-{r.code}-{tag}{j + 1:02d}", camp_no, r.loc_idx,
                           r.department, r.campus, f"{r.name}{place}", tag))
    wsdf = pd.DataFrame(ws, columns=["workstation", "_camp_no", "loc", "department", "campus",
                                     "location", "_tag"])
    wsdf["ip"] = [f"10.{c}{(loc // 250) % 10}.{loc % 250 + 1}.{j + 11}" for c, loc, j in
                  zip(wsdf["_camp_no"], wsdf["loc"], wsdf.groupby("loc").cumcount())]
    users = _build_staff(rng, departments, wards, locations, start, days)
    return Hospital(wards=wards, departments=departments, users=users, workstations=wsdf,
                    locations=locations)


# staff -------------------------------------------------------------------------------------

def _build_staff(rng, departments, wards, locations, start, days) -> pd.DataFrame:
    """One row per account, with internal columns: _group (schedule), _loc, _kind, _grade."""
    rows = []   # role, title, department, ward, group, loc, kind

    def loc_of(name):
        return int(locations.loc[locations.name == name, "loc_idx"].iloc[0])

    for dep in departments.itertuples():
        if dep.kind not in ("ward", "icu", "ed", "clinic"):
            continue
        dwards = wards[wards.department == dep.department]
        nw = max(1, len(dwards))
        home = dwards.ward.tolist() or [None]
        if dep.kind == "ed":
            grades = [("主任医师", 1), ("主治医师", 4 * nw), ("住院医师", 4 * nw)]
        elif dep.kind == "icu":
            grades = [("主任医师", 1), ("副主任医师", 1), ("主治医师", 2 * nw), ("住院医师", 3 * nw)]
        elif dep.kind == "clinic":
            grades = [("主任医师", 1), ("主治医师", 2)]
        else:
            grades = [("主任医师", 1), ("副主任医师", nw), ("主治医师", 2 * nw),
                      ("住院医师", 2 * nw + 1)]
        i = 0
        for title, n in grades:
            for _ in range(n):
                w = home[i % len(home)]
                sched = "ed12" if dep.kind == "ed" else ("icu12" if dep.kind == "icu" else "phys")
                rows.append(("physician", title, dep.department, w, sched, dep.department,
                             "attending" if title != "住院医师" else "resident"))
                i += 1
        for w in dwards.itertuples():
            beds = w.beds
            if w.kind in ("icu", "ed"):
                n_rot = max(8, int(round(beds * 0.9)))
                sched = "n12"
            else:
                n_rot = max(4, int(round(beds * 0.4)))
                sched = "n8"
            rows.append(("nurse", "护士长", dep.department, w.ward, "office_ward", w.ward, "head"))
            rows.append(("nurse", "主管护师", dep.department, w.ward, "day_ward", w.ward, "day"))
            titles = ["护师", "护士", "主管护师"]
            for j in range(n_rot):
                rows.append(("nurse", titles[j % 3], dep.department, w.ward, sched, w.ward, "rot"))
            # trainees (进修/实习) follow a supervisor in the ward
            for j in range(1 if beds < 30 else 2):
                rows.append(("trainee", "进修医师" if j % 2 == 0 else "实习护士", dep.department,
                             w.ward, "day_ward", w.ward, "trainee"))
        if dep.kind == "clinic":
            rows.append(("nurse", "护士", dep.department, None, "office_ward",
                         f"{dep.department}门诊", "clinic"))
    n_beds = int(wards.beds.sum())
    scale = max(1.0, n_beds / 200)
    for dep, (code, campus, role, title, sched) in SERVICE.items():
        n = {"检验科": 8, "放射科": 8, "药剂科": 8, "康复医学科": 3, "呼吸治疗科": 8}[dep]
        n = int(round(n * scale ** 0.8))
        has_second = True
        other = "东院" if campus == "本部" else "本部"
        for j in range(n):
            # staff of a two-campus service work in the room of their campus
            room = f"{dep}({other})" if (has_second and j % 2 == 1) else dep
            rows.append((role, title, dep, None, sched, room, "service"))
        if dep == "放射科":   # radiologists read images: physicians of 放射科
            for j in range(max(2, int(round(3 * scale ** 0.8)))):
                rows.append(("physician", "主治医师", dep, None, "office_ward", dep, "radiologist"))
    for dep, (code, campus, role, title) in OFFICE.items():
        n = {"病案室": 4, "质控科": 3, "医保办": 3, "医务处": 2, "信息科": 3}[dep]
        n = int(round(n * scale ** 0.6))
        for j in range(n):
            rows.append((role, title, dep, None, "office", dep, "office"))
        if dep == "信息科":
            for j in range(2):
                rows.append(("it", "厂商工程师", dep, None, "office", dep, "vendor"))
    for j in range(max(3, int(round(3 * scale)))):
        rows.append(("nurse", "护师", "护理部", None, "float", "护理部", "float"))
    # rotating residents (规培): home department in the staff master, they rotate through units
    for j in range(max(3, int(round(3 * scale)))):
        rows.append(("physician", "住院医师(规培)", "心内科", None, "rotate", "心内科", "rotating"))

    df = pd.DataFrame(rows, columns=["role", "title", "department", "ward", "_group", "_locname",
                                     "_kind"])
    n = len(df)
    width = max(4, len(str(n)))
    df.insert(0, "user_id", [f"U{i + 1:0{width}d}" for i in range(n)])
    name_to_loc = dict(zip(locations.name, locations.loc_idx))
    df["_loc"] = df["_locname"].map(name_to_loc).fillna(-1).astype(int)
    # ward staff sit in their ward; physicians in their department's first ward
    first_ward = wards.groupby("department").ward.first()
    phys = (df.role == "physician") & df.ward.isna() & df.department.isin(first_ward.index)
    df.loc[phys, "_loc"] = df.loc[phys, "department"].map(first_ward).map(name_to_loc)
    wl = df.ward.notna()
    df.loc[wl, "_loc"] = df.loc[wl, "ward"].map(name_to_loc)
    df["_campus"] = locations.campus.to_numpy()[np.maximum(df["_loc"].to_numpy(), 0)]
    sur, names = draw_names(rng, n)
    df["name"] = names
    df["_surname"] = sur
    df["address"] = draw_addresses(rng, n)
    df["phone"] = draw_phones(rng, n)
    day = np.int64(86400)
    # HR dates: most joined years ago; a few joined recently
    years = rng.integers(1, 25, n)
    df["_start_ts"] = start - years * 365 * day - rng.integers(0, 300, n) * day
    df["status"] = "active"
    df["_end_ts"] = np.int64(-1)
    df["_until_ts"] = np.int64(-1)
    df["supervisor_id"] = pd.NA
    # trainees: a supervisor in the same ward (an attending of the department); a period
    tr = np.flatnonzero(df["_kind"].to_numpy() == "trainee")
    att = df[(df["_kind"] == "attending")]
    for i in tr:
        cands = att[att.department == df.at[i, "department"]].user_id.to_numpy()
        df.at[i, "supervisor_id"] = cands[rng.integers(0, len(cands))] if len(cands) else pd.NA
    df.loc[tr, "_start_ts"] = start - rng.integers(30, 150, len(tr)) * day
    # some trainees' period ends inside the window (they stop working then)
    until = start + rng.integers(days // 3 + 1, days + 120, len(tr)) * day
    if len(until):
        until[0] = start + max(3, days // 2) * day   # one training period ends in the window
    df.loc[tr, "_until_ts"] = until
    ven = np.flatnonzero(df["_kind"].to_numpy() == "vendor")
    df.loc[ven, "_start_ts"] = start - 200 * day
    vu = start + rng.integers(days // 2, days + 200, len(ven)) * day
    if len(vu):
        vu[0] = start + max(3, days // 2 - 2) * day   # one vendor contract ends in the window
    df.loc[ven, "_until_ts"] = vu
    return df.reset_index(drop=True)


# departments (科室) and their heads, for the problem ledger's 责任人 -------------------------

# the department each kind belongs to, and the child whose head also heads that group
PARENTS = {"内科": "心内科", "外科": "普外科", "医技科室": "检验科", "职能部门": "医务处"}
# a head post left vacant in the sample, so that the ledger's configured fallback shows
VACANT_HEAD = "生殖医学科"


def department_table(departments: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """department, parent, head_user_id, head_name: each clinical department headed by its
    first 主任医师, every other by its first member; the groups above them (内科, 外科,
    医技科室, 职能部门) by the head of their first department. Drawn from the staff already
    built (no random draws: the rest of the hospital is unchanged)."""
    rows = []
    heads: dict[str, tuple[str, str]] = {}
    for d in departments.itertuples():
        staff = users[users.department == d.department]
        if d.kind in ("ward", "icu", "ed", "clinic"):
            parent = "外科" if d.surgical else "内科"
            staff = staff[staff.title == "主任医师"]
        else:
            parent = "医技科室" if d.kind == "service" else "职能部门"
        head = ("", "") if d.department == VACANT_HEAD or staff.empty else \
            (str(staff.user_id.iloc[0]), str(staff.name.iloc[0]))
        heads[d.department] = head
        rows.append((d.department, parent, *head))
    for group, first in PARENTS.items():
        rows.append((group, "", *heads.get(first, ("", ""))))
    out = pd.DataFrame(rows, columns=["department", "parent", "head_user_id", "head_name"])
    return out.replace({"": None})
