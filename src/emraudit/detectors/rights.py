"""Access rights (item 9: 信息查阅权限授予管理机制不完善): rights held, not accesses made.

Four rule detectors judge the state of the `grants`, `roles` and `users` tables as of the end
of the scanned window (`judges_state`): their findings may list no access event, are keyed
by the grant (or role, or account) they are about and dated by when that grant was made, so
a nightly scan reproduces the same findings, in the same cases, until the rights change.

- rights.beyond_role   a right few peers of the same role and department hold (role mining),
                       or a role whose definition reaches a sensitive class unapproved;
- rights.unapproved    a grant self-granted, self-approved, untraceable or not approved where
                       the policy needs an approver;
- rights.after_leaving grants still held by a departed, expired or transferred account;
- rights.unused        a grant not used for N days (usage kept in the store: rights_usage).

Each finding's evidence names its rule and arguments (`rule`, `message_args`, rendered in
every language by emraudit.reports.rights_text) and the rows it rests on (`refs`, e.g.
"grants:G…", "roles:…"). Without a grants table the detectors are skipped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from emraudit.access_rights import PERMISSION_ACTIONS, PERMISSIONS, split_list
from emraudit.detectors.base import Context, Detector, Param, raise_severity
from emraudit.detectors.registry import register
from emraudit.entitlements import grant_held_at, held_at, holdings, in_post, split_grants
from emraudit.reports.rights_text import message_id, rule_messages
from emraudit.rights_usage import (OBSERVED_USAGE, STORED_USAGE, observed_since, usage,
                                   usage_from_events)


# --- shared helpers ------------------------------------------------------------------------

def rights_held(ctx: Context) -> pd.DataFrame:
    """Every account's rights (emraudit.entitlements.holdings), once per scan."""
    return ctx.cached("rights.holdings",
                      lambda: holdings(ctx.users, ctx.grants, ctx.roles, ctx.tz))


def staff(ctx: Context) -> pd.DataFrame:
    """The staff master by user_id (last row of a repeated id); empty without one."""
    u = ctx.users
    if u is None or not len(u):
        return pd.DataFrame(columns=["role", "department", "status", "end_date",
                                     "access_until", "start_date"]).rename_axis("user_id")
    return u.dropna(subset=["user_id"]).drop_duplicates("user_id", keep="last") \
        .set_index("user_id")


def day(ts) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")


def iso(ts) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def text(v) -> str | None:
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def right_of(row) -> dict:
    """A right as message data: permission(s), record class(es) and scope, as codes."""
    return {"permission": text(row.get("permission")) or "",
            "record_class": text(row.get("record_class")) or "",
            "scope": text(row.get("scope")) or ""}


def grant_detail(row) -> dict:
    """A grants row as evidence (what, to whom, by whom, when)."""
    keys = ("grant_id", "user_id", "role", "permission", "record_class", "scope",
            "department", "granted_by", "approved_by", "reason")
    out = {k: text(row.get(k)) for k in keys}
    for k in ("granted_at", "revoked_at", "expires_at"):
        out[k] = iso(row.get(k))
    return out


def reaches_class(value) -> bool:
    return bool(split_list(value))


def state_finding(key: str, user: str, start, rule: str, args: dict, evidence: dict,
                  refs: list[str], severity: str, score: float) -> dict:
    """A finding about held rights: no events; dated by what it is about."""
    return {"key": key, "user_id": user, "patient_id": "", "start": start, "end": start,
            "event_ids": [], "severity": severity, "score": score,
            "message_id": message_id(rule), "message_args": args,
            "evidence": {"rule": rule, **evidence, "refs": refs}}


def note_once(ctx: Context, text_: str) -> None:
    if text_ not in ctx.notes:
        ctx.notes.append(text_)


def active_staff(ctx: Context, asof: pd.Timestamp) -> pd.DataFrame:
    """Staff still in post at `asof` (not terminated; end date and access_until not
    passed)."""
    u = staff(ctx)
    return u[in_post(u, asof)] if len(u) else u


