"""Snooping: staff opening the records of people they know or who draw attention — VIPs,
coworkers, family, neighbours, themselves, the long dead, and sealed records.

Each detector first finds the (user, patient) pairs at stake from the reference tables (small
joins on normalized addresses, phones and ids), then looks at the accesses of those pairs. All
except `snoop.self` and `snoop.watchlist` count only accesses the explanation engine could not
explain (a care relation, a consult, duty on the patient's ward, …). One finding per user,
patient and site-local day. A look-up by name (a `query` on the patient) followed by opening
the record raises the severity one step, and the evidence says so.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from emraudit.detectors.base import (Context, Detector, Param, empty_findings, raise_severity,
                                     shared_work)
from emraudit.detectors.bulk import explanations, user_info
from emraudit.detectors.explain import (EXPLANATIONS, explanation_evidence, looked_up_before,
                                        with_details)
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.detectors.schedule import DAY_NS, local_ns
from emraudit.reports.i18n import N_, Np_
from emraudit.detectors.surnames import (COMMON_SHARE, is_common, normalize_name, surname,
                                         surname_bits, surname_share)

# Python's \s (every character str.isspace() accepts), spelled out for pyarrow's RE2, whose
# \s is ASCII only: the address pattern then runs as one pyarrow kernel, not per value
PY_SPACES = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
             "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ADDR_PUNCT = r",，.。、;；:：\-—_#＃()（）\[\]【】/\\'\"“”"
_ADDR_STRIP = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_SPACES) + _ADDR_PUNCT + "]+"


# --------------------------------------------------------------------------- normalizers
def normalize_address(s: pd.Series) -> pd.Series:
    """NFKC, lower case, punctuation and spaces removed: '北京市 朝阳区 1号' == '北京市朝阳区1号'."""
    st = nfkc(s.astype("string").fillna(""))
    st = st.astype("string").str.lower().str.replace(_ADDR_STRIP, "", regex=True)
    return st.mask(st == "", pd.NA)


# ASCII and the CJK Unified Ideographs have no compatibility decompositions: NFKC leaves text
# made only of them as it is
_NFKC_STABLE = r"^[\x{0}-\x{7F}\x{4E00}-\x{9FFF}]*$"


def nfkc(st: pd.Series) -> pd.Series:
    """unicodedata NFKC of each value, computed only for the values that could change (a
    pyarrow test finds the rest): most Chinese names and addresses are left as they are."""
    st = st.astype("string")
    stable = st.str.match(_NFKC_STABLE).fillna(True).to_numpy(dtype=bool)
    if stable.all():
        return st
    out = st.copy()
    out[~stable] = st[~stable].map(lambda v: unicodedata.normalize("NFKC", v))
    return out


def normalize_names(names: pd.Series) -> pd.Series:
    """`normalize_name` of each value, computed once per distinct name."""
    codes, uniq = pd.factorize(names.astype("string"))
    norm = np.array([normalize_name(v) for v in np.asarray(uniq, dtype=object)] + [""],
                    dtype=object)
    return pd.Series(norm[codes], index=names.index, dtype="string")   # code -1: missing


def normalize_phone(s: pd.Series) -> pd.Series:
    """Digits only, country code 86 dropped, fewer than 7 digits ignored."""
    d = s.astype("string").fillna("").str.replace(r"\D+", "", regex=True)
    d = d.str.replace(r"^(?:0086|86)(1\d{10})$", r"\1", regex=True)
    return d.mask(d.str.len() < 7, pd.NA)


def specific(keys: pd.Series, max_share: int) -> pd.Series:
    """Keys held by at most `max_share` distinct patients: a dormitory, a nursing home or a
    hospital switchboard shared by many is no evidence of a household."""
    codes, _ = pd.factorize(keys)
    counts = np.bincount(codes[codes >= 0], minlength=1)
    held_by = np.where(codes >= 0, counts[np.maximum(codes, 0)], max_share + 1)  # NA: never
    return pd.Series(held_by <= max_share, index=keys.index)


# --------------------------------------------------------------------------- shared engine
# the look-up window each snoop.* table held is now [explain] lookup_minutes
MOVED_LOOKUP = {"lookup_minutes": "explain.lookup_minutes"}


def _accesses(ctx: Context, patients) -> pd.DataFrame:
    """Accesses to `patients` with the engine's verdict and the action (index of ctx.events).

    Filtering on the (few) patients at stake comes first, so the 10 million-row verdict frame
    is scanned once per detector and never copied."""
    cols = ["event_id", "user_id", "patient_id", "ts", "in_window", "explained", "explanation"]
    ex = explanations(ctx)
    if ex is None or len(ex) == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in [*cols, "action", "failed"]})
    wanted = pd.Series(list(patients), dtype="string").dropna().unique()
    cols += [c for c in ("detail", *("x_" + n for n in EXPLANATIONS)) if c in ex.columns]
    acc = with_details(ctx, ex.loc[ex["patient_id"].isin(wanted).to_numpy(dtype=bool), cols]
                       .copy())
    acc["action"] = ctx.events["action"].reindex(acc.index).astype("string")
    acc["user_id"] = acc["user_id"].astype("string")
    acc["patient_id"] = acc["patient_id"].astype("string")
    if "outcome" in ctx.events.columns:
        acc["failed"] = ctx.events["outcome"].reindex(acc.index).astype("string").eq("failure")
    else:
        acc["failed"] = False
    return acc


def _for_pairs(acc: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Accesses of the (user_id, patient_id) pairs in `pairs` (extra columns carried over)."""
    if pairs.empty or acc.empty:
        return acc.iloc[0:0].assign(**{c: pd.Series(dtype="object") for c in pairs.columns
                                       if c not in ("user_id", "patient_id")})
    pairs = pairs.drop_duplicates(["user_id", "patient_id"]).astype(
        {"user_id": "string", "patient_id": "string"})
    m = acc.reset_index().merge(pairs, on=["user_id", "patient_id"], how="inner")
    return m.set_index("index")


