"""`anomaly.user_day`: a user's day against their peers and their own past.

It reads the daily behaviour features (`features`). Features of the scanned days are computed
from `ctx.events`; earlier days come from the stored baseline
(`ctx.baseline["user_day_features"]`, loaded by `state.load_baseline`), so a nightly scan
never re-reads weeks of raw events. When the store has no baseline yet (the
first scan, tests), the look-back days of `ctx.events` are used instead and the detector asks
the pipeline to store them (`ctx.outputs["user_day_features"]`). A scan whose window spans
several days walks forward: each day is scored by a model fitted on the `baseline_days` before
it (refitted nightly or weekly). Fitted models come from and go to `ctx.baseline["models"]` /
`ctx.outputs["models"]`. The detector itself does no I/O.

The decision is an explicit alert budget: a user-day is reported when its score is above the
`min_percentile` of the baseline's scores, raised as far as `max_per_100k_events` needs (a
percentile of user-days is a rate per user-day: where staff have a few events a day, as in an
ICU log, 0.5% of user-days is hundreds of findings per 100,000 events), *and* it is among the
`max_per_day` highest of its day. PyOD's `contamination` is never used. Calibrated on real
ICU logs (bench/realdata), two more rules keep workload from passing as misuse: a user-day
must carry a privacy signal (`require_signal`: an unexplained access, an output, a search);
and a user whose role has too few users is not scored (compared with everyone, a therapist
who serves every ward is always unusual). Each finding lists, as fields, the features that
made the day unusual (`evidence.unusual_features`, `evidence.drivers` with both labels).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd

from emraudit.detectors.anomaly.features import ALL_FEATURES, FEATURE_NAMES, FEATURES, \
    add_trailing, day_event_rows, empty_features, user_day_features, user_rows
from emraudit.detectors.anomaly.models import MODEL_KINDS, UserDayModel, own_medians, \
    peer_group_of
from emraudit.detectors.base import Context, Detector, Param
from emraudit.detectors.message import Message
from emraudit.detectors.registry import register
from emraudit.model import OUTPUT_ACTIONS
from emraudit.reports.i18n import N_

SCORES_MEMO = "anomaly.user_day.scores"
# features the model uses by default, chosen on the generated hospitals
# (bench/anomaly_eval.py): volume counts (events, patients, departments, workstations, IPs,
# wards) move together on every busy day, and ECOD sums tail scores, so keeping them all
# lets a legitimate busy day outscore a day with a few unexplained accesses. One volume signal
# (new patients, longest burst) is kept; the privacy signals (unexplained, off duty, outputs,
# VIP/employee/sensitive, searches) and the 7-day unexplained total carry the rest.
DEFAULT_FEATURES = ("new_patients", "unexplained", "unexplained_share", "unexplained_7d",
                    "off_duty_share", "output_records", "vip_accesses", "employee_accesses",
                    "sensitive_accesses", "burst_patients", "queries")


def _d(s: str) -> date:
    return date.fromisoformat(s)


@register
class UserDayAnomaly(Detector):
    id = "anomaly.user_day"
    catches = ("anomaly.slow_insider",)
    also_catches = ("bulk.off_hours", "bulk.volume")
    partition_key = "user"
    shares = ("explain", "duty_mask")
    name_en = "User-day behaviour unlike peers"
    name_zh = "用户日行为异常（同岗位对比）"
    item = "9"
    severity = "medium"
    kind = "anomaly"
    needs = ("access_log",)
    uses = ("users", "patients", "care_relations", "shifts")
    lookback_days = 14
    state_tables = ("user_day_features", "models")    # detectors/anomaly/state.py
    params = (
        Param("model", str, "ecod", "outlier model: ecod, copod, iforest, hbos, or ensemble "
              "(mean baseline rank of all four)", choices=MODEL_KINDS),
        Param("features", list, list(DEFAULT_FEATURES), "features the model uses (see "
              "emraudit.detectors.anomaly.features.FEATURES)", choices=ALL_FEATURES),
        Param("baseline_days", int, 30, "days before a scanned day the model is fitted on",
              unit="days", min=7, max=365),
        Param("min_baseline_days", int, 7, "fewer baseline days than this: the day is not "
              "scored (a note says so)", unit="days", min=1, max=365),
        Param("refit", str, "weekly", "refit the model every scan (nightly) or when it is a "
              "week old (weekly); a changed setting always refits", choices=("nightly", "weekly")),
        Param("min_peer_users", int, 5, "a role+department peer group needs this many users "
              "in the baseline, else the role is the peer group; a user whose role has fewer "
              "is not scored (no peers to compare with; a note counts them)",
              unit="users", min=1, max=10000),
        Param("own_baseline", bool, False, "also feed the model each feature's deviation "
              "from the user's own baseline median (damps habitual behaviour, but lets a slow "
              "insider's creep become their own normal; off by default, see "
              "bench/anomaly_eval.py). The evidence always shows the own median."),
        Param("min_own_days", int, 5, "baseline days a user needs for an own median",
              unit="days", min=1, max=365),
        Param("max_per_day", int, 5, "alert budget: at most this many user-days per day "
              "(0: no daily cap)", unit="user-days", min=0, max=100000),
        Param("max_per_100k_events", float, 20.0, "alert budget by volume: the percentile a "
              "user-day must exceed is raised until the baseline itself would give at most "
              "this many user-days per 100,000 events (a small unit, whose staff have few "
              "events a day, is held to the same rate as a large one; 0: off)",
              unit="user-days", min=0.0, max=100000.0),
        Param("require_signal", bool, True, "report a user-day only when it carries a privacy "
              "signal: an unexplained access, a print/export/copy/download, a search, or an "
              "unexplained access to a VIP, employee or sensitive patient. A day unusual only "
              "in workload (volume, bursts, new patients, hours) whose every access is "
              "explained by care is not a privacy lead"),
        Param("min_percentile", float, 99.5, "alert budget: a user-day must score above this "
              "percentile of the baseline user-days", unit="%", min=0.0, max=100.0),
        Param("history_days", int, 14, "look-back for 'new patient' and, on a first scan, the "
              "days of raw events the baseline is computed from", unit="days", min=1, max=365),
        Param("burst_minutes", int, 30, "window of the longest-burst feature", unit="minutes",
              min=1, max=1440),
        Param("random_state", int, 0, "seed of the randomized models (IForest)", min=0,
              max=2**31 - 1),
        Param("max_drivers", int, 4, "features listed as driving a finding", min=1, max=20),
        Param("driver_p", float, 0.02, "a feature drives the score when the baseline share at "
              "or above its value is below this", min=0.0, max=1.0),
        Param("max_event_ids", int, 200, "event ids listed per finding (the count is kept)",
              unit="events", min=1, max=100000),
    )
    description = ("Builds daily behaviour features for every user (events, patients, new "
                   "patients, unexplained and off-duty share, prints/exports, departments and "
                   "wards touched, workstations, VIP/employee/sensitive accesses, longest burst, "
                   "searches), scales them within the peer group (role and department) and "
                   "against the user's own baseline, and scores each scanned day with an outlier "
                   "model fitted on the preceding baseline window. Reports at most a fixed number "
                   "of user-days per day.")
    note = ("Read the drivers first: each shows the day's value against the peer median and "
            "99th percentile and against the user's own baseline median. Open the listed "
            "events (unexplained accesses, exports) and check them against the schedule and "
            "care relations; an anomaly is a lead, not a verdict.")
    false_positives = (
        "first days on a new unit or after a rotation (many new patients; no own baseline yet)",
        "a surge shift (mass-casualty event, ICU night with many admissions)",
        "staff who legitimately serve every ward (therapists, dietitians, consult teams) "
        "when their role has few peers",
        "quality-control or records staff doing an audit sweep",
    )
    description_zh = ("为每个用户逐日计算行为指标（操作次数、患者数、新接触患者数、无诊疗关系查阅"
                      "和非当班操作占比、打印导出、涉及科室与病区、终端数、重点人员/职工/敏感病历"
                      "查阅、30 分钟内最多患者数、检索次数），在同类人员（岗位和科室）中及相对本"
                      "人基线进行标准化，并用在此前基线期内拟合的离群检测模型为每个扫描日评分。每"
                      "天最多报告固定数量的人日。")
    note_zh = ("先看“异常之处”：每项列出当日数值，以及同类人员的中位数和第 99 百分位、本人基线中"
               "位数。打开所列事件（无诊疗关系查阅、导出），对照排班和诊疗关系核实；异常只是线索"
               "，不是结论。")
    false_positives_zh = (
        "调入新科室或轮转后的头几天（新患者多，尚无本人基线）",
        "突发高峰班次（成批伤员、夜间 ICU 大量收治）",
        "合法服务全院各病区的人员（治疗师、营养师、会诊团队），而其岗位同类人员很少",
        "质控或病案人员进行专项抽查",
    )
    measure_zh = "核查当日异常行为涉及的病历查阅与导出，约谈当事人，必要时调整其访问权限并开展隐私保护培训"
    measure_en = ("Review the day's unusual accesses and exports with the user and their "
                  "supervisor; restrict access where unjustified; retrain.")
    # each driver (feature, value, peers' median and 99th percentile, own median) is put in
    # words by emraudit.reports.text.driver_text
    messages = {"anomaly.user_day": Message(
        N_("%(user)s (%(role)s, %(department)s) on %(day)s behaved unlike peers and their own "
           "past: %(drivers)s (score above %(percent)s%% of baseline user-days)"))}

    def effective_lookback_days(self) -> int:
        return int(self.p.history_days)

    def baseline_days(self) -> int:
        return int(self.p.baseline_days)

    # ------------------------------------------------------------------------------------
    def features(self, ctx: Context) -> pd.DataFrame:
        """The daily features computed from the raw events: of ctx.events, or of every
        partition when the context holds one (engine.population collects them)."""
        key = f"features.user_day:{self.p.history_days}:{self.p.burst_minutes}"
        if key in ctx.population:
            return ctx.population[key]
        return ctx.cached(key, lambda: self._compute_features(ctx))

    def _compute_features(self, ctx: Context) -> pd.DataFrame:
        events, since = self._events_needed(ctx)
        return user_day_features(ctx, history_days=self.p.history_days,
                                 burst_minutes=self.p.burst_minutes, events=events,
                                 first_day=ctx.first_event_day(since))

    def _events_needed(self, ctx: Context) -> tuple[pd.DataFrame, pd.Timestamp | None]:
        """The events whose days must be computed, and the time they start from: when the
        store already holds every look-back day, only the window and the `history_days`
        before it (for 'new patient'), not the whole look-back the pipeline loaded for
        other detectors. (A partitioned scan gives every partition the stored days.)"""
        ev = ctx.events
        stored = ctx.baseline.get("user_day_features")
        if ctx.partitioned:
            stored = ctx.population.get("anomaly.stored_days")
        first_ts = ctx.history_bounds()[0]
        if ev is None or len(ev) == 0 or stored is None or len(stored) == 0 \
                or first_ts is None:
            return ev, None
        tz = ctx.tz
        first = first_ts.tz_convert(tz).normalize()
        ws = ctx.window_start.tz_convert(tz).normalize()
        lookback = pd.date_range(first, ws - pd.Timedelta(days=1), freq="D")
        have = set(stored["day"].unique().astype(str)) if isinstance(stored, pd.DataFrame) \
            else set(stored)
        if any(d.strftime("%Y-%m-%d") not in have for d in lookback):
            return ev, None
        start = ws - pd.Timedelta(days=self.p.history_days)
        ts = ev["ts"]
        if not ts.is_monotonic_increasing:
            keep = (ts >= start).to_numpy()
            return (ev if keep.all() else ev[keep]), start
        i = int(ts.searchsorted(start, side="left"))
        # ctx.events itself when nothing is cut: the shared duty mask is cached for it
        return (ev if i == 0 else ev.iloc[i:]), start

    def _all_features(self, ctx: Context) -> tuple[pd.DataFrame, list[str]]:
        """Stored baseline days plus computed days; computed days the store lacks (and the
        scanned days) go to ctx.outputs for the pipeline to persist."""
        comp = self.features(ctx)
        scan_days = sorted(comp.loc[comp["in_window"], "day"].unique())
        stored = ctx.baseline.get("user_day_features")
        if stored is None or len(stored) == 0:
            stored = empty_features().drop(columns="in_window")
        stored_days = set(stored["day"].unique()) - set(scan_days)
        use_comp = comp[~comp["day"].isin(stored_days)]
        use_stored = stored[stored["day"].isin(stored_days)]
        cols = ["user_id", "day", "role", "department", *FEATURE_NAMES]
        for c in FEATURE_NAMES:
            if c not in use_stored.columns:
                use_stored = use_stored.assign(**{c: np.nan})
        frames = [f[cols] for f in (use_stored, use_comp) if len(f)]
        allf = (pd.concat(frames, ignore_index=True) if frames else
                empty_features().drop(columns="in_window"))
        allf = add_trailing(allf.astype({c: float for c in FEATURE_NAMES}))
        prev = ctx.outputs.get("user_day_features")
        out = use_comp[cols]
        if prev is not None and len(prev):
            out = pd.concat([prev, out], ignore_index=True).drop_duplicates(
                ["user_id", "day"], keep="last")
        ctx.outputs["user_day_features"] = out.reset_index(drop=True)
        return allf.sort_values(["day", "user_id"], kind="stable").reset_index(drop=True), \
            scan_days

    def _new_model(self) -> UserDayModel:
        p = self.p
        return UserDayModel(kind=p.model, feats=[f for f in ALL_FEATURES if f in p.features],
                            own=p.own_baseline,
                            min_peer_users=p.min_peer_users, min_own_days=p.min_own_days,
                            seed=p.random_state)

    def _stored_model(self, ctx: Context) -> UserDayModel | None:
        row = (ctx.baseline.get("models") or {}).get(self.id)
        if not row:
            return None
        try:
            m = UserDayModel.from_row(row)
        except (ValueError, KeyError, OSError) as exc:
            ctx.notes.append(f"{self.id}: stored model not reusable ({exc}); refitting")
            return None
        return m if m.config_key() == self._new_model().config_key() else None

    def _stale(self, m: UserDayModel | None, day: str) -> bool:
        if m is None:
            return True
        end = _d(m.window[1])
        target_end = _d(day) - timedelta(days=1)
        if end > target_end:               # trained on this day or later: never score with it
            return True
        age = (target_end - end).days
        return age > 0 if self.p.refit == "nightly" else age >= 7

    # ------------------------------------------------------------------------------------
    def population_prepare(self, ctx: Context) -> None:
        stored = ctx.baseline.get("user_day_features")
        ctx.population["anomaly.stored_days"] = (
            sorted(stored["day"].astype(str).unique()) if stored is not None and len(stored)
            else [])

    def population_part(self, ctx: Context) -> dict:
        key = f"features.user_day:{self.p.history_days}:{self.p.burst_minutes}"
        return {key: self.features(ctx)}

    def population_combine(self, key: str, parts: list) -> pd.DataFrame:
        frames = [f for f in parts if f is not None and len(f)]
        if not frames:
            return parts[0] if parts else None
        return pd.concat(frames, ignore_index=True).sort_values(
            ["day", "user_id"], kind="stable").reset_index(drop=True)

    def population_finish(self, ctx: Context) -> None:
        ctx.population[f"plan:{self.id}"] = self.plan(ctx)

    def run(self, ctx: Context) -> pd.DataFrame:
        """Score the scanned days and report the chosen user-days. A partitioned scan
        scores once, for every partition (`plan`, in engine.population), and each
        partition reports the chosen user-days of its own users."""
        plan = ctx.population.get(f"plan:{self.id}")
        if plan is None:
            plan = self.plan(ctx)
        mine = plan
        if ctx.partitioned:
            users = set(ctx.events["user_id"].astype(str).unique()) if len(ctx.events) \
                else set()
            mine = [c for c in plan if c["user_id"] in users]
        return self.findings([self._finding(ctx, c) for c in mine])

    def plan(self, ctx: Context) -> list[dict]:
        """Fit, score and choose: one dict per reported user-day, everything its finding
        needs but the events (drivers, score, rank, features). Sets ctx.outputs (features,
        models) and the scores memo."""
        p = self.p
        if not p.features:
            ctx.notes.append(f"{self.id}: no features configured; nothing scored")
            return []
        allf, scan_days = self._all_features(ctx)
        if not scan_days:
            return []
        model = self._stored_model(ctx)
        fitted: list[UserDayModel] = []
        scored: list[pd.DataFrame] = []
        rows_out: list[dict] = []
        skipped = []
        no_peers = 0
        for day in scan_days:
            lo = (_d(day) - timedelta(days=p.baseline_days)).isoformat()
            base = allf[(allf["day"] >= lo) & (allf["day"] < day)]
            if base["day"].nunique() < p.min_baseline_days:
                skipped.append(day)
                continue
            if self._stale(model, day):
                model = self._new_model()
                model.window = (base["day"].min(), base["day"].max())
                model.fit(base, own_medians(base, list(ALL_FEATURES), p.min_own_days))
                fitted.append(model)
            own = own_medians(base, list(ALL_FEATURES), p.min_own_days)
            today = allf[allf["day"] == day].reset_index(drop=True)
            res = model.score(today, own)
            thr_rank = max(p.min_percentile / 100.0, volume_percentile(
                base, p.max_per_100k_events))
            frame = today[["user_id", "day", "role", "department"]].assign(
                score=res["score"], rank=res["rank"])
            order = np.lexsort((frame["user_id"].to_numpy(str), -frame["score"].to_numpy()))
            eligible = _has_peers(model, today)
            no_peers += int((~eligible).sum())
            if p.require_signal:
                eligible &= privacy_signal(today)
            over = (frame["rank"].to_numpy() > thr_rank)[order] & eligible[order]
            chosen = order[over]
            if p.max_per_day:
                chosen = chosen[:p.max_per_day]
            frame["flagged"] = False
            frame.loc[chosen, "flagged"] = True
            scored.append(frame)
            for i in chosen:
                rows_out.append(self._choice(model, today.iloc[i], res, i, own, thr_rank))
        if skipped:
            ctx.notes.append(f"{self.id}: {len(skipped)} day(s) not scored, baseline shorter "
                             f"than {p.min_baseline_days} days ({skipped[0]} … {skipped[-1]})")
        if no_peers:
            ctx.notes.append(f"{self.id}: {no_peers} user-day(s) not scored: their role has "
                             f"fewer than {p.min_peer_users} users to compare with")
        if fitted:
            now = pd.Timestamp.now(tz="UTC").to_pydatetime()
            ctx.outputs.setdefault("models", [])
            ctx.outputs["models"] = [r for r in ctx.outputs["models"]
                                     if r.get("detector") != self.id]
            ctx.outputs["models"].append(fitted[-1].to_row(self.id, now))
        ctx.memo[SCORES_MEMO] = (pd.concat(scored, ignore_index=True) if scored else
                                 pd.DataFrame(columns=["user_id", "day", "role", "department",
                                                       "score", "rank", "flagged"]))
        return rows_out

    # ------------------------------------------------------------------------------------
    def _drivers(self, model: UserDayModel, row: pd.Series, res: dict, i: int,
                 own: pd.DataFrame) -> list[dict]:
        cells = res["cells"][i]
        X = res["X"][i]
        cols = model.columns
        g, gkeys = peer_group_of(model.peers, row.to_frame().T.reset_index(drop=True))
        g = int(g[0])
        per = []
        for j, f in enumerate(model.feats):
            cp = cells[cols.index(f"peer:{f}")] if X[cols.index(f"peer:{f}")] > 0 else 0.0
            co = 0.0
            if f"own:{f}" in cols:
                k = cols.index(f"own:{f}")
                co = cells[k] if X[k] > 0 else 0.0
            per.append((max(cp, co), f, j, cp, co))
        per.sort(key=lambda t: (-t[0], t[1]))
        lim = -math.log(self.p.driver_p) if self.p.driver_p > 0 else float("inf")
        chosen = [t for t in per if t[0] >= lim][: self.p.max_drivers] or per[:1]
        out = []
        uid = str(row["user_id"])
        for contrib, f, j, cp, co in chosen:
            own_med = (float(own.at[uid, f]) if uid in own.index and not
                       pd.isna(own.at[uid, f]) else None)
            own_days = int(own.at[uid, "_days"]) if uid in own.index else 0
            val = float(row[f]) if not pd.isna(row[f]) else None
            pm = float(model.peers.raw_med[g, j])
            p99 = float(model.peers.raw_p99[g, j])
            out.append({"feature": f, "item": FEATURES[f]["item"], "value": val,
                        "peer_group": gkeys[0],
                        "peer_median": pm, "peer_p99": p99, "own_median": own_med,
                        "own_days": own_days, "peer_tail_p": round(math.exp(-cp), 6),
                        "own_tail_p": round(math.exp(-co), 6) if co else None})
        return out

    def _choice(self, model: UserDayModel, row: pd.Series, res: dict, i: int,
                own: pd.DataFrame, thr_rank: float) -> dict:
        """A chosen user-day with what its finding says, computed where the model is."""
        return {"user_id": str(row["user_id"]), "day": str(row["day"]), "row": row,
                "drivers": self._drivers(model, row, res, i, own),
                "rank": float(res["rank"][i]), "score": float(res["score"][i]),
                "threshold_rank": float(thr_rank),
                "model": {"kind": model.kind, "window": list(model.window),
                          "feats": list(model.feats)}}

    def _finding(self, ctx: Context, choice: dict) -> dict:
        p = self.p
        uid, day, row = choice["user_id"], choice["day"], choice["row"]
        drivers = [dict(d) for d in choice["drivers"]]
        sub = day_event_rows(ctx, uid, day)
        carried = driver_events(ctx, sub, [d["feature"] for d in drivers], p)
        ids: list[str] = []
        for d in drivers:
            lst = carried.get(d["feature"], [])
            d["event_count"] = len(lst)
            d["event_ids"] = lst[: p.max_event_ids]
            for e in lst:
                if len(ids) >= p.max_event_ids:
                    break
                if e not in ids:
                    ids.append(e)
        if not ids:
            ids = sub["event_id"].astype(str).tolist()[: p.max_event_ids]
        item = drivers[0]["item"]
        rank, score, model = choice["rank"], choice["score"], choice["model"]
        sev = "high" if rank > 1.0 else self.severity
        pct = min(rank, 1.0) * 100
        args = {"user": uid, "role": row["role"], "department": row["department"] or None,
                "day": day, "percent": round(pct, 2),
                "drivers": [{k: d[k] for k in ("feature", "value", "peer_median", "peer_p99",
                                               "own_median", "own_days")} for d in drivers]}
        start = sub["ts"].min() if len(sub) else pd.Timestamp(day, tz=ctx.tz)
        end = sub["ts"].max() if len(sub) else start
        evidence = {
            "model": model["kind"], "score": round(score, 6), "baseline_rank": round(rank, 6),
            "threshold_percentile": p.min_percentile, "max_per_day": p.max_per_day,
            "max_per_100k_events": p.max_per_100k_events,
            "threshold_rank": round(choice["threshold_rank"], 6),
            # what made the day unusual, as fields (reports word them in either language)
            "unusual_features": [d["feature"] for d in drivers],
            "training_window": list(model["window"]), "features": list(model["feats"]),
            "peer_group": drivers[0]["peer_group"], "drivers": drivers,
            "events_total": int(len(sub)), "event_ids_listed": len(ids),
            "feature_values": {f: (None if pd.isna(row[f]) else float(row[f]))
                               for f in ALL_FEATURES if f in row.index},
        }
        return {"key": f"{uid}|{day}", "user_id": uid, "patient_id": "", "start": start,
                "end": end, "event_ids": ids, "message_id": self.id, "message_args": args,
                "score": score,
                "severity": sev, "rectification_item": item, "evidence": evidence}


# the features that say a user-day touched privacy at all (require_signal)
SIGNAL_FEATURES = ("unexplained", "outputs", "queries", "vip_accesses", "employee_accesses",
                   "sensitive_accesses")


def privacy_signal(days: pd.DataFrame) -> np.ndarray:
    """True for user-days with a privacy signal. Unknown explanations (engine missing) count
    as a possible signal, never as its absence; an unknown flag (no patients table, so no
    patient is flagged) is no signal."""
    out = np.zeros(len(days), bool)
    for f in SIGNAL_FEATURES:
        if f in days.columns:
            v = days[f].to_numpy(float)
            out |= (v > 0) | (np.isnan(v) if f == "unexplained" else False)
    return out


def volume_percentile(base: pd.DataFrame, per_100k: float) -> float:
    """The baseline rank a user-day must exceed so that the baseline's own user-days would
    be reported at most `per_100k` times per 100,000 events: (1 - q) x user-days <= budget x
    events / 100,000."""
    if per_100k <= 0 or not len(base):
        return 0.0
    events = float(np.nansum(base["events"].to_numpy(float)))
    return max(0.0, 1.0 - per_100k * events / (len(base) * 1e5))


def _has_peers(model: UserDayModel, days: pd.DataFrame) -> np.ndarray:
    """A user-day is compared with its role+department or its role, never with everyone:
    a role with too few users has no peers to say what is unusual for it."""
    _, keys = peer_group_of(model.peers, days)
    return np.array([k != "*" for k in keys], dtype=bool)


def driver_events(ctx: Context, sub: pd.DataFrame, feats: list[str], p) -> dict[str, list[str]]:
    """For each driving feature, the event ids of the user-day that carry it."""
    out: dict[str, list[str]] = {}
    if sub.empty:
        return out
    sub = sub.sort_values("ts", kind="stable")
    eid = sub["event_id"].astype(str)
    act = sub["action"].astype("string") if "action" in sub else pd.Series("", index=sub.index)
    pat = sub["patient_id"] if "patient_id" in sub else pd.Series(pd.NA, index=sub.index)
    has_p = pat.notna().to_numpy()
    for f in feats:
        if f in ("outputs", "output_records"):
            m = act.isin(OUTPUT_ACTIONS).fillna(False).to_numpy()
        elif f == "queries":
            m = (act == "query").fillna(False).to_numpy()
        elif f in ("unexplained", "unexplained_share", "unexplained_7d"):
            m = _unexplained_mask(ctx, sub)
        elif f == "off_duty_share":
            m = _off_duty_mask(ctx, sub)
        elif f in ("vip_accesses", "sensitive_accesses", "employee_accesses"):
            m = _flag_mask(ctx, sub, f)
        elif f in ("new_patients", "new_patients_7d"):
            m = _new_patient_mask(ctx, sub, p.history_days)
        elif f == "burst_patients":
            m = _burst_mask(sub, p.burst_minutes)
        elif f in ("workstations", "ips"):
            col = "workstation" if f == "workstations" else "ip"
            m = (~sub[col].duplicated() & sub[col].notna()).to_numpy() if col in sub else \
                np.zeros(len(sub), bool)
        elif f == "events":
            m = np.ones(len(sub), bool)
        else:  # patients, departments, wards: the first access of each patient
            m = has_p & ~pat.duplicated().to_numpy()
        out[f] = eid[np.asarray(m, bool)].tolist()
    return out


def _in_index(ids: pd.Index, values: pd.Series) -> np.ndarray:
    """Per value: is it in `ids` (unique)? The index's hash table is built once and kept by
    the index: `isin` with a set rebuilt one as large as the set for every finding, which
    on a night with 100,000s of unexplained accesses made this detector quadratic."""
    if not len(ids) or not len(values):
        return np.zeros(len(values), dtype=bool)
    return ids.get_indexer(values.astype(str)) >= 0


def _unexplained_mask(ctx, sub) -> np.ndarray:
    key = "anomaly.unexplained_ids"
    if key not in ctx.memo:
        try:
            from emraudit.detectors.explain import explain_accesses
            ex = explain_accesses(ctx)
            ids = ex.loc[~ex["explained"].astype(bool), "event_id"].astype(str)
        except Exception:
            ids = pd.Series([], dtype=str)
        ctx.memo[key] = pd.Index(pd.unique(ids.to_numpy(dtype=object)), dtype=object)
    return _in_index(ctx.memo[key], sub["event_id"])


def _off_duty_mask(ctx, sub) -> np.ndarray:
    try:
        from emraudit.detectors.schedule import duty_mask
        on, _ = duty_mask(ctx, sub)
    except Exception:
        return np.zeros(len(sub), bool)
    return ~pd.Series(on).reindex(sub.index).fillna(True).to_numpy(bool)


def _flag_mask(ctx, sub, f) -> np.ndarray:
    pt = ctx.patients
    if pt is None or "patient_id" not in sub:
        return np.zeros(len(sub), bool)
    col = {"vip_accesses": "vip", "sensitive_accesses": "sensitive",
           "employee_accesses": "employee_user_id"}[f]
    if col not in pt:
        return np.zeros(len(sub), bool)
    key = f"anomaly.flagged_patients:{col}"
    if key not in ctx.memo:
        sel = pt[col].notna() if col == "employee_user_id" else \
            pt[col].fillna(False).astype(bool)
        ids = pt.loc[sel, "patient_id"].dropna().astype(str)
        ctx.memo[key] = pd.Index(pd.unique(ids.to_numpy(dtype=object)), dtype=object)
    pid = sub["patient_id"]
    flagged = _in_index(ctx.memo[key], pid) & pid.notna().to_numpy(bool)
    return flagged & _unexplained_mask(ctx, sub)     # as the feature counts them


def _new_patient_mask(ctx, sub, history_days) -> np.ndarray:
    uid = str(sub["user_id"].iloc[0])
    day0 = sub["ts"].dt.tz_convert(ctx.tz).dt.normalize().iloc[0]
    hist = day_event_rows_before(ctx, uid, day0, history_days)
    seen = set(hist["patient_id"].dropna().astype(str))
    pat = sub["patient_id"].astype("string")
    return (pat.notna() & ~pat.isin(seen) & ~pat.duplicated()).fillna(False).to_numpy(bool)


def day_event_rows_before(ctx, uid, day0, history_days) -> pd.DataFrame:
    u = user_rows(ctx, uid)
    lo = day0 - pd.Timedelta(days=history_days)
    return u[(u["ts"] >= lo) & (u["ts"] < day0)]


def _burst_mask(sub, minutes) -> np.ndarray:
    """The events of the densest `minutes` window (most distinct patients)."""
    m = np.zeros(len(sub), bool)
    has = sub["patient_id"].notna().to_numpy()
    if not has.any():
        return m
    pos = np.flatnonzero(has)
    t = sub["ts"].to_numpy("datetime64[ns]").view(np.int64)[pos]
    pc, _ = pd.factorize(sub["patient_id"].to_numpy()[pos])
    best_lo, best_hi = densest_window(t, pc, minutes * 60 * 10**9)
    m[pos[best_lo:best_hi + 1]] = True
    return m


def densest_window(t: np.ndarray, codes: np.ndarray, width: int) -> tuple[int, int]:
    """(lo, hi) of the first window (t[hi] - width, t[hi]] holding the most distinct codes
    (t sorted). One pass with a count per code: a bulk user's day is 100,000 events, and
    counting each window afresh made one finding's evidence take minutes."""
    los = np.searchsorted(t, t - width, side="right").tolist()
    cnt = [0] * (int(codes.max()) + 1 if len(codes) else 0)
    c = codes.tolist()
    best, best_lo, best_hi = -1, 0, 0
    lo = distinct = 0
    for i, ci in enumerate(c):     # one user-day, one pass: no window is counted again
        if cnt[ci] == 0:
            distinct += 1
        cnt[ci] += 1
        while lo < los[i]:
            cnt[c[lo]] -= 1
            if cnt[c[lo]] == 0:
                distinct -= 1
            lo += 1
        if distinct > best:
            best, best_lo, best_hi = distinct, lo, i
    return best_lo, best_hi