# --- rights.beyond_role --------------------------------------------------------------------

def _covers(perm_a: pd.Series, scope_a: pd.Series, perm_b: pd.Series, scope_b: pd.Series
            ) -> pd.Series:
    """Does right a (permission, scope) include right b? 'all' includes every permission;
    the whole hospital includes any department; an unknown scope ('') is matched by any."""
    perm = (perm_a == perm_b) | (perm_a == "all")
    scope = ((scope_a == scope_b) | (scope_a == "all") | (scope_b == "")
             | ((scope_b != "all") & (scope_a == "")))
    return (perm & scope).fillna(False)


@register
class BeyondRole(Detector):
    id = "rights.beyond_role"
    description_zh = ('角色挖掘：同一岗位、同一科室的人员通常持有相同的权限。某项普通病历权限（权限与范围）由授权赋予，而同类人员中持有者不超过 max_peer_share，即为超出岗位的权限。角色表中某角色的定义涉及敏感类别（精神、传染病/HIV、生殖……）却无审批人记录，则该角色的每个持有者都未经审批即可查阅这些病历。单个账号获授的敏感类别由 rights.unapproved 判断。')
    note_zh = ('询问科主任该账号为何需要同类人员没有的权限：特殊职责（教学、科研、质控）应有备案并注明截止日期；否则撤销。对涉及敏感类别的角色，核实医务部门是否审批了该角色的定义及其持有人（权限报告）。')
    false_positives_zh = ('有备案额外职责的人员（科室质控员、科研人员）', '小科室中高年资人员持有低年资人员没有的权限', '人员主数据与 HIS 中科室或角色记录不一致')
    messages = rule_messages("rights.beyond_role")
    name_en = "Rights beyond the role"
    name_zh = "超出岗位的权限"
    item = "9"
    severity = "medium"
    needs = ("grants",)
    uses = ("users", "roles")
    judges_state = True
    params = (
        Param("min_peers", int, 5, "other staff of the same role and department needed "
              "before a right can be called unusual among them", "peers", 2, 10000),
        Param("max_peer_share", float, 0.2, "a right on ordinary records held by at most "
              "this share of those peers is beyond the role", "share", 0, 0.9),
        Param("ignore_permissions", list, [], "permissions never judged among peers (e.g. "
              "break_glass where everyone may hold it)"),
        Param("role_classes", bool, True, "a role whose definition (roles table) reaches a "
              "sensitive class must name who approved it (roles.approved_by)"),
    )
    description = (
        "Role mining: staff of one role and department normally hold the same rights. A "
        "right on ordinary records (permission and scope) that at most max_peer_share of "
        "the account's peers hold, and that a grant gave it, is beyond the role. And a role "
        "whose definition in the roles table reaches a sensitive class (精神, 传染病/HIV, 生殖 "
        "…) with no approver recorded gives every holder those records without approval. "
        "Sensitive classes granted to one account are judged by rights.unapproved.")
    note = (
        "Ask the department head why this account needs what its peers do not: a special "
        "duty (teaching, research, quality review) should be on file with an end date; "
        "otherwise revoke it. For a role reaching a sensitive class, check that the medical "
        "affairs office approved the role's definition and who holds it (rights report).")
    false_positives = (
        "staff with a documented extra duty (department quality officer, research staff)",
        "small departments where one senior holds rights the juniors do not",
        "a department or role recorded differently in the staff master and the HIS",
    )
    measure_zh = ("按岗位最小授权原则清理超出岗位需要的权限；确需保留的履行审批并设定期限；"
                  "敏感类别病历的角色权限须经医务部门审批。")
    measure_en = ("Remove rights beyond what the post needs (least privilege); where an extra "
                  "right is needed, approve it with an end date; a role reaching sensitive "
                  "records needs the medical affairs office's approval.")

    def run(self, ctx: Context) -> pd.DataFrame:
        asof = ctx.window_end
        h = held_at(rights_held(ctx), asof)
        rows = self._peers(ctx, h, asof)
        if self.p.role_classes:
            rows += self._role_classes(ctx, h)
        return self.findings(rows)

    def _peers(self, ctx: Context, h: pd.DataFrame, asof) -> list[dict]:
        p = self.p
        u = active_staff(ctx, asof)
        if not len(u) or not len(h) or "department" not in u.columns:
            return []
        h = h[(h["record_class"] == "") & ~h["permission"].isin(p.ignore_permissions)]
        grp = u[["role", "department"]].dropna().rename(
            columns={"role": "peer_role", "department": "peer_department"})
        h = h.join(grp, on="user_id", how="inner")
        if not len(h):
            return []
        h = h.assign(scope=h["scope"].fillna("")).reset_index(drop=True)
        gkeys = ["peer_role", "peer_department"]
        size = grp.groupby(gkeys, observed=True).size().rename("n")
        # candidates: rights a grant gave, in groups with enough peers
        cand = h[h["grant_id"].notna()].join(size, on=gkeys)
        cand = cand[cand["n"] - 1 >= p.min_peers]
        if not len(cand):
            return []
        # peers covering each candidate right: same or broader permission and scope
        peers = h[["user_id", "permission", "scope"] + gkeys].drop_duplicates()
        j = cand.reset_index().merge(peers, on=gkeys, suffixes=("", "_peer"))
        j = j[(j["user_id_peer"] != j["user_id"])
              & _covers(j["permission_peer"], j["scope_peer"], j["permission"], j["scope"])]
        holders = j.groupby("index")["user_id_peer"].nunique()
        cand = cand.assign(holders=holders.reindex(cand.index).fillna(0).astype(int))
        cand["share"] = cand["holders"] / (cand["n"] - 1)
        sel = cand[cand["share"] <= p.max_peer_share]
        if not len(sel):
            return []
        granted = self._granted_at(ctx)
        rows = []
        for (gid, user), grp_ in sel.groupby(["grant_id", "user_id"], sort=True):
            r = grp_.iloc[0]
            perms = sorted(set(grp_["permission"]),
                           key=lambda x: (PERMISSIONS.index(x) if x in PERMISSIONS else 99, x))
            right = {"permission": ";".join(perms), "record_class": "",
                     "scope": text(r["scope"]) or ""}
            share = float(grp_["share"].max())
            args = {"user": user, "right": right, "grant": gid,
                    "holders": int(grp_["holders"].max()), "peers": int(r["n"]) - 1,
                    "role": text(r["peer_role"]), "department": text(r["peer_department"])}
            ev = {"via": text(r["via"]), "peer_share": round(share, 3),
                  "peer_group": {"role": text(r["peer_role"]),
                                 "department": text(r["peer_department"]),
                                 "peers": int(r["n"]) - 1},
                  "thresholds": {"min_peers": p.min_peers,
                                 "max_peer_share": p.max_peer_share}}
            sev = "high" if set(perms) & {"export", "all", "grant"} else "medium"
            rows.append(state_finding(f"{gid}|{user}|peers", user, granted.get(gid),
                                      "beyond_role.peers", args, ev, [f"grants:{gid}"], sev,
                                      2.0 - share))
        return rows

    def _granted_at(self, ctx: Context) -> dict:
        g = ctx.grants
        return dict(zip(g["grant_id"].astype(str), g["granted_at"])) if g is not None else {}

    def _role_classes(self, ctx: Context, h: pd.DataFrame) -> list[dict]:
        roles = ctx.roles
        if roles is None or not len(roles) or "record_class" not in roles.columns:
            return []
        appr = roles["approved_by"] if "approved_by" in roles.columns else \
            pd.Series(pd.NA, index=roles.index)
        bad = roles[roles["record_class"].notna() & appr.isna()]
        if not len(bad):
            return []
        assigned = split_grants(ctx.grants)["assign"]
        first_assign = assigned.groupby("role")["granted_at"].min() if len(assigned) else {}
        u = staff(ctx)
        first_staff = (u.dropna(subset=["role"]).groupby("role")["start_date"].min()
                       if len(u) and "start_date" in u.columns else {})
        rows, undated = [], []
        for r in bad.to_dict("records"):
            role = str(r["role"])
            holders = h[(h["role"] == role) & (h["via"] == "role")]["user_id"].unique()
            dates = [d for d in (first_assign.get(role) if len(first_assign) else None,
                                 first_staff.get(role) if len(first_staff) else None)
                     if d is not None and not pd.isna(d)]
            if not dates:
                undated.append(role)
                continue
            args = {"role": role, "classes": text(r["record_class"]),
                    "holders": int(len(holders))}
            ev = {"definition": {k: text(r.get(k)) for k in ("role", "permissions",
                                                             "record_class", "scope",
                                                             "approved_by", "description")},
                  "holders_sample": sorted(map(str, holders))[:50],
                  "dated_by": "first_held"}
            key = "|".join(str(r.get(k) or "") for k in ("role", "permissions",
                                                          "record_class", "scope"))
            rows.append(state_finding(f"roles|{key}", f"role:{role}", min(dates),
                                      "beyond_role.role_class", args, ev, [f"roles:{role}"],
                                      "high", 2.0 + math.log1p(len(holders))))
        if undated:
            note_once(ctx, "rights.beyond_role: role(s) " + ", ".join(sorted(undated)) +
                      " reach sensitive classes without approval, but no holder has a date "
                      "(grants.granted_at or users.start_date) to file the finding by: see "
                      "`emraudit report rights`")
        return rows


