"""rights.outside_grant — a sensitive-class record opened without a grant for its class.

A patient's record (or one encounter's) may carry sensitive classes (精神, 传染病/HIV, 生殖,
未成年, VIP, 封存). Reading it needs a right on each class, held at the time of the access
through a grant or a role (emraudit.entitlements). An access without one is use outside the
grant. When a care relation explains the access it is a finding of its own (the care was
real, the grant was not); when nothing explains it, care.no_relationship already reports it
and carries the class check as evidence (`class_grant_evidence`). Accesses explained by a
break-the-glass are btg.unjustified's to judge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.access_rights import ACTION_PERMISSION, split_list
from emraudit.detectors.base import Context, Detector, Param, raise_severity
from emraudit.detectors.explain import _us, explain_accesses
from emraudit.detectors.registry import register
from emraudit.detectors.rights import rights_held, state_finding
from emraudit.reports.rights_text import rule_messages
from emraudit.fastops import is_value, local_days
from emraudit.model import OUTPUT_ACTIONS
from emraudit.rights_usage import event_classes

_FAR = 2 ** 62


def _held_mask(ctx: Context, users: np.ndarray, perms: np.ndarray, classes: np.ndarray,
               t_us: np.ndarray) -> tuple[np.ndarray, list]:
    """For each (user, permission, class, time): is a right held then, and by which grants.
    A sorted join of the few classed accesses with the accounts' rights on those classes."""
    h = rights_held(ctx)
    n = len(users)
    held = np.zeros(n, dtype=bool)
    via: list = [[] for _ in range(n)]
    if not len(h) or not n:
        return held, via
    h = h[h["record_class"].isin(set(classes))]
    q = pd.DataFrame({"i": np.arange(n), "user_id": users, "record_class": classes,
                      "need": perms, "t": t_us})
    j = q.merge(h.assign(s=_us(h["start"]), e=_us(h["end"])), on=["user_id", "record_class"])
    if not len(j):
        return held, via
    s = np.where(j["start"].isna().to_numpy(), -_FAR, j["s"].to_numpy())
    ok = ((j["permission"] == j["need"]) | (j["permission"] == "all")).to_numpy() \
        & (s <= j["t"].to_numpy()) & (j["t"].to_numpy() < j["e"].to_numpy())
    hit = j[ok]
    held[hit["i"].to_numpy()] = True
    for i, gid, route in zip(hit["i"], hit["grant_id"], hit["via"]):
        via[i].append({"via": str(route), "grant_id": None if pd.isna(gid) else str(gid)})
    return held, via


def class_grant_evidence(ctx: Context, users, patients, times) -> list[dict | None]:
    """Per (user, patient, time): the patient's sensitive classes and, for each, whether the
    user held a right to read it then (None when there are no grants or no classes). For
    care.no_relationship's findings: the no-relation case shows the grant check too."""
    out: list[dict | None] = [None] * len(users)
    pt = ctx.patients
    if ctx.grants is None or pt is None or "sensitive_class" not in pt.columns or not len(out):
        return out
    cls = pt.dropna(subset=["sensitive_class"]).drop_duplicates("patient_id", keep="last") \
        .set_index("patient_id")["sensitive_class"]
    # a dict's get, not Series.get, per finding: thousands a night, they cost more than the
    # check itself
    of = dict(zip(cls.index, cls.tolist())).get
    rows = []
    for i, (u, p, t) in enumerate(zip(users, patients, times)):   # one per finding
        for c in split_list(of(p)):
            rows.append((i, str(u), c, t))
    if not rows:
        return out
    i_, u_, c_, t_ = zip(*rows)
    held, via = _held_mask(ctx, np.array(u_, dtype=object), np.array(["read"] * len(rows)),
                           np.array(c_, dtype=object), _us(pd.Series(list(t_))))
    for k, i in enumerate(i_):
        if out[i] is None:
            out[i] = {"classes": [], "granted": [], "missing": []}
        out[i]["classes"].append(c_[k])
        (out[i]["granted"] if held[k] else out[i]["missing"]).append(c_[k])
    return out


