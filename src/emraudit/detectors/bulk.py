"""Bulk viewing: many distinct patients in a short time, off duty (`bulk.off_hours`) or at
any hour against the user's own and their peers' baselines (`bulk.volume`).

Also holds the helpers the copy, snoop and btg detectors share: the patient accesses that
count, the explanation flags from the explanation engine, peer groups (role + department,
falling back to role when the group is small) and an exact sliding-window distinct count.

Thresholds are always the largest of three: an absolute floor, a multiple of the user's own
baseline and a percentile of their peer group, so that busy roles (therapists who serve every
ward, records staff) are measured against people who do the same job. Baselines are
leave-one-out over every day in ctx.events (see `Baselines`): a nightly scan compares the
night with the look-back, a first scan over a month compares each day with the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param, empty_findings
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.detectors.schedule import (DAY_NS, MINUTE_NS, SCHEDULE, duty_mask, get_schedule,
                                         local_ns, utc_ns)
from emraudit.fastops import is_value
from emraudit.model import OUTPUT_ACTIONS
from emraudit.reports.i18n import N_

COUNTED_ACTIONS = ("view", "query", "create", "update", "sign", "delete", "print", "export",
                   "copy", "download")


# --------------------------------------------------------------------------- shared helpers
def patient_events(ctx: Context, actions=COUNTED_ACTIONS, successful: bool = True) -> pd.DataFrame:
    """Accesses to a patient's record with one of `actions` (failures left out by default).

    Cached per action set in ctx.memo: several detectors ask for the same rows."""
    key = ("patient_events", tuple(sorted(actions)), successful)
    if key in ctx.memo:
        return ctx.memo[key]
    ev = ctx.events
    m = ev["patient_id"].notna() & ev["user_id"].notna() & ev["action"].isin(list(actions))
    m = m.to_numpy(dtype=bool, copy=True)
    if successful and "outcome" in ev.columns:
        m &= ~is_value(ev["outcome"], "failure")       # a missing outcome counts as success
    out = ev[m]
    ctx.memo[key] = out
    return out


def in_window(ctx: Context, events: pd.DataFrame) -> np.ndarray:
    if "in_window" in events.columns:
        return events["in_window"].to_numpy(dtype=bool)
    return ((events["ts"] >= ctx.window_start) & (events["ts"] < ctx.window_end)).to_numpy()


def explanations(ctx: Context) -> pd.DataFrame:
    """The explanation engine's verdict per patient access (cached in ctx.memo['explain'])."""
    if "explain" in ctx.memo:
        return ctx.memo["explain"]
    from emraudit.detectors.explain import explain_accesses
    return explain_accesses(ctx)