# --- rights.unapproved ---------------------------------------------------------------------

APPROVAL_POLICIES = ("any", "sensitive") + PERMISSIONS


@register
class Unapproved(Detector):
    id = "rights.unapproved"
    description_zh = ('检查窗口结束时仍持有或窗口内新增的每条授权：本人给自己授权、本人审批、无授权人记录、策略（require_approval）要求审批却无审批人，或授权与审批为同一人。当角色涉及策略所列内容时，授予账号该角色也需要审批。')
    note_zh = ('本人给自己授权最为严重：查明是谁操作的权限系统（granted_by 即执行授权的账号）以及该权限是否被使用过。缺少审批的，向医务部门调取纸质或 OA 审批记录并补录，或撤销授权。')
    false_positives_zh = ('纸质或 OA 系统中的审批未随授权一并导出', 'HIS 将操作人（信息科工程师）记为已审批申请的授权人', '迁移脚本以技术账号为授权人批量授权')
    messages = rule_messages("rights.unapproved")
    name_en = "Grant without approval, or self-granted"
    name_zh = "未经审批或自行授权"
    item = "9"
    severity = "medium"
    needs = ("grants",)
    uses = ("roles",)
    judges_state = True
    params = (
        Param("require_approval", list, ["sensitive", "export", "grant", "all"],
              "grants that need an approver (approved_by): 'sensitive' (reaching a "
              "sensitive class), permissions by name, or 'any' (every grant)",
              choices=APPROVAL_POLICIES),
        Param("four_eyes", bool, True, "the approver must be someone other than the person "
              "who granted it"),
    )
    description = (
        "Judges every grants row held at the end of the window or made in it: granted by "
        "the holder themselves, approved by the holder, no record of who granted it, no "
        "approver where the policy (require_approval) needs one, or granted and approved by "
        "one person. A role given to an account needs approval when the role reaches what "
        "the policy names.")
    note = (
        "Self-granted rights are the serious case: find who operated the permission system "
        "(granted_by is the account that did it) and whether the right was used. For a "
        "missing approval, ask the medical affairs office for the paper or OA approval and "
        "record it, or revoke the grant.")
    false_positives = (
        "approvals made on paper or in an OA system and not exported with the grants",
        "the HIS writing the operator (信息科 engineer) as granter for approved requests",
        "bulk grants made by a migration script with a technical account as granter",
    )
    measure_zh = ("建立信息查阅权限授予审批机制：授权须经科室负责人和医务部门审批并留痕；"
                  "严禁自行授权，授权与审批分离。")
    measure_en = ("Establish an approval process for record access rights: every grant "
                  "approved by the department head and medical affairs and recorded; no "
                  "self-granting; granting and approving by different people.")

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        g = ctx.grants
        if g is None or not len(g):
            return self.findings([])
        asof, ws = ctx.window_end, ctx.window_start
        judged = grant_held_at(g, asof) | ((g["granted_at"] >= ws) & (g["granted_at"] < asof))
        g = g[judged.to_numpy()]
        if not len(g):
            return self.findings([])
        needs = self._needs_approval(ctx, g)
        col = {c: (g[c].astype("string") if c in g.columns
                   else pd.Series(pd.NA, index=g.index, dtype="string"))
               for c in ("user_id", "granted_by", "approved_by")}
        user, by, appr = col["user_id"], col["granted_by"], col["approved_by"]
        problems = {
            "self_granted": (user.notna() & (by == user)).fillna(False),
            "self_approved": (user.notna() & (appr == user)).fillna(False),
            "no_granter": by.isna(),
            "no_approval": appr.isna() & needs,
            "same_person": ((by == appr) & (by != user.fillna(""))).fillna(False)
            & p.four_eyes,
        }
        flags = pd.DataFrame(problems)
        any_ = flags.any(axis=1).to_numpy()
        rows = []
        for i in np.flatnonzero(any_):           # one per flagged grant
            r = g.iloc[i].to_dict()
            found = [k for k in problems if flags.iloc[i][k]]
            gid = str(r["grant_id"])
            holder = text(r.get("user_id")) or f"role:{text(r.get('role'))}"
            if text(r.get("permission")):
                rule, args = "unapproved", {"grant": gid, "right": right_of(r),
                                            "holder": holder, "problems": found}
            else:                                 # a role given to an account
                rule, args = "unapproved.role", {"grant": gid, "role": text(r.get("role")),
                                                 "holder": holder, "problems": found}
            sev = "high" if {"self_granted", "self_approved"} & set(found) else \
                "low" if found == ["same_person"] else "medium"
            ev = {"grant": grant_detail(r), "problems": found,
                  "policy": {"require_approval": p.require_approval,
                             "four_eyes": p.four_eyes,
                             "needs_approval": bool(needs.iloc[i])}}
            rows.append(state_finding(f"{gid}|unapproved", holder, r["granted_at"],
                                      rule, args, ev, [f"grants:{gid}"], sev,
                                      1.0 + len(found)))
        return self.findings(rows)

    def _needs_approval(self, ctx: Context, g: pd.DataFrame) -> pd.Series:
        """Per grants row: does the policy need an approver for it? A role given to an
        account is judged by what the role reaches."""
        pol = set(self.p.require_approval)
        if "any" in pol:
            return pd.Series(True, index=g.index)
        perms = pol & set(PERMISSIONS)

        def judge(permission, record_class) -> bool:
            return bool(("sensitive" in pol and split_list(record_class))
                        or perms & set(split_list(permission)))

        pc = g["permission"] if "permission" in g.columns else pd.Series(pd.NA, index=g.index)
        rc = g["record_class"] if "record_class" in g.columns else \
            pd.Series(pd.NA, index=g.index)
        out = pd.Series([judge(a, b) for a, b in zip(pc, rc)], index=g.index, dtype=bool)
        is_assign = pc.isna() & g["role"].notna() if "role" in g.columns else \
            pd.Series(False, index=g.index)
        if is_assign.any():
            reach = {}
            roles = ctx.roles
            if roles is not None and len(roles):
                for r in roles.to_dict("records"):
                    reach[str(r["role"])] = reach.get(str(r["role"]), False) or judge(
                        r.get("permissions"), r.get("record_class"))
            rg = split_grants(ctx.grants)["role"]
            for r in rg.to_dict("records"):
                reach[str(r["role"])] = reach.get(str(r["role"]), False) or judge(
                    r.get("permission"), r.get("record_class"))
            out[is_assign] = g.loc[is_assign, "role"].astype(str).map(
                lambda x: reach.get(x, False)).astype(bool)
        return out


