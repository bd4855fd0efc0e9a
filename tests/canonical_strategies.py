"""Hypothesis strategies for random *valid* canonical tables (issue 16: no crash on valid input).

`hospitals()` draws one small hospital: an access log and every reference table, each table
possibly absent, empty or a single row; optional columns absent, all null or filled; users
without a department, patients without relations; one day or up to 90; times at midnight, at
the end of the day and at the UTC day boundary of the site; unicode and very long ids; record
counts at their edges. Rows are plain dicts with naive local times, as `detector_frames`
takes them, so the same draw can be validated into frames or written as CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from emraudit.model import ACTIONS, PATIENT_ACTIONS, RELATION_KINDS, ROLES, SHIFT_KINDS

BASE_DAY = "2025-03-03"      # a Monday
LONG = "L" * 300
USER_IDS = ["u1", "u2", "u3", "张医生", "Ünïcödé-ñurse", LONG + "u", "007", "u 4"]
PATIENT_IDS = ["p1", "p2", "p3", "患者甲", "Ωmega/1", LONG + "p", "0042"]
UNITS = ["心内科", "ICU", "Ward 7", "骨科"]
CAMPUSES = ["本部", "东院", "http://server.example.com", "server.example.com"]
# seconds after local midnight: midnight, the last second, the UTC day boundary in
# Asia/Shanghai (08:00), office-hour edges, and anything
SECONDS = st.one_of(st.sampled_from([0, 86_399, 8 * 3600, 8 * 3600 - 1, 18 * 3600]),
                    st.integers(0, 86_399))
OPTIONAL_EVENT_COLUMNS = {
    "workstation": ["WS-1", "WS-2", "VDI-01", "工作站3"],
    "ip": ["10.1.1.1", "10.2.1.1", "2001:db8::1", "not-an-ip"],
    "facility": CAMPUSES,
    "module": ["病历", "影像", "医嘱", "PACS"],
    "session_id": ["s1", "s2"],
    "encounter_id": ["enc1", "enc2"],
    "reason": ["emergency", "急诊抢救"],
    "outcome": ["success", "failure"],
}


@dataclass
class Hospital:
    days: int
    events: list[dict]
    users: list[dict] | None = None
    patients: list[dict] | None = None
    care_relations: list[dict] | None = None
    shifts: list[dict] | None = None
    workstations: list[dict] | None = None
    patient_contacts: list[dict] | None = None
    extra: dict = field(default_factory=dict)

    def tables(self) -> dict[str, list[dict] | None]:
        return {"users": self.users, "patients": self.patients,
                "care_relations": self.care_relations, "shifts": self.shifts,
                "workstations": self.workstations, "patient_contacts": self.patient_contacts}

    @property
    def window(self) -> tuple[str, str]:
        """The last day of the history (the scanned day)."""
        return (_day(self.days - 1), _day(self.days))


def _day(offset: int) -> str:
    import datetime as dt
    return (dt.date.fromisoformat(BASE_DAY) + dt.timedelta(days=offset)).isoformat()


def _ts(day: int, sec: int) -> str:
    return f"{_day(day)} {sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


def _maybe(draw, values, none_share: bool = True):
    """A value from `values`, or None."""
    return draw(st.sampled_from(([None] if none_share else []) + list(values)))


# a reference table: absent (None), empty, or with rows
_has_rows = st.sampled_from([False, True, True])


def _contact_fields(draw) -> dict:
    """Name, address and phone: few values, so households and neighbours do match."""
    return {"name": _maybe(draw, ["王伟", "李娜", "Smith"]),
            "address": _maybe(draw, ["幸福路1号", "幸福路1号 2单元", "Main St 1"]),
            "phone": _maybe(draw, ["13800000000", "13800000001"])}


@st.composite
def _moment(draw, days: int) -> tuple[int, int]:
    day = draw(st.sampled_from(sorted({0, days - 1, days // 2})) | st.integers(0, days - 1))
    return day, draw(SECONDS)


@st.composite
def _events(draw, days, users, patients) -> list[dict]:
    n = draw(st.sampled_from([0, 1]) | st.integers(2, 40))
    cols = {c: draw(st.sampled_from(["absent", "null", "values"]))
            for c in OPTIONAL_EVENT_COLUMNS}
    acting = draw(st.sampled_from(["absent", "null", "values"]))
    rc = draw(st.sampled_from(["absent", "values"]))
    rows = []
    for i in range(n):
        day, sec = draw(_moment(days))
        action = draw(st.sampled_from(ACTIONS))
        pid = draw(st.sampled_from(patients)) if action in PATIENT_ACTIONS else \
            _maybe(draw, patients)
        row = {"event_id": draw(st.sampled_from([f"e{i}", f"事件{i}", f"{LONG}{i}"])),
               "ts": _ts(day, sec), "user_id": draw(st.sampled_from(users)),
               "patient_id": pid, "action": action}
        for c, mode in cols.items():
            if mode != "absent":
                row[c] = None if mode == "null" else _maybe(draw, OPTIONAL_EVENT_COLUMNS[c])
        if acting != "absent":
            row["acting_user_id"] = None if acting == "null" else _maybe(draw, users)
        if rc == "values":
            row["record_count"] = draw(st.sampled_from([1, 19, 20, 49, 50, 1000]))
        rows.append(row)
    return rows


@st.composite
def _users(draw, users, days) -> list[dict] | None:
    if not draw(_has_rows):
        return draw(st.sampled_from([None, []]))
    out = []
    for u in draw(st.lists(st.sampled_from(users), min_size=1, unique=True)):
        row = {"user_id": u, "role": draw(st.sampled_from(ROLES)),
               "department": _maybe(draw, UNITS), "ward": _maybe(draw, UNITS),
               "status": draw(st.sampled_from(["active", "leave", "terminated"])),
               **_contact_fields(draw)}
        for c in ("start_date", "end_date", "access_until"):
            if draw(st.booleans()):
                row[c] = _day(draw(st.integers(0, days)))
        row["supervisor_id"] = _maybe(draw, users)
        row["patient_id"] = _maybe(draw, PATIENT_IDS)
        out.append(row)
    return out


@st.composite
def _patients(draw, patients, users, days) -> list[dict] | None:
    if not draw(_has_rows):
        return draw(st.sampled_from([None, []]))
    out = []
    for p in draw(st.lists(st.sampled_from(patients), min_size=1, unique=True)):
        row = {"patient_id": p, **_contact_fields(draw), "vip": draw(st.booleans()), "sensitive": draw(st.booleans()),
               "watch": draw(st.booleans()),
               "watch_team": _maybe(draw, ["u1", "u1;u2"]),
               "employee_user_id": _maybe(draw, users)}
        if draw(st.booleans()):
            row["deceased_date"] = _day(draw(st.integers(0, days)))
        out.append(row)
    return out


@st.composite
def _relations(draw, patients, users, days) -> list[dict] | None:
    if not draw(_has_rows):
        return draw(st.sampled_from([None, []]))
    out = []
    for _ in range(draw(st.integers(1, 8))):
        d0, s0 = draw(_moment(days))
        row = {"patient_id": draw(st.sampled_from(patients)), "user_id": _maybe(draw, users),
               "department": _maybe(draw, UNITS), "ward": _maybe(draw, UNITS),
               "kind": draw(st.sampled_from(RELATION_KINDS)), "start": _ts(d0, s0)}
        if draw(st.booleans()):
            d1 = draw(st.integers(d0, days))
            row["end"] = _ts(d1, 86_399 if d1 == d0 else draw(SECONDS))
        out.append(row)
    return out


@st.composite
def _shifts(draw, users, days) -> list[dict] | None:
    if not draw(st.booleans()):
        return None
    out = []
    for _ in range(draw(st.integers(0, 6))):
        d0 = draw(st.integers(0, days - 1))
        start = draw(st.sampled_from([0, 8 * 3600, 20 * 3600]))
        hours = draw(st.sampled_from([8, 12, 24]))
        end_s = start + hours * 3600
        out.append({"user_id": draw(st.sampled_from(users)), "start": _ts(d0, start),
                    "end": _ts(d0 + end_s // 86_400, end_s % 86_400),
                    "kind": draw(st.sampled_from(SHIFT_KINDS)), "ward": _maybe(draw, UNITS),
                    "location": _maybe(draw, ["手术室3", "Ward 7"])})
    return out


@st.composite
def _workstations(draw) -> list[dict] | None:
    if not draw(st.booleans()):
        return None
    names = draw(st.lists(st.sampled_from(OPTIONAL_EVENT_COLUMNS["workstation"]), unique=True))
    return [{"workstation": w, "ip": _maybe(draw, OPTIONAL_EVENT_COLUMNS["ip"]),
             "department": _maybe(draw, UNITS), "campus": _maybe(draw, CAMPUSES),
             "location": _maybe(draw, ["手术室3", "护士站"])} for w in names]


@st.composite
def _contacts(draw, patients) -> list[dict] | None:
    if not draw(st.booleans()):
        return None
    return [{"patient_id": draw(st.sampled_from(patients)),
             "name": _maybe(draw, ["王伟", "李娜"]),
             "relation": draw(st.sampled_from(["spouse", "parent", "emergency"])),
             "phone": _maybe(draw, ["13800000000"]), "address": _maybe(draw, ["幸福路1号"])}
            for _ in range(draw(st.integers(0, 3)))]


@st.composite
def hospitals(draw, max_days: int = 90) -> Hospital:
    days = draw(st.sampled_from([1, 2, 8, max_days]) | st.integers(1, max_days))
    users = draw(st.lists(st.sampled_from(USER_IDS), min_size=1, max_size=5, unique=True))
    patients = draw(st.lists(st.sampled_from(PATIENT_IDS), min_size=1, max_size=5,
                             unique=True))
    return Hospital(
        days=days, events=draw(_events(days, users, patients)),
        users=draw(_users(users, days)), patients=draw(_patients(patients, users, days)),
        care_relations=draw(_relations(patients, users, days)),
        shifts=draw(_shifts(users, days)), workstations=draw(_workstations()),
        patient_contacts=draw(_contacts(patients)))


@st.composite
def threshold_edges(draw, params) -> dict:
    """For each numeric parameter: its default, its least or its greatest allowed value."""
    out = {}
    for p in params:
        if p.type in (int, float) and p.min is not None and p.max is not None:
            v = draw(st.sampled_from([p.default, p.min, p.max]))
            out[p.name] = p.type(v)
    return out