def explained_flags(ctx: Context, events: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(explained, explanation) for each row of `events` (a subset of ctx.events)."""
    ex = explanations(ctx)
    if ex is None or len(ex) == 0:
        return (pd.Series(False, index=events.index),
                pd.Series("", index=events.index, dtype="string"))
    flag = ex["explained"].reindex(events.index).fillna(False).astype(bool)
    why = ex["explanation"].reindex(events.index).astype("string").fillna("")
    return flag, why


def peer_groups(ctx: Context, user_ids, min_size: int) -> pd.Series:
    """Peer group label per user: 'role|department' when that group has at least `min_size`
    active users, else 'role' (records and QC staff always stay among their own role)."""
    ids = pd.Index(pd.unique(pd.Series(list(user_ids), dtype="string").dropna()).astype(str))
    if ctx.users is None or not len(ctx.users):
        return pd.Series("all", index=ids, dtype="string")
    u = ctx.users.drop_duplicates("user_id").set_index(ctx.users.drop_duplicates("user_id")[
        "user_id"].astype(str))
    role = (u["role"].astype("string") if "role" in u.columns else pd.Series(dtype="string"))
    dept = (u["department"].astype("string") if "department" in u.columns
            else pd.Series(dtype="string"))
    role = role.reindex(ids).fillna("other")
    dept = dept.reindex(ids).fillna("")
    rd = role + "|" + dept
    size_rd = rd.map(rd.value_counts())
    out = rd.where(size_rd >= min_size, role)
    return out.astype("string")


def user_info(ctx: Context, user_ids) -> pd.DataFrame:
    """role, department, ward, name per user id (blank when unknown)."""
    ids = pd.Index(pd.Series(list(user_ids), dtype="string").dropna().astype(str).unique())
    cols = ["role", "department", "ward", "name"]
    if ctx.users is None or not len(ctx.users):
        return pd.DataFrame({c: pd.Series("", index=ids, dtype="string") for c in cols})
    u = ctx.users.drop_duplicates("user_id")
    u = u.set_index(u["user_id"].astype(str))
    return pd.DataFrame({c: (u[c].astype("string") if c in u.columns
                             else pd.Series(dtype="string")).reindex(ids).fillna("")
                         for c in cols})


def sliding_distinct(u: np.ndarray, p: np.ndarray, t: np.ndarray, window_ns: int) -> pd.DataFrame:
    """Distinct `p` per `u` in every window (t - W, t], exactly, without a loop.

    Each (u, p) event covers the window ends [t, t + W); overlapping covers of one pair merge
    into one interval, and a sweep over interval starts (+1) and ends (-1) per user gives the
    number of distinct p at each interval start — which is where the maxima are. Returns one
    row per interval start: u, t, n.
    """
    if len(u) == 0:
        return pd.DataFrame({"u": np.array([], dtype=np.int64), "t": np.array([], dtype=np.int64),
                             "n": np.array([], dtype=np.int64)})
    order = np.lexsort((t, p, u))
    us, ps, ts = u[order], p[order], t[order]
    same = np.r_[False, (us[1:] == us[:-1]) & (ps[1:] == ps[:-1])]
    close = np.r_[False, (ts[1:] - ts[:-1]) < window_ns]
    new = ~(same & close)
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(ts) - 1]
    pu = np.r_[us[first], us[first]]
    pt = np.r_[ts[first], ts[last] + window_ns]
    delta = np.r_[np.ones(len(first), np.int64), -np.ones(len(first), np.int64)]
    o = np.lexsort((delta, pt, pu))             # ends (-1) before starts at the same instant
    n = np.cumsum(delta[o])
    keep = delta[o] == 1
    return pd.DataFrame({"u": pu[o][keep], "t": pt[o][keep], "n": n[keep]})


def distinct_at_events(u: np.ndarray, p: np.ndarray, t: np.ndarray, window_ns: int) -> np.ndarray:
    """Distinct `p` of the same `u` in (t - W, t] at each event's own time (input order)."""
    n = len(u)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((t, p, u))
    us, ps, ts = u[order], p[order], t[order]
    same = np.r_[False, (us[1:] == us[:-1]) & (ps[1:] == ps[:-1])]
    close = np.r_[False, (ts[1:] - ts[:-1]) < window_ns]
    new = ~(same & close)
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(ts) - 1]
    k = len(first)
    pu = np.r_[us[first], us[first], u]
    pt = np.r_[ts[first], ts[last] + window_ns, t]
    kind = np.r_[np.ones(k, np.int64), np.zeros(k, np.int64), np.full(n, 2, np.int64)]
    delta = np.r_[np.ones(k, np.int64), -np.ones(k, np.int64), np.zeros(n, np.int64)]
    qpos = np.r_[np.full(2 * k, -1, np.int64), np.arange(n)]
    o = np.lexsort((kind, pt, pu))              # ends, then starts, then queries
    c = np.cumsum(delta[o])
    isq = kind[o] == 2
    out = np.zeros(n, dtype=np.int64)
    out[qpos[o][isq]] = c[isq]
    return out


def episodes(points: pd.DataFrame, window_ns: int) -> pd.DataFrame:
    """Chain flagged window ends of a user at most a window apart into one episode (windows
    that touch are one incident, not two):
    columns u, lo (exclusive), hi, peak, peak_t."""
    if points.empty:
        return pd.DataFrame(columns=["u", "lo", "hi", "peak", "peak_t"])
    pts = points.sort_values(["u", "t"], kind="stable")
    u = pts["u"].to_numpy()
    t = pts["t"].to_numpy()
    new = np.r_[True, (u[1:] != u[:-1]) | ((t[1:] - t[:-1]) > window_ns)]
    pts = pts.assign(ep=np.cumsum(new))
    i_peak = pts.groupby("ep")["n"].idxmax()
    agg = pts.groupby("ep").agg(u=("u", "first"), first=("t", "min"), hi=("t", "max"),
                                peak=("n", "max"))
    agg["peak_t"] = pts.loc[i_peak.to_numpy(), "t"].to_numpy()
    agg["lo"] = agg["first"] - window_ns
    return agg.reset_index(drop=True)[["u", "lo", "hi", "peak", "peak_t"]]