# --- rights.after_leaving ------------------------------------------------------------------

@register
class AfterLeaving(Detector):
    id = "rights.after_leaving"
    description_zh = ('账号的所有人已离岗（已过 end_date 或已离职）、限时权限已到期（进修/实习人员、厂商：access_until），或已调往其他科室却仍保留为原科室所做授权，而这些授权仍未撤销、未过期。账号现岗位角色带来的权限不计在内：停用账号是 cred.inactive_account 的整改措施。')
    note_zh = ('撤销这些授权，并核查账号在该日期之后是否仍被使用（cred.inactive_account、cred.expired_access）。对调岗人员，询问新科室是否仍需原权限；如需要，按新岗位重新审批授权。')
    false_positives_zh = ('离岗日期或 access_until 早于实际最后工作日录入（交接、延期）', '同时为两个科室工作、两处均有授权的人员', '授权表与人员主数据中科室名称写法不同')
    messages = rule_messages("rights.after_leaving")
    name_en = "Rights still held after leaving"
    name_zh = "离岗后仍持有权限"
    item = "9"
    severity = "high"
    needs = ("grants", "users")
    judges_state = True
    params = (
        Param("grace_days", float, 1.0, "grants must be revoked within this many days after "
              "users.end_date or access_until", "days", 0, 90),
        Param("check_transfers", bool, True, "a grant made for another department "
              "(grants.department) than the account's present one is a right of a former "
              "post"),
    )
    description = (
        "Grants still held (not revoked, not expired) by an account whose owner left "
        "(end_date passed, or terminated), whose time-limited access ended (trainees 进修/实习, "
        "vendors: access_until), or that moved to another department while keeping the "
        "grants made for the former one. Rights from the account's present role are "
        "not counted: disabling the account is cred.inactive_account's measure.")
    note = (
        "Revoke the grants and check whether the account was used after the date "
        "(cred.inactive_account, cred.expired_access). For transfers, ask the new "
        "department whether the old right is still needed; if so, grant it again for the "
        "new post with approval.")
    false_positives = (
        "end dates or access_until entered before the real last day (handover, extension)",
        "staff working for two departments, with grants for both",
        "department names written differently in the grants and the staff master",
    )
    measure_zh = ("离职、调岗、进修/实习结束及厂商合同到期人员的权限即时收回；"
                  "建立人事变动与权限变更联动机制。")
    measure_en = ("Revoke rights at once when staff leave, transfer, or end training or a "
                  "vendor contract; link HR changes to permission changes.")

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        g = ctx.grants
        u = staff(ctx)
        if g is None or not len(g) or not len(u):
            return self.findings([])
        asof = ctx.window_end
        held = g[(g["user_id"].notna() & grant_held_at(g, asof)).to_numpy()] \
            if "user_id" in g.columns else g.iloc[:0]
        if not len(held):
            return self.findings([])
        grace = pd.Timedelta(days=p.grace_days)
        rows, gone = [], set()
        for user, grp in held.groupby("user_id", sort=True):   # one per holding account
            if user not in u.index:
                continue
            info = u.loc[user]
            why, left = self._left(info, asof, grace)
            if why is None:
                continue
            gone.add(user)
            if left is None:
                left = grp["granted_at"].min()
            sens = bool(grp["record_class"].map(reaches_class).any()) \
                if "record_class" in grp.columns else False
            sev = "medium" if why == "expired" and (asof - left).days <= 30 else "high"
            sev = raise_severity(sev) if sens and sev != "high" else sev
            ids = sorted(grp["grant_id"].astype(str))
            args = {"user": user, "left": day(left), "count": len(ids),
                    "role": text(info.get("role"))}
            ev = {"reason": why, "left": iso(left), "status": text(info.get("status")),
                  "grants": [grant_detail(r) for r in grp.to_dict("records")][:50],
                  "sensitive_classes": sens, "thresholds": {"grace_days": p.grace_days}}
            rows.append(state_finding(f"{user}|after_leaving|{why}", user, left,
                                      f"after_leaving.{why}", args, ev,
                                      [f"grants:{i}" for i in ids], sev,
                                      2.0 + len(ids) / 10.0))
        if p.check_transfers and "department" in held.columns and "department" in u.columns:
            rows += self._transfers(held[~held["user_id"].isin(gone)], u)
        return self.findings(rows)

    @staticmethod
    def _left(info, asof, grace) -> tuple[str | None, pd.Timestamp | None]:
        end = info.get("end_date")
        if end is not None and not pd.isna(end):
            if end + grace < asof:
                return "departed", end
        elif str(info.get("status")) == "terminated":
            return "terminated", None
        until = info.get("access_until")
        if until is not None and not pd.isna(until) and until + grace < asof:
            return "expired", until
        return None, None

    def _transfers(self, held: pd.DataFrame, u: pd.DataFrame) -> list[dict]:
        now = held["user_id"].map(u["department"]).astype("string")
        was = held["department"].astype("string")
        moved = (was.notna() & now.notna()
                 & (was.str.strip().str.lower() != now.str.strip().str.lower())).fillna(False)
        rows = []
        for r, dep in zip(held[moved.to_numpy()].to_dict("records"), now[moved]):
            gid = str(r["grant_id"])
            args = {"user": str(r["user_id"]), "department": str(dep),
                    "old_department": str(r["department"]), "right": right_of(r),
                    "grant": gid}
            sev = "high" if reaches_class(r.get("record_class")) else "medium"
            rows.append(state_finding(f"{gid}|transferred", str(r["user_id"]), r["granted_at"],
                                      "after_leaving.transferred", args,
                                      {"reason": "transferred", "grant": grant_detail(r)},
                                      [f"grants:{gid}"], sev, 1.5))
        return rows


