"""Planted misuse on real staff and real patients, deterministic for a seed, with its truth.

Every planted event has an event_id `plant:<kind>:<case>:<n>`; truth rows are (event_id,
violation, case_key) like sample_logs/truth.csv. Actors are real users with enough real
history (at least `min_days` active days before the planted day) so the anomaly detector has
a baseline for them; victims are real patients the actor never touched and whose care unit
and service at that time are not the actor's (unrelated by the bench's own relations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.realdata.convert import unit_at

# kind -> detectors that are meant to find it (any of them counts for recall)
EXPECTED = {
    "bulk_unrelated": ("bulk.volume", "care.no_relationship", "anomaly.user_day"),
    "offhours_bulk": ("bulk.off_hours", "anomaly.user_day"),
    "bulk_export": ("copy.bulk_export", "anomaly.user_day"),
    "vip_snoop": ("snoop.vip",),
    "coworker_snoop": ("snoop.coworker",),
    "departed_account": ("cred.inactive_account",),
    "shared_account": ("cred.concurrent_use", "cred.impossible_travel"),
    "slow_insider": ("care.no_relationship", "anomaly.user_day"),
}
CASES = {"bulk_unrelated": 2, "offhours_bulk": 2, "bulk_export": 1, "vip_snoop": 2,
         "coworker_snoop": 1, "departed_account": 1, "shared_account": 1, "slow_insider": 1}
WORKSTATIONS = [{"workstation": "MAIN-WS-07", "ip": "10.1.7.7", "department": "ICU",
                 "campus": "Main", "location": "unit desk"},
                {"workstation": "EAST-WS-12", "ip": "10.2.12.12", "department": "Clinic",
                 "campus": "East", "location": "clinic front desk"}]


@dataclass
class Planted:
    events: list[dict] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    user_changes: dict[str, dict] = field(default_factory=dict)
    patient_changes: dict[str, dict] = field(default_factory=dict)

    def add(self, kind: str, case: int, user: str, patient, ts: pd.Timestamp,
            action: str = "view", **extra) -> None:
        eid = f"plant:{kind}:{case}:{len(self.events)}"
        self.events.append({"event_id": eid, "ts": ts, "user_id": user, "patient_id": patient,
                            "action": action, "action_raw": f"planted {kind}", **extra})
        self.truth.append({"event_id": eid, "violation": kind, "case_key": f"{kind}:{case}"})


def _active_days(acc: pd.DataFrame) -> pd.DataFrame:
    d = acc.assign(day=acc["ts"].dt.normalize())
    return d.groupby(["user_id", "day"]).agg(n=("ts", "size"), hour=("ts", lambda t: float(
        np.median(t.dt.hour)))).reset_index()


def plant(tables: dict, seed: int = 16, min_days: int = 10) -> Planted:
    rng = np.random.default_rng(seed)
    acc, users, rel = tables["access_log"], tables["users"], tables["care_relations"]
    days = _active_days(acc)
    days["rank"] = days.groupby("user_id").cumcount()
    per_user = days.groupby("user_id")["day"].nunique()
    hours = acc.groupby("user_id")["ts"].apply(lambda t: float(((t.dt.hour >= 7) &
                                                                (t.dt.hour < 19)).mean()))
    home = users.set_index("user_id")[["ward", "department", "role"]]
    touched = acc.groupby("user_id")["patient_id"].agg(set)
    patients = sorted(tables["patients"]["patient_id"].astype(str))
    mv = rel.rename(columns={})
    used_actors: set[str] = set()
    out = Planted()

    def actor(day_filter=None, need_day=True) -> tuple[str, pd.Timestamp]:
        pool = per_user[(per_user >= min_days + 2)].index.difference(sorted(used_actors))
        pool = [u for u in sorted(pool) if pd.notna(home.at[u, "ward"])]
        while True:
            u = pool[int(rng.integers(len(pool)))]
            d = days[(days["user_id"] == u) & (days["rank"] >= min_days)]
            if day_filter is not None:
                d = day_filter(u, d)
            if not need_day or len(d):
                used_actors.add(u)
                return u, (d["day"].iloc[int(rng.integers(len(d)))] if len(d) else None)

    def unrelated(u: str, ts: pd.Timestamp, k: int) -> list[str]:
        """Patients the actor never touched, lying neither in the actor's home unit and
        service nor on a ward the actor charted on within 12 hours (a float nurse's shift
        there would explain the look-up)."""
        cand = [p for p in patients if p not in touched.get(u, set())]
        probe = pd.DataFrame({"ts": ts, "patient_id": cand})
        ward = unit_at(probe, mv, "ward")
        dept = unit_at(probe, mv, "department")
        mine = acc[(acc["user_id"] == u) & ((acc["ts"] - ts).abs() <= pd.Timedelta(hours=12))]
        worked = set(unit_at(mine, mv, "ward").dropna()) | {home.at[u, "ward"]}
        ok = (~ward.isin(worked) | ward.isna()) & \
             (dept.ne(home.at[u, "department"]) | dept.isna())
        cand = [p for p, o in zip(cand, ok) if o]
        pick = rng.choice(len(cand), size=min(k, len(cand)), replace=False)
        return [cand[i] for i in sorted(pick)]

    def at(day: pd.Timestamp, hour: float) -> pd.Timestamp:
        return day + pd.Timedelta(hours=float(hour)) + pd.Timedelta(
            seconds=int(rng.integers(0, 600)))

    for case in range(CASES["bulk_unrelated"]):
        u, day = actor()
        t = at(day, days.loc[(days.user_id == u) & (days.day == day), "hour"].iloc[0])
        for i, p in enumerate(unrelated(u, t, 30)):
            out.add("bulk_unrelated", case, u, p, t + pd.Timedelta(minutes=2 * i),
                    "query" if i % 5 == 0 else "view")
    daytime = lambda u, d: d if hours.get(u, 0) >= 0.9 else d.iloc[0:0]  # noqa: E731
    for case in range(CASES["offhours_bulk"]):
        u, day = actor(daytime)
        day = day + pd.Timedelta(days=1)
        while ((days["user_id"] == u) & (days["day"] == day)).any():
            day += pd.Timedelta(days=1)
        t = at(day, 2.0)
        for i, p in enumerate(unrelated(u, t, 20)):
            out.add("offhours_bulk", case, u, p, t + pd.Timedelta(minutes=3 * i))
    for case in range(CASES["bulk_export"]):
        u, day = actor()
        t = at(day, 14.0)
        for i, p in enumerate(unrelated(u, t, 10)):
            out.add("bulk_export", case, u, p, t + pd.Timedelta(minutes=8 * i), "export",
                    record_count=15, module="病历")
    vip = patients[int(rng.integers(len(patients)))]
    out.patient_changes[vip] = {"vip": True}
    for case in range(CASES["vip_snoop"]):
        u, day = actor()
        t = at(day, 11.0)
        if vip in touched.get(u, set()) or vip not in unrelated(u, t, len(patients)):
            continue
        out.add("vip_snoop", case, u, vip, t)
        out.add("vip_snoop", case, u, vip, t + pd.Timedelta(minutes=4))
    for case in range(CASES["coworker_snoop"]):
        staff, _ = actor(need_day=False)
        u, day = actor()
        t = at(day, 15.0)
        victim = unrelated(u, t, 1)[0]
        out.patient_changes[victim] = {"employee_user_id": staff}
        out.add("coworker_snoop", case, u, victim, t)
    for case in range(CASES["departed_account"]):
        u, day = actor()
        last = acc.loc[acc["user_id"] == u, "ts"].max()
        out.user_changes[u] = {"end_date": (last + pd.Timedelta(days=1)).normalize(),
                               "status": "terminated"}
        t = (last + pd.Timedelta(days=6)).normalize() + pd.Timedelta(hours=20)
        for i, p in enumerate(unrelated(u, t, 5)):
            out.add("departed_account", case, u, p, t + pd.Timedelta(minutes=5 * i))
    for case in range(CASES["shared_account"]):
        u, day = actor()
        t = at(day, 10.0)
        pts = unrelated(u, t, 2)
        for i in range(4):
            ws = WORKSTATIONS[i % 2]
            out.add("shared_account", case, u, pts[i % 2], t + pd.Timedelta(minutes=3 * i),
                    workstation=ws["workstation"], ip=ws["ip"])
    for case in range(CASES["slow_insider"]):
        u, day = actor()
        for k in range(8):
            d = day + pd.Timedelta(days=k)
            t = at(d, 13.0)
            for i, p in enumerate(unrelated(u, t, 3)):
                out.add("slow_insider", case, u, p, t + pd.Timedelta(minutes=7 * i))
    return out


def apply(tables: dict, planted: Planted) -> dict:
    """The tables with the planted events and reference changes; truth as a frame."""
    out = dict(tables)
    pe = pd.DataFrame(planted.events)
    out["access_log"] = pd.concat([tables["access_log"], pe], ignore_index=True).sort_values(
        ["ts", "event_id"], kind="stable").reset_index(drop=True)
    users = tables["users"].copy()
    for u, ch in planted.user_changes.items():
        for k, v in ch.items():
            users.loc[users["user_id"] == u, k] = v
    pats = tables["patients"].copy()
    for p, ch in planted.patient_changes.items():
        for k, v in ch.items():
            if k not in pats.columns:
                pats[k] = None
            pats.loc[pats["patient_id"] == p, k] = v
    out["users"], out["patients"] = users, pats
    out["workstations"] = pd.DataFrame(WORKSTATIONS)
    out["truth"] = pd.DataFrame(planted.truth)
    return out
