"""care.no_relationship — records opened with no care relationship (无诊疗关系查阅, item 9).

The work is done by the explanation engine (detectors/explain.py), which tries every
legitimate reason in order; this module groups what no reason explains into one finding per
user, patient and site-local day, and grades it: more accesses, a special patient (VIP,
sensitive, staff member, deceased) or a name look-up just before opening the record all
raise the severity. The engine's settings (and the look-up window) are the `[explain]`
section of the profile, shared with the snooping detectors; this table's old keys for them
are deprecated aliases (`moved`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param, raise_severity
from emraudit.detectors.explain import (EXPLANATIONS, MOVED_FROM_CARE, explain_accesses,
                                        explanations_tried, looked_up_before)
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.reports.i18n import N_, Np_
from emraudit.fastops import is_value, iso_strings, local_days, text_fields
from emraudit.feeds import (FeedRules, held_mask, held_outputs, share_counts,
                            shares_from_counts, unit_columns)


DETECTOR_PARAMS = (
    Param("min_accesses", int, 1, "unexplained accesses of one patient by one user in one "
          "day needed for a finding", "accesses", 1, 10000),
    Param("medium_accesses", int, 3, "accesses from which the finding is medium",
          "accesses", 1, 10000),
    Param("high_accesses", int, 10, "accesses from which the finding is high", "accesses",
          1, 100000),
    Param("critical_accesses", int, 50, "accesses from which the finding is critical",
          "accesses", 1, 1000000),
    Param("special_patient_steps", int, 1, "severity steps added for a VIP, sensitive, "
          "employee or deceased patient", "levels", 0, 3),
    Param("query_lookup_steps", int, 1, "severity steps added for a look-up before opening",
          "levels", 0, 3),
    Param("count_queries", bool, False, "count unexplained look-ups (query) themselves as "
          "accesses; off: a search result is not an opened record, but it still raises the "
          "severity of an opening that follows"),
    Param("include_failed", bool, False, "count failed (denied) accesses"),
    Param("feed_floor", float, 0.6, "a department, ward, role or source whose accesses the "
          "care relations explain below this share has an incomplete feed (emraudit.feeds)",
          "share", 0, 1),
    Param("feed_margin", float, 0.3, "… or one whose share is this far below the rest of the "
          "hospital's", "share", 0.01, 1),
    Param("feed_min_accesses", int, 200, "accesses a unit needs before its share is judged",
          "accesses", 1, 10_000_000),
    Param("spread_patients", int, 5, "a user's unexplained openings of more patients than "
          "this in one site-local day (none of them a protected patient or after a name "
          "look-up) make one finding for that night, naming every patient and access in "
          "its evidence, instead of a finding per patient; 0: always a finding per patient",
          "patients", 0, 100000),
    Param("spread_high_patients", int, 20, "patients from which such a night's finding is "
          "high (it is at least medium)", "patients", 1, 1000000),
    Param("spread_critical_patients", int, 100, "patients from which it is critical",
          "patients", 1, 10000000),
    Param("hold_feed_gaps", bool, True, "hold the no-relation accesses of a unit with an "
          "incomplete feed as one feed-gap case (with its figures) instead of a finding per "
          "person; accesses to protected patients and after a name look-up are never held"),
)


SPREAD = "care.no_relationship.spread"     # one night, many patients: one finding


@register
class NoRelationship(Detector):
    id = "care.no_relationship"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Record viewed without a care relationship"
    name_zh = "无诊疗关系查阅"
    item = "9"
    severity = "medium"
    needs = ("access_log", "care_relations")
    uses = ("users", "patients", "shifts")
    lookback_days = 30
    params = DETECTOR_PARAMS
    moved = MOVED_FROM_CARE      # the engine's settings, now [explain]
    # a name query then an unrelated record is this finding with its severity raised
    catches = ("care.no_relationship", "snoop.query_then_open")
    also_catches = ("snoop.vip", "snoop.coworker", "snoop.family", "snoop.neighbor",
                    "snoop.deceased", "anomaly.slow_insider")
    description = (
        "Every patient access is tested against the legitimate reasons for it, in order: the "
        "user's own care relation (with grace before and after), the user's department or "
        "ward, a duty shift on the patient's ward (float cover), a consult/order/appointment/"
        "access request, prior treatment within a look-back, documentation on the patient, "
        "work on the patient's ward that shift inferred from the user's other explained "
        "accesses, a break-the-glass just before, and record-reading roles within office "
        "hours. Accesses "
        "no reason explains are grouped per user, patient and site-local day; a user who "
        "opened more than `spread_patients` patients' records in one day without a reason "
        "gets one finding for that night naming them all (a protected patient, or an "
        "opening after a name look-up, keeps a finding of its own).")
    note = (
        "Read the explanations tried: a relation that ended just before the grace period, a "
        "department name spelled differently in the staff master and the ADT feed, or a "
        "missing roster usually shows there. Ask the user's department head whether the user "
        "was covering the patient; a name look-up right before opening the record (noted in "
        "the evidence) and a VIP, staff or deceased patient make a legitimate reason less "
        "likely.")
    false_positives = (
        "cover staff not on the roster (informal swaps, on-call from home)",
        "relations recorded late or in a system not loaded (outside consults, MDT meetings)",
        "department or ward names that differ between the staff master and care relations",
        "teaching, research and audit reading without an access request on file",
        "therapists and technicians serving every ward who read before charting",
    )
    description_zh = ("对每一次患者病历查阅，依次核对正当理由：用户本人的诊疗关系（含前后宽限期）"
                      "、用户所在科室或病区、在患者所在病区当班（支援）、会诊/医嘱/预约/权限申请"
                      "、回溯期内的既往诊疗、为该患者书写过病历、由其他有正当理由的查阅推断的当班"
                      "病区工作、查阅前刚进行的紧急授权，以及病案等阅档岗位在工作时间内的查阅。任"
                      "何理由都不能解释的查阅，按用户、患者和本地日期归并为一项发现；同一用户一天内无正当理由查阅"
                      "的患者超过 spread_patients 名时，当晚合并为一项发现并列出全部患者（重点保护"
                      "患者和按姓名检索后打开的病历仍各自单列）。")
    note_zh = ("先看已核对的理由：诊疗关系刚在宽限期前结束、人员主数据与出入院（ADT）数据中的科室"
               "名称写法不一致、排班缺失，通常都能在这里看出来。向用户所在科室负责人了解该用户是"
               "否在照护该患者；打开病历前刚按姓名检索（证据中注明），以及重点人员、职工或已故患"
               "者，都会降低存在正当理由的可能性。")
    false_positives_zh = (
        "未列入排班的顶班人员（私下换班、在家听班）",
        "诊疗关系登记滞后或登记在未接入的系统中（院外会诊、多学科讨论）",
        "人员主数据与诊疗关系中的科室或病区名称不一致",
        "教学、科研和检查阅档但未办理权限申请",
        "服务全院各病区的治疗师和技师在书写记录前的查阅",
    )
    measure_zh = ("核实查阅目的；无正当理由的，对当事人批评教育并按院内规定处理；"
                  "按岗位最小授权收紧病历查阅权限，科室外病历查阅须经权限申请。")
    measure_en = ("Verify the purpose with the user; where there was none, counsel and "
                  "discipline per hospital policy; tighten record access to least privilege by "
                  "post and require an access request for patients outside the user's unit.")
    messages = {
        "care.no_relationship": Message(
            Np_("%(user)s opened the record of patient %(patient)s %(accesses)s time on "
                "%(day)s with no care relationship (%(tried)s explanations tried, none held)",
                "%(user)s opened the record of patient %(patient)s %(accesses)s times on "
                "%(day)s with no care relationship (%(tried)s explanations tried, none held)"),
            count="accesses",
            clauses=(Clause("flags", N_("; patient flagged: %(flags)s")),
                     Clause("lookup", N_("; looked the patient up by name just before")))),
        SPREAD: Message(
            Np_("%(user)s opened the records of %(n_patients)s patient with no care "
                "relationship on %(day)s (%(accesses)s accesses; %(tried)s explanations "
                "tried, none held)",
                "%(user)s opened the records of %(n_patients)s patients with no care "
                "relationship on %(day)s (%(accesses)s accesses; %(tried)s explanations "
                "tried, none held)"),
            count="n_patients"),
    }

    def effective_lookback_days(self) -> int:
        return int(math.ceil(self.section("explain")["lookback_days"]))

    def feed_counts(self, ctx: Context, x: pd.DataFrame | None = None,
                    judged: np.ndarray | None = None) -> dict | None:
        """The explained-share counts of this context's judged accesses (feeds.share_counts,
        with their first and last day): one partition's part of the feed health."""
        if x is None:
            x = explain_accesses(ctx)
            judged = self._judged(ctx, x)[0] if len(x) else np.zeros(0, dtype=bool)
        if not judged.any():
            return None
        acc = x.loc[judged, ["user_id", "patient_id"]]
        src = ctx.events.loc[acc.index, "_source"] if "_source" in ctx.events.columns \
            else None
        site = ctx.events.loc[acc.index, "site_id"].astype("string").fillna(ctx.site_id) \
            if "site_id" in ctx.events.columns else pd.Series(ctx.site_id, index=acc.index)
        units = unit_columns(acc, ctx.users, src, site)
        part = share_counts(x["explained"].to_numpy()[judged], units,
                            acc["user_id"].astype("string"), acc["patient_id"].astype("string"))
        days = local_days(x.loc[judged, "ts"], ctx.tz)
        part["days"] = (str(days.min()), str(days.max()))
        return part

    def feed_shares(self, parts: list[dict]) -> pd.DataFrame:
        """Explained shares per unit from the counts of every partition."""
        p = self.p
        shares = shares_from_counts(parts, FeedRules(p.feed_floor, p.feed_margin,
                                                     p.feed_min_accesses))
        shares["first_day"] = min(q["days"][0] for q in parts)
        shares["last_day"] = max(q["days"][1] for q in parts)
        return shares

    def population_part(self, ctx: Context) -> dict:
        part = self.feed_counts(ctx)
        return {f"feed_counts:{self.id}": [part] if part is not None else []}

    def population_finish(self, ctx: Context) -> None:
        parts = ctx.population.get(f"feed_counts:{self.id}")
        if parts:
            shares = self.feed_shares(parts)
            ctx.population[f"feed:{self.id}"] = shares
            ctx.outputs["feed_health"] = shares

    def _feed_health(self, ctx: Context, x: pd.DataFrame, judged: np.ndarray
                     ) -> pd.DataFrame | None:
        """Explained shares per unit (left in ctx.outputs["feed_health"] for the scan to
        store and report; a partitioned scan computes them once, from every partition's
        counts); returns them when some unit is a gap and gaps are held."""
        p = self.p
        if not judged.any():
            return None
        shares = ctx.population.get(f"feed:{self.id}")
        if shares is None:
            shares = self.feed_shares([self.feed_counts(ctx, x, judged)])
            ctx.outputs["feed_health"] = shares
        if not p.hold_feed_gaps or not shares["gap"].any():
            return None
        return shares

    def _hold(self, ctx: Context, u: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
        """Take out the unexplained accesses of gap units (counted in ctx.outputs
        ["feed_gaps"] for their feed-gap case), but for protected patients and look-ups."""
        src = ctx.events.loc[u.index, "_source"] if "_source" in ctx.events.columns else None
        held, gap = held_mask(unit_columns(u, ctx.users, src), shares)
        held = held & ~_protected(ctx, u["patient_id"], u["ts"]) & \
            u["lookup"].isna().to_numpy()
        if held.any():
            h = u.loc[held, ["event_id", "user_id", "patient_id", "ts"]].assign(
                gap=gap[held].to_numpy())
            ctx.outputs.update(held_outputs(h))
        return u.loc[~held]

    def _judged(self, ctx: Context, x: pd.DataFrame) -> tuple[np.ndarray, pd.Series,
                                                               np.ndarray]:
        """(judged, action, is_query) per explained access: in the window, not failed
        (unless counted), not a break-the-glass, not a look-up (unless counted)."""
        p = self.p
        ev = ctx.events
        action = ev.loc[x.index, "action"]          # coded: compared by code, no strings
        judged = x["in_window"].to_numpy().copy()
        if not p.include_failed and "outcome" in ev.columns:
            judged &= ~is_value(ev.loc[x.index, "outcome"], "failure")
        is_query = is_value(action, "query")
        judged &= action.notna().to_numpy() & ~is_value(action, "break_glass")
        if not p.count_queries:
            judged &= ~is_query
        return judged, action, is_query

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        x = explain_accesses(ctx)
        if not len(x):
            return self.findings([])
        judged, action, is_query = self._judged(ctx, x)
        counted = judged & ~x["explained"].to_numpy()
        gaps = self._feed_health(ctx, x, judged)
        if not counted.any():
            return self.findings([])
        u = x.loc[counted].copy()
        u["action"] = action[counted].astype("string").to_numpy()
        u["day"] = local_days(u["ts"], ctx.tz)

        # a look-up by name shortly before opening, itself unexplained; only openings have
        # one (a look-up counted as an access, count_queries, is not its own look-up)
        lookups = x.loc[~x["explained"].to_numpy() & is_query,
                        ["user_id", "patient_id", "ts", "event_id"]]
        window_minutes = ctx.section("explain")["lookup_minutes"]
        u[["lookup", "lookup_event"]] = looked_up_before(
            u.loc[~is_query[counted]], lookups, window_minutes,
            ["user_id", "patient_id"]).reindex(u.index)
        if gaps is not None:
            u = self._hold(ctx, u, gaps)
            if not len(u):
                return self.findings([])

        keys = ["user_id", "patient_id", "day"]
        big = u.groupby(keys, sort=False, observed=True)["ts"].transform("size").to_numpy()
        u = u[big >= p.min_accesses].dropna(subset=keys)  # the per-group lists only for findings
        if not len(u):
            return self.findings([])
        spread = _spread_rows(ctx, u, p.spread_patients)
        rows = self._spread_findings(ctx, u.loc[spread]) if spread.any() else []
        u = u.loc[~spread]
        if not len(u):
            return self.findings(rows)
        # one stable sort by the keys: each finding's accesses are a slice, in their order
        u = u.sort_values(keys, kind="stable")
        agg = u.groupby(keys, sort=True, observed=True).agg(
            n=("event_id", "size"), start=("ts", "min"), end=("ts", "max"),
            lookup=("lookup", "min")).reset_index()
        bounds = np.append(np.flatnonzero(_key_changes(u, keys)), len(u))
        agg["event_ids"] = _slices(u["event_id"].astype(object).to_numpy(), bounds)
        agg["actions"] = _action_counts(u, keys, bounds)
        agg["lookup_events"] = _lookup_events(u, keys, agg)
        tried = explanations_tried(ctx, u.iloc[bounds[:-1]])
        n = agg["n"].to_numpy()
        sev = np.where(n >= p.critical_accesses, "critical",
                       np.where(n >= p.high_accesses, "high",
                                np.where(n >= p.medium_accesses, "medium", "low")))
        agg["severity"] = sev
        flags = _patient_flags(ctx, agg)
        special = flags.map(bool)
        agg["severity"] = raise_severity(agg["severity"],
                                         special.astype(int) * p.special_patient_steps)
        has_lookup = agg["lookup"].notna()
        agg["severity"] = raise_severity(agg["severity"],
                                         has_lookup.astype(int) * p.query_lookup_steps)
        agg["score"] = (np.log2(1 + n) + 1.0 * special.to_numpy() + 1.0 * has_lookup.to_numpy())

        users = _user_info(ctx, agg["user_id"])
        from emraudit.detectors.rights_use import class_grant_evidence
        class_grants = class_grant_evidence(ctx, agg["user_id"], agg["patient_id"], agg["start"])
        thresholds = self._thresholds(ctx)
        # the columns as lists once: a row tuple or pandas scalar per finding costs more than
        # the finding's own work
        cols = ("user_id", "patient_id", "day", "n", "start", "end", "actions", "event_ids",
                "lookup_events", "severity", "score")
        for (uid, pid, day, k, start, end, actions, event_ids, lookup_events, sev_, score), \
                pf, tried_, grants, looked, at in zip(
                    zip(*(agg[c].tolist() for c in cols)), flags.tolist(), tried,
                    class_grants, has_lookup.tolist(),
                    iso_strings(agg["lookup"]).tolist()):     # one per finding
            args = {"user": uid, "patient": pid, "accesses": int(k), "day": day,
                    "tried": len(EXPLANATIONS), "flags": list(pf), "lookup": looked}
            ev_ = {
                "day": day, "accesses": int(k), "actions": actions,
                "explanations": tried_, "patient_flags": pf,
                "user": users.get(uid, {}), "thresholds": thresholds,
                "query_lookup": ({"at": at, "event_ids": list(lookup_events),
                                  "window_minutes": window_minutes} if looked else None),
            }
            if grants is not None:                  # the classes' grant check
                ev_["class_grants"] = grants
            # a look-up counted as an access itself (count_queries) is listed once
            ids = list(event_ids)
            seen = set(ids)
            rows.append({"key": f"{uid}|{pid}|{day}", "user_id": uid,
                         "patient_id": pid, "start": start, "end": end,
                         "event_ids": ids + [e for e in lookup_events if e not in seen],
                         "severity": sev_, "score": float(score), "message_id": self.id,
                         "message_args": args, "evidence": ev_})
        return self.findings(rows)


    def _thresholds(self, ctx: Context) -> dict:
        given = {**ctx.section("explain"), **self.p}     # the evidence names both kinds
        return {k: given[k] for k in ("min_accesses", "medium_accesses", "high_accesses",
                                      "critical_accesses", "grace_before_days",
                                      "grace_after_days", "lookback_days")}

    def _spread_findings(self, ctx: Context, u: pd.DataFrame) -> list[dict]:
        """One finding per user and day for the nights `_spread_rows` chose: every patient
        with its accesses (most first) and every event id in the evidence. Graded by the
        patients touched: medium, high from `spread_high_patients`, critical from
        `spread_critical_patients`."""
        p = self.p
        keys = ["user_id", "day"]
        u = u.sort_values(keys + ["ts", "event_id"], kind="stable")
        bounds = np.append(np.flatnonzero(_key_changes(u, keys)), len(u))
        per = u.groupby(keys + ["patient_id"], sort=True, observed=True).agg(
            n=("event_id", "size"), start=("ts", "min"), end=("ts", "max")).reset_index()
        per = per.sort_values(keys + ["n", "patient_id"], ascending=[True, True, False, True],
                              kind="stable")
        night = u.groupby(keys, sort=True, observed=True).agg(
            n=("event_id", "size"), start=("ts", "min"), end=("ts", "max"),
            k=("patient_id", "nunique")).reset_index()
        k = night["k"].to_numpy()
        sev = np.where(k >= p.spread_critical_patients, "critical",
                       np.where(k >= p.spread_high_patients, "high", "medium"))
        score = np.log2(1 + night["n"].to_numpy()) + np.log2(np.maximum(k, 1))
        ids = _slices(u["event_id"].astype(object).to_numpy(), bounds)
        actions = _action_counts(u, keys, bounds)
        first = u.iloc[bounds[:-1]]
        tried = explanations_tried(ctx, first)
        first_ids = [str(e) for e in first["event_id"].astype(object).tolist()]
        first_patients = [str(q) for q in first["patient_id"].astype(object).tolist()]
        pbounds = np.append(np.flatnonzero(_key_changes(per, keys)), len(per))
        # the columns as lists once, then sliced per night (slicing the frame per night was
        # most of the detector on a night where thousands of users browse)
        entries = [{"patient_id": pid, "accesses": n, "first": a, "last": b}
                   for pid, n, a, b in zip(per["patient_id"].astype(object).tolist(),
                                           per["n"].astype(int).tolist(),
                                           iso_strings(per["start"]).tolist(),
                                           iso_strings(per["end"]).tolist())]
        plist = [entries[lo:hi] for lo, hi in zip(pbounds[:-1].tolist(), pbounds[1:].tolist())]
        users = _user_info(ctx, night["user_id"])
        thresholds = {**self._thresholds(ctx), "spread_patients": p.spread_patients,
                      "spread_high_patients": p.spread_high_patients,
                      "spread_critical_patients": p.spread_critical_patients}
        rows = []
        for i, (uid, day, k, start, end) in enumerate(zip(
                *(night[c].tolist() for c in ("user_id", "day", "n", "start", "end")))):
            pats = plist[i]                                       # one per user-night
            rows.append({
                "key": f"{uid}||{day}|spread", "user_id": uid, "patient_id": None,
                "patient_ids": sorted(str(q["patient_id"]) for q in pats),
                "start": start, "end": end, "event_ids": ids[i], "severity": sev[i],
                "score": float(score[i]), "message_id": SPREAD,
                "message_args": {"user": uid, "n_patients": len(pats),
                                 "accesses": int(k), "day": day,
                                 "tried": len(EXPLANATIONS)},
                "evidence": {"day": day, "accesses": int(k), "actions": actions[i],
                             "patients": pats, "explanations": tried[i],
                             # the night's first access: the one those explanations are of
                             "explanations_for": {"event_id": first_ids[i],
                                                  "patient_id": first_patients[i]},
                             "user": users.get(uid, {}), "thresholds": thresholds}})
        return rows


def _spread_rows(ctx: Context, u: pd.DataFrame, limit: int) -> np.ndarray:
    """Per unexplained access: does it belong to a night spread over many patients? A user's
    plain patients of one day (none of their accesses that day to a protected patient or
    after a name look-up), when more than `limit` (0: never)."""
    if limit <= 0 or not len(u):
        return np.zeros(len(u), dtype=bool)
    marked = pd.Series(_protected(ctx, u["patient_id"], u["ts"])
                       | u["lookup"].notna().to_numpy(), index=u.index)
    plain = ~marked.groupby([u["user_id"], u["patient_id"], u["day"]], sort=False,
                            observed=True).transform("any").to_numpy(dtype=bool)
    if not plain.any():
        return plain
    q = u.loc[plain, ["user_id", "day", "patient_id"]]
    k = q.groupby(["user_id", "day"], sort=False, observed=True)["patient_id"] \
        .transform("nunique").to_numpy()
    out = np.zeros(len(u), dtype=bool)
    out[np.flatnonzero(plain)] = k > limit
    return out


def _key_changes(u: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Per row of `u` (sorted by `keys`): does a new group start here?"""
    out = np.zeros(len(u), dtype=bool)
    out[:1] = True
    for k in keys:
        v = u[k].astype(object).to_numpy()
        out[1:] |= v[1:] != v[:-1]
    return out


def _slices(values: np.ndarray, bounds: np.ndarray) -> list[list]:
    """values[bounds[i]:bounds[i+1]] as lists: one per group of a sorted frame."""
    return [values[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def _action_counts(u: pd.DataFrame, keys: list[str], bounds: np.ndarray) -> list[dict]:
    """Per group: {action: accesses}, most frequent first (ties by code), counted in one
    group-by over (group, action) rather than a value_counts per finding."""
    grp = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    c = pd.DataFrame({"g": grp, "action": u["action"].astype(object).to_numpy()}) \
        .dropna().groupby(["g", "action"], sort=False).size().reset_index(name="k")
    c = c.sort_values(["g", "k", "action"], ascending=[True, False, True], kind="stable")
    out: list[dict] = [{} for _ in range(len(bounds) - 1)]
    for g, action, k in zip(c["g"].to_numpy(), c["action"].to_numpy(), c["k"].to_numpy()):
        out[g][action] = int(k)
    return out


def _lookup_events(u: pd.DataFrame, keys: list[str], agg: pd.DataFrame) -> list[list]:
    """Per group of `agg`: the distinct look-up event ids before its accesses, sorted."""
    out: list[list] = [[] for _ in range(len(agg))]
    le = u.loc[u["lookup_event"].notna(), keys + ["lookup_event"]]
    if not len(le):
        return out
    le = le.drop_duplicates().merge(
        agg[keys].reset_index(names="g"), on=keys, how="inner") \
        .sort_values(["g", "lookup_event"], kind="stable")
    for g, e in zip(le["g"].to_numpy(), le["lookup_event"].astype(object).to_numpy()):
        out[g].append(e)
    return out


def _protected(ctx: Context, patient_id: pd.Series, ts: pd.Series) -> np.ndarray:
    """Per access: is the patient one the hospital protects in particular (VIP, sensitive,
    sealed, staff, or deceased by then)? Such accesses are judged one by one, feed or no."""
    pt = ctx.patients
    out = np.zeros(len(patient_id), dtype=bool)
    if pt is None or not len(pt):
        return out
    pt = pt.drop_duplicates("patient_id", keep="last").set_index("patient_id")
    pid = patient_id.astype("string")
    # membership, not map(): a map that matches no patient gives a null-typed Arrow column
    # that fillna(False) cannot fill (every access to patients missing from the table)
    for col in ("vip", "sensitive", "watch"):
        if col in pt.columns:
            out |= pid.isin(pt.index[pt[col].fillna(False).astype(bool).to_numpy()]) \
                .fillna(False).to_numpy(dtype=bool)
    if "employee_user_id" in pt.columns:
        out |= pid.isin(pt.index[pt["employee_user_id"].notna().to_numpy()]).fillna(False) \
            .to_numpy(dtype=bool)
    if "deceased_date" in pt.columns:
        dd = pid.map(pt["deceased_date"])
        out |= (dd.notna() & (dd <= ts)).to_numpy(dtype=bool)
    return out


def _patient_flags(ctx: Context, agg: pd.DataFrame) -> pd.Series:
    """Per finding: the special categories of the patient (vip, sensitive, employee,
    deceased — the last only when the access was after the death)."""
    out = pd.Series([[] for _ in range(len(agg))], index=agg.index, dtype=object)
    pt = ctx.patients
    if pt is None or not len(pt):
        return out
    pt = pt.drop_duplicates("patient_id", keep="last").set_index("patient_id")
    j = agg[["patient_id", "start"]].join(pt, on="patient_id")
    parts = []
    for col in ("vip", "sensitive", "watch"):       # codes, labelled where shown
        if col in j.columns:
            parts.append((j[col].fillna(False).astype(bool).to_numpy(), col))
    if "employee_user_id" in j.columns:
        parts.append((j["employee_user_id"].notna().to_numpy(), "employee"))
    if "deceased_date" in j.columns:
        dd = j["deceased_date"]
        parts.append(((dd.notna() & (dd <= j["start"])).to_numpy(), "deceased"))
    vals = [[label for mask, label in parts if mask[i]] for i in range(len(j))]
    return pd.Series(vals, index=agg.index, dtype=object)


def _user_info(ctx: Context, wanted: pd.Series) -> dict[str, dict]:
    """Role, department and ward of the `wanted` users (those with findings)."""
    users = ctx.users
    if users is None or not len(users):
        return {}
    return text_fields(users, "user_id", wanted.dropna().unique(),
                       ("role", "department", "ward"))
