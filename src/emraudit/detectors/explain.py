"""Why was this record opened? The explanation engine shared by the care and snooping detectors.

Every patient access is tested against the legitimate reasons a hospital has for it, in a fixed
order, and the first that holds is recorded (issue 4):

1. own_relation     the user's own care relation (admission, care team, transfer, outpatient,
                    document …) active then, widened by grace_before/after_days;
2. unit_relation    the user's department or ward has a relation to the patient then (nurses
                    belong to wards, doctors to departments: both are matched);
3. duty_ward        the user is rostered on duty (shifts kind duty) on a ward where the patient
                    lies then — float and cover staff;
4. request_relation the user holds a consult, order, appointment or access request for the
                    patient (their own grace: kind_grace_before/after_days);
5. prior_treatment  the user treated the patient before: an own relation that ended, or an
                    access explained by 1-4/6, within lookback_days;
6. documentation    the user documented on the patient (create/update/sign) within
                    documentation_window_hours or in the same encounter — charting is strong
                    evidence of care, when it is the documentation real care produces: the
                    writer had another reason to be on the record (1-4), signed it, charted
                    in a care_record_modules module (flowsheet, MAR, orders …) or wrote
                    documentation_min_writes times (in documentation_modules, when set). One
                    note after a look-up explains neither: both stay unexplained evidence;
7. break_glass      the user broke the glass on this patient shortly before (btg.unjustified
                    judges those);
8. record_role      the user's role reads records for a living (medical records, quality
                    control, insurance …) and it is within that role's office hours.

Everything is vectorized. Interval tests use one sorted join per key (`merge_asof` on the
interval starts with a running maximum of the ends), so a patient with many relations and
many accesses never produces a cross product. Ids are factorized to integers first.
Parameters are the engine's own, declared here as the `[explain]` section of the detector
profile (EXPLAIN) and read through `ctx.section("explain")`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dataclasses import dataclass

from emraudit.detectors.base import (Context, Param, Section, declare_section, shared_work,
                                     site_keys)
from emraudit.fastops import cache_order, dense_unique, positions_in, stable_order
from emraudit.model import PATIENT_ACTIONS, ROLES

EXPLANATIONS = ("own_relation", "unit_relation", "duty_ward", "request_relation",
                "prior_treatment", "documentation", "worked_on_ward", "break_glass",
                "record_role")
REQUEST_KINDS = ("consult", "order", "appointment", "access_request")
DOC_ACTIONS = ("create", "update", "sign")
# Modules of routine charting (a flowsheet entry, a dose given, an order): structured work
# that only someone caring for the patient does, unlike a free-text note that anyone can write
# to cover a look-up. English names as in MIMIC-style feeds, Chinese as in HIS/EMR menus.
CARE_RECORD_MODULES = ("flowsheet", "vital signs", "intake/output", "procedures", "medication",
                       "MAR", "orders", "体温单", "生命体征", "出入量", "护理记录单", "给药记录",
                       "执行单", "医嘱")

_US = 1_000_000            # microseconds per second
_FAR = 2 ** 52             # "never ends" in microseconds (exact in float64)
_DAY_US = 86_400 * _US
_HOUR_US = 3_600 * _US


@shared_work("explain")
def explain_accesses(ctx: Context) -> pd.DataFrame:
    """One row per patient access in ctx.events (patient_id set and a patient action).

    Same order and index as ctx.events restricted to those rows. Columns: event_id, user_id,
    patient_id, ts, in_window, explained (bool), explanation (first that held, '' if none),
    detail (human-readable), plus one boolean column `x_<name>` per explanation tried.
    Cached in ctx.memo under "explain".
    """
    return ctx.cached("explain", lambda: _explain(ctx))


@dataclass(frozen=True)
class RoleHoursParam(Param):
    """A table role -> [start_hour, end_hour), e.g. {medical_records = [8, 17.5]}."""

    def check(self, value):
        value = super().check(value)
        for role, hours in value.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
            if (not isinstance(hours, list) or len(hours) != 2
                    or not all(isinstance(h, (int, float)) and not isinstance(h, bool)
                               for h in hours)
                    or not 0 <= hours[0] < hours[1] <= 24):
                raise ValueError(f"{role}: expected [start_hour, end_hour] with "
                                 f"0 <= start < end <= 24, got {hours!r}")
        return value


EXPLAIN = declare_section(Section(
    "explain", "The explanation engine / 诊疗关系解释引擎",
    "Why was a record opened? Every patient access is tested against the legitimate reasons "
    "for it (care relations, the unit's, duty on the ward, requests, prior treatment, "
    "documentation, work on the ward, break-the-glass, record roles); care.no_relationship "
    "and the snoop.* detectors judge what no reason explains. These settings hold for all of "
    "them.",
    (
        Param("grace_before_days", float, 3.0, "care may start before the relation is "
              "recorded (pre-admission work-up, registration entered late)", "days", 0, 365),
        Param("grace_after_days", float, 30.0, "follow-up after discharge or the end of a "
              "relation (results, discharge summary, outpatient review)", "days", 0, 3650),
        Param("kind_grace_before_days", float, 1.0, "grace before a consult, order, "
              "appointment or access request starts", "days", 0, 365),
        Param("kind_grace_after_days", float, 14.0, "grace after a consult, order, "
              "appointment or access request ends (results and reports come later)", "days",
              0, 3650),
        Param("unit_match_user_rows", bool, True, "a department/ward also counts as related "
              "through relations that name one of its members (not only rows with empty "
              "user_id): covering colleagues of the same unit are explained"),
        Param("duty_grace_minutes", float, 60.0, "slack around a rostered duty shift "
              "(handover, late charting) for the float-cover explanation", "minutes", 0, 720),
        Param("lookback_days", float, 30.0, "prior treatment: an own relation that ended, or "
              "an explained access, within this many days before explains the access", "days",
              0, 365),
        Param("documentation_explains", bool, True, "the user documented on the patient "
              "(create/update/sign) nearby or in the same encounter; charting is strong "
              "evidence of care — but only documentation that real care produces counts (see "
              "the next two parameters): a note written to cover a look-up explains nothing "
              "and joins the evidence"),
        Param("documentation_window_hours", float, 24.0, "how close (before or after) the "
              "documentation must be", "hours", 0, 720),
        Param("documentation_min_writes", int, 2, "documentation explains only when the user "
              "has some other reason to be on the record (a relation, duty on the ward, a "
              "request), signed it, or wrote at least this many times on the patient within "
              "the window: one stray note after a look-up does not", "writes", 1, 1000),
        Param("care_record_modules", list, list(CARE_RECORD_MODULES), "writes in these "
              "modules are the routine charting real care produces (vital signs, flowsheets, "
              "intake and output, medication given, orders): one such write is reason enough "
              "to be on the record, like a signature; a free-text note is not; empty: none"),
        Param("documentation_modules", list, [], "only writes in these modules (parts of the "
              "record, e.g. 病程记录, 护理记录, 医嘱) count as documentation; empty: any module"),
        Param("ward_work_hours", float, 12.0, "worked on the patient's ward: the user has "
              "explained accesses to other patients of the ward the patient lies on this close "
              "in time (float staff, rotating residents, no roster); 0 turns it off", "hours",
              0, 72),
        Param("btg_window_hours", float, 12.0, "a break-the-glass by the user on the patient "
              "this long before explains the access (btg.unjustified judges it instead)",
              "hours", 0, 168),
        Param("record_roles", list, ["medical_records", "quality_control", "insurance",
                                     "admin"],
              "roles whose job is to read records (病案室, 质控科, 医保办, 医务处 = admin): "
              "explained within their office hours", choices=ROLES),
        RoleHoursParam("record_role_hours", dict, {}, "office hours per record role as "
                       "[start_hour, end_hour); roles not listed use [site] office_hours",
                       "hours"),
        Param("record_roles_workdays_only", bool, True, "record roles are explained only on "
              "[site] workdays"),
        Param("lookup_minutes", float, 30.0, "a look-up (query) of the same patient by the "
              "same user at most this long before opening the record raises the severity of "
              "the finding (care.no_relationship and snoop.*); 0 turns it off", "minutes",
              0, 1440),
    )))

# the keys of care.no_relationship's table that were the engine's before [explain] existed
MOVED_FROM_CARE = {**{p.name: f"explain.{p.name}" for p in EXPLAIN.params
                      if p.name not in ("lookup_minutes", "care_record_modules")},
                   "query_window_minutes": "explain.lookup_minutes"}


def explanation_params(ctx: Context) -> dict:
    """The [explain] parameters in force."""
    return ctx.section("explain")


def looked_up_before(opens: pd.DataFrame, queries: pd.DataFrame, minutes: float,
                     by: list[str]) -> pd.DataFrame:
    """The look-up before opening: for each row of `opens` (columns `by` and `ts`), the
    latest row of `queries` (the same columns and `event_id`) with the same `by` values at
    most `minutes` before it (at the same instant included). Returns `lookup` (its time, NaT
    when none) and `lookup_event` (its event id), on the index of `opens`. One sorted join,
    no loop; `minutes` <= 0 finds none."""
    out = pd.DataFrame({"lookup": pd.Series(pd.NaT, index=opens.index, dtype=opens["ts"].dtype),
                        "lookup_event": pd.Series(pd.NA, index=opens.index, dtype="string")})
    if not len(opens) or not len(queries) or not minutes > 0:
        return out
    left = opens[[*by, "ts"]].reset_index().sort_values("ts")
    right = queries[[*by, "ts", "event_id"]].rename(
        columns={"ts": "lookup", "event_id": "lookup_event"}).sort_values("lookup")
    right["lookup_ts"] = right["lookup"]
    m = pd.merge_asof(left, right, left_on="ts", right_on="lookup_ts", by=by,
                      direction="backward", tolerance=pd.Timedelta(minutes=minutes))
    where = m[left.columns[0]].to_numpy()
    out.loc[where, "lookup"] = m["lookup"].to_numpy()
    out.loc[where, "lookup_event"] = m["lookup_event"].to_numpy()
    return out


# --- helpers ---------------------------------------------------------------------------------

def _us(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC); NaT becomes _FAR."""
    s = pd.Series(s)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = s.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(arr)
    out = arr.astype("int64") // 1000
    out[nat] = _FAR
    return out


