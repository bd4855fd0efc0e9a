"""The duty schedule: was the user on duty when an event happened, and on what basis.

Shared by `bulk.off_hours` and the anomaly features. Three bases, tried in order per event:

- ``roster``: the user has duty shifts (`shifts.kind == duty`) around that date; the event is on
  duty when it falls inside a shift, widened by a slack before and after (handover, charting
  late). Night shifts simply cross midnight. Overlapping shifts are handled by taking, among the
  shifts that started before the event, the latest end.
- ``inferred``: no roster for that date, but the user has enough history in the look-back part
  of ``ctx.events``: the hours of the day in which the user was active on at least ``k``
  distinct days, widened by ±``smooth`` hours, are their duty hours. Night-shift and rotating
  staff therefore get their own nights as duty; weekdays are ignored so rotations stay covered.
- ``office_hours``: too little history: the site's office hours on its workdays.

Everything is vectorized (codes, bincount, merge_asof). Parameters are those of the
``bulk.off_hours`` declaration (``ctx.params_for``), so the profile tunes the schedule once for
every user of it. The schedule is cached in ``ctx.memo["duty_schedule"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
MINUTE_NS = 60 * 10**9

# Defaults when `bulk.off_hours` is not registered (the schedule is usable on its own).
DEFAULTS = {
    "roster_slack_minutes": 60,
    "infer_min_days": 3,
    "infer_min_active_days": 7,
    "infer_smooth_hours": 1,
    "infer_lookback_days": 28,
}

BASES = ("roster", "inferred", "office_hours")


def local_ns(ts: pd.Series) -> np.ndarray:
    """Wall-clock nanoseconds in the series' own timezone (so day and hour are local)."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    return ts.astype("datetime64[ns]").to_numpy().astype("int64")


def utc_ns(ts: pd.Series) -> np.ndarray:
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[ns]").to_numpy().astype("int64")


@dataclass
class Schedule:
    """Per-user duty knowledge built once per scan."""

    users: pd.Index                 # user ids with an inferred hour profile
    hours: np.ndarray               # bool [len(users), 24]: duty hours of the day
    active_days: np.ndarray         # int [len(users)]: distinct active days in the history
    roster: pd.DataFrame | None     # user_id, s (start-slack, utc ns), e (running max end+slack)
    roster_span: pd.DataFrame | None  # user_id -> lo, hi (utc ns) the roster covers
    office_hours: tuple[int, int]
    workdays: tuple[int, ...]
    params: dict

    def explain(self, user_id: str) -> dict:
        """The inferred duty hours of one user, for evidence."""
        i = self.users.get_indexer([user_id])[0]
        if i < 0:
            return {"active_days": 0, "duty_hours": []}
        return {"active_days": int(self.active_days[i]),
                "duty_hours": [h for h in range(24) if self.hours[i, h]]}


def schedule_params(ctx) -> dict:
    params = dict(DEFAULTS)
    try:
        given = ctx.params_for("bulk.off_hours")
    except Exception:   # registry not importable in a stripped-down context
        given = {}
    params.update({k: v for k, v in given.items() if k in DEFAULTS})
    return params


def _history(ctx) -> pd.DataFrame:
    ev = ctx.events
    if "in_window" in ev.columns:
        hist = ev.loc[~ev["in_window"].astype(bool), ["user_id", "ts"]]
    else:
        hist = ev.loc[ev["ts"] < ctx.window_start, ["user_id", "ts"]]
    return hist[hist["user_id"].notna()]