# appended to every snooping sentence when the record was opened right after a name search
LOOKUP = Clause("lookup", N_("; the record was opened right after a look-up by name"))


def group_findings(det: Detector, ctx: Context, hits: pd.DataFrame, *, message, evidence,
                   severity=None, only_unexplained: bool = True) -> pd.DataFrame:
    """One finding per (user, patient, local day) of `hits` with an in-window hit.

    `hits` are the accesses that match the detector's condition (columns of `_accesses` plus
    whatever the callbacks read). `message(g)` gives (message id, extra arguments; user,
    patient and accesses are added here), `evidence(g)` and `severity(g)` are called once per
    finding (a loop per finding, not per event)."""
    if hits.empty:
        return empty_findings()
    hits = hits[~hits["failed"].astype(bool)] if "failed" in hits.columns else hits
    if only_unexplained:
        hits = hits[~hits["explained"].astype(bool)]
    if hits.empty or not hits["in_window"].astype(bool).any():
        return empty_findings()
    hits = hits.assign(day=local_ns(hits["ts"]) // DAY_NS)
    win_groups = hits.loc[hits["in_window"].astype(bool), ["user_id", "patient_id", "day"]]
    win_groups = win_groups.drop_duplicates()
    hits = hits.merge(win_groups, on=["user_id", "patient_id", "day"], how="inner")
    # a name look-up (query) the same local day, at most [explain] lookup_minutes before
    is_query = hits["action"].eq("query").fillna(False).to_numpy(dtype=bool)
    found = looked_up_before(hits[~is_query], hits[is_query],
                             ctx.section("explain")["lookup_minutes"],
                             ["user_id", "patient_id", "day"])
    hits["lookup"] = False
    hits.loc[found.index, "lookup"] = found["lookup"].notna().to_numpy()
    rows = []
    # one stable sort by the keys then the time: each group is a slice, its accesses in time
    # order (ties as they came), the groups in key order (a group-by and a sort per group
    # cost more than the finding itself)
    keys = ["user_id", "patient_id", "day"]
    hits = hits.dropna(subset=keys).sort_values([*keys, "ts"], kind="stable")
    change = np.zeros(len(hits), dtype=bool)
    change[:1] = True
    for k in keys:
        v = hits[k].to_numpy(dtype=object)
        change[1:] |= v[1:] != v[:-1]
    bounds = np.append(np.flatnonzero(change), len(hits))
    first = hits.iloc[bounds[:-1]]
    # what every finding reads, as arrays once: a column of a frame slice per finding cost
    # more than the finding (the callbacks still get the slice, `g`)
    col = _GroupColumns(hits)
    for (lo, hi), uid, pid, day in zip(zip(bounds[:-1].tolist(), bounds[1:].tolist()),
                                       first["user_id"].tolist(), first["patient_id"].tolist(),
                                       first["day"].tolist()):
        g = hits.iloc[lo:hi]
        sev = severity(g) if severity else det.severity
        lookup = bool(col.lookup[lo:hi].any())
        if lookup:
            sev = raise_severity(sev)
        date = str(pd.Timestamp(int(day) * DAY_NS).date())
        explained = col.explained[lo:hi]
        ev = {"date": date, "accesses": hi - lo,
              "actions": sorted(set(col.action[lo:hi].tolist())),
              "explained": bool(explained.any()),
              "explained_by": sorted(set(col.explanation[lo:hi].tolist()) - {""}),
              "name_lookup_then_open": lookup}
        if col.verdict:
            # the verdicts on the first access no reason explains (else the first access)
            unexpl = np.flatnonzero(~explained)
            at = lo + (int(unexpl[0]) if len(unexpl) else 0)
            ev["explanations"] = explanation_evidence({c: v[at] for c, v in col.verdict.items()})
        ev.update(evidence(g))
        mid, args = message(g)
        args = {"user": uid, "patient": pid, "accesses": hi - lo, **args,
                "lookup": lookup}
        rows.append({"key": f"{uid}|{pid}|{date}", "user_id": uid, "patient_id": pid,
                     "event_ids": col.event_id[lo:hi].tolist(), "start": col.ts[lo:hi].min(),
                     "end": col.ts[lo:hi].max(), "severity": sev,
                     "score": float(ev.get("score", 1.0)) + (1.0 if lookup else 0.0),
                     "message_id": mid, "message_args": args, "evidence": ev})
    return det.findings(rows)


class _GroupColumns:
    """The columns of `group_findings`' hits that every finding reads, as arrays (values
    as a frame row would give them); `verdict`: the explain columns of a row, when the
    hits carry the engine's details."""

    def __init__(self, hits: pd.DataFrame):
        self.lookup = hits["lookup"].to_numpy(dtype=bool)
        self.explained = hits["explained"].astype(bool).to_numpy()
        self.action = hits["action"].astype(str).to_numpy(dtype=object)
        self.explanation = hits["explanation"].astype(str).to_numpy(dtype=object)
        self.event_id = hits["event_id"].astype(str).to_numpy(dtype=object)
        self.ts = hits["ts"].array
        names = ("detail", "explanation", *("x_" + n for n in EXPLANATIONS))
        self.verdict = {c: hits[c].to_numpy(dtype=object) for c in names
                        if c in hits.columns} if "detail" in hits.columns else {}


def _patients(ctx: Context) -> pd.DataFrame:
    p = ctx.patients.drop_duplicates("patient_id").copy()
    p["patient_id"] = p["patient_id"].astype("string")
    return p


def _users(ctx: Context) -> pd.DataFrame:
    u = ctx.users.drop_duplicates("user_id").copy()
    u["user_id"] = u["user_id"].astype("string")
    return u


def employee_links(ctx: Context) -> pd.DataFrame:
    """(patient_id, employee_user_id): patients who are staff, from either master."""
    parts = []
    if ctx.patients is not None and "employee_user_id" in ctx.patients.columns:
        p = _patients(ctx)
        parts.append(pd.DataFrame({"patient_id": p["patient_id"],
                                   "employee_user_id": p["employee_user_id"].astype("string")}))
    if ctx.users is not None and "patient_id" in ctx.users.columns:
        u = _users(ctx)
        parts.append(pd.DataFrame({"patient_id": u["patient_id"].astype("string"),
                                   "employee_user_id": u["user_id"]}))
    if not parts:
        return pd.DataFrame({"patient_id": pd.Series(dtype="string"),
                             "employee_user_id": pd.Series(dtype="string")})
    links = pd.concat(parts, ignore_index=True).dropna().drop_duplicates()
    return links


# --------------------------------------------------------------------------- snoop.vip
@register
class SnoopVip(Detector):
    id = "snoop.vip"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Unexplained access to a VIP patient"
    name_zh = "无故查阅重点人员病历"
    item = "8"
    severity = "high"
    needs = ("access_log", "patients")
    uses = ("care_relations", "users", "shifts")
    lookback_days = 30
    params = ()
    moved = MOVED_LOOKUP
    description = ("Accesses to patients flagged VIP (public figures, officials, famous "
                   "patients) that no care relation, consult, duty or record role explains.")
    note = ("Ask the user why they opened the record; check whether they were asked to help "
            "(an informal consult) and whether anything was printed or shared.")
    false_positives = ("Informal consults not registered as a consult request.",
                       "Care relations missing from the source (late admission entry).")
    description_zh = ("查阅标记为重点人员（VIP：公众人物、领导干部、知名患者）的患者病历，且任何"
                      "诊疗关系、会诊、当班或阅档岗位都无法解释。")
    note_zh = ("询问用户打开病历的原因；核实是否有人请其帮忙（非正式会诊），以及是否打印或外传了"
               "任何内容。")
    false_positives_zh = (
        "未登记为会诊申请的非正式会诊。",
        "数据源中缺失诊疗关系（入院登记滞后）。",
    )
    measure_zh = "对重点人员病历设置访问提醒与二次确认，核实查阅事由，违规者按制度处理。"
    measure_en = ("Add an access warning and confirmation for VIP records, verify the reason, "
                  "and apply sanctions to violations.")
    messages = {"snoop.vip": Message(
        Np_("%(user)s opened the record of VIP patient %(patient)s %(accesses)s time with no "
            "care relation or other explanation",
            "%(user)s opened the record of VIP patient %(patient)s %(accesses)s times with no "
            "care relation or other explanation"), count="accesses", clauses=(LOOKUP,))}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = _patients(ctx)
        vip = p.loc[p["vip"].fillna(False).astype(bool), "patient_id"]
        if vip.empty:
            return empty_findings()
        hits = _accesses(ctx, vip)
        return group_findings(
            self, ctx, hits,
            message=lambda g: ("snoop.vip", {}),
            evidence=lambda g: {"vip": True, "score": 3.0})


# --------------------------------------------------------------------------- snoop.coworker
@register
class SnoopCoworker(Detector):
    id = "snoop.coworker"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Unexplained access to a coworker's record"
    name_zh = "无故查阅同事病历"
    item = "8"
    severity = "medium"
    needs = ("access_log",)
    uses = ("users", "patients", "care_relations", "shifts")
    lookback_days = 30
    params = ()
    moved = MOVED_LOOKUP
    description = ("Accesses to a patient who is a member of staff (patients.employee_user_id "
                   "or users.patient_id), by another member of staff, with no explanation. "
                   "Higher when both work in the same department.")
    note = ("Coworkers in the same department are the usual victims. Check whether the patient "
            "asked the user for help, and whether the access was during the patient's stay.")
    false_positives = ("A colleague asked informally for advice about their own case.",
                       "Occupational health staff whose role is recorded as clinical.")
    description_zh = ("员工（patients.employee_user_id 或 users.patient_id）作为患者，其病历被其"
                      "他员工在无正当理由的情况下查阅。二人在同一科室时严重程度更高。")
    note_zh = ("同科室同事是常见的被查阅对象。核实是否是患者本人请该用户帮忙，以及查阅是否发生在"
               "患者住院期间。")
    false_positives_zh = (
        "同事私下就本人病情征求意见。",
        "岗位登记为临床的职业健康人员。",
    )
    measure_zh = "加强员工病历的访问控制与告知，核实查阅事由，开展隐私保护教育。"
    measure_en = ("Tighten access to staff members' records, verify the reason and train staff "
                  "on privacy.")
    messages = {"snoop.coworker": Message(
        N_("%(user)s opened the record of coworker %(coworker)s (patient %(patient)s) with no "
           "care relation or other explanation"),
        clauses=(Clause("same_department", N_("; both work in the same department")),
                 LOOKUP))}

    def run(self, ctx: Context) -> pd.DataFrame:
        if ctx.patients is None and ctx.users is None:
            return empty_findings()
        links = employee_links(ctx)
        if links.empty:
            return empty_findings()
        acc = _accesses(ctx, links["patient_id"])
        hits = acc.reset_index().merge(links, on="patient_id", how="inner").set_index("index")
        hits = hits[hits["employee_user_id"] != hits["user_id"]]
        # the same patient may be linked to several user ids: drop the access if any is self
        own = links.rename(columns={"employee_user_id": "user_id"}).assign(_self=True)
        hits = (hits.reset_index().merge(own, on=["user_id", "patient_id"], how="left")
                .set_index("index"))
        hits = hits[hits["_self"].isna()].drop(columns="_self")
        hits = hits[~hits.index.duplicated(keep="first")]
        info = user_info(ctx, pd.concat([hits["user_id"], hits["employee_user_id"]]))

        known: dict[tuple[str, str], bool] = {}     # asked three times a finding

        def same_dept(g):
            pair = (str(g["user_id"].iloc[0]), str(g["employee_user_id"].iloc[0]))
            if pair not in known:
                a = info.loc[pair[0], "department"]
                b = info.loc[pair[1], "department"]
                known[pair] = bool(a) and a == b
            return known[pair]

        return group_findings(
            self, ctx, hits,
            severity=lambda g: "high" if same_dept(g) else "medium",
            message=lambda g: ("snoop.coworker",
                               {"coworker": str(g["employee_user_id"].iloc[0]),
                                "same_department": same_dept(g)}),
            evidence=lambda g: {"employee_user_id": str(g["employee_user_id"].iloc[0]),
                                "same_department": same_dept(g),
                                "score": 3.0 if same_dept(g) else 2.0})


# --------------------------------------------------------------------------- snoop.self
@register
class SnoopSelf(Detector):
    id = "snoop.self"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Access to one's own record"
    name_zh = "查阅本人病历"
    item = "8"
    severity = "medium"
    needs = ("access_log",)
    uses = ("users", "patients")
    lookback_days = 0
    params = ()
    moved = MOVED_LOOKUP
    description = ("A user opening their own patient record (users.patient_id or "
                   "patients.employee_user_id). A policy finding: it fires even when the access "
                   "is otherwise explained, because staff obtain their own records through the "
                   "records office, not with their work account.")
    note = ("Usually curiosity about one's own results; confirm and remind the user of the "
            "procedure. Edits to one's own record are serious (possible tampering).")
    false_positives = ("Staff treated in their own department, where policy allows it.",
                       "Wrong employee_user_id / patient_id link in the masters.")
    description_zh = ("用户查阅本人的病历（users.patient_id 或 patients.employee_user_id）。这是"
                      "制度性发现：即使查阅另有正当理由也会报告，因为员工应通过病案室获取本人病历"
                      "，而不是使用工作账号。")
    note_zh = ("通常是想看自己的检查结果；核实后提醒用户按规定程序办理。修改本人病历性质严重（可"
               "能篡改）。")
    false_positives_zh = (
        "员工在本科室就诊且制度允许的情形。",
        "人员或患者主数据中 employee_user_id / patient_id 关联错误。",
    )
    measure_zh = "明确职工本人病历须经病案室申请查阅复印，禁止使用工作账号查阅本人病历。"
    measure_en = ("Require staff to obtain their own records through the records office, never "
                  "with their work account.")
    messages = {"snoop.self": Message(
        Np_("%(user)s opened their own patient record %(patient)s (%(accesses)s access)",
            "%(user)s opened their own patient record %(patient)s (%(accesses)s accesses)"),
        count="accesses",
        clauses=(Clause("edited", N_("; the record was also edited")), LOOKUP))}

    def run(self, ctx: Context) -> pd.DataFrame:
        links = employee_links(ctx)
        if links.empty:
            return empty_findings()
        acc = _accesses(ctx, links["patient_id"])
        pairs = links.rename(columns={"employee_user_id": "user_id"})
        hits = _for_pairs(acc, pairs)

        def sev(g):
            return "high" if g["action"].isin(["update", "delete", "create", "sign"]).any() \
                else self.severity

        return group_findings(
            self, ctx, hits, only_unexplained=False, severity=sev,
            message=lambda g: ("snoop.self", {"edited": bool(
                g["action"].isin(["update", "delete", "create", "sign"]).any())}),
            evidence=lambda g: {"own_record": True,
                                "edited": bool(g["action"].isin(["update", "delete", "create",
                                                                 "sign"]).any()),
                                "score": 1.0})


# --------------------------------------------------------------------------- family/neighbor
def household_pairs(ctx: Context, max_share: int) -> pd.DataFrame:
    """(user_id, patient_id, same_address, same_phone, same_surname, surname, declared, ...)
    for every staff member and patient who share a specific address or phone, or whose
    patient_contacts declare the staff member (name + phone or address).

    Cached in ctx.memo: snoop.family and snoop.neighbor both start from it."""
    return ctx.cached(f"household_pairs:{int(max_share)}",
                      lambda: _household_pairs(ctx, max_share))


@shared_work("household_pairs", references_only=True)
def household_pairs_in_force(ctx: Context) -> None:
    """The household pairs for the `max_shared_by` of snoop.family and snoop.neighbor (one
    computation when they agree): a parallel scan does this once, before it forks, instead
    of once in each worker that runs one of them."""
    default = HOUSEHOLD_PARAMS[0].default
    for det_id in ("snoop.family", "snoop.neighbor"):     # their parameters in force
        household_pairs(ctx, int(ctx.detector_params.get(det_id, {}).get("max_shared_by",
                                                                          default)))


def _household_pairs(ctx: Context, max_share: int) -> pd.DataFrame:
    cols = ["user_id", "patient_id", "same_address", "same_phone", "same_surname", "surname",
            "declared", "relation"]
    if ctx.users is None or ctx.patients is None:
        return pd.DataFrame(columns=cols)
    u = _users(ctx)
    p = _patients(ctx)
    ua = pd.DataFrame({"user_id": u["user_id"],
                       "addr": normalize_address(u["address"]) if "address" in u else pd.NA,
                       "phone": normalize_phone(u["phone"]) if "phone" in u else pd.NA,
                       "uname": normalize_names(u["name"]) if "name" in u else "",
                       "own_patient": u["patient_id"].astype("string")
                       if "patient_id" in u else pd.NA})
    pa = pd.DataFrame({"patient_id": p["patient_id"],
                       "addr": normalize_address(p["address"]) if "address" in p else pd.NA,
                       "phone": normalize_phone(p["phone"]) if "phone" in p else pd.NA,
                       "pname": normalize_names(p["name"]) if "name" in p else "",
                       "employee": p["employee_user_id"].astype("string")
                       if "employee_user_id" in p else pd.NA})
    # a key is specific when few distinct patients (and staff) share it
    pa["addr"] = pa["addr"].where(specific(pa["addr"], max_share))
    pa["phone"] = pa["phone"].where(specific(pa["phone"], max_share))
    parts = []
    for k in ("addr", "phone"):
        m = ua.dropna(subset=[k]).merge(pa.dropna(subset=[k]), on=k, how="inner")
        m["via"] = k
        parts.append(m[["user_id", "patient_id", "via", "uname", "pname", "own_patient",
                        "employee"]])
    links = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    decl = pd.DataFrame(columns=["user_id", "patient_id", "relation"])
    pc = ctx.patient_contacts
    if pc is not None and len(pc) and "name" in pc.columns:
        c = pd.DataFrame({"patient_id": pc["patient_id"].astype("string"),
                          "uname": normalize_names(pc["name"]),
                          "c_addr": normalize_address(pc["address"]) if "address" in pc else pd.NA,
                          "c_phone": normalize_phone(pc["phone"]) if "phone" in pc else pd.NA,
                          "relation": pc["relation"].astype("string").fillna("")
                          if "relation" in pc else ""})
        c = c[c["uname"].astype(bool)]
        m = c.merge(ua[ua["uname"].astype(bool)], on="uname", how="inner")
        ok = ((m["c_addr"].notna() & (m["c_addr"] == m["addr"])).fillna(False) |
              (m["c_phone"].notna() & (m["c_phone"] == m["phone"])).fillna(False))
        decl = m.loc[ok.astype(bool), ["user_id", "patient_id", "relation"]]
    if links.empty and decl.empty:
        return pd.DataFrame(columns=cols)
    if not links.empty:
        links = links[(links["own_patient"].fillna("") != links["patient_id"]) &
                      (links["employee"].fillna("") != links["user_id"])]
        g = links.groupby(["user_id", "patient_id"], sort=False)
        out = g.agg(uname=("uname", "first"), pname=("pname", "first"))
        vias = g["via"].agg(lambda s: set(s))
        out["same_address"] = vias.map(lambda s: "addr" in s)
        out["same_phone"] = vias.map(lambda s: "phone" in s)
        out = out.reset_index()
    else:
        out = pd.DataFrame(columns=["user_id", "patient_id", "uname", "pname", "same_address",
                                    "same_phone"])
    if not decl.empty:
        d = decl.groupby(["user_id", "patient_id"], sort=False)["relation"].agg(
            lambda s: ";".join(sorted(set(s) - {""}))).reset_index()
        out = out.merge(d, on=["user_id", "patient_id"], how="outer")
        out["declared"] = out["relation"].notna()
    else:
        out["declared"] = False
        out["relation"] = ""
    out["relation"] = out["relation"].fillna("")
    # names for declared pairs found only through contacts
    names_u = ua.set_index("user_id")["uname"]
    names_p = pa.set_index("patient_id")["pname"]
    out["uname"] = out["user_id"].map(names_u)
    out["pname"] = out["patient_id"].map(names_p)
    su = out["uname"].map(surname)
    sp = out["pname"].map(surname)
    out["same_surname"] = (su == sp) & su.astype(bool)
    out["surname"] = su.where(out["same_surname"], "")
    for c in ("same_address", "same_phone", "declared"):
        out[c] = out[c].fillna(False).astype(bool)
    out["user_id"] = out["user_id"].astype("string")
    out["patient_id"] = out["patient_id"].astype("string")
    return out[cols]


def _basis(r) -> list[str]:
    """Why a household pair counts as family, as codes (labels.FAMILY_BASIS)."""
    return [k for k, v in (("declared_contact", r["declared"]),
                           ("same_surname", r["same_surname"]),
                           ("same_address", r["same_address"]),
                           ("same_phone", r["same_phone"])) if v]


def family_mask(pairs: pd.DataFrame) -> pd.Series:
    """Family: a declared contact, or the same surname AND the same address or phone."""
    return pairs["declared"] | (pairs["same_surname"] & (pairs["same_address"] |
                                                         pairs["same_phone"]))


HOUSEHOLD_PARAMS = (
    Param("max_shared_by", int, 5, "an address or phone held by more distinct patients than "
          "this (dormitory, nursing home, switchboard) is not evidence of a household",
          "patients", 1, 1000),
)


@register
class SnoopFamily(Detector):
    id = "snoop.family"
    partition_key = "user"
    shares = ("explain", "household_pairs")
    name_en = "Unexplained access to a family member's record"
    name_zh = "无故查阅亲属病历"
    item = "8"
    severity = "high"
    needs = ("access_log", "users", "patients")
    uses = ("patient_contacts", "care_relations", "shifts")
    lookback_days = 30
    params = HOUSEHOLD_PARAMS
    moved = MOVED_LOOKUP
    description = ("Accesses with no explanation to a patient who is family of the user: a "
                   "declared contact in patient_contacts matching the staff member by name and "
                   "phone or address, or the same surname AND the same address or phone. A "
                   "shared surname is weighed by its rarity (the commonest are shared by "
                   "tens of millions); a surname alone never fires.")
    note = ("Family members often ask staff to 'have a look'. Confirm the relation and whether "
            "the patient consented; a rare surname with the same address is strong evidence.")
    false_positives = ("A staff member accompanying a relative at their request (consent "
                       "should then be on record).",
                       "Same surname and address in a large shared building with a poorly "
                       "normalized address.")
    description_zh = ("无正当理由查阅员工亲属的病历：患者联系人（patient_contacts）中登记的联系人"
                      "按姓名及电话或住址与该员工匹配，或者同姓且同住址或同电话。同姓按姓氏的罕见"
                      "程度加权（王、李、张等姓氏有上千万人）；仅同姓不会触发。")
    note_zh = ("亲属常请员工“帮忙看看”。核实亲属关系以及患者是否同意；罕见姓氏加同一住址是有力的"
               "证据。")
    false_positives_zh = (
        "员工应亲属要求陪同就诊（此时应有书面同意）。",
        "大型住宅楼内同姓同址，且地址规范化不充分。",
    )
    measure_zh = "禁止无诊疗关系查阅亲属病历，亲属查阅须经患者授权并走病案复印流程。"
    measure_en = ("Forbid viewing relatives' records without a care relation; relatives' access "
                  "goes through patient consent and the records office.")
    messages = {"snoop.family": Message(
        N_("%(user)s opened the record of patient %(patient)s, family by %(family)s, with no "
           "care relation or other explanation"),
        clauses=(Clause("relation", N_("; declared as the user's %(relation)s")), LOOKUP))}

    def run(self, ctx: Context) -> pd.DataFrame:
        pairs = household_pairs(ctx, self.p.max_shared_by)
        if pairs.empty:
            return empty_findings()
        pairs = pairs[family_mask(pairs)]
        hits = _for_pairs(_accesses(ctx, pairs["patient_id"]), pairs)

        def sev(g):
            r = g.iloc[0]
            if r["declared"] or r["same_phone"]:
                return "high"
            return "medium" if is_common(str(r["surname"])) else "high"

        def evidence(g):
            r = g.iloc[0]
            sn = str(r["surname"])
            bits = surname_bits(sn) if r["same_surname"] else 0.0
            return {"family_basis": _basis(r), "declared_relation": str(r["relation"]),
                    "surname": sn, "surname_share_percent": surname_share(sn) if sn else None,
                    "surname_common": bool(sn) and surname_share(sn) >= COMMON_SHARE,
                    "surname_bits": bits,
                    "score": round(bits / 4 + (3 if r["declared"] else 0) +
                                   (2 if r["same_phone"] else 0) +
                                   (1 if r["same_address"] else 0), 2)}

        def message(g):
            r = g.iloc[0]
            return "snoop.family", {"family": _basis(r),
                                    "relation": str(r["relation"]) if r["declared"] else ""}

        return group_findings(self, ctx, hits, severity=sev, message=message,
                              evidence=evidence)


@register
class SnoopNeighbor(Detector):
    id = "snoop.neighbor"
    partition_key = "user"
    shares = ("explain", "household_pairs")
    name_en = "Unexplained access to a neighbour's record"
    name_zh = "无故查阅邻居病历"
    item = "8"
    severity = "medium"
    needs = ("access_log", "users", "patients")
    uses = ("care_relations", "shifts")
    lookback_days = 30
    params = HOUSEHOLD_PARAMS
    moved = MOVED_LOOKUP
    description = ("Accesses with no explanation to a patient who lives at the user's address "
                   "(normalized: spaces, punctuation and full-width forms ignored) and is not "
                   "family by snoop.family's rule.")
    note = ("Neighbours, landlords and flatmates. Check the address match in the evidence "
            "before contacting the user.")
    false_positives = ("Addresses normalized to the same building but different flats when the "
                       "flat number is missing from one of them.",)
    description_zh = ("无正当理由查阅与该用户住址相同的患者的病历（地址规范化：忽略空格、标点和全"
                      "角字符），且按亲属规则不属于亲属。")
    note_zh = "邻居、房东和合租者。联系当事人之前先核对证据中的地址匹配。"
    false_positives_zh = (
        "其中一个地址缺少房号，导致同楼不同户被规范化为同一地址。",
    )
    measure_zh = "禁止无诊疗关系查阅熟人病历，核实查阅事由并开展隐私教育。"
    measure_en = ("Forbid viewing acquaintances' records without a care relation; verify the "
                  "reason and train staff.")
    messages = {"snoop.neighbor": Message(
        N_("%(user)s opened the record of patient %(patient)s, who lives at the user's address, "
           "with no care relation or other explanation"), clauses=(LOOKUP,))}

    def run(self, ctx: Context) -> pd.DataFrame:
        pairs = household_pairs(ctx, self.p.max_shared_by)
        if pairs.empty:
            return empty_findings()
        pairs = pairs[pairs["same_address"] & ~family_mask(pairs)]
        hits = _for_pairs(_accesses(ctx, pairs["patient_id"]), pairs)
        return group_findings(
            self, ctx, hits,
            message=lambda g: ("snoop.neighbor", {}),
            evidence=lambda g: {"family_basis": ["same_address"], "score": 2.0})


# --------------------------------------------------------------------------- snoop.deceased
@register
class SnoopDeceased(Detector):
    id = "snoop.deceased"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Unexplained access long after death"
    name_zh = "无故查阅已故患者病历"
    item = "8"
    severity = "medium"
    needs = ("access_log", "patients")
    uses = ("care_relations", "users", "shifts")
    lookback_days = 30
    moved = MOVED_LOOKUP
    params = (
        Param("days_after_death", int, 30, "accesses this many days or more after the date of "
              "death count", "days", 0, 3650),
    )
    description = ("Accesses to a deceased patient's record at least N days after death with "
                   "no explanation (death reviews, coding and claims by records, quality and "
                   "insurance staff are explained by their role).")
    note = ("Death case reviews and litigation requests are legitimate: check for "
            "a request or a review meeting before contacting the user.")
    false_positives = ("Death case reviews by clinicians without a registered relation.",
                       "Research or teaching use approved outside the EMR.")
    description_zh = ("在患者死亡 N 天或更久之后，无正当理由查阅其病历（病案、质控和医保人员的死"
                      "亡病例审核、编码和理赔由其岗位职责解释）。")
    note_zh = "死亡病例讨论和诉讼调阅属于正当用途：联系当事人之前先核实有无申请或讨论会议。"
    false_positives_zh = (
        "临床医师参加死亡病例讨论，但未登记诊疗关系。",
        "在电子病历系统之外批准的科研或教学使用。",
    )
    measure_zh = "已故患者病历归档后仅限授权查阅，核实查阅事由。"
    measure_en = "Restrict archived records of deceased patients to authorized use."
    messages = {"snoop.deceased": Message(
        Np_("%(user)s opened the record of patient %(patient)s %(days)s day after their death "
            "with no explanation",
            "%(user)s opened the record of patient %(patient)s %(days)s days after their death "
            "with no explanation"), count="days", clauses=(LOOKUP,))}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = _patients(ctx)
        if "deceased_date" not in p.columns:
            return empty_findings()
        dead = p.loc[p["deceased_date"].notna(), ["patient_id", "deceased_date"]]
        if dead.empty:
            return empty_findings()
        acc = _accesses(ctx, dead["patient_id"])
        if acc.empty:       # an empty merge loses the datetime dtype of ts
            return empty_findings()
        hits = acc.reset_index().merge(dead, on="patient_id", how="inner").set_index("index")
        n = int(self.p.days_after_death)
        late = hits["ts"] >= hits["deceased_date"] + pd.Timedelta(days=n)
        hits = hits[late.to_numpy(dtype=bool)]
        hits = hits.assign(days=((hits["ts"] - hits["deceased_date"]).dt.total_seconds()
                                 // 86400).astype("int64"))
        return group_findings(
            self, ctx, hits,
            severity=lambda g: "high" if g["days"].max() >= 365 else self.severity,
            message=lambda g: ("snoop.deceased", {"days": int(g["days"].max())}),
            evidence=lambda g: {"deceased_date": str(g["deceased_date"].iloc[0].date()),
                                "days_after_death": int(g["days"].max()),
                                "threshold_days": n, "score": 1.0 + min(g["days"].max(), 3650)
                                / 365})


# --------------------------------------------------------------------------- snoop.watchlist
@register
class SnoopWatchlist(Detector):
    id = "snoop.watchlist"
    partition_key = "user"
    shares = ("explain",)
    name_en = "Access to a sealed record"
    name_zh = "封存病历查阅"
    item = "8"
    severity = "high"
    needs = ("access_log", "patients")
    uses = ("care_relations", "users")
    lookback_days = 0
    params = ()
    moved = MOVED_LOOKUP
    description = ("Any access to a patient whose records are sealed after an incident "
                   "(patients.watch), by anyone outside the named team (patients.watch_team, "
                   "user ids separated by ';'), explained or not. Unexplained ones are critical.")
    note = ("Sealed records may only be read by the named team. Even an explained access by an "
            "outsider needs the incident lead's confirmation; keep watch_team up to date.")
    false_positives = ("A clinician newly caring for the patient not yet added to the team.",)
    description_zh = ("患者病历因事件被封存（patients.watch）后，指定人员（patients.watch_team，"
                      "用户号以“;”分隔）以外的任何人查阅，无论是否有正当理由。无正当理由的为严重"
                      "级。")
    note_zh = ("封存病历只能由指定人员查阅。即使外部人员的查阅有正当理由，也需要事件负责人确认；"
               "请及时更新 watch_team。")
    false_positives_zh = (
        "新接手该患者的临床医师尚未加入指定人员名单。",
    )
    measure_zh = "严格执行病历封存制度，封存期间仅限指定人员查阅，超范围查阅立即核查。"
    measure_en = ("Enforce record sealing: only the named team may read sealed records; any "
                  "other access is investigated at once.")
    messages = {"snoop.watchlist": Message(
        N_("%(user)s opened the sealed record of patient %(patient)s without being on its team"),
        clauses=(Clause("unexplained", N_(" and with no care relation")), LOOKUP))}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = _patients(ctx)
        if "watch" not in p.columns:
            return empty_findings()
        w = p.loc[p["watch"].fillna(False).astype(bool)]
        if w.empty:
            return empty_findings()
        team = (w["watch_team"].astype("string").fillna("") if "watch_team" in w.columns
                else pd.Series("", index=w.index))
        members = pd.DataFrame({"patient_id": w["patient_id"].to_numpy(),
                                "user_id": team.str.split(r"[;,；，\s]+", regex=True)
                                .to_numpy()}).explode("user_id")
        members = members[members["user_id"].astype(str).str.len() > 0]
        hits = _accesses(ctx, w["patient_id"])
        if not members.empty and not hits.empty:
            inside = members.astype({"user_id": "string", "patient_id": "string"})
            inside = inside.drop_duplicates().assign(_team=True)
            hits = (hits.reset_index().merge(inside, on=["user_id", "patient_id"], how="left")
                    .set_index("index"))
            hits = hits[hits["_team"].isna()].drop(columns="_team")
        teams = dict(zip(w["patient_id"].astype(str), team.astype(str)))
        return group_findings(
            self, ctx, hits, only_unexplained=False,
            severity=lambda g: "high" if g["explained"].all() else "critical",
            message=lambda g: ("snoop.watchlist",
                               {"unexplained": not bool(g["explained"].all())}),
            evidence=lambda g: {"sealed": True,
                                "watch_team": [t for t in re.split(
                                    r"[;,；，\s]+", teams.get(str(g["patient_id"].iloc[0]), ""))
                                    if t],
                                "score": 3.0 if g["explained"].all() else 4.0})