# --- rights.unused -------------------------------------------------------------------------

# the permissions whose use the access log shows
JUDGED_PERMISSIONS = tuple(PERMISSION_ACTIONS) + ("all",)


@register
class Unused(Detector):
    id = "rights.unused"
    description_zh = ('授予账号的某项权限（查阅、书写、打印、导出、紧急授权或全部权限）在 unused_days 天内未被使用：没有该授权所允许的操作，也没有访问其涉及的病历类别。使用情况在各次扫描之间保存在状态库中，因此判断需要 unused_days 天的观察期，而非已加载历史的天数；在此之前扫描会提示一次。授权管理权限在访问日志中不留痕迹，不作判断。')
    note_zh = ('未使用的权限是一扇敞开的门：除非持有人说明即将需要（轮转、值班），否则应撤销。查看证据中的最后使用时间：按设计每季度才用一次的权限（审计）可能需要更长的 unused_days。')
    false_positives_zh = ('仅在未加载日志的系统中使用的权限', '季节性职责（年度审计、应急演练）', '以他人账号记录的操作（acting_user_id）')
    messages = rule_messages("rights.unused")
    name_en = "Rights not used for a long time"
    name_zh = "长期未使用的权限"
    item = "9"
    severity = "low"
    needs = ("grants",)
    state_tables = ("rights_usage",)    # emraudit.rights_state
    uses = ("patients", "care_relations")
    judges_state = True
    params = (
        Param("unused_days", float, 90.0, "a grant to an account not used for this long "
              "(and at least this old) should be revoked", "days", 1, 3650),
    )
    description = (
        "A grant to an account (read, write, print, export, break the glass, or all) that "
        "the account has not used for unused_days: no access with an action the grant "
        "allows, on the record classes it reaches. Usage is kept in the store between "
        "scans, so the judgement needs unused_days of watched activity, not of loaded "
        "history; until then the scan says so once. Rights to manage rights ('grant') "
        "leave no trace in the access log and are not judged.")
    note = (
        "An unused right is an open door: revoke it unless the holder names a coming need "
        "(a rotation, an on-call duty). Check the last use in the evidence: a right used "
        "once a quarter by design (audits) may need a longer unused_days.")
    false_positives = (
        "rights used only in a system whose log is not loaded",
        "seasonal duties (annual audits, disaster drills)",
        "activity recorded under another account (acting_user_id)",
    )
    measure_zh = "定期清理长期未使用的权限，未使用超过规定天数的授权予以收回。"
    measure_en = "Review rights periodically and revoke those unused beyond the set period."

    def population_prepare(self, ctx: Context) -> None:
        """A partitioned scan: the partition that judges the grants gets no ctx.baseline,
        so the stored usage travels with the population."""
        ctx.population[STORED_USAGE] = ctx.baseline.get("rights_usage")

    def population_part(self, ctx: Context) -> dict:
        """A partitioned scan: the usage in this partition's events, so the grants are
        judged without loading every event in one process."""
        return {OBSERVED_USAGE: usage_from_events(ctx)}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        g = ctx.grants
        direct = split_grants(g)["direct"]
        if not len(direct):
            return self.findings([])
        asof = ctx.window_end
        horizon = asof - pd.Timedelta(days=p.unused_days)
        old = direct[(grant_held_at(direct, asof) & (direct["granted_at"] <= horizon))
                     .to_numpy()]
        if ctx.users is not None and len(old):   # departed holders: rights.after_leaving's
            old = old[old["user_id"].isin(active_staff(ctx, asof).index).to_numpy()
                      | ~old["user_id"].isin(staff(ctx).index).to_numpy()]
        if not len(old):
            return self.findings([])
        u = usage(ctx)
        since = observed_since(u)
        if since is None or since > horizon:
            watched = 0 if since is None else max(0, (asof - since).days)
            note_once(ctx, f"rights.unused: account activity has been watched for {watched} "
                           f"days; grants are judged once {p.unused_days:g} days are watched")
            return self.findings([])
        elems = self._elements(old)
        if not len(elems):
            return self.findings([])
        m = elems.merge(u[["user_id", "permission", "record_class", "last_used"]],
                        on=["user_id", "permission", "record_class"], how="left")
        last = m.groupby("grant_id")["last_used"].max()
        rows = []
        for r in old.to_dict("records"):        # one per judged grant
            gid = str(r["grant_id"])
            if gid not in last.index:
                continue                          # no permission whose use is visible
            lu = last.get(gid)
            if lu is not None and not pd.isna(lu) and lu > horizon:
                continue
            used = lu is not None and not pd.isna(lu)
            start_idle = lu if used else max(r["granted_at"], since)
            idle = int((asof - start_idle).total_seconds() // 86400)
            args = {"user": str(r["user_id"]), "right": right_of(r), "grant": gid,
                    "granted": day(r["granted_at"]), "idle": idle,
                    "last_used": day(lu) if used else None}
            sens = reaches_class(r.get("record_class")) or bool(
                {"export", "all"} & set(split_list(r.get("permission"))))
            ev = {"grant": grant_detail(r), "last_used": iso(lu) if used else None,
                  "watched_since": iso(since), "idle_days": idle,
                  "thresholds": {"unused_days": p.unused_days}}
            rows.append(state_finding(f"{gid}|unused", str(r["user_id"]), r["granted_at"],
                                      "unused.last" if used else "unused.never", args, ev,
                                      [f"grants:{gid}"], "medium" if sens else "low",
                                      1.0 + idle / 100.0))
        return self.findings(rows)

    @staticmethod
    def _elements(grants: pd.DataFrame) -> pd.DataFrame:
        """(grant_id, user_id, permission, record_class): each use that would count for
        a grant ('all' counts every permission; '' class: any record)."""
        from emraudit.rights_usage import PERMISSION_ORDER
        rows = []
        for r in grants.to_dict("records"):       # per grant (thousands at most)
            perms = split_list(r.get("permission"))
            if "all" in perms:
                perms = list(PERMISSION_ORDER)
            perms = [x for x in perms if x in PERMISSION_ACTIONS]
            classes = split_list(r.get("record_class")) or [""]
            rows += [(str(r["grant_id"]), str(r["user_id"]), x, c)
                     for x in perms for c in classes]
        return pd.DataFrame(rows, columns=["grant_id", "user_id", "permission",
                                           "record_class"]).astype("string")