def build_schedule(ctx) -> Schedule:
    """Infer hour profiles from the look-back and index the duty roster."""
    p = schedule_params(ctx)
    hist = _history(ctx)
    if p["infer_lookback_days"] and len(hist):
        since = ctx.window_start - pd.Timedelta(days=p["infer_lookback_days"])
        hist = hist[hist["ts"] >= since]
    codes, users = pd.factorize(hist["user_id"].astype("string"), sort=True)
    users = pd.Index(users.astype(str))
    nu = len(users)
    hours = np.zeros((nu, 24), dtype=bool)
    active = np.zeros(nu, dtype=np.int64)
    if nu:
        ns = local_ns(hist["ts"])
        day = ns // DAY_NS
        day = day - day.min()
        hour = (ns % DAY_NS) // HOUR_NS
        span = int(day.max()) + 1
        key = (codes.astype(np.int64) * span + day) * 24 + hour
        uk = np.unique(key)
        u_of = uk // (span * 24)
        h_of = uk % 24
        days_per_hour = np.bincount(u_of * 24 + h_of, minlength=nu * 24).reshape(nu, 24)
        active = np.bincount(np.unique(uk // 24) // span, minlength=nu)
        regular = days_per_hour >= p["infer_min_days"]
        s = int(p["infer_smooth_hours"])
        hours = regular.copy()
        for d in range(1, s + 1):
            hours |= np.roll(regular, d, axis=1) | np.roll(regular, -d, axis=1)
    roster = span_df = None
    sh = ctx.shifts
    if sh is not None and len(sh):
        kind = sh["kind"].astype("string").fillna("duty") if "kind" in sh.columns else None
        duty = sh if kind is None else sh[(kind == "duty").to_numpy()]
        duty = duty[duty["user_id"].notna() & duty["start"].notna() & duty["end"].notna()]
        if len(duty):
            slack = int(p["roster_slack_minutes"]) * MINUTE_NS
            r = pd.DataFrame({"user_id": duty["user_id"].astype(str).to_numpy(),
                              "s": utc_ns(duty["start"]), "e": utc_ns(duty["end"])})
            r = r.sort_values(["user_id", "s"], kind="stable")
            r["e"] = r.groupby("user_id", sort=False)["e"].cummax()
            span_df = r.groupby("user_id").agg(lo=("s", "min"), hi=("e", "max"))
            span_df["lo"] -= DAY_NS
            span_df["hi"] += DAY_NS
            r["s"] -= slack
            r["e"] += slack
            roster = r.sort_values("s", kind="stable").reset_index(drop=True)
    return Schedule(users, hours, active, roster, span_df, tuple(ctx.office_hours),
                    tuple(ctx.workdays), p)


def get_schedule(ctx) -> Schedule:
    if "duty_schedule" not in ctx.memo:
        ctx.memo["duty_schedule"] = build_schedule(ctx)
    return ctx.memo["duty_schedule"]


def apply_schedule(sched: Schedule, events: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """On-duty flag and basis for each row of `events` (columns user_id, ts)."""
    n = len(events)
    idx = events.index
    uid = events["user_id"].astype("string").fillna("").astype(str)
    ns = local_ns(events["ts"])
    hour = (ns % DAY_NS) // HOUR_NS
    on = np.zeros(n, dtype=bool)
    basis = np.full(n, "office_hours", dtype=object)

    # office hours (fallback for everyone; overwritten below)
    start_h, end_h = sched.office_hours
    weekday = ((ns // DAY_NS) + 3) % 7          # 1970-01-01 was a Thursday (3)
    if start_h <= end_h:
        in_hours = (hour >= start_h) & (hour < end_h)
    else:                                        # office hours across midnight
        in_hours = (hour >= start_h) | (hour < end_h)
    on[:] = in_hours & np.isin(weekday, np.array(sched.workdays, dtype=np.int64))

    # inferred
    ui = sched.users.get_indexer(uid) if len(sched.users) else np.full(n, -1)
    ok = ui >= 0
    if ok.any():
        enough = np.zeros(n, dtype=bool)
        enough[ok] = sched.active_days[ui[ok]] >= sched.params["infer_min_active_days"]
        inferred_on = np.zeros(n, dtype=bool)
        inferred_on[enough] = sched.hours[ui[enough], hour[enough]]
        on[enough] = inferred_on[enough]
        basis[enough] = "inferred"

    # roster
    if sched.roster is not None and n:
        t = utc_ns(events["ts"])
        span = sched.roster_span
        lo = pd.Series(uid).map(span["lo"]).to_numpy(dtype="float64", na_value=np.nan)
        hi = pd.Series(uid).map(span["hi"]).to_numpy(dtype="float64", na_value=np.nan)
        covered = (t >= lo) & (t <= hi)       # NaN compares False
        if covered.any():
            pos = np.flatnonzero(covered)
            left = pd.DataFrame({"user_id": uid.to_numpy()[pos], "t": t[pos], "pos": pos})
            left = left.sort_values("t", kind="stable")
            m = pd.merge_asof(left, sched.roster[["user_id", "s", "e"]], left_on="t",
                              right_on="s", by="user_id", direction="backward")
            r_on = (m["e"].to_numpy(dtype="float64", na_value=np.nan) >= m["t"].to_numpy())
            on[m["pos"].to_numpy()] = r_on
            basis[m["pos"].to_numpy()] = "roster"
    return (pd.Series(on, index=idx, name="on_duty"),
            pd.Series(basis, index=idx, name="duty_basis", dtype="string"))


def duty_mask(ctx, events: pd.DataFrame | None = None) -> tuple[pd.Series, pd.Series]:
    """For each event, whether its user was on duty, and the basis of that judgement.

    `events` defaults to ``ctx.events``; any frame with ``user_id`` and ``ts`` works (the
    schedule itself always comes from ``ctx``). Returns two Series on `events`' index:
    a boolean ``on_duty`` and a string ``duty_basis`` in ('roster', 'inferred',
    'office_hours'). The result for ``ctx.events`` is cached in ``ctx.memo["duty_mask"]``.
    """
    sched = get_schedule(ctx)
    if events is None or events is ctx.events:
        if "duty_mask" not in ctx.memo:
            ctx.memo["duty_mask"] = apply_schedule(sched, ctx.events)
        return ctx.memo["duty_mask"]
    return apply_schedule(sched, events)