def assign_episodes(u: np.ndarray, t: np.ndarray, eps: pd.DataFrame) -> np.ndarray:
    """Episode number (row of `eps`) for each event (u, t), -1 when none: lo < t <= hi."""
    out = np.full(len(u), -1, dtype=np.int64)
    if eps.empty or len(u) == 0:
        return out
    left = pd.DataFrame({"u": u, "t": t, "pos": np.arange(len(u))}).sort_values("t", kind="stable")
    right = pd.DataFrame({"u": eps["u"].to_numpy(np.int64), "lo": eps["lo"].to_numpy(np.int64),
                          "hi": eps["hi"].to_numpy(np.int64), "ep": np.arange(len(eps))})
    right = right.sort_values("lo", kind="stable")
    m = pd.merge_asof(left, right, left_on="t", right_on="lo", by="u", direction="backward",
                      allow_exact_matches=False)
    ok = m["ep"].notna().to_numpy() & (m["t"].to_numpy() <= m["hi"].to_numpy(dtype="float64",
                                                                             na_value=-1))
    out[m["pos"].to_numpy()[ok]] = m["ep"].to_numpy()[ok].astype(np.int64)
    return out


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy's hash-based unique is pathologically slow on tens of
    millions of wide int64 keys, a sort is not."""
    if len(a) == 0:
        return a
    s = np.sort(a, kind="stable")
    return s[np.r_[True, s[1:] != s[:-1]]]


def codes_of(s: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and the distinct values as plain str (factorize the column as it is:
    converting 10 million arrow strings to Python str first costs seconds)."""
    codes, uniq = pd.factorize(s)
    return codes.astype(np.int64), pd.Index(np.asarray(pd.Index(uniq).astype(str), dtype=object))