def complete(df: pd.DataFrame | None, table: str, tz: str) -> pd.DataFrame | None:
    """The frame with every canonical column of `table` (optional ones absent from the
    source are added empty with their canonical dtype)."""
    if df is None:
        return None
    from emraudit.model import empty_table
    empty = empty_table(table, tz)
    missing = [c for c in empty.columns if c not in df.columns]
    if not missing:
        return df
    df = df.copy()
    for c in missing:
        df[c] = pd.Series(pd.NA if empty[c].dtype == "string" else None, index=df.index,
                          dtype=empty[c].dtype) if empty[c].dtype != bool else False
    return df


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Integer code of each value in `index`, -1 when missing or unknown."""
    return positions_in(values, index)


def _packing(t: np.ndarray, nkeys: int, points: np.ndarray
             ) -> tuple[int, int, int, np.ndarray | None]:
    """(base, span, tbits, ranks): key codes in the high bits, times below them. Times are
    µs offsets from `base` when the queries' span fits in 62 bits with `nkeys` keys;
    otherwise (billions of keys, or years) they are ranks among the distinct times of the
    `points` searched, which keep every comparison of a point with a query exact. (A coarser
    unit would not: a point later in the same millisecond would hide an earlier one.)"""
    lo, hi = (int(t.min()), int(t.max())) if len(t) else (0, 0)
    kbits = max(int(nkeys).bit_length(), 1)
    span = hi - lo + 4
    if span.bit_length() + kbits <= 62:
        return lo, span, span.bit_length(), None
    ranks = np.unique(points)
    span = 2 * len(ranks) + 4
    if span.bit_length() + kbits > 62:                     # pragma: no cover - > 2**30 keys
        raise ValueError("too many keys for a packed sort")
    return 0, span, span.bit_length(), ranks


def _pack(code: np.ndarray, t: np.ndarray,
          packing: tuple[int, int, int, np.ndarray | None]) -> np.ndarray:
    """Key code and time in one sortable int64. In µs, point times outside the queries'
    span are clipped to just beyond it; as ranks, a time equal to the i-th distinct point
    time packs as 2i + 2 and one between the (i-1)-th and the i-th as 2i + 1. Either way
    every comparison with a query time stays intact."""
    base, span, tbits, ranks = packing
    if ranks is None:
        off = np.clip(t - base + 2, 0, span - 1)
    else:
        i = np.searchsorted(ranks, t, side="left")
        at_point = ranks[np.minimum(i, len(ranks) - 1)] == t
        off = 2 * i + 1 + at_point
    return (code.astype(np.int64) << tbits) | off


def _queries(akey: np.ndarray, amask: np.ndarray | None, keys: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the accesses to test and their code in the sorted unique `keys`: only
    accesses whose key has a point at all (hash look-up, no sort of the accesses)."""
    sel = akey >= 0 if amask is None else (amask & (akey >= 0))
    pos = np.flatnonzero(sel)
    if not len(pos) or not len(keys):
        return pos[:0], pos[:0]
    code = np.asarray(pd.Index(keys).get_indexer(akey[pos]), dtype=np.int64)
    ok = code >= 0
    return pos[ok], code[ok]


