"""The duty schedule: was the user on duty when an event happened, and on what basis.

Shared by `bulk.off_hours` and the anomaly features. Three bases, tried in order per event:

- ``roster``: the user has duty shifts (`shifts.kind == duty`) around that date; the event is on
  duty when it falls inside a shift, widened by a slack before and after (handover, charting
  late). Night shifts simply cross midnight. Overlapping shifts are handled by taking, among the
  shifts that started before the event, the latest end.
- ``inferred``: no roster for that date, but the user has enough history in ``ctx.events``
  (the look-back and the window, within ``infer_lookback_days`` before the window's end):
  the hours of the day in which the user was active on at least ``k`` distinct days and on at
  least a share of their active days (20%: a week of nights a month counts, a weekly night
  call does not), widened by ±``smooth`` hours, are their duty hours. Night-shift and
  rotating staff therefore get their own nights as duty; weekdays are ignored so rotations
  stay covered. Occasional on-call nights stay off duty, and are left to the thresholds (own
  baseline, peers) and to the explanation engine in bulk.off_hours.
- ``office_hours``: too little history: the site's office hours on its workdays.

Everything is vectorized (codes, a presence cube, one packed sorted search for the roster).
Parameters are the schedule's own, the ``[schedule]`` section of the detector profile
(SCHEDULE, read through ``ctx.section("schedule")``), so the profile tunes the schedule once for
every detector that reads it. The schedule is cached in ``ctx.memo["duty_schedule"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emraudit.detectors.base import (Param, Section, declare_section, shared_work, site_keys,
                                     site_qualified)
from emraudit.fastops import local_ns, stable_order, utc_ns

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
MINUTE_NS = 60 * 10**9

SCHEDULE = declare_section(Section(
    "schedule", "The duty schedule / 当班判断",
    "Was the user on duty when an event happened: the duty roster (shifts), else the hours "
    "inferred from the user's own history, else the site's office hours. Read by "
    "bulk.off_hours and the anomaly features.",
    (
        Param("roster_slack_minutes", int, 60, "duty extends this long before and after each "
              "rostered shift (handover, late charting)", "minutes", 0, 720),
        Param("infer_min_days", int, 3, "an hour of the day is a duty hour of a user without a "
              "roster when they were active in it on at least this many days", "days", 1, 60),
        Param("infer_min_share", float, 0.2, "… and on at least this share of their active "
              "days (a weekly night call is not a night shift)", "", 0.0, 1.0),
        Param("infer_min_active_days", int, 7, "fewest active days in the look-back to infer "
              "a schedule; fewer falls back to office hours", "days", 1, 60),
        Param("infer_smooth_hours", int, 1, "inferred duty hours are widened by this many hours "
              "each side", "hours", 0, 6),
        Param("infer_lookback_days", int, 28, "history used to infer duty hours", "days", 1,
              365),
    )))

BASES = ("roster", "inferred", "office_hours")


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
    # several sites: the roster is keyed by "site\x1fuser" (a shift applies at its site);
    # events without a site_id are of `default_site`
    by_site: bool = False
    default_site: str = "default"

    def explain(self, user_id: str) -> dict:
        """The inferred duty hours of one user, for evidence."""
        i = self.users.get_indexer([user_id])[0]
        if i < 0:
            return {"active_days": 0, "duty_hours": []}
        return {"active_days": int(self.active_days[i]),
                "duty_hours": [h for h in range(24) if self.hours[i, h]]}


def schedule_params(ctx) -> dict:
    """The [schedule] parameters in force."""
    return ctx.section("schedule")


def _history(ctx) -> pd.DataFrame:
    """Every event of the scan (look-back and window): a first scan over a month of history
    has no look-back, and a night in the window is one day among many anyway (k days and a
    share of active days protect against a snooper's own nights becoming duty)."""
    ev = ctx.events
    hist = ev[["user_id", "ts"]]
    return hist[hist["user_id"].notna().to_numpy()]


def build_schedule(ctx) -> Schedule:
    """Infer hour profiles from the look-back and index the duty roster."""
    p = schedule_params(ctx)
    hist = _history(ctx)
    if p["infer_lookback_days"] and len(hist):
        since = ctx.window_end - pd.Timedelta(days=p["infer_lookback_days"])
        hist = hist[(hist["ts"] >= since).to_numpy()]
    uid = hist["user_id"]
    if isinstance(uid.dtype, pd.CategoricalDtype) and uid.cat.categories.is_monotonic_increasing:
        # the scan's coded column: its sorted categories are the users (one with no events in
        # the look-back is never active, as if absent); no string per event is made
        codes, users = uid.cat.codes.to_numpy(np.int64), uid.cat.categories
    else:
        codes, users = pd.factorize(uid.astype("string"), sort=True)
    users = pd.Index(pd.Index(users).astype(str))
    nu = len(users)
    hours = np.zeros((nu, 24), dtype=bool)
    active = np.zeros(nu, dtype=np.int64)
    if nu:
        ns = local_ns(hist["ts"])
        day = ns // DAY_NS
        day = day - day.min()
        hour = (ns % DAY_NS) // HOUR_NS
        span = int(day.max()) + 1
        seen = np.zeros((nu, span, 24), dtype=bool)      # look-back is bounded: small
        seen[codes, day, hour] = True
        days_per_hour = seen.sum(axis=1)
        active = seen.any(axis=2).sum(axis=1)
        regular = ((days_per_hour >= p["infer_min_days"]) &
                   (days_per_hour >= p["infer_min_share"] * np.maximum(active, 1)[:, None]))
        s = int(p["infer_smooth_hours"])
        hours = regular.copy()
        for d in range(1, s + 1):
            hours |= np.roll(regular, d, axis=1) | np.roll(regular, -d, axis=1)
    roster = span_df = None
    by_site = False
    sh = ctx.shifts
    if sh is not None and len(sh):
        kind = sh["kind"].astype("string").fillna("duty") if "kind" in sh.columns else None
        duty = sh if kind is None else sh[(kind == "duty").to_numpy()]
        duty = duty[duty["user_id"].notna() & duty["start"].notna() & duty["end"].notna()]
        if len(duty):
            slack = int(p["roster_slack_minutes"]) * MINUTE_NS
            key = site_keys(ctx, sh)
            by_site = key.by_site
            r = pd.DataFrame({"user_id": key(duty, "user_id").astype(str).to_numpy(),
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
                    tuple(ctx.workdays), p, by_site, ctx.site_id)


def get_schedule(ctx) -> Schedule:
    if "duty_schedule" not in ctx.memo:
        ctx.memo["duty_schedule"] = build_schedule(ctx)
    return ctx.memo["duty_schedule"]


def apply_schedule(sched: Schedule, events: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """On-duty flag and basis for each row of `events` (columns user_id, ts)."""
    n = len(events)
    idx = events.index
    codes, uniq = pd.factorize(events["user_id"])
    uniq = pd.Index(pd.Series(uniq, dtype="string").fillna("").astype(str))
    ns = local_ns(events["ts"])
    hour = (ns % DAY_NS) // HOUR_NS
    on = np.zeros(n, dtype=bool)
    basis = np.full(n, 2, dtype=np.int8)           # index into BASES

    # office hours (fallback for everyone; overwritten below)
    start_h, end_h = sched.office_hours
    weekday = ((ns // DAY_NS) + 3) % 7          # 1970-01-01 was a Thursday (3)
    if start_h <= end_h:
        in_hours = (hour >= start_h) & (hour < end_h)
    else:                                        # office hours across midnight
        in_hours = (hour >= start_h) | (hour < end_h)
    on[:] = in_hours & np.isin(weekday, np.array(sched.workdays, dtype=np.int64))

    # inferred
    if len(sched.users) and n:
        umap = sched.users.get_indexer(uniq)                 # per distinct user only
        ui = np.where(codes >= 0, umap[np.maximum(codes, 0)], -1)
        enough = ui >= 0
        enough[enough] = sched.active_days[ui[enough]] >= sched.params["infer_min_active_days"]
        on[enough] = sched.hours[ui[enough], hour[enough]]
        basis[enough] = 1

    # roster
    if sched.roster is not None and n:
        if sched.by_site:        # the roster's keys: each event's user at its site
            codes, uniq = pd.factorize(site_qualified(events, "user_id", sched.default_site))
            uniq = pd.Index(pd.Series(uniq, dtype="string").fillna("").astype(str))
        t = utc_ns(events["ts"])
        span = sched.roster_span
        lo_u = span["lo"].reindex(uniq).to_numpy(dtype="float64", na_value=np.nan)
        hi_u = span["hi"].reindex(uniq).to_numpy(dtype="float64", na_value=np.nan)
        safe = np.maximum(codes, 0)
        lo = np.where(codes >= 0, lo_u[safe], np.nan)
        hi = np.where(codes >= 0, hi_u[safe], np.nan)
        covered = (t >= lo) & (t <= hi)       # NaN compares False
        if covered.any():
            pos = np.flatnonzero(covered)
            on[pos] = _roster_on(sched.roster, uniq, codes[pos], t[pos])
            basis[pos] = 0
    labels = pd.Categorical.from_codes(basis, categories=list(BASES))
    return (pd.Series(on, index=idx, name="on_duty"),
            pd.Series(labels, index=idx, name="duty_basis"))


def _roster_on(roster: pd.DataFrame, uniq: pd.Index, ucode: np.ndarray, t: np.ndarray
               ) -> np.ndarray:
    """For events (user code, utc ns): inside a rostered duty shift (slack included)?

    One sorted search on (user, start) keys packed in an int64 (user code in the high bits,
    whole seconds in the low ones), then an exact check in nanoseconds: the latest shift of
    the user started by then, whose running-maximum end covers the event."""
    ru = uniq.get_indexer(roster["user_id"]).astype(np.int64)
    keep = ru >= 0
    ru = ru[keep]
    rs = roster["s"].to_numpy(np.int64)[keep]
    re = roster["e"].to_numpy(np.int64)[keep]
    if not len(ru):
        return np.zeros(len(t), dtype=bool)
    t0 = min(int(t.min()), int(rs.min()))
    sec_r = (rs - t0) // 10**9
    sec_e = (t - t0) // 10**9
    span = int(max(sec_r.max(), sec_e.max())) + 2
    kr = ru * span + sec_r
    o = stable_order(kr)       # by user, then start (ends already cummax'ed)
    kr, ru, rs, re = kr[o], ru[o], rs[o], re[o]
    j = np.searchsorted(kr, ucode * span + sec_e, side="right") - 1
    ok = j >= 0
    jj = np.where(ok, j, 0)
    # within the same second a shift may start a few ns after the event: step back once
    late = ok & (rs[jj] > t)
    jj = np.where(late, jj - 1, jj)
    ok &= jj >= 0
    jj = np.maximum(jj, 0)
    ok &= ru[jj] == ucode
    return ok & (re[jj] >= t)


@shared_work("duty_mask")
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