def patient_days(ctx: Context, actions=COUNTED_ACTIONS) -> dict:
    """Distinct patients per user and site-local day over ctx.events (cached per action set):
    bulk.volume's measure and btg.unjustified's denominator. Integer codes, one sort."""
    key = ("patient_days", tuple(sorted(actions)))
    if key in ctx.memo:
        return ctx.memo[key]
    ev = patient_events(ctx, actions)
    ucodes, users = codes_of(ev["user_id"])
    pcodes, _ = codes_of(ev["patient_id"])
    day = day_codes(ev["ts"])
    d0 = int(day.min()) if len(day) else 0
    span = int(day.max()) - d0 + 1 if len(day) else 1
    npat = int(pcodes.max()) + 1 if len(pcodes) else 1
    ud = ucodes * span + (day - d0)
    cnt = np.bincount(sorted_unique(ud * npat + pcodes) // npat, minlength=len(users) * span)
    nz = np.flatnonzero(cnt)
    daily = pd.DataFrame({"user_id": users[nz // span], "day": nz % span + d0,
                          "value": cnt[nz].astype(float)})
    out = {"users": users, "day": day, "d0": d0, "span": span, "ud": ud, "daily": daily,
           "per_user": pd.Series(cnt.reshape(len(users), span).sum(axis=1), index=users)}
    ctx.memo[key] = out
    return out


def day_codes(ts: pd.Series) -> np.ndarray:
    return local_ns(ts) // DAY_NS


def _fmt_day(day_code: int) -> str:
    return str(pd.Timestamp(int(day_code) * DAY_NS).date())


def user_day_activity(ctx: Context, events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Distinct (user_id, day) pairs of activity in ctx.events (look-back and window): the
    days a baseline counts. Any event of the user counts (a day at work without the measured
    action is a zero day). Computed once per scan with integer codes (cached in ctx.memo);
    `events` is accepted for symmetry and ignored."""
    if "user_day_activity" in ctx.population:       # every partition's (engine.population)
        return ctx.population["user_day_activity"]
    if "user_day_activity" in ctx.memo:
        return ctx.memo["user_day_activity"]
    ev = ctx.events
    ok = ev["user_id"].notna().to_numpy()
    codes, uniq = pd.factorize(ev["user_id"][ok])
    if len(codes) == 0:
        out = pd.DataFrame({"user_id": pd.Series(dtype=str), "day": pd.Series(dtype=np.int64)})
    else:
        day = day_codes(ev["ts"][ok])
        d0 = int(day.min())
        span = int(day.max()) - d0 + 1
        key = sorted_unique(codes.astype(np.int64) * span + (day - d0))
        out = pd.DataFrame({"user_id": np.asarray(uniq.astype(str))[key // span],
                            "day": key % span + d0})
    ctx.memo["user_day_activity"] = out
    return out


def population_daily(ctx: Context, detector_id: str, daily: pd.DataFrame) -> pd.DataFrame:
    """The daily measure of every user a baseline compares with: this context's own when it
    holds every event, else the population's (each partition's daily rows, concatenated)."""
    return ctx.population.get(f"daily:{detector_id}", daily)


class Baselines:
    """Leave-one-out baselines over every day in ctx.events, look-back and window alike.

    A user-day is judged against the user's *other* active days (own baseline: a quantile of
    their daily measure, days without the measured action counting 0) and against the days of
    their peers, the user excluded (peer percentile). A nightly scan thus compares the night
    with the 28 days before it, and the first scan of a month of history compares each day
    with the other days of that month — the same thresholds either way.

    `daily`: user_id, day, value — the measure where non-zero; `active`: user_id, day.
    A value fires when it is >= floor, > own_mult × own and > peer_mult × peer: `required`
    is the smallest whole number meeting all three.
    """

    def __init__(self, daily: pd.DataFrame, active: pd.DataFrame, groups: pd.Series, *,
                 own_q: float, own_mult: float, peer_q: float, peer_mult: float, floor: float):
        full = active[["user_id", "day"]].merge(daily[["user_id", "day", "value"]],
                                                on=["user_id", "day"], how="outer")
        full["value"] = full["value"].astype("float64").fillna(0.0)
        full["user_id"] = full["user_id"].astype(str)
        self.users = full["user_id"].to_numpy()
        self.days = full["day"].to_numpy(dtype=np.int64)
        self.values = full["value"].to_numpy(dtype=np.float64)
        self.groups = groups
        self.group_of_row = groups.reindex(full["user_id"]).fillna("all").to_numpy()
        self._by_user = full.groupby("user_id", sort=False).indices
        self._by_group = pd.Series(self.group_of_row).groupby(self.group_of_row,
                                                              sort=False).indices
        self.own_q, self.own_mult, self.peer_q = own_q, own_mult, peer_q
        self.peer_mult, self.floor = peer_mult, float(floor)

    def group(self, user: str) -> str:
        g = self.groups.get(user)
        return "all" if g is None or pd.isna(g) else str(g)

    def peer(self, user: str) -> float:
        rows = self._by_group.get(self.group(user))
        if rows is None or not len(rows):
            return 0.0
        rows = rows[self.users[rows] != user]
        return float(np.quantile(self.values[rows], self.peer_q)) if len(rows) else 0.0

    def own(self, user: str, exclude_days=()) -> tuple[float, int]:
        rows = self._by_user.get(user)
        if rows is None or not len(rows):
            return 0.0, 0
        rows = rows[~np.isin(self.days[rows], np.asarray(list(exclude_days), dtype=np.int64))]
        if not len(rows):
            return 0.0, 0
        return float(np.quantile(self.values[rows], self.own_q)), int(len(rows))

    def thresholds(self, user: str, exclude_days=()) -> dict:
        own, own_days = self.own(user, exclude_days)
        peer = self.peer(user)
        t_own = float(np.floor(self.own_mult * own) + 1)
        t_peer = float(np.floor(self.peer_mult * peer) + 1)
        return {"group": self.group(user), "own": own, "own_days": own_days, "peer": peer,
                "t_floor": self.floor, "t_own": t_own, "t_peer": t_peer,
                "required": max(self.floor, t_own, t_peer)}


def _thresholds_evidence(row, unit: str) -> dict:
    """The thresholds compared, for the evidence; `unit` is a code (labels.UNIT)."""
    return {
        "floor": {"value": float(row["t_floor"]), "unit": unit},
        "own_baseline": {"value": round(float(row["own"]), 2), "days": int(row["own_days"]),
                         "required": float(row["t_own"])},
        "peer_percentile": {"group": str(row["group"]), "value": round(float(row["peer"]), 2),
                            "required": float(row["t_peer"])},
        "required": float(row["required"]),
        **({"explained_required": row["explained_required"]}
           if "explained_required" in row else {}),
    }


# both bulk-viewing sentences say when records were also printed or exported
_OUTPUTS = Clause("outputs", N_("; records were also printed or exported"))

PEER_PARAMS = (
    Param("peer_min_size", int, 5, "fewest active users for a role+department peer group; "
          "smaller groups fall back to the role", "users", 1, 1000),
)


# --------------------------------------------------------------------------- bulk.off_hours
@register
class BulkOffHours(Detector):
    id = "bulk.off_hours"
    partition_key = "user"
    shares = ("explain", "duty_mask")
    name_en = "Bulk viewing outside duty hours"
    name_zh = "非工作时间批量查阅"
    item = "9"
    severity = "medium"
    needs = ("access_log",)
    uses = ("shifts", "users", "care_relations")
    lookback_days = 28
    # the duty schedule's settings, now [schedule]
    moved = {p.name: f"schedule.{p.name}" for p in SCHEDULE.params}
    params = (
        Param("window_minutes", int, 60, "length of the sliding window (windows straddle "
              "midnight)", "minutes", 5, 1440),
        Param("min_patients", int, 10, "absolute floor: fewest distinct patients in one "
              "off-duty window", "patients", 2, 10000),
        Param("own_multiple", float, 3.0, "must exceed this multiple of the user's own usual "
              "off-duty distinct patients per window", "×", 1.0, 100.0),
        Param("own_quantile", float, 0.9, "quantile of the user's daily off-duty maxima taken "
              "as their usual level", "", 0.5, 1.0),
        Param("peer_quantile", float, 0.99, "percentile of the peer group's daily off-duty "
              "maxima that must be exceeded", "", 0.5, 1.0),
        Param("peer_multiple", float, 1.0, "multiple applied to the peer percentile", "×",
              1.0, 100.0),
        *PEER_PARAMS,
        Param("actions", list, list(COUNTED_ACTIONS), "actions counted as viewing a patient",
              choices=COUNTED_ACTIONS),
        Param("max_explained_share", float, 0.95, "without a roster, a burst whose patients are "
              "at least this share explained by care relations looks like unrostered work: "
              "its threshold is multiplied by explained_multiple", "", 0.0, 1.0),
        Param("explained_multiple", float, 2.0, "threshold multiplier for such explained "
              "bursts (1.0 treats them like any other)", "×", 1.0, 100.0),
    )
    description = ("Distinct patients whose records a user opened outside their own duty "
                   "(roster, inferred schedule or office hours) within a sliding window, above "
                   "the largest of a floor, a multiple of the user's own off-duty baseline and "
                   "a percentile of their peers (role + department).")
    note = ("Check the duty basis in the evidence: with 'inferred' or 'office_hours' the user may "
            "have worked an unrostered shift. Look at the patients: their own ward's patients "
            "suggest work; patients across the hospital, prints or exports suggest harvesting. "
            "Item 8 when the burst includes prints/exports or is at least twice the threshold; "
            "item 9 otherwise.")
    false_positives = (
        "Extra shifts missing from the roster (or, without a roster, a first night shift).",
        "Covering another ward at night during an emergency or mass-casualty event.",
        "Batch documentation or coding done from home under remote access.",
    )
    description_zh = ("用户在本人非当班时间（依据排班表、推断的惯常工作时段或办公时间）于滑动时间"
                      "窗内查阅的不同患者数，超过固定下限、本人非当班基线的倍数和同类人员（岗位+"
                      "科室）百分位三者中的最大值。")
    note_zh = ("先看证据中的当班判断依据：若依据的是推断的惯常时段或办公时间，该用户可能上了未排"
               "班的班次。再看患者：都是本病区患者提示在工作；遍布全院、伴有打印或导出提示在搜集"
               "信息。集中查阅中有打印导出或达到阈值两倍的，归入第（八）项，否则归入第（九）项。")
    false_positives_zh = (
        "排班表中缺失的加班（或无排班表时的首个夜班）。",
        "突发事件或成批伤员时夜间支援其他病区。",
        "通过远程访问在家中批量书写病历或编码。",
    )
    measure_zh = "核实非工作时间批量查阅的事由，规范排班与远程访问管理，必要时限制非当班账号的批量查阅权限。"
    measure_en = ("Verify the purpose of the off-duty bulk viewing, keep rosters complete, and "
                  "restrict bulk access from off-duty accounts.")
    messages = {
        "bulk.off_hours": Message(
            N_("%(user)s (%(role)s) opened %(peak)s distinct patients within %(minutes)s min "
               "while off duty (%(basis)s), %(patients)s in the whole burst; the threshold was "
               "%(required)s"), clauses=(_OUTPUTS,)),
        "bulk.off_hours.own_patients": Message(
            N_("%(user)s (%(role)s) opened %(peak)s distinct patients within %(minutes)s min "
               "while off duty (%(basis)s), %(patients)s in the whole burst; most were the "
               "user's own patients, so the threshold was raised to %(required)s"),
            clauses=(_OUTPUTS,)),
    }

    def off_duty_windows(self, ctx: Context):
        """(off-duty patient events, user codes, users, times, window points, daily maxima):
        the daily maxima are what a baseline compares (engine.population collects them from
        every partition)."""
        p = self.p
        ev = patient_events(ctx, p.actions)
        on, basis = duty_mask(ctx)
        on = on.reindex(ev.index).fillna(True).to_numpy(dtype=bool)
        off = ev[~on]
        W = int(p.window_minutes) * MINUTE_NS
        ucodes, users = codes_of(off["user_id"])
        pcodes, _ = codes_of(off["patient_id"])
        t = utc_ns(off["ts"])
        pts = sliding_distinct(ucodes.astype(np.int64), pcodes.astype(np.int64), t, W)
        pts["user_id"] = users[pts["u"].to_numpy()]
        pts["day"] = (pts["t"].to_numpy() + _tz_offset_ns(ctx, pts["t"].to_numpy())) // DAY_NS
        daily = pts.groupby(["user_id", "day"])["n"].max().rename("value").reset_index()
        return off, basis, ucodes, users, t, pts, daily

    def population_part(self, ctx: Context) -> dict:
        """Each user-day's largest off-duty window: the peers' baselines."""
        return {f"daily:{self.id}": self.off_duty_windows(ctx)[-1]}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        ev = patient_events(ctx, p.actions)
        if ev.empty or not in_window(ctx, ev).any():
            return empty_findings()
        off, basis, ucodes, users, t, pts, daily = self.off_duty_windows(ctx)
        if off.empty or not in_window(ctx, off).any():
            return empty_findings()
        W = int(p.window_minutes) * MINUTE_NS
        cand = pts[pts["n"].to_numpy() >= p.min_patients]          # the floor first
        if cand.empty:
            return empty_findings()
        eps = episodes(cand[["u", "t", "n"]], W)
        ep_of = assign_episodes(ucodes.astype(np.int64), t, eps)
        sel = ep_of >= 0
        if not sel.any():
            return empty_findings()
        all_users = user_day_activity(ctx)["user_id"].unique()
        groups = peer_groups(ctx, all_users, p.peer_min_size)
        base = Baselines(population_daily(ctx, self.id, daily), user_day_activity(ctx),
                         groups, own_q=p.own_quantile, own_mult=p.own_multiple,
                         peer_q=p.peer_quantile, peer_mult=p.peer_multiple,
                         floor=p.min_patients)
        cols = ["event_id", "user_id", "patient_id", "ts", "action"]
        part = off.loc[sel, cols].copy()
        part["ep"] = ep_of[sel]
        part["in_win"] = in_window(ctx, off)[sel]
        part["basis"] = basis.reindex(part.index).astype("string").fillna("office_hours")
        part["day"] = day_codes(part["ts"])
        expl, _ = explained_flags(ctx, part)
        part["explained"] = expl.to_numpy()
        sched = get_schedule(ctx)
        info = user_info(ctx, users)
        rows = []
        for ep, g in part.groupby("ep", sort=True):
            if not g["in_win"].any():
                continue
            e = eps.iloc[int(ep)]
            uid = str(users[int(e["u"])])
            peak = int(e["peak"])
            row = base.thresholds(uid, exclude_days=set(g["day"].tolist()))
            if peak < row["required"]:
                continue
            n_pat = int(g["patient_id"].nunique())
            pat_expl = g.groupby("patient_id")["explained"].any()
            share = float(pat_expl.mean()) if len(pat_expl) else 0.0
            bases = sorted(set(g["basis"].astype(str)))
            duty_basis = "roster" if "roster" in bases else bases[0]
            if duty_basis != "roster" and share >= p.max_explained_share:
                # the user's own patients at an hour no roster contradicts: maybe unrostered
                # work, so only a burst well above the threshold counts
                row["explained_required"] = float(np.ceil(row["required"] *
                                                          p.explained_multiple))
                if peak < row["explained_required"]:
                    continue
            outputs = bool(g["action"].isin(list(OUTPUT_ACTIONS)).any())
            big = peak >= 2 * row["required"]
            item = "8" if (outputs or big) else "9"
            sev = "high" if (outputs or big) else "medium"
            if duty_basis != "roster" and share >= 0.5 and not (outputs or big):
                sev = "low"
            duty = {"basis": duty_basis}
            if duty_basis == "inferred":
                duty["inferred"] = sched.explain(uid)
            elif duty_basis == "office_hours":
                duty.update(office_hours=list(ctx.office_hours), workdays=list(ctx.workdays))
            rows.append({
                "key": f"{uid}|{g['ts'].min().isoformat()}",
                "user_id": uid, "patient_id": "",
                "event_ids": g["event_id"].astype(str).tolist(),
                "start": g["ts"].min(), "end": g["ts"].max(), "severity": sev,
                "score": round(peak / max(row["required"], 1.0), 3),
                "rectification_item": item,
                "message_id": self.id + (".own_patients" if "explained_required" in row
                                         else ""),
                "message_args": {"user": uid, "role": info.loc[uid, "role"] or None,
                                 "peak": peak, "minutes": int(p.window_minutes),
                                 "basis": duty_basis, "patients": n_pat,
                                 "required": int(row.get("explained_required",
                                                         row["required"])),
                                 "outputs": outputs},
                "evidence": {
                    "window_minutes": int(p.window_minutes),
                    "peak_distinct_patients": peak,
                    "peak_window_end": pd.Timestamp(int(e["peak_t"]), tz="UTC")
                    .tz_convert(ctx.tz).isoformat(),
                    "distinct_patients": n_pat,
                    "events": int(len(g)),
                    "duty": duty,
                    "thresholds": _thresholds_evidence(row, "patients"),
                    "explained_patient_share": round(share, 3),
                    "outputs": outputs,
                    "department": str(info.loc[uid, "department"]),
                },
            })
        return self.findings(rows) if rows else empty_findings()


def _tz_offset_ns(ctx: Context, t_utc: np.ndarray) -> np.ndarray:
    """UTC → local wall-clock offset for each instant (handles DST zones too)."""
    if len(t_utc) == 0:
        return np.zeros(0, dtype=np.int64)
    s = pd.to_datetime(pd.Series(t_utc), utc=True).dt.tz_convert(ctx.tz)
    return local_ns(s) - t_utc


# --------------------------------------------------------------------------- bulk.volume
@register
class BulkVolume(Detector):
    id = "bulk.volume"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Bulk viewing"
    name_zh = "批量查阅"
    item = "8"
    severity = "medium"
    needs = ("access_log",)
    uses = ("users", "care_relations")
    lookback_days = 28
    params = (
        Param("min_patients", int, 30, "absolute floor: fewest distinct patients in one day",
              "patients", 2, 100000),
        Param("own_multiple", float, 2.0, "must exceed this multiple of the user's own usual "
              "daily distinct patients", "×", 1.0, 100.0),
        Param("own_quantile", float, 0.95, "quantile of the user's own look-back days taken as "
              "their usual level (days active without counted accesses count as 0)", "",
              0.5, 1.0),
        Param("peer_quantile", float, 0.99, "percentile of the peer group's user-days that must "
              "be exceeded", "", 0.5, 1.0),
        Param("peer_multiple", float, 1.5, "multiple applied to the peer percentile", "×",
              1.0, 100.0),
        *PEER_PARAMS,
        Param("actions", list, list(COUNTED_ACTIONS), "actions counted as viewing a patient",
              choices=COUNTED_ACTIONS),
        Param("max_explained_share", float, 0.95, "a day whose patients are at least this share "
              "explained by care relations must exceed explained_multiple × the threshold", "",
              0.0, 1.0),
        Param("explained_multiple", float, 2.0, "threshold multiplier for such explained days "
              "(1.0 treats them like any other)", "×", 1.0, 100.0),
    )
    description = ("Distinct patients per user per day at any hour, above the largest of a "
                   "floor, a multiple of the user's own daily baseline and a percentile of "
                   "their peers (role + department; records and QC staff form their own group).")
    note = ("Compare with the user's usual day and their peers' in the evidence. Look at whether "
            "the patients belong to the user's department or are spread over the hospital, and "
            "at prints or exports on the same day (copy.bulk_export).")
    false_positives = (
        "On-call or weekend cover of a whole department by one physician.",
        "A new job (role change) whose peers are not yet in the staff master.",
        "Audits, coding or quality reviews by staff whose role is recorded as clinical.",
    )
    description_zh = ("每个用户每天（不分时段）查阅的不同患者数，超过固定下限、本人日常基线的倍数"
                      "和同类人员（岗位+科室；病案和质控人员单独成组）百分位三者中的最大值。")
    note_zh = ("对照证据中本人日常水平和同类人员水平。看患者是否属于本科室还是分散在全院，以及当"
               "天是否有打印或导出（批量打印/导出/复制）。")
    false_positives_zh = (
        "一名医师值班或周末负责整个科室。",
        "岗位调整后，同类人员尚未录入人员主数据。",
        "岗位登记为临床的人员进行病历抽查、编码或质控。",
    )
    measure_zh = "核查批量查阅的业务需要，按岗位最小授权，对超常规查阅量设置预警与审批。"
    measure_en = ("Check the business need for the bulk viewing, grant access by post on least "
                  "privilege, and require approval beyond the usual volume.")
    messages = {
        "bulk.volume": Message(
            N_("%(user)s (%(role)s) opened %(patients)s distinct patients on %(day)s; the "
               "threshold was %(required)s (own usual %(own)s, peers %(peer)s)"),
            clauses=(_OUTPUTS,)),
        "bulk.volume.own_patients": Message(
            N_("%(user)s (%(role)s) opened %(patients)s distinct patients on %(day)s; most were "
               "the user's own patients, so the threshold was raised to %(required)s"),
            clauses=(_OUTPUTS,)),
    }

    def population_part(self, ctx: Context) -> dict:
        """Each user-day's distinct patients: the peers' baselines."""
        return {f"daily:{self.id}": patient_days(ctx, self.p.actions)["daily"]}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        ev = patient_events(ctx, p.actions)
        if ev.empty or not in_window(ctx, ev).any():
            return empty_findings()
        pd_ = patient_days(ctx, p.actions)
        users, day, d0, span, ud, daily = (pd_["users"], pd_["day"], pd_["d0"], pd_["span"],
                                           pd_["ud"], pd_["daily"])
        win = in_window(ctx, ev)
        win_days = np.flatnonzero(np.bincount(day[win] - d0, minlength=span)) + d0
        cand = daily[daily["day"].isin(win_days) & (daily["value"] >= p.min_patients)]
        if cand.empty:
            return empty_findings()
        groups = peer_groups(ctx, user_day_activity(ctx)["user_id"].unique(), p.peer_min_size)
        base = Baselines(population_daily(ctx, self.id, daily), user_day_activity(ctx), groups,
                         own_q=p.own_quantile,
                         own_mult=p.own_multiple, peer_q=p.peer_quantile,
                         peer_mult=p.peer_multiple, floor=p.min_patients)
        keep, ths = [], {}
        for uid, d, v in cand[["user_id", "day", "value"]].itertuples(index=False):
            th = base.thresholds(str(uid), exclude_days=(int(d),))
            if v >= th["required"]:
                keep.append((str(uid), int(d)))
                ths[(str(uid), int(d))] = th
        if not keep:
            return empty_findings()
        kept = np.array([users.get_loc(u) * span + (d - d0) for u, d in keep], dtype=np.int64)
        sel = np.isin(ud, kept)
        part = ev.loc[sel, ["event_id", "user_id", "patient_id", "ts", "action"]].copy()
        part["day"] = day[sel]
        part["in_win"] = win[sel]
        expl, _ = explained_flags(ctx, part)
        part["explained"] = expl.to_numpy()
        info = user_info(ctx, users)
        rows = []
        for (uid, d), g in part.groupby(["user_id", "day"], sort=True):
            if not g["in_win"].any():
                continue
            row = ths[(str(uid), int(d))]
            pat_expl = g.groupby("patient_id")["explained"].any()
            n_pat = len(pat_expl)
            share = float(pat_expl.mean())
            if share >= p.max_explained_share:
                row["explained_required"] = float(np.ceil(row["required"] *
                                                          p.explained_multiple))
                if n_pat < row["explained_required"]:
                    continue
            ratio = n_pat / max(row["required"], 1.0)
            sev = "high" if ratio >= 2 else "medium"
            if share >= 0.5 and ratio < 2:
                sev = "low"
            date = _fmt_day(d)
            rows.append({
                "key": f"{uid}|{date}", "user_id": uid, "patient_id": "",
                "event_ids": g["event_id"].astype(str).tolist(),
                "start": g["ts"].min(), "end": g["ts"].max(), "severity": sev,
                "score": round(ratio, 3),
                "message_id": self.id + (".own_patients" if "explained_required" in row
                                         else ""),
                "message_args": {"user": uid, "role": info.loc[uid, "role"] or None,
                                 "patients": n_pat, "day": date,
                                 "required": int(row.get("explained_required",
                                                         row["required"])),
                                 "own": int(round(row["own"])),
                                 "peer": int(round(row["peer"])),
                                 "outputs": bool(g["action"].isin(
                                     list(OUTPUT_ACTIONS)).any())},
                "evidence": {
                    "date": date, "distinct_patients": n_pat, "events": int(len(g)),
                    "thresholds": _thresholds_evidence(row, "patients_per_day"),
                    "explained_patient_share": round(share, 3),
                    "outputs": bool(g["action"].isin(list(OUTPUT_ACTIONS)).any()),
                    "department": str(info.loc[uid, "department"]),
                },
            })
        return self.findings(rows) if rows else empty_findings()