def _search(pp: np.ndarray, qp: np.ndarray, side: str) -> np.ndarray:
    """np.searchsorted of many queries: random binary searches into a large array miss the
    cache, so the queries are put in order first when the array is large."""
    if len(pp) < 500_000 or len(qp) < 100_000:
        return np.searchsorted(pp, qp, side=side)
    order = cache_order(qp)
    out = np.empty(len(qp), dtype=np.int64)
    out[order] = np.searchsorted(pp, qp[order], side=side)
    return out


def interval_hit(akey: np.ndarray, at: np.ndarray, rkey: np.ndarray, rlo: np.ndarray,
                 rhi: np.ndarray, rid: np.ndarray, amask: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each access (key, time), restricted to `amask`: does an interval [lo, hi] of the
    same key cover the time?

    Returns (hit, which); `which` is the id of the interval with the latest end among those
    of the key started by then (-1 when none). The intervals (few) are sorted by packed
    (key, lo) with a running max of hi per key; each access is one binary search into them.
    The accesses are never sorted and never joined to the intervals: O(n log m).
    """
    n = len(akey)
    hit = np.zeros(n, dtype=bool)
    which = np.full(n, -1, dtype=np.int64)
    r = rkey >= 0
    if not r.any():
        return hit, which
    keys = np.unique(rkey[r])
    pos, qc = _queries(akey, amask, keys)
    if not len(pos):
        return hit, which
    t = at[pos]
    packing = _packing(t, len(keys), rlo[r])
    pcode = np.searchsorted(keys, rkey[r])
    pp = _pack(pcode, rlo[r], packing)
    # stable: relations of one key starting together stay in row order, so the one cited
    # is the same whichever other users' accesses are searched with them (partitions)
    order = stable_order(pp)
    pp = pp[order]
    hi_s, rid_s = rhi[r][order], rid[r][order]
    k = pcode[order]
    cm = pd.Series(hi_s).groupby(k, sort=False).cummax().to_numpy()
    holder = pd.Series(np.where(hi_s == cm, np.arange(len(cm)), -1))
    holder = holder.where(holder >= 0).groupby(k, sort=False).ffill()
    holder = holder.fillna(-1).to_numpy().astype(np.int64)
    j = _search(pp, _pack(qc, t, packing), "right") - 1
    ok = j >= 0
    jj = np.where(ok, j, 0)
    ok &= k[jj] == qc                         # same key: then its start is <= t (exact pack)
    hit[pos] = ok & (cm[jj] >= t)
    h = holder[jj]
    which[pos] = np.where(ok & (h >= 0), rid_s[np.clip(h, 0, None)], -1)
    return hit, which


def nearest_within(akey: np.ndarray, at: np.ndarray, pmask: np.ndarray, before_us: int,
                   after_us: int, *, strict_before: bool = False,
                   amask: np.ndarray | None = None) -> np.ndarray:
    """Is there an access where `pmask` holds, same key, within [t - before, t + after] of
    each access (restricted to `amask`)?

    With strict_before a point at exactly t does not count on the "before" side (prior
    treatment: an access must not explain itself). Points are first limited to the keys of
    the accesses tested, so only that subset is ever sorted.
    """
    n = len(akey)
    hit = np.zeros(n, dtype=bool)
    sel = akey >= 0 if amask is None else (amask & (akey >= 0))
    if not sel.any() or not pmask.any():
        return hit
    pos = np.flatnonzero(sel)
    qc, qkeys = pd.factorize(akey[pos])
    qc = qc.astype(np.int64)
    ppos = np.flatnonzero(pmask & (akey >= 0))
    pc = np.asarray(pd.Index(qkeys).get_indexer(akey[ppos]), dtype=np.int64)
    keep = pc >= 0
    ppos, pc = ppos[keep], pc[keep]
    if not len(ppos):
        return hit
    t = at[pos]
    packing = _packing(t, len(qkeys), at[ppos])
    pp = _pack(pc, at[ppos], packing)
    order = np.argsort(pp)
    pp, bt, bk = pp[order], at[ppos][order], pc[order]
    qp = _pack(qc, t, packing)
    j = _search(pp, qp, "left" if strict_before else "right") - 1
    ok = j >= 0
    jj = np.where(ok, j, 0)
    ok &= bk[jj] == qc
    d = t - bt[jj]
    res = ok & (d <= before_us) & ((d > 0) if strict_before else (d >= 0))
    if after_us > 0:
        j = _search(pp, qp, "left")
        ok = j < len(pp)
        jj = np.where(ok, j, 0)
        ok &= bk[jj] == qc
        d = bt[jj] - t
        res |= ok & (d >= 0) & (d <= after_us)
    hit[pos] = res
    return hit


def _writes_within(akey: np.ndarray, at: np.ndarray, pmask: np.ndarray, w_us: int
                   ) -> np.ndarray:
    """For each point where `pmask` holds: how many such points of the same key lie within
    [t - w, t + w] (itself included); 0 elsewhere. One sort of the points, two searches."""
    out = np.zeros(len(akey), dtype=np.int64)
    pos = np.flatnonzero(pmask & (akey >= 0))
    if not len(pos):
        return out
    code, keys = pd.factorize(akey[pos])
    t = at[pos]
    packing = _packing(t, len(keys), t)
    pp = _pack(code.astype(np.int64), t, packing)
    sp = np.sort(pp)
    lo = _pack(code.astype(np.int64), t - w_us, packing)
    hi = _pack(code.astype(np.int64), t + w_us, packing)
    out[pos] = np.searchsorted(sp, hi, side="right") - np.searchsorted(sp, lo, side="left")
    return out


def _in_modules(acc: pd.DataFrame, modules: list[str]) -> np.ndarray:
    """Accesses in one of `modules` (every access when the list is empty)."""
    if not modules:
        return np.ones(len(acc), dtype=bool)
    if "module" not in acc.columns:
        return np.zeros(len(acc), dtype=bool)
    return acc["module"].isin(modules).to_numpy(dtype=bool)


def _fmt_day(us: np.ndarray, tz: str) -> np.ndarray:
    """Microsecond times as 'YYYY-MM-DD' in the site timezone ('' when open-ended)."""
    us = np.asarray(us, dtype=np.int64)
    far = us >= _FAR
    local = (pd.to_datetime(np.where(far, 0, us), unit="us", utc=True).tz_convert(tz)
             .tz_localize(None))
    days = np.asarray(local.to_numpy(dtype="datetime64[ns]"), dtype="datetime64[D]")
    out = np.datetime_as_string(days).astype(object)
    out[far] = ""
    return out


# --- the engine ------------------------------------------------------------------------------

def _explain(ctx: Context) -> pd.DataFrame:
    p = explanation_params(ctx)
    ev = ctx.events
    tz = ctx.tz
    mask = ev["patient_id"].notna() & ev["action"].isin(PATIENT_ACTIONS)
    cols = [c for c in ("event_id", "user_id", "patient_id", "ts", "in_window", "action",
                        "encounter_id", "module", "site_id") if c in ev.columns]
    acc = ev.loc[mask, cols]
    n = len(acc)
    out = pd.DataFrame({
        "event_id": acc["event_id"], "user_id": acc["user_id"],
        "patient_id": acc["patient_id"], "ts": acc["ts"],
        "in_window": (acc["in_window"].to_numpy(dtype=bool) if "in_window" in acc.columns
                      else np.ones(n, dtype=bool)),
    }, index=acc.index)
    flags = {name: np.zeros(n, dtype=bool) for name in EXPLANATIONS}
    if n == 0:
        return _assemble(out, flags, pd.Categorical([], categories=[""]))

    # integer codes ---------------------------------------------------------------------------
    key = site_keys(ctx, ctx.care_relations, ctx.users, ctx.shifts)
    ucode, uidx = pd.factorize(key(acc, "user_id"))
    pcode, pidx = pd.factorize(key(acc, "patient_id"))
    uidx, pidx = pd.Index(uidx, dtype="string"), pd.Index(pidx, dtype="string")
    ucode = ucode.astype(np.int64)
    pcode = pcode.astype(np.int64)
    npat = len(pidx) + 1
    akey_up = ucode * npat + pcode
    at = _us(acc["ts"])

    rel = ctx.care_relations
    if rel is None:
        from emraudit.model import empty_table
        rel = empty_table("care_relations", tz)
    rel = complete(rel, "care_relations", tz).reset_index(drop=True)
    r_u = _codes(key(rel, "user_id"), uidx)
    r_p = _codes(key(rel, "patient_id"), pidx)
    r_start = _us(rel["start"])
    r_end = _us(rel["end"])
    r_kind = rel["kind"].astype("string").fillna("").to_numpy(dtype=object)
    r_has_user = rel["user_id"].notna().to_numpy()
    r_id = np.arange(len(rel), dtype=np.int64)
    r_ok = (r_p >= 0)

    gb = int(p["grace_before_days"] * _DAY_US)
    ga = int(p["grace_after_days"] * _DAY_US)
    kgb = int(p["kind_grace_before_days"] * _DAY_US)
    kga = int(p["kind_grace_after_days"] * _DAY_US)
    hi_ga = np.where(r_end >= _FAR, _FAR, r_end + ga)
    hi_kga = np.where(r_end >= _FAR, _FAR, r_end + kga)
    is_req = np.isin(r_kind, REQUEST_KINDS)
    which_rel = np.full(n, -1, dtype=np.int64)
    # Explanations cascade: each is tested only on accesses no earlier one explained, so
    # the common case (an own or unit relation) costs one search and the rest run on few rows.
    done = np.zeros(n, dtype=bool)

    def record(name: str, hit: np.ndarray, which: np.ndarray | None = None) -> None:
        nonlocal which_rel, done
        hit = hit & ~done
        flags[name] |= hit
        if which is not None:
            which_rel = np.where(hit & (which_rel < 0), which, which_rel)
        done |= hit

    # 1. own relation --------------------------------------------------------------------------
    own = r_ok & r_has_user & (r_u >= 0) & ~is_req
    rkey = np.where(own, r_u * npat + r_p, -1)
    hit, which = interval_hit(akey_up, at, rkey, r_start - gb, hi_ga, r_id)
    record("own_relation", hit, which)

    # 2. the user's department or ward ---------------------------------------------------------
    users = complete(ctx.users, "users", tz)
    sh = complete(ctx.shifts, "shifts", tz)
    u_dept = np.full(len(uidx), -1, dtype=np.int64)
    u_ward = np.full(len(uidx), -1, dtype=np.int64)
    u_role = np.full(len(uidx), "", dtype=object)
    no_str = pd.Series([], dtype="string")
    units = pd.Index(pd.concat([
        rel["department"].astype("string"), rel["ward"].astype("string"),
        users["department"].astype("string") if users is not None else no_str,
        users["ward"].astype("string") if users is not None else no_str,
        sh["ward"].astype("string") if sh is not None else no_str,
    ], ignore_index=True).dropna().unique(), dtype="string")
    nunit = len(units) + 1
    if users is not None and len(users):
        uu = users.loc[~key(users, "user_id").duplicated(keep="last").to_numpy()]
        pos = _codes(key(uu, "user_id"), uidx)
        known = pos >= 0
        u_dept[pos[known]] = _codes(uu["department"], units)[known]
        u_ward[pos[known]] = _codes(uu["ward"], units)[known]
        u_role[pos[known]] = uu["role"].astype("string").fillna("").to_numpy(dtype=object)[known]
    r_dept = _codes(rel["department"], units)
    r_ward = _codes(rel["ward"], units)
    unit_rows = r_ok & (~r_has_user | bool(p["unit_match_user_rows"]))
    acc_dept = u_dept[ucode]
    acc_ward = u_ward[ucode]
    for a_unit, r_unit in ((acc_dept, r_dept), (acc_ward, r_ward)):
        akey = np.where((a_unit >= 0) & ~done, pcode * nunit + a_unit, -1)
        rk = np.where(unit_rows & (r_unit >= 0), r_p * nunit + r_unit, -1)
        if (akey >= 0).any() and (rk >= 0).any():
            hit, which = interval_hit(akey, at, rk, r_start - gb, hi_ga, r_id)
            record("unit_relation", hit, which)

    # 3. on duty on the patient's ward ---------------------------------------------------------
    duty_ward = np.full(n, -1, dtype=np.int64)
    if sh is not None and len(sh) and not done.all():
        d = sh[(sh["kind"].astype("string") == "duty") & sh["ward"].notna()]
        if len(d):
            dg = int(p["duty_grace_minutes"] * 60 * _US)
            s_u = _codes(key(d, "user_id"), uidx)
            s_w = _codes(d["ward"], units)
            s_id = np.arange(len(d), dtype=np.int64)
            hit, which = interval_hit(np.where(done, -1, ucode), at,
                                      np.where(s_w >= 0, s_u, -1),
                                      _us(d["start"]) - dg, _us(d["end"]) + dg, s_id)
            duty_ward = np.where(hit, s_w[np.clip(which, 0, None)], -1)
            akey = np.where(duty_ward >= 0, pcode * nunit + duty_ward, -1)
            rk = np.where(r_ok & (r_ward >= 0), r_p * nunit + r_ward, -1)
            if (akey >= 0).any():
                hit2, which2 = interval_hit(akey, at, rk, r_start - gb, hi_ga, r_id)
                record("duty_ward", hit2, which2)

    # 4. consult / order / appointment / access request --------------------------------------
    req = r_ok & r_has_user & (r_u >= 0) & is_req
    if req.any() and not done.all():
        rkey = np.where(req, r_u * npat + r_p, -1)
        hit, which = interval_hit(akey_up, at, rkey, r_start - kgb, hi_kga, r_id, ~done)
        record("request_relation", hit, which)
    base = done.copy()

    # 6. documentation (computed before 5, which builds on it) -------------------------------
    action = acc["action"]
    is_doc = action.isin(DOC_ACTIONS).to_numpy(dtype=bool)
    doc = np.zeros(n, dtype=bool)
    if p["documentation_explains"] and is_doc.any() and not done.all():
        w = int(p["documentation_window_hours"] * _HOUR_US)
        is_doc = is_doc & _in_modules(acc, p.get("documentation_modules") or [])
        cr = list(p.get("care_record_modules") or [])
        charting = _in_modules(acc, cr) if cr else np.zeros(n, dtype=bool)
        care_doc = is_doc & (done | (action == "sign").to_numpy(dtype=bool) | charting
                             | (_writes_within(akey_up, at, is_doc, w)
                                >= int(p.get("documentation_min_writes", 1))))
        doc = nearest_within(akey_up, at, care_doc, w, w, amask=~done)
        if "encounter_id" in acc.columns:
            enc = acc["encounter_id"]
            has_enc = enc.notna().to_numpy()
            if (has_enc & care_doc).any():
                ecode, _ = pd.factorize(enc)
                ekey = pd.Series(akey_up * (int(ecode.max()) + 2) + ecode)
                doc_keys = pd.unique(ekey[care_doc & has_enc])
                doc |= has_enc & ~done & ekey.isin(doc_keys).to_numpy()
        base |= doc

    # 5. prior treatment: an own relation that ended, or an explained access, in the look-back
    if not done.all():
        lb = int(p["lookback_days"] * _DAY_US)
        # any own relation but an access request (a permission for a purpose, not treatment)
        anyown = r_ok & r_has_user & (r_u >= 0) & (r_kind != "access_request")
        rkey = np.where(anyown, r_u * npat + r_p, -1)
        hit, _ = interval_hit(akey_up, at, rkey, r_start,
                              np.where(r_end >= _FAR, _FAR, r_end + lb), r_id, ~done)
        hit |= nearest_within(akey_up, at, base, lb, 0, strict_before=True, amask=~done)
        record("prior_treatment", hit)
    record("documentation", doc)

    # 6b. working on the patient's ward that shift, inferred from the user's own explained
    # work there (float staff and rotating residents without a roster)
    wh = int(p["ward_work_hours"] * _HOUR_US)
    ward_at = np.full(n, -1, dtype=np.int64)
    if wh > 0 and not done.all() and base.any() and len(rel):
        todo_user = np.bincount(ucode[~done], minlength=len(uidx)) > 0    # no sort
        pts = base & todo_user[ucode]
        rk = np.where(r_ok & (r_ward >= 0), r_p, -1)
        inside, wrel = interval_hit(pcode, at, rk, r_start, r_end, r_id, pts | ~done)
        ward_at = np.where(inside & (wrel >= 0), r_ward[np.clip(wrel, 0, None)], -1)
        wkey = np.where(ward_at >= 0, ucode * nunit + ward_at, -1)
        record("worked_on_ward", nearest_within(wkey, at, pts, wh, wh, amask=~done))

    # 7. break the glass shortly before -------------------------------------------------------
    btg = (action == "break_glass").to_numpy(dtype=bool)
    if btg.any() and not done.all():
        w = int(p["btg_window_hours"] * _HOUR_US)
        record("break_glass", nearest_within(akey_up, at, btg, w, 0, amask=~done))

    # 8. record-reading roles within their office hours --------------------------------------
    roles = list(p["record_roles"] or [])
    acc_role = u_role[ucode]
    rr = np.isin(u_role, roles)[ucode] & ~done          # per user, then per access
    if rr.any():
        local = acc["ts"].iloc[np.flatnonzero(rr)].dt.tz_convert(tz)
        hour = (local.dt.hour + local.dt.minute / 60.0).to_numpy()
        wd = local.dt.day_of_week.to_numpy()
        hours = p.get("record_role_hours") or {}
        names, inv = np.unique(acc_role[rr].astype(str), return_inverse=True)
        lo = np.array([float(hours.get(r, ctx.office_hours)[0]) for r in names])[inv]
        hi = np.array([float(hours.get(r, ctx.office_hours)[1]) for r in names])[inv]
        inside = (hour >= lo) & (hour < hi)
        if p["record_roles_workdays_only"]:
            inside &= np.isin(wd, list(ctx.workdays))
        res = np.zeros(n, dtype=bool)
        res[rr] = inside
        record("record_role", res)

    # details: a categorical column of JSON objects (few distinct ones, 10M rows): the facts
    # behind the verdict, put in words per language by emraudit.reports.explanations
    first = _FirstView(_first_code(flags))
    cats: list[str] = []
    codes = np.full(n, -1, dtype=np.int64)

    def put(mask: np.ndarray, texts: np.ndarray | str) -> None:
        if not mask.any():
            return
        if isinstance(texts, str):
            codes[mask] = len(cats)
            cats.append(texts)
            return
        c, u = pd.factorize(pd.Series(texts, dtype=object))
        codes[mask] = c + len(cats)
        cats.extend(str(x) for x in u)

    rel_based = (first == "own_relation") | (first == "unit_relation") | \
        (first == "request_relation")
    use = rel_based & (which_rel >= 0)
    if use.any():
        ids, _, inv = dense_unique(which_rel[use])
        desc = _relation_json(rel.iloc[ids], tz)
        codes[use] = inv + len(cats)
        cats.extend(('{"relation":' + desc + "}").tolist())
    unit_names = np.asarray(list(units) + [""], dtype=object)
    dm = first == "duty_ward"
    if dm.any():
        pair = duty_ward[dm] * (len(rel) + 1) + which_rel[dm]
        ids, first_pos, inv = np.unique(pair, return_index=True, return_inverse=True)
        wards = _jq(unit_names[duty_ward[dm][first_pos]])
        rids = which_rel[dm][first_pos]
        desc = np.where(rids >= 0, _relation_json(rel.iloc[np.clip(rids, 0, None)], tz)
                        if len(rel) else "null", "null")
        codes[dm] = inv + len(cats)
        cats.extend(('{"ward":' + wards + ',"relation":' + desc + "}").tolist())
    put(first == "prior_treatment", _obj(days=p["lookback_days"]))
    put(first == "documentation", _obj(hours=p["documentation_window_hours"]))
    wm = first == "worked_on_ward"
    if wm.any():
        put(wm, '{"ward":' + _jq(unit_names[ward_at[wm]]) + ',"hours":'
            + json.dumps(float(p["ward_work_hours"])) + "}")
    put(first == "break_glass", _obj(hours=p["btg_window_hours"]))
    rrm = first == "record_role"
    put(rrm, '{"role":' + _jq(acc_role[rrm]) + "}")
    none = first == ""
    if none.any():
        c, texts = _why_not(p, none, acc_dept, acc_ward, units, acc_role, duty_ward, roles)
        codes[none] = c + len(cats)
        cats.extend(texts.tolist())
    put(codes < 0, "")
    categories = _dedupe(cats, codes)
    detail = pd.Categorical.from_codes(codes, categories=categories)
    return _assemble(out, flags, detail)


def _obj(**kw) -> str:
    return json.dumps(kw, ensure_ascii=False, sort_keys=True)


def _jq(values) -> np.ndarray:
    """Each value as a JSON string literal ('null' when missing), quoting each distinct value
    once (names repeat: departments, wards, roles)."""
    codes, uniq = pd.factorize(pd.Series(np.asarray(values, dtype=object), dtype=object))
    quoted = np.asarray([json.dumps(str(u), ensure_ascii=False) if str(u) != "" else "null"
                         for u in uniq] + ["null"], dtype=object)
    return quoted[codes]


def _dedupe(cats: list[str], codes: np.ndarray) -> pd.Index:
    """Categories must be unique: remap duplicate texts onto their first code (in place)."""
    idx = pd.Index(cats, dtype=object)
    if idx.is_unique:
        return idx
    c, u = pd.factorize(idx)
    codes[:] = c[codes]
    return pd.Index(u, dtype=object)


class _FirstView:
    """`first == "name"` on the int8 first-explanation codes, without an object array."""

    def __init__(self, code: np.ndarray):
        self.code = code

    def __eq__(self, name):  # type: ignore[override]
        return self.code == (EXPLANATIONS.index(name) + 1 if name else 0)


def _first_code(flags: dict[str, np.ndarray]) -> np.ndarray:
    """Per access: 1 + index in EXPLANATIONS of the first explanation that held, 0 if none."""
    n = len(next(iter(flags.values())))
    code = np.zeros(n, dtype=np.int8)
    for i in range(len(EXPLANATIONS) - 1, -1, -1):
        code[flags[EXPLANATIONS[i]]] = i + 1
    return code


def _first(flags: dict[str, np.ndarray]) -> np.ndarray:
    """Per access: the name of the first explanation that held ('' if none)."""
    names = np.asarray(("",) + EXPLANATIONS, dtype=object)
    return names[_first_code(flags)]


def _assemble(out: pd.DataFrame, flags: dict, detail) -> pd.DataFrame:
    code = _first_code(flags) if len(out) else np.zeros(0, dtype=np.int8)
    out["explained"] = code > 0
    out["explanation"] = pd.Categorical.from_codes(code, categories=("",) + EXPLANATIONS)
    out["detail"] = detail
    for name in EXPLANATIONS:
        out["x_" + name] = flags[name]
    return out


def _relation_json(rel: pd.DataFrame, tz: str) -> np.ndarray:
    """Each relation row as a JSON object: kind, start and end days (end null when ongoing),
    department, ward and user when set."""
    if not len(rel):
        return np.array([], dtype=object)
    start = _fmt_day(_us(rel["start"]), tz).astype(str)
    end = _fmt_day(_us(rel["end"]), tz).astype(str)
    end = np.where(end == "", "null", '"' + end + '"')
    s = ('{"kind":' + _jq(rel["kind"].astype("string").to_numpy(dtype=object))
         + ',"start":"' + start + '","end":' + end)
    for col, key in (("department", "department"), ("ward", "ward"), ("user_id", "user")):
        q = _jq(rel[col].astype("string").to_numpy(dtype=object))
        s = s + np.where(q == "null", "", ',"' + key + '":' + q)
    return (s + "}").astype(object)


# An unexplained access's detail names the patient's relations (where the patient was
# instead): per access that is the one high-cardinality part of the detail, and a night where a
# fifth of the accesses stay unexplained has hundreds of thousands of patients to describe.
# The engine leaves this marker in their place and `with_details` fills it in for the few rows
# a finding shows.
_PENDING = '"patient_relations":"<pending>","more":-1'


def _why_not(p, none, acc_dept, acc_ward, units, acc_role, duty_ward, roles
             ) -> tuple[np.ndarray, np.ndarray]:
    """Why each unexplained access failed every explanation, as one JSON object:
    explanation -> the facts that made it fail, the patient's relations left pending
    (_PENDING). Returns (code of each access where `none` holds, the distinct texts in order
    of first appearance): they depend only on the user's unit, ward, duty ward and role, so
    each distinct one is written once (a fifth of a 10M night unexplained is two million
    accesses and a few thousand texts)."""
    at = np.flatnonzero(none)
    code, _ = pd.MultiIndex.from_arrays(
        [acc_dept[at], acc_ward[at], duty_ward[at], acc_role[at].astype(str)]).factorize()
    code = code.astype(np.int64)
    _, one_of_each, _ = dense_unique(code)      # codes 0..k-1: one access of each
    return code, _why_not_texts(p, at[one_of_each], acc_dept, acc_ward, units, acc_role,
                                duty_ward, roles)


def _why_not_texts(p, idx, acc_dept, acc_ward, units, acc_role, duty_ward, roles
                   ) -> np.ndarray:
    """The why-not texts of the accesses at positions `idx` (vectorized over them)."""
    unit_names = np.asarray(list(units) + [""], dtype=object)
    dept = np.where(acc_dept[idx] >= 0, unit_names[acc_dept[idx]], "")
    ward = np.where(acc_ward[idx] >= 0, unit_names[acc_ward[idx]], "")
    dw = duty_ward[idx]
    duty_json = np.where(dw < 0, "null", _jq(unit_names[np.clip(dw, 0, None)]))
    role = acc_role[idx].astype(str)
    is_rr = np.where(np.isin(role, roles), "true", "false")
    doc = (_obj(hours=float(p["documentation_window_hours"])) if p["documentation_explains"]
           else _obj(off=True))
    text = ('{"own_relation":' + _obj(grace_before_days=float(p["grace_before_days"]),
                                      grace_after_days=float(p["grace_after_days"]))
            + ',"unit_relation":{"department":' + _jq(dept) + ',"ward":' + _jq(ward)
            + "," + _PENDING + "}"
            + ',"duty_ward":{"ward":' + duty_json + "}"
            + ',"request_relation":'
            + _obj(grace_before_days=float(p["kind_grace_before_days"]),
                   grace_after_days=float(p["kind_grace_after_days"]))
            + ',"prior_treatment":' + _obj(days=float(p["lookback_days"]))
            + ',"documentation":' + doc
            + ',"worked_on_ward":' + _obj(hours=float(p["ward_work_hours"]))
            + ',"break_glass":' + _obj(hours=float(p["btg_window_hours"]))
            + ',"record_role":{"role":' + _jq(role) + ',"record_role":' + is_rr + "}}")
    return np.asarray(text, dtype=object)


def _relations_summary(r_p: np.ndarray, r_start: np.ndarray, desc: np.ndarray,
                       npat: int) -> np.ndarray:
    """Per patient code 0..npat-1: its last three relations (by start, ties in table order)
    and how many more, as the JSON fragment '[...],"more":k'. `r_p`: each relation's
    patient code (-1: none of these patients)."""
    out = np.full(npat, '[],"more":0', dtype=object)
    keep = np.flatnonzero(r_p >= 0)
    if not len(keep):
        return out
    order = keep[np.lexsort((r_start[keep], r_p[keep]))]        # stable: ties in table order
    pv = r_p[order]
    d = desc[order].tolist()
    first = np.flatnonzero(np.r_[True, pv[1:] != pv[:-1]]).tolist()
    ends = first[1:] + [len(pv)]
    out[pv[first]] = ["[" + ",".join(d[max(a, b - 3):b]) + '],"more":' + str(max(b - a - 3, 0))
                      for a, b in zip(first, ends)]
    return out


def _relations_by_patient(ctx: Context, key) -> tuple:
    """The care relations (completed), each row's patient as a code into the distinct
    patient keys, and the starts in µs: made once per context for `with_details`, which
    detectors call many times on a few rows each."""
    rel = complete(ctx.care_relations, "care_relations", ctx.tz)
    if rel is None or not len(rel):
        return None, np.zeros(0, dtype=np.int64), pd.Index([], dtype="string"), \
            np.zeros(0, dtype=np.int64)
    codes, uniq = pd.factorize(key(rel, "patient_id"))
    return rel, codes.astype(np.int64), pd.Index(uniq, dtype="string"), _us(rel["start"])


def with_details(ctx: Context, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (explain rows with the index of ctx.events: the few a finding shows) with the
    `detail` of their unexplained accesses complete: the patient's last relations, looked up
    here for these rows instead of for every unexplained access of the night."""
    done = _completed_details(ctx, rows)
    if done is None:
        return rows
    if isinstance(rows["detail"].dtype, pd.CategoricalDtype):
        return rows.assign(detail=pd.Categorical(done))
    return rows.assign(detail=done)


def _completed_details(ctx: Context, rows: pd.DataFrame) -> np.ndarray | None:
    """The `detail` texts of `rows` completed as with_details does (object array); None when
    none is pending."""
    if not len(rows) or "detail" not in rows.columns:
        return None
    col = rows["detail"]
    if isinstance(col.dtype, pd.CategoricalDtype):       # the engine's: few texts
        marked = np.asarray([_PENDING in str(c) for c in col.cat.categories] + [False])
        pend = marked[col.cat.codes.to_numpy()]           # code -1 (missing): the last
    else:
        pend = np.fromiter((isinstance(d, str) and _PENDING in d for d in col),
                           dtype=bool, count=len(col))
    if not pend.any():
        return None
    key = site_keys(ctx, ctx.care_relations, ctx.users, ctx.shifts)
    at = rows.loc[pend, ["patient_id"]]
    if "site_id" in ctx.events.columns:
        at = at.assign(site_id=ctx.events.loc[at.index, "site_id"])
    pcode, pidx = pd.factorize(key(at, "patient_id"))
    fill = np.full(len(pidx), '[],"more":0', dtype=object)
    rel, r_pat, r_keys, r_start = ctx.cached("explain_relations_by_patient",
                                             lambda: _relations_by_patient(ctx, key))
    if len(r_keys):
        want = _codes(pd.Series(pidx, dtype="string"), r_keys)     # -1: no relation at all
        to_p = np.full(len(r_keys), -1, dtype=np.int64)
        to_p[want[want >= 0]] = np.flatnonzero(want >= 0)
        sel = np.flatnonzero(to_p[r_pat] >= 0)
        if len(sel):
            fill = _relations_summary(to_p[r_pat[sel]], r_start[sel],
                                      _relation_json(rel.iloc[sel], ctx.tz), len(pidx))
    done = col.astype(object).to_numpy(copy=True)
    done[pend] = [d.replace(_PENDING, '"patient_relations":' + f, 1)
                  for d, f in zip(done[pend].tolist(), fill[pcode].tolist())]
    return done


def explanation_detail(row: pd.Series | dict) -> dict:
    """The `detail` of one explain row as a dict (empty when there is none)."""
    return _detail_dict(row.get("detail", ""))


def _detail_dict(d) -> dict:
    """One `detail` text as a dict (empty when there is none)."""
    if not isinstance(d, str) or not d:
        return {}
    if _PENDING in d:       # a programming error: the row did not go through with_details
        raise ValueError("explanation detail read before with_details completed it")
    try:
        out = json.loads(d)
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def explanation_evidence(row: pd.Series | dict, params: dict | None = None) -> list[dict]:
    """The structured list [{explanation, result, detail}] for one explain row (evidence):
    `detail` holds the facts (relation found, grace, ward, role …) that made each
    explanation hold or fail; emraudit.reports.explanations puts them in words."""
    return _evidence(row.get("detail", ""), row.get("explanation", ""),
                     [row.get("x_" + name, False) for name in EXPLANATIONS])


def explanations_tried(ctx: Context, rows: pd.DataFrame) -> list[list[dict]]:
    """`explanation_evidence` of each of `rows` (explain rows, completed here as by
    with_details), each column read once as a list rather than each row as a dict: a night
    has thousands of findings, and their completed details are too many distinct texts to be
    worth a categorical."""
    def col(name: str, default) -> list:
        return rows[name].astype(object).tolist() if name in rows.columns \
            else [default] * len(rows)
    done = _completed_details(ctx, rows)
    details = done.tolist() if done is not None else col("detail", "")
    held = zip(*(col("x_" + name, False) for name in EXPLANATIONS))
    return [_evidence(d, first, h) for d, first, h in
            zip(details, col("explanation", ""), held)]


def _evidence(detail, first, held) -> list[dict]:
    """The evidence list of one row from its detail text, first explanation that held and
    one held flag per explanation (in EXPLANATIONS order)."""
    d = _detail_dict(detail)
    first = str(first or "")
    res = []
    for name, h in zip(EXPLANATIONS, held):
        if first:
            sub = d if name == first else {}
        else:
            sub = d.get(name)
            sub = sub if isinstance(sub, dict) else {}
        res.append({"explanation": name, "result": "held" if h else "failed", "detail": sub})
    return res