@register
class OutsideGrant(Detector):
    id = "rights.outside_grant"
    description_zh = ('某账号访问敏感类别病历（patients.sensitive_class，或 care_relations 中该次就诊的类别）时，并未持有该类别对应操作的权限——既无本人授权，也无涉及该类别的角色（查看需要查阅权限，打印需要打印权限……）。有诊疗关系解释该访问时，按账号、患者和日期每组一条发现；无解释的访问作为 care.no_relationship 的证据。')
    note_zh = ('诊疗是真实的，但缺少类别授权：或者授权流程滞后于实际工作（补办授权并审批），或者访问超出了该账号可查阅的范围（会诊医生完整查阅精神科病史）。核查打开的是病历的哪一部分（模块）以及是否确有必要。')
    false_positives_zh = ('纸质授权尚未录入权限系统', '患者类别在访问之后才记录（当天作出的诊断）', '急诊抢救未留下紧急授权记录')
    messages = rule_messages("rights.outside_grant")
    name_en = "Sensitive record read outside the grant"
    name_zh = "超出授权范围访问敏感病历"
    item = "9"
    severity = "medium"
    needs = ("access_log", "grants")
    partition_key = "user"        # an account's accesses against its own grants
    uses = ("patients", "care_relations", "users", "roles")
    shares = ("explain",)
    params = (
        Param("classes", list, [], "the sensitive classes that need a grant (empty: every "
              "class named in patients or care_relations)"),
        Param("include_unexplained", bool, False, "also report accesses no care relation "
              "explains (off: care.no_relationship reports them, with this check as "
              "evidence)"),
    )
    description = (
        "An access to a record of a sensitive class (patients.sensitive_class, or the "
        "encounter's in care_relations) by an account that held no right on that class at "
        "the time — no grant of its own, no role reaching it — for the action's permission "
        "(view needs read, print needs print …). One finding per account, patient and "
        "day, when a care relation explains the access; unexplained ones are evidence on "
        "care.no_relationship.")
    note = (
        "The care was real but the class grant is missing: either the grant process lags "
        "behind practice (grant it, with approval) or the access went beyond what the "
        "account may read (a consultant reading the psychiatric history in full). Check "
        "which part of the record was opened (module) and whether it was needed.")
    false_positives = (
        "grants made on paper and not yet entered in the permission system",
        "a patient's class recorded after the access (a diagnosis made that day)",
        "emergency care without a break-the-glass record",
    )
    measure_zh = ("敏感类别病历（精神、传染病/HIV、生殖、未成年、VIP、封存等）实行分级分类授权；"
                  "确需查阅的履行授权审批，超范围访问予以纠正。")
    measure_en = ("Classify sensitive records and grant access by class; approve a grant "
                  "where access is needed and correct access beyond the grant.")

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        ev = ctx.events
        if not len(ev) or "patient_id" not in ev.columns:
            return self.findings([])
        mask, bits = event_classes(ctx, ev)
        need_bits = 0
        for c, b in bits.items():
            if not p.classes or c in p.classes:
                need_bits |= 1 << b
        perm_all = ev["action"].map(ACTION_PERMISSION)
        cand = ((mask & need_bits) != 0) & ev["in_window"].to_numpy(dtype=bool) \
            & np.asarray(pd.Series(perm_all).notna(), dtype=bool)
        if "outcome" in ev.columns:
            cand &= ~is_value(ev["outcome"], "failure")
        if not cand.any():
            return self.findings([])
        idx = np.flatnonzero(cand)
        sub = ev.iloc[idx]
        perm = np.asarray(pd.Series(perm_all).iloc[idx].astype(str))
        # one query per (access, class needed)
        names = {b: c for c, b in bits.items()}
        qi, qc = [], []
        for b, c in names.items():
            if not (need_bits >> b) & 1:
                continue
            hit = np.flatnonzero((mask[idx] >> b) & 1)
            qi.append(hit)
            qc.append(np.full(len(hit), c, dtype=object))
        qi = np.concatenate(qi)
        qc = np.concatenate(qc)
        users = np.asarray(sub["user_id"].astype(str))[qi]
        held, _ = _held_mask(ctx, users.astype(object), perm[qi], qc, _us(sub["ts"])[qi])
        missing = pd.DataFrame({"row": qi[~held], "cls": qc[~held]})
        if not len(missing):
            return self.findings([])
        miss_cls = missing.groupby("row")["cls"].agg(lambda s: sorted(set(s)))
        rows_ = miss_cls.index.to_numpy()
        out = sub.iloc[rows_][["event_id", "user_id", "patient_id", "ts", "action"]].copy()
        out["classes"] = miss_cls.to_numpy()
        out = self._with_explanation(ctx, out, ev.index[idx[rows_]])
        if not len(out):
            return self.findings([])
        out["day"] = local_days(out["ts"], ctx.tz).to_numpy()
        rows = []
        for (user, patient, d), grp in out.groupby(["user_id", "patient_id", "day"],
                                                   sort=True, observed=True):
            classes = sorted({c for cs in grp["classes"] for c in cs})
            n = len(grp)
            acts = grp["action"].astype(str).value_counts().to_dict()
            sev = raise_severity("medium") if set(acts) & set(OUTPUT_ACTIONS) else "medium"
            args = {"user": str(user), "patient": str(patient), "classes": ";".join(classes),
                    "count": n, "day": d, "actions": acts}
            expl = grp["explanation"].astype(str).value_counts().to_dict()
            row = state_finding(f"{user}|{patient}|{d}|outside_grant", str(user), None,
                                "outside_grant", args,
                                {"day": d, "accesses": n, "actions": acts,
                                 "classes_without_grant": classes,
                                 "care_explanations": expl}, [], sev, 1.0 + np.log2(1 + n))
            row.update({"patient_id": str(patient), "start": grp["ts"].min(),
                        "end": grp["ts"].max(),
                        "event_ids": sorted(grp["event_id"].astype(str))})
            row["evidence"].pop("refs")
            rows.append(row)
        return self.findings(rows)

    def _with_explanation(self, ctx: Context, out: pd.DataFrame, ev_index) -> pd.DataFrame:
        """Keep the accesses a care relation explains (all, with include_unexplained or
        without care relations), never those a break-the-glass explains."""
        out = out.assign(explanation="")
        if ctx.care_relations is None:
            return out
        x = explain_accesses(ctx)
        ex = x.reindex(ev_index)
        explained = ex["explained"].fillna(False).to_numpy(dtype=bool)
        why = ex["explanation"].astype("string").fillna("").to_numpy(dtype=object)
        keep = why != "break_glass"
        if not self.p.include_unexplained:
            keep &= explained
        out["explanation"] = np.where(explained, why, "none")
        return out[keep]
