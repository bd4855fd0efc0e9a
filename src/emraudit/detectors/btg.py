"""Break-the-glass abuse (`btg.unjustified`).

Two patterns, one detector:

1. A break-the-glass (action `break_glass`) on a patient with no care relation for that user,
   (judged only when care_relations are loaded: without them every BTG would look unjustified)
   their department or their ward active at the time or starting within `justify_hours` after
   it (an emergency admission is usually registered after the glass is broken). A BTG whose
   justification period has not yet elapsed at the data horizon (the later of the window end
   and the newest care-relation start) is left pending and judged by the next scan, which
   therefore also looks at BTGs from the look-back that were still pending at its start: such
   a finding may consist of look-back events only — the one exception to the in-window rule,
   so a BTG near the end of a scan window is judged exactly once.
2. A user's break-the-glass rate (BTGs per 100 patient-days of access) far above their peers'
   (role + department) over the look-back and the window, with at least one in-window BTG.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param, empty_findings, raise_severity
from emraudit.detectors.bulk import (PEER_PARAMS, in_window, patient_days, patient_events,
                                     peer_groups, user_info)
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.fastops import isin
from emraudit.model import OUTPUT_ACTIONS
from emraudit.reports.i18n import N_, Np_


def _naive_utc(s: pd.Series) -> np.ndarray:
    """Instants as timezone-free UTC datetime64 (NaT kept), for mixing frames safely."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[ns]").to_numpy()


