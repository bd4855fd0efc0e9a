"""Bulk printing, exporting, copying and downloading of records (`copy.bulk_export`).

Output actions are summed by `record_count` per user in a sliding window and compared with
the largest of a floor, a multiple of the user's own look-back level and a percentile of their
peers (role + department: records staff who copy records for patients all day are measured
against each other). A handful of patients is required too, so one patient's own copy request
is not "bulk". Outputs of patients the user has no explained relation to are also summed on
their own against a lower floor (printing strangers' records is a leak at a smaller scale).
Imaging exports and exports of patients the user has no relation to raise the severity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param, empty_findings, raise_severity
from emraudit.detectors.bulk import (PEER_PARAMS, Baselines, _fmt_day, _thresholds_evidence,
                                     _tz_offset_ns, assign_episodes, codes_of,
                                     distinct_at_events, episodes, explanations,
                                     explained_flags, in_window, patient_events, peer_groups,
                                     population_daily,
                                     user_day_activity, user_info)
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.detectors.schedule import DAY_NS, MINUTE_NS, utc_ns
from emraudit.model import OUTPUT_ACTIONS
from emraudit.reports.i18n import N_

IMAGING_PATTERN = r"影像|放射|pacs|dicom|imaging|image|radiolog|ct|mri|x-?ray"


def window_sums(u: np.ndarray, t: np.ndarray, w: np.ndarray, window_ns: int) -> np.ndarray:
    """Sum of `w` over each user's events in (t - W, t], for every event (sorted by u, t).

    Exact to the nanosecond: each event's window start (u, t - W) is merged with the events
    themselves, so the events at or before it are counted without a combined user-and-time
    key (whole seconds would fit one, and drop an output a fraction of a second inside the
    window's far edge)."""
    cs = np.cumsum(w)
    n = len(t)
    if n == 0:
        return cs
    t = np.asarray(t, dtype=np.int64)
    uu = np.r_[u, u]
    tt = np.r_[t, t - np.int64(window_ns)]
    kind = np.r_[np.zeros(n, np.int8), np.ones(n, np.int8)]   # at a tie, events first
    o = np.lexsort((kind, tt, uu))
    is_start = kind[o] == 1
    before = np.cumsum(~is_start)                   # events sorted at or before each point
    lo = np.empty(n, dtype=np.int64)
    lo[o[is_start] - n] = before[is_start]
    prev = np.where(lo > 0, cs[lo - 1], 0)            # lo = 0: nothing before the window
    return cs - prev


_IMAGING = Clause("imaging", N_("; imaging was among the exports"))


@register
class CopyBulkExport(Detector):
    id = "copy.bulk_export"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Bulk printing, export or copying"
    name_zh = "批量打印/导出/复制"
    item = "8"
    severity = "medium"
    needs = ("access_log",)
    uses = ("users", "care_relations")
    lookback_days = 28
    params = (
        Param("window_minutes", int, 240, "length of the sliding window", "minutes", 5, 10080),
        Param("min_records", int, 50, "absolute floor: fewest records (record_count summed) "
              "printed/exported/copied/downloaded in one window", "records", 1, 1000000),
        Param("min_records_unrelated", int, 20, "absolute floor when counting only outputs "
              "of patients the user has no explained relation to (care relation, consult, "
              "order, record role …)", "records", 1, 1000000),
        Param("min_patients", int, 3, "fewest distinct patients in the window (one patient's "
              "own copy request is not bulk)", "patients", 1, 10000),
        Param("own_multiple", float, 3.0, "must exceed this multiple of the user's usual "
              "records per window", "×", 1.0, 100.0),
        Param("own_quantile", float, 0.95, "quantile of the user's daily maxima taken as their "
              "usual level", "", 0.5, 1.0),
        Param("peer_quantile", float, 0.99, "percentile of the peer group's daily maxima that "
              "must be exceeded", "", 0.5, 1.0),
        Param("peer_multiple", float, 1.5, "multiple applied to the peer percentile", "×",
              1.0, 100.0),
        *PEER_PARAMS,
        Param("unrelated_share", float, 0.5, "share of exported patients with no explained "
              "access that raises the severity", "", 0.0, 1.0),
        Param("imaging_pattern", str, IMAGING_PATTERN, "regular expression (case-insensitive) "
              "on the module naming imaging exports, which raise the severity"),
    )
    description = ("Print, export, copy and download actions summed by record_count per user "
                   "in a sliding window, above the largest of a floor, a multiple of the user's "
                   "own level and a percentile of their peers, over several patients; outputs "
                   "of patients the user has no explained relation to are also summed alone "
                   "against a lower floor.")
    note = ("Ask what was printed or exported and where it went. Imaging exports (whole studies "
            "on disc or USB) and exports of patients the user has no relation to are the most "
            "serious; records-office copying for patients' requests is normal.")
    false_positives = ("Ward staff printing discharge summaries for a busy discharge day.",
                       "Records office copying for insurers or courts when the role is "
                       "recorded as clinical.",
                       "Teaching or M&M conference preparation.")
    description_zh = ("按用户在滑动时间窗内累计打印、导出、复制和下载的病历份数（record_count），"
                      "超过固定下限、本人水平的倍数和同类人员百分位三者中的最大值，且涉及多名患者"
                      "；与用户无正当关系的患者的输出另行单独累计，适用更低的下限。")
    note_zh = ("询问打印或导出了什么、去向何处。导出影像（整套检查刻盘或拷入U盘）和导出无诊疗关系"
               "患者的病历最为严重；病案室应患者申请复印属于正常业务。")
    false_positives_zh = (
        "出院高峰日病区人员批量打印出院小结。",
        "岗位登记为临床的病案人员为保险公司或法院复印病历。",
        "教学或死亡病例讨论（M&M）准备材料。",
    )
    measure_zh = "规范病历打印、导出、复制审批与登记，限制批量导出与移动介质使用，核查去向。"
    measure_en = ("Require approval and registration of printing, export and copying, restrict "
                  "bulk export and removable media, and trace where the copies went.")
    # one sentence per rule, so the headline names the rule that fired
    messages = {
        "copy.bulk_export": Message(
            N_("%(user)s (%(role)s) printed or exported %(records)s records of %(patients)s "
               "patients (%(peak)s within %(minutes)s min); the threshold was %(required)s"),
            clauses=(_IMAGING,)),
        "copy.bulk_export.unrelated": Message(
            N_("%(user)s (%(role)s) printed or exported %(peak)s records of patients they have "
               "no care relation to within %(minutes)s min (%(records)s records of "
               "%(patients)s patients in all); the threshold for such records was "
               "%(required)s"),
            clauses=(_IMAGING,)),
    }

    def output_windows(self, ctx: Context):
        """(output events, user codes, users, patient codes, times, record counts, sort
        order, sorted users/times/counts, window sums, window points, daily maxima): the
        daily maxima are what a baseline compares (engine.population collects them from
        every partition)."""
        p = self.p
        ev = patient_events(ctx, OUTPUT_ACTIONS)
        W = int(p.window_minutes) * MINUTE_NS
        ucodes, users = codes_of(ev["user_id"])
        pcodes, _ = codes_of(ev["patient_id"])
        t = utc_ns(ev["ts"])
        rc = (ev["record_count"].fillna(1).clip(lower=1).to_numpy(dtype=np.int64)
              if "record_count" in ev.columns else np.ones(len(ev), dtype=np.int64))
        order = np.lexsort((t, ucodes))
        u_s, t_s, rc_s = ucodes[order].astype(np.int64), t[order], rc[order]
        sums = window_sums(u_s, t_s, rc_s, W)
        pts = pd.DataFrame({"u": u_s, "t": t_s, "n": sums})
        pts["day"] = (pts["t"].to_numpy() + _tz_offset_ns(ctx, pts["t"].to_numpy())) // DAY_NS
        pts["user_id"] = users[pts["u"].to_numpy()]
        daily = pts.groupby(["user_id", "day"])["n"].max().rename("value").reset_index()
        return ev, ucodes, users, pcodes, t, rc, order, u_s, t_s, rc_s, sums, pts, daily

    def population_part(self, ctx: Context) -> dict:
        """Each user-day's largest output window: the peers' baselines."""
        return {f"daily:{self.id}": self.output_windows(ctx)[-1]}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        ev = patient_events(ctx, OUTPUT_ACTIONS)
        if ev.empty or not in_window(ctx, ev).any():
            return empty_findings()
        W = int(p.window_minutes) * MINUTE_NS
        (ev, ucodes, users, pcodes, t, rc, order, u_s, t_s, rc_s, sums, pts,
         daily) = self.output_windows(ctx)
        # distinct patients in the same windows, at each event
        pc_s = pcodes[order].astype(np.int64)
        npat = distinct_at_events(u_s, pc_s, t_s, W)
        # the same over outputs of patients the user has no explained relation to: lower floor
        ex_out, _ = explained_flags(ctx, ev)
        unrel_s = ~ex_out.to_numpy(dtype=bool)[order]
        sums_u = window_sums(u_s, t_s, rc_s * unrel_s, W)
        npat_u = np.zeros(len(u_s), dtype=np.int64)
        sub = np.flatnonzero(unrel_s)
        npat_u[sub] = distinct_at_events(u_s[sub], pc_s[sub], t_s[sub], W)
        floor_all = (sums >= p.min_records) & (npat >= p.min_patients)
        floor_unrel = unrel_s & (sums_u >= p.min_records_unrelated) & (npat_u >= p.min_patients)
        cand = floor_all | floor_unrel
        if not cand.any():
            return empty_findings()
        eps = episodes(pts.loc[cand, ["u", "t", "n"]], W)
        ep_s = assign_episodes(u_s, t_s, eps)            # episode of each sorted event
        ep_of = np.full(len(ev), -1, dtype=np.int64)
        ep_of[order] = ep_s
        all_users = user_day_activity(ctx)["user_id"].unique()
        groups = peer_groups(ctx, all_users, p.peer_min_size)
        base = Baselines(population_daily(ctx, self.id, daily), user_day_activity(ctx), groups,
                         own_q=p.own_quantile,
                         own_mult=p.own_multiple, peer_q=p.peer_quantile,
                         peer_mult=p.peer_multiple, floor=p.min_records)
        # per episode: the thresholds (leave-one-out) and whether any window meets them
        verdict = {}
        sel_s = ep_s >= 0
        epts = pd.DataFrame({"ep": ep_s[sel_s], "n": sums[sel_s], "np": npat[sel_s],
                             "nu": sums_u[sel_s], "npu": npat_u[sel_s],
                             "unrel": unrel_s[sel_s], "day": pts["day"].to_numpy()[sel_s]})
        for ep, g in epts.groupby("ep", sort=True):
            uid = str(users[int(eps.iloc[int(ep)]["u"])])
            th = base.thresholds(uid, exclude_days=set(g["day"].tolist()))
            th["required_unrelated"] = max(float(p.min_records_unrelated), th["t_own"],
                                           th["t_peer"])
            hit_all = ((g["n"] >= th["required"]) & (g["np"] >= p.min_patients)).any()
            hit_u = (g["unrel"] & (g["nu"] >= th["required_unrelated"]) &
                     (g["npu"] >= p.min_patients)).any()
            if hit_all or hit_u:
                th["rule"] = "all_outputs" if hit_all else "unrelated_outputs"
                th["peak_unrelated"] = int(g.loc[g["unrel"], "nu"].max()) if hit_u else 0
                verdict[int(ep)] = th
        if not verdict:
            return empty_findings()
        sel = np.isin(ep_of, np.fromiter(verdict.keys(), dtype=np.int64))
        part = ev.loc[sel, ["event_id", "user_id", "patient_id", "ts", "action"]].copy()
        part["module"] = (ev.loc[sel, "module"].astype("string").fillna("")
                          if "module" in ev.columns else "")
        part["rc"] = rc[sel]
        part["ep"] = ep_of[sel]
        part["in_win"] = in_window(ctx, ev)[sel]
        info = user_info(ctx, users)
        # relation: was the patient's access by this user explained (any access that day)?
        ex = explanations(ctx)
        acc = ex[ex["user_id"].isin(part["user_id"].unique()).to_numpy(dtype=bool)
                 & ex["patient_id"].isin(part["patient_id"].unique()).to_numpy(dtype=bool)]
        rel = pd.DataFrame({"user_id": acc["user_id"].astype(str).to_numpy(),
                            "patient_id": acc["patient_id"].astype(str).to_numpy(),
                            "explained": acc["explained"].to_numpy(dtype=bool)})
        rel = rel[rel["explained"]].drop_duplicates(["user_id", "patient_id"])
        rows = []
        for ep, g in part.groupby("ep", sort=True):
            if not g["in_win"].any():
                continue
            e = eps.iloc[int(ep)]
            uid = str(users[int(e["u"])])
            row = verdict[int(ep)]
            pats = pd.Index(g["patient_id"].astype(str).unique())
            related = rel[rel["user_id"] == uid]["patient_id"]
            unrelated = int((~pats.isin(related)).sum())
            share = unrelated / max(len(pats), 1)
            imaging = bool(g["module"].astype(str).str.contains(p.imaging_pattern, case=False,
                                                                regex=True).any())
            sev = self.severity
            raised = []
            if imaging:
                sev = raise_severity(sev)
                raised.append("imaging")
            if share >= p.unrelated_share:
                sev = raise_severity(sev)
                raised.append("unrelated_patients")
            records = int(g["rc"].sum())
            rows.append({
                "key": f"{uid}|{g['ts'].min().isoformat()}", "user_id": uid, "patient_id": "",
                "event_ids": g["event_id"].astype(str).tolist(), "start": g["ts"].min(),
                "end": g["ts"].max(), "severity": sev,
                "score": round(float(e["peak"]) / max(row["required"], 1.0), 3),
                "message_id": self.id + ("" if row["rule"] == "all_outputs" else ".unrelated"),
                "message_args": {
                    "user": uid, "role": info.loc[uid, "role"] or None, "records": records,
                    "patients": int(len(pats)), "minutes": int(p.window_minutes),
                    "peak": int(e["peak"]) if row["rule"] == "all_outputs"
                    else row["peak_unrelated"],
                    "required": int(row["required"]) if row["rule"] == "all_outputs"
                    else int(row["required_unrelated"]),
                    "imaging": imaging},
                "evidence": {
                    "window_minutes": int(p.window_minutes),
                    "peak_records_in_window": int(e["peak"]),
                    "records": records, "distinct_patients": int(len(pats)),
                    "actions": g.groupby("action")["rc"].sum().astype(int).to_dict(),
                    "modules": sorted(set(g["module"].astype(str)) - {""}),
                    "thresholds": _thresholds_evidence(row, "records_per_window"),
                    "min_patients": int(p.min_patients), "rule": row["rule"],
                    "required_unrelated": float(row["required_unrelated"]),
                    "peak_unrelated_in_window": int(row["peak_unrelated"]),
                    "unrelated_records": int(g.loc[~g["patient_id"].astype(str).isin(
                        related), "rc"].sum()),
                    "imaging": imaging, "unrelated_patients": unrelated,
                    "unrelated_share": round(share, 3), "severity_raised_by": raised,
                    "date": _fmt_day(int(local_day(g["ts"].min()))),
                    "department": str(info.loc[uid, "department"]),
                },
            })
        return self.findings(rows) if rows else empty_findings()


def local_day(ts: pd.Timestamp) -> int:
    return pd.Timestamp(ts.tz_localize(None)).value // DAY_NS
