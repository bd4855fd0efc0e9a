"""Orchestrate the sample hospital: build it, generate accesses, plant violations, write files.

`generate(out_dir, seed=…, days=…, size=…)` is deterministic: one numpy Generator seeded
with `seed` drives every draw, outputs are sorted, nothing depends on the clock or on set/dict
ordering. `size` is `small` (the committed sample_logs/), `medium`, `large`, or an integer
event count for benchmarks (the hospital and the activity intensity are scaled to reach it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emraudit.demo import (care, legit, population, rights, roster as roster_mod, sessions,
                           violations)
from emraudit.demo.events import EventBuf, SRC, take
from emraudit.demo.hospital import N_SMALL_DEPTS, build_hospital
from emraudit.demo.roster import DAY
from emraudit.errors import UserError

DEFAULT_START = "2026-09-07"   # a Monday


@dataclass(frozen=True)
class Size:
    n_depts: int
    wards_per_dept: int
    beds: int
    intensity: float
    clinic_per_session: float
    ed_per_day: float
    cases: int = 1          # multiplier on planted cases


SIZES = {
    "small": Size(N_SMALL_DEPTS, 1, 14, 0.15, 2.5, 10, 1),
    "medium": Size(20, 2, 30, 1.0, 14.0, 60, 2),
    "large": Size(20, 5, 40, 2.0, 25.0, 150, 3),
}
# events per bed per day at intensity 1 (measured: 8.46M events from 5,760 nominal beds x 30
# days at intensity 3.86), to size integer requests
EVENTS_PER_BED_DAY = 12.7


def size_for_events(n_events: int, days: int) -> Size:
    """A hospital and intensity that yield about `n_events` accesses over `days`."""
    per_day = n_events / max(1, days)
    # the last sizes are benchmark hospitals (millions of events a day: screen-level logging,
    # many record openings per patient-day), reached with an intensity above 5
    for wpd, beds in ((1, 14), (1, 25), (2, 30), (3, 35), (5, 40), (8, 40), (12, 40),
                      (20, 40), (32, 40)):
        n_beds = (N_SMALL_DEPTS - 2 + 8) * wpd * beds if wpd > 1 else N_SMALL_DEPTS * beds
        intensity = per_day / (n_beds * EVENTS_PER_BED_DAY)
        if intensity <= 5.0:
            break
    n_depts = N_SMALL_DEPTS if (wpd == 1) else 20
    intensity = max(0.1, min(intensity, 60.0))
    return Size(n_depts, wpd, beds, intensity, 3.0 + 10 * min(intensity, 2.5),
                10 + 40 * min(intensity, 3) * wpd, max(1, wpd // 2))


@dataclass
class World:
    rng: np.random.Generator
    t0: np.int64
    t_end: np.int64
    days: int
    weekday0: int
    intensity: float
    k: int
    timings: dict = field(default_factory=dict)


def _t0(start: str) -> np.int64:
    return np.int64(pd.Timestamp(start).value // 10**9)


def build(seed: int = 7, days: int = 30, size: str | int = "small",
          start: str = DEFAULT_START) -> World:
    """Everything in memory: the hospital, roster, care, events and truth."""
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if isinstance(size, int):
        spec = size_for_events(size, days)
    elif size in SIZES:
        spec = SIZES[size]
    else:
        raise UserError(f"unknown size '{size}' (expected small, medium, large or a number "
                        "of events)")
    if days < 3:
        raise UserError("--days must be at least 3")
    clock = time.perf_counter()
    rng = np.random.default_rng(seed)
    t0 = _t0(start)
    w = World(rng=rng, t0=t0, t_end=t0 + days * DAY, days=days,
              weekday0=int(pd.Timestamp(start).weekday()), intensity=spec.intensity,
              k=spec.cases)
    w.spec = spec
    h = build_hospital(rng, spec.n_depts, spec.wards_per_dept, spec.beds, t0, days)
    w.wards, w.departments, w.locations = h.wards, h.departments, h.locations
    w.workstations = h.workstations
    w.users = roster_mod.assign_status(rng, h.users, t0, days)
    w.users["patient_id"] = None
    w.users_campus = w.locations.campus.to_numpy()[np.maximum(w.users._loc.to_numpy(), 0)]
    w.roster = roster_mod.build_roster(rng, w.users, w.wards, t0, days, w.weekday0)
    warmup = 28
    w.seg = care.build_segments(rng, w.wards, w.locations, t0, days, warmup, spec.ed_per_day)
    w.visits = care.build_visits(rng, w.departments, w.roster, t0, days, spec.clinic_per_session)
    loc_of = dict(zip(w.locations.name, w.locations.loc_idx))
    dep_campus = dict(zip(w.departments.department, w.departments.campus))
    w.visits["loc"] = w.visits.department.map(lambda d: loc_of[f"{d}门诊"]).astype(np.int64)
    w.visits["campus"] = w.visits.department.map(dep_campus)
    seg_p, vis_p, n_pat = care.assign_patients(rng, w.seg, w.visits)
    w.seg["patient"] = seg_p
    w.visits["patient"] = vis_p
    w.n_pat = n_pat
    width = max(7, len(str(n_pat + 1000)))
    w.patient_ids = np.array([f"P{i + 1:0{width}d}" for i in range(n_pat + 1000)], dtype=object)
    # encounter ids: 住院号 (Z), 急诊号 (J), 门诊号 (M)
    enc_keys = w.seg.enc2.to_numpy()
    uniq, inv = np.unique(enc_keys, return_inverse=True)
    kinds = np.where(uniq % 2 == 1, "J", "Z")
    first_start = pd.Series(w.seg.start.to_numpy()).groupby(inv).min().to_numpy()
    order = np.argsort(first_start, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    enc_ids = np.array([f"{k}{r + 1:08d}" for k, r in zip(kinds, rank)], dtype=object)
    w.seg["enc_idx"] = inv
    nv = len(w.visits)
    w.visits["enc_idx"] = len(uniq) + np.arange(nv)
    w.enc_ids = np.concatenate([enc_ids, np.array([f"M{i + 1:08d}" for i in range(nv)],
                                                  dtype=object)])
    rel = care.relations(rng, w.seg, w.users, w.roster, w.t_end)
    w.timings["hospital"] = time.perf_counter() - clock

    clock = time.perf_counter()
    buf = EventBuf()
    extra_rel: list[pd.DataFrame] = []
    w.rel = rel
    pdays = legit.patient_days(w)
    legit.nurse_charting(w, buf)
    legit.ward_day_staff(w, pdays, buf)
    legit.rounds(w, buf)
    legit.night_cover(w, buf)
    legit.consults(w, pdays, buf, extra_rel)
    legit.orders(w, pdays, buf, extra_rel)
    legit.discharges(w, buf)
    legit.followups(w, buf)
    legit.clinics(w, buf, extra_rel)
    legit.emergency_btg(w, buf)
    w.rel = pd.concat([rel] + extra_rel, ignore_index=True)
    w.rel = w.rel[w.rel.end > w.rel.start].reset_index(drop=True)
    population.build_patients(w)
    rights.sensitive_classes(w)
    legit.office_roles(w, buf)
    _watch_team_reads(w, buf)
    _family_care(w, buf)
    ev = buf.concat()
    keep = legit.duty_filter(w, ev)
    keep &= _sealed_ok(w, ev)
    ev = take(ev, keep)
    ev = take(ev, legit.one_place(w, ev))
    w.timings["legit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    w.patient_last_enc = _last_encounter(w)
    rights.add_accounts(w)
    vbuf = EventBuf()
    w.cases = violations.plant(w, vbuf, spec.cases)
    vev = vbuf.concat()
    # the misused accounts of the rights audit draw from their own generator, so the rest of
    # the hospital is what it was before they were added
    rbuf = EventBuf()
    rights_rng = np.random.default_rng([seed, 2020])
    w.cases = rights.plant_accounts(w, rbuf, rights_rng, spec.cases, busy=set(vev["user"]),
                                    legit=ev)
    allev = {k: np.concatenate([ev[k], vev[k]]) for k in ev}
    acc = np.array([i for i, (v, _) in enumerate(w.cases) if v in violations.ACCOUNT_KINDS],
                   np.int64)
    allev = sessions.build_sessions(w, allev, acc)
    rev = rbuf.concat()
    if len(rev["ts"]):
        main_rng, w.rng = w.rng, rights_rng
        rev = sessions.build_sessions(w, rev, acc)
        w.rng = main_rng
        rev["session"] = rev["session"] + int(allev["session"].max()) + 1
        allev = {k: np.concatenate([allev[k], rev[k]]) for k in allev}
    # final order: time, then user, action, patient (deterministic ties)
    o = np.lexsort((allev["patient"], allev["action"], allev["user"], allev["ts"]))
    w.events = {k: v[o] for k, v in allev.items()}
    rights.build_rights(w)
    w.timings["plant+sessions"] = time.perf_counter() - clock
    return w


def _watch_team_reads(w, buf):
    """The team of a sealed record still reads it now and then (quality review)."""
    rng = w.rng
    from emraudit.demo.events import A, M
    for p, team in w.watch_list:
        u = team[-1]   # the quality-control member: office hours, no roster
        for d in rng.choice(np.arange(w.days), 2, replace=False):
            if (w.weekday0 + d) % 7 >= 5:
                continue
            t = w.t0 + int(d) * DAY + 10 * 3600 + int(rng.integers(0, 5 * 3600))
            loc = int(w.users.at[u, "_loc"])
            buf.add(np.array([t]), u, p, A["view"], M["病历"], loc, -1, src=SRC["watch_team"])


def _family_care(w, buf):
    """A nurse charts her own parent lying in her ward (legitimate: the ward relation)."""
    from emraudit.demo.events import A, M
    rng = w.rng
    for u, p in w.legit_family:
        s = w.seg[(w.seg.patient == p) & (w.seg.end > w.t0)].iloc[0]
        a, b = max(int(s.start), int(w.t0)), min(int(s.end), int(w.t_end))
        t = np.sort(a + (rng.random(40) * (b - a)).astype(np.int64))
        buf.add(t, u, p, rng.choice([A["create"], A["view"], A["update"]], len(t)),
                M["护理记录"], int(s["loc"]), int(s.enc_idx), src=SRC["nurse"])


def _sealed_ok(w, ev) -> np.ndarray:
    """Legitimate events never touch a sealed record from outside its team, and staff who are
    patients are never shown opening their own record (that is a planted kind)."""
    ok = np.ones(len(ev["ts"]), bool)
    for p, team in w.watch_list:
        m = (ev["patient"] == p) & ~np.isin(ev["user"], team)
        ok &= ~m
    emp = w.patients.employee_user_id.to_numpy()
    own = np.flatnonzero(pd.notna(emp))
    if len(own):
        uid_to_idx = dict(zip(w.users.user_id, w.users.index))
        owner = np.full(w.n_pat + 1000, -1, np.int64)
        owner[own] = [uid_to_idx[x] for x in emp[own]]
        pp = np.where(ev["patient"] >= 0, ev["patient"], 0)
        ok &= ~((ev["patient"] >= 0) & (owner[pp] == ev["user"]))
    return ok


def _last_encounter(w) -> np.ndarray:
    out = np.full(w.n_pat + 1000, -1, np.int64)
    s = w.seg.sort_values("start", kind="stable")
    out[s.patient.to_numpy()] = s.enc_idx.to_numpy()
    return out


def generate(out_dir, seed: int = 7, days: int = 30, size: str | int = "small",
             formats: tuple[str, ...] = ("canonical",), start: str = DEFAULT_START) -> dict:
    """Build and write; returns a summary (counts, timings)."""
    from emraudit.demo import writers
    clock = time.perf_counter()
    w = build(seed=seed, days=days, size=size, start=start)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    writers.write_all(w, out, formats)
    w.timings["write"] = time.perf_counter() - t
    w.timings["total"] = time.perf_counter() - clock
    planted = np.unique(w.events["case"][w.events["case"] >= 0])
    truth_cases = pd.Series([w.cases[i][0] for i in planted]
                            + [v for v, _, _ in w.rights_truth]).value_counts().sort_index()
    return {"events": int(len(w.events["ts"])), "users": int(len(w.users)),
            "patients": int(w.n_pat), "cases": int(len(planted)) + len(w.rights_truth),
            "grants": int(len(w.grants_table)),
            "planted_events": int((w.events["case"] >= 0).sum()),
            "cases_by_kind": {k: int(v) for k, v in truth_cases.items()},
            "timings": {k: round(v, 2) for k, v in w.timings.items()}}