@register
class BtgUnjustified(Detector):
    id = "btg.unjustified"
    partition_key = "user"
    name_en = "Unjustified break-the-glass"
    name_zh = "紧急授权滥用"
    item = "9"
    severity = "medium"
    needs = ("access_log",)
    uses = ("care_relations", "users")
    lookback_days = 28
    judges_late = True      # BTGs pending at the previous scan are judged now (see module doc)
    params = (
        Param("justify_hours", float, 24.0, "a care relation for the user, their department or "
              "ward starting within this many hours after the break-the-glass justifies it",
              "hours", 0.0, 720.0),
        Param("before_grace_hours", float, 0.0, "a relation that ended at most this long before "
              "the break-the-glass still justifies it", "hours", 0.0, 720.0),
        Param("rate_min_count", int, 5, "fewest break-the-glass events (look-back and window) "
              "for the rate test", "events", 1, 10000),
        Param("rate_min", float, 5.0, "the user's rate must be at least this many "
              "break-the-glass per 100 patient-days of access", "per 100", 0.0, 100.0),
        Param("rate_multiple", float, 3.0, "and above this multiple of the peer percentile",
              "×", 1.0, 100.0),
        Param("rate_peer_quantile", float, 0.95, "percentile of the peers' rates", "", 0.5, 1.0),
        *PEER_PARAMS,
    )
    description = ("Break-the-glass with no care relation for the user, their department or "
                   "ward active then or starting within justify_hours after it; and a user's "
                   "break-the-glass rate far above their peers'.")
    note = ("Read the reason given. An emergency with no admission, consult or order afterwards "
            "is rarely real; check what was viewed, printed or exported after the glass was "
            "broken. For the rate pattern, compare with colleagues in the same department.")
    false_positives = ("Emergency care whose admission is registered in another department or "
                       "later than justify_hours.",
                       "Patients who died or left before a relation was recorded.",
                       "Emergency departments where breaking the glass is routine (peers share "
                       "the rate).")
    description_zh = ("紧急授权（破窗）后，用户本人、所在科室或病区当时既无有效的诊疗关系，在补录"
                      "期限（justify_hours）内也未建立；以及某用户的紧急授权频率远高于同类人员。")
    note_zh = ("先看填写的事由。紧急情况之后既无入院、也无会诊或医嘱的，很少是真的紧急；核查破窗"
               "后查阅、打印或导出了什么。对于频率情形，与同科室同事比较。")
    false_positives_zh = (
        "紧急救治后在其他科室登记入院，或登记时间晚于补录期限。",
        "患者在建立诊疗关系前已死亡或离院。",
        "紧急授权属于常规操作的急诊科室（同类人员频率相近）。",
    )
    measure_zh = "规范紧急授权使用，事后48小时内补录事由并由科主任审核，定期通报滥用情况。"
    measure_en = ("Require a reason and a department head's review for every break-the-glass, "
                  "and report abuse regularly.")
    messages = {
        "btg.unjustified": Message(
            N_("%(user)s broke the glass on patient %(patient)s and no care relation for the "
               "user, department or ward followed within %(hours)s h"),
            clauses=(Clause("outputs", N_("; records were printed or exported meanwhile")),)),
        "btg.unjustified.rate": Message(
            Np_("%(user)s (%(role)s) broke the glass %(count)s time (%(rate)s per 100 "
                "patient-days), above the required %(required)s for peers %(group)s",
                "%(user)s (%(role)s) broke the glass %(count)s times (%(rate)s per 100 "
                "patient-days), above the required %(required)s for peers %(group)s"),
            count="count"),
    }

    def run(self, ctx: Context) -> pd.DataFrame:
        rows = self._unjustified(ctx) + self._rate(ctx)
        return self.findings(rows) if rows else empty_findings()

    # ------------------------------------------------------------------ single events
    def _unjustified(self, ctx: Context) -> list[dict]:
        p = self.p
        ev = ctx.events
        justify = pd.Timedelta(hours=p.justify_hours)
        btg = ev[(ev["action"] == "break_glass").to_numpy(dtype=bool) & ev["patient_id"].notna()
                 .to_numpy(dtype=bool)]
        if "outcome" in btg.columns:
            btg = btg[btg["outcome"].astype("string").fillna("success") != "failure"]
        if btg.empty:
            return []
        rel = ctx.care_relations
        if rel is None:
            ctx.notes.append("btg.unjustified: no care_relations loaded; break-the-glass events "
                             "are not judged one by one (only the rate against peers)")
            return []
        horizon = ctx.window_end
        if rel is not None and len(rel) and rel["start"].notna().any():
            horizon = max(horizon, rel["start"].max())
        # in the window, or pending at the start of the window (judged now)
        due = (btg["ts"] + justify <= horizon).to_numpy()
        fresh = (btg["ts"] + justify > ctx.window_start).to_numpy()
        pending = int((~due & in_window(ctx, btg)).sum())
        if pending and not ctx.partitioned:     # a partitioned scan counts them all once
            ctx.notes.append(f"btg.unjustified: {pending} break-the-glass event(s) still within "
                             f"their {p.justify_hours:g} h justification period; judged next scan")
        btg = btg[due & fresh & (in_window(ctx, btg) | fresh)]
        if btg.empty:
            return []
        info = user_info(ctx, btg["user_id"].astype(str).unique())
        b = pd.DataFrame({"bi": np.arange(len(btg)), "patient_id": btg["patient_id"].astype(str)
                          .to_numpy(), "user_id": btg["user_id"].astype(str).to_numpy(),
                          "ts": _naive_utc(btg["ts"])})
        b["dept"] = info["department"].reindex(b["user_id"]).to_numpy()
        b["ward"] = info["ward"].reindex(b["user_id"]).to_numpy()
        justified = np.zeros(len(b), dtype=bool)
        how = np.full(len(b), "", dtype=object)
        if rel is not None and len(rel):
            # only the relations of these events' patients: a month's backlog holds
            # millions of relations, and a frame of all of them as text was a worker's
            # largest allocation for a few hundred break-the-glass events
            rel = rel[isin(rel["patient_id"].astype("string"), b["patient_id"].unique())]

            def text(c):
                return (rel[c].astype("string").fillna("") if c in rel.columns
                        else pd.Series("", index=rel.index, dtype="string")).to_numpy()

            r = pd.DataFrame({"patient_id": rel["patient_id"].astype(str).to_numpy(),
                              "r_user": text("user_id"), "r_dept": text("department"),
                              "r_ward": text("ward"), "kind": text("kind"),
                              "start": _naive_utc(rel["start"]),
                              "end": (_naive_utc(rel["end"]) if "end" in rel.columns else
                                      np.full(len(rel), np.datetime64("NaT"), "datetime64[ns]"))})
            m = b.merge(r, on="patient_id", how="inner")
            if len(m):
                who = ((m["r_user"] == m["user_id"]) |
                       ((m["r_dept"] != "") & (m["r_dept"] == m["dept"].fillna(""))) |
                       ((m["r_ward"] != "") & (m["r_ward"] == m["ward"].fillna(""))))
                ts, start, end = m["ts"], m["start"], m["end"]
                grace = pd.Timedelta(hours=p.before_grace_hours)
                when = (start <= ts + justify) & (end.isna() | (end >= ts - grace))
                ok = (who & when).to_numpy(dtype=bool)
                if ok.any():
                    hit = m.loc[ok].sort_values("start")
                    first = hit.drop_duplicates("bi")
                    justified[first["bi"].to_numpy()] = True
                    how[first["bi"].to_numpy()] = first["kind"].to_numpy()
        bad = b[~justified]
        if bad.empty:
            return []
        # what the user did with the patient during the justification period: every
        # access of the same user and patient from the event to justify_hours after it
        acc = patient_events(ctx, ("view", "query", "create", "update", "sign", *OUTPUT_ACTIONS))
        acc = acc[isin(acc["user_id"].astype("string"), bad["user_id"].unique()) &
                  isin(acc["patient_id"].astype("string"), bad["patient_id"].unique())]
        src = btg.iloc[bad["bi"].to_numpy()]
        k = pd.DataFrame({"k": np.arange(len(bad)), "user_id": bad["user_id"].to_numpy(),
                          "patient_id": bad["patient_id"].to_numpy(),
                          "t0": src["ts"].reset_index(drop=True)})
        a = pd.DataFrame({"pos": np.arange(len(acc)),
                          "user_id": acc["user_id"].astype(str).to_numpy(),
                          "patient_id": acc["patient_id"].astype(str).to_numpy(),
                          "ts": acc["ts"].reset_index(drop=True),
                          "eid": acc["event_id"].astype(str).to_numpy(),
                          "out": acc["action"].isin(list(OUTPUT_ACTIONS)).to_numpy(dtype=bool)})
        m = k.merge(a, on=["user_id", "patient_id"], how="inner")
        m = m[((m["ts"] >= m["t0"]) & (m["ts"] <= m["t0"] + justify)).to_numpy(dtype=bool)]
        m = m.sort_values(["k", "pos"], kind="stable")
        g = m.groupby("k", sort=True)
        after_ids = g["eid"].agg(list).to_dict()
        after_last = g["ts"].max().to_dict()
        after_out = g["out"].any().to_dict()
        inwin = in_window(ctx, src)
        reasons = (src["reason"].tolist() if "reason" in src.columns else [None] * len(src))
        rows = []
        for i, (user, patient, dept, ward, t0, eid, reason) in enumerate(zip(
                bad["user_id"].tolist(), bad["patient_id"].tolist(), bad["dept"].tolist(),
                bad["ward"].tolist(), src["ts"].tolist(), src["event_id"].astype(str).tolist(),
                reasons)):
            ids = after_ids.get(i, [])
            outputs = bool(after_out.get(i, False))
            sev = raise_severity(self.severity) if outputs else self.severity
            rows.append({
                "key": f"event|{eid}", "user_id": user, "patient_id": patient,
                "event_ids": [eid, *ids],
                "start": t0, "end": after_last.get(i, t0),     # accesses from t0 on
                "severity": sev, "score": 2.0 + (1.0 if outputs else 0.0),
                "message_id": self.id,
                "message_args": {"user": user, "patient": patient,
                                 "hours": float(p.justify_hours), "outputs": outputs},
                "evidence": {
                    "pattern": "no_relation_after",
                    "reason_given": str(reason) if reason is not None and not pd.isna(reason)
                    else "",
                    "justify_hours": float(p.justify_hours),
                    # relations of these, active then or starting within justify_hours
                    "relations_looked_for": {"user": user, "department": _name(dept),
                                             "ward": _name(ward)},
                    "accesses_after": len(ids), "outputs_after": outputs,
                    "judged_after_window_start": not bool(inwin[i]),
                },
            })
        return rows

    # ------------------------------------------------------------------ population
    def population_part(self, ctx: Context) -> dict:
        denom, num = self.rate_counts(ctx)
        return {f"rates:{self.id}": {"denom": denom, "num": num},
                f"pending:{self.id}": self.pending(ctx)}

    def population_finish(self, ctx: Context) -> None:
        pending = ctx.population.get(f"pending:{self.id}") or 0
        if pending:
            ctx.notes.append(f"btg.unjustified: {pending} break-the-glass event(s) still within "
                             f"their {self.p.justify_hours:g} h justification period; judged "
                             "next scan")

    # ------------------------------------------------------------------ rate
    def rate_counts(self, ctx: Context) -> tuple[pd.Series, pd.Series]:
        """(patient-days of access, break-the-glass events) per user: of every user of the
        population when the context is one partition (engine.population), else of
        ctx.events (patient-days shared with bulk.volume, computed once)."""
        pop = ctx.population.get(f"rates:{self.id}")
        if pop is not None:
            return pop["denom"], pop["num"]
        ev = ctx.events
        b = ev[(ev["action"] == "break_glass").to_numpy(dtype=bool) &
               ev["patient_id"].notna().to_numpy(dtype=bool)]
        return patient_days(ctx)["per_user"], b.groupby(b["user_id"].astype(str)).size()

    def pending(self, ctx: Context) -> int:
        """In-window break-the-glass events still within their justification period."""
        ev = ctx.events
        btg = ev[(ev["action"] == "break_glass").to_numpy(dtype=bool) &
                 ev["patient_id"].notna().to_numpy(dtype=bool)]
        if "outcome" in btg.columns:
            btg = btg[btg["outcome"].astype("string").fillna("success") != "failure"]
        rel = ctx.care_relations
        if btg.empty or rel is None:
            return 0
        horizon = ctx.window_end
        if len(rel) and rel["start"].notna().any():
            horizon = max(horizon, rel["start"].max())
        due = (btg["ts"] + pd.Timedelta(hours=self.p.justify_hours) <= horizon).to_numpy()
        return int((~due & in_window(ctx, btg)).sum())

    def _rate(self, ctx: Context) -> list[dict]:
        p = self.p
        ev = ctx.events
        is_btg = (ev["action"] == "break_glass").to_numpy(dtype=bool) & \
            ev["patient_id"].notna().to_numpy(dtype=bool)
        if not (is_btg & in_window(ctx, ev)).any():
            return []
        b = ev[is_btg]
        denom, num = self.rate_counts(ctx)
        denom = denom[denom > 0]
        rate = (num.reindex(denom.index).fillna(0) / denom * 100.0)
        groups = peer_groups(ctx, denom.index, p.peer_min_size)
        gl = groups.reindex(rate.index).fillna("all")
        users_win = set(b.loc[in_window(ctx, b), "user_id"].astype(str))
        info = user_info(ctx, list(users_win))
        rows = []
        date = str(ctx.window_start.date())
        for uid in sorted(users_win):
            n = int(num.get(uid, 0))
            r = float(rate.get(uid, 0.0))
            g = str(groups.get(uid, "all"))
            others = rate[(gl == g).to_numpy() & (rate.index != uid)]    # peers, not self
            pr = float(others.quantile(p.rate_peer_quantile)) if len(others) else 0.0
            required = max(p.rate_min, p.rate_multiple * pr)
            if n < p.rate_min_count or r <= required:
                continue
            ub = b[b["user_id"].astype(str) == uid]
            rows.append({
                "key": f"rate|{uid}|{date}", "user_id": uid, "patient_id": "",
                "event_ids": ub["event_id"].astype(str).tolist(), "start": ub["ts"].min(),
                "end": ub["ts"].max(), "severity": "medium",
                "score": round(r / max(required, 1e-9), 3),
                "message_id": self.id + ".rate",
                "message_args": {"user": uid, "role": info.loc[uid, "role"] or None,
                                 "count": n, "rate": round(r, 1),
                                 "required": round(required, 1), "group": g},
                "evidence": {
                    "pattern": "rate_above_peers",
                    "btg_count": n, "patient_days": int(denom.get(uid, 0)),
                    "rate_per_100_patient_days": round(r, 2),
                    "thresholds": {"min_count": int(p.rate_min_count),
                                   "floor_rate": float(p.rate_min),
                                   "peer_group": g, "peer_percentile_rate": round(pr, 2),
                                   "peer_required": round(p.rate_multiple * pr, 2),
                                   "required": round(required, 2)},
                },
            })
        return rows


def _name(v) -> str | None:
    """A department or ward name for the evidence (None when unknown)."""
    return None if v is None or pd.isna(v) or str(v) == "" else str(v)
