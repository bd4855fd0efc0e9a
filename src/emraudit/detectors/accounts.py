"""rights.generic_account — generic and shared logins (一人一号 not kept).

Two signs, each judged per account and calendar month (one finding a month while the
account stays in use: a reminder that reopens no closed case and floods no queue):

- the name: the login or the staff master's name looks like a generic account (admin,
  test, 护士站, 科室公用 …: `name_patterns`);
- the behaviour: the account is used from `min_workstations` or more terminals within
  `window_minutes`, on most of the days it is active (`min_share` of at least `min_days`
  days) — many people share it, every day. cred.concurrent_use catches one day's
  interleaving between places; this catches the standing habit, on one ward too.

The finding lists the events of the month that show it (at most `max_events`, the first and
the last, with the total in the evidence).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param
from emraudit.detectors.cred import SHARED_HOST_PARAMS, _check_ranges, _shared_mask
from emraudit.detectors.explain import _us
from emraudit.detectors.registry import register
from emraudit.detectors.rights import staff
from emraudit.fastops import is_value
from emraudit.reports.rights_text import message_id, rule_messages
from emraudit.rights_usage import codes_of

DEFAULT_PATTERNS = [
    "^admin", "^administrator$", "^root$", "^sa$", "^test", "^guest", "^temp", "^demo",
    "^public", "^shared?[-_]?", "^(hsz|ysz)\\d*$", "测试", "临时", "公用", "共用", "通用",
    "护士站", "医生站", "科室账号", "管理员", "体验",
]


def _day_numbers(ts: pd.Series, tz: str) -> np.ndarray:
    """Site-local calendar day of each event as days since 1970 (integers, no strings)."""
    naive = ts.dt.tz_convert(tz).dt.tz_localize(None) \
        if isinstance(ts.dtype, pd.DatetimeTZDtype) else ts
    return naive.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").view(np.int64)


def _check_patterns(values: list[str]) -> list[str]:
    for v in values:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {v!r} ({exc})") from None
    return values


@register
class GenericAccount(Detector):
    id = "rights.generic_account"
    description_zh = ('名称为通用账号的登录（如管理员、测试、访客、护士站、公用，按账号或人员姓名判断），以及在大多数使用日同时从多台终端登录的账号：一个病区或科室共用一个密码。每个账号每月一条发现，列出当月体现该问题的事件。')
    note_zh = ('查明谁知道该密码：询问使用这些终端的病区或科室。共用账号使每次查阅都无法追溯到个人，这是整改方案所禁止的；测试或管理账号打开患者病历更为严重。不人工查阅病历的接口账号应列入 ignore_accounts。')
    false_positives_zh = ('名称类似通用账号的接口和服务账号（HIS-LIS 接口）', '未列为共享主机的瘦客户端或 VDI 网关', '一人在一排终端上工作（影像阅片室）')
    messages = rule_messages("rights.generic_account")
    name_en = "Generic or shared account"
    name_zh = "通用账号或多人共用账号"
    item = "9"
    severity = "high"
    needs = ("access_log",)
    uses = ("users", "workstations")
    lookback_days = 31
    partition_key = "user"        # an account's own logins and terminals
    params = (
        Param("name_patterns", list, DEFAULT_PATTERNS, "regular expressions (case-"
              "insensitive, searched) that mark a login or a staff name as generic"),
        Param("ignore_accounts", list, [], "accounts never reported (interface or service "
              "accounts that open no record by hand)"),
        Param("window_minutes", float, 30.0, "terminals used within this long count as used "
              "at once", "minutes", 1, 720),
        Param("min_workstations", int, 3, "terminals at once that one person does not use",
              "workstations", 2, 100),
        Param("min_days", int, 5, "active days in the loaded history needed to judge the "
              "habit", "days", 1, 365),
        Param("min_share", float, 0.6, "share of the active days with terminals used at once",
              "share", 0.05, 1),
        Param("max_events", int, 200, "events listed per finding (the first and the last "
              "half; the evidence counts them all)", "events", 10, 100000),
    ) + SHARED_HOST_PARAMS
    description = (
        "Logins such as admin, test, guest, 护士站 or 公用 (by the account or the staff "
        "name), and accounts used from several terminals at once on most days they are "
        "used: one password shared by a ward or an office. One finding per account and "
        "month, listing that month's events that show it.")
    note = (
        "Find out who knows the password: ask the ward or office that uses the terminals. A "
        "shared account makes every access untraceable to a person, which the "
        "rectification plan forbids; a test or admin account opening patient records is "
        "worse. Interface accounts that read no record by hand belong in ignore_accounts.")
    false_positives = (
        "interface and service accounts (HIS-LIS bridges) named like generic accounts",
        "thin clients or VDI gateways not listed as shared hosts",
        "one person working at a bank of terminals (an imaging reading room)",
    )
    measure_zh = ("停用通用账号和科室公用账号，落实一人一号、实名使用；"
                  "测试、管理账号不得用于查阅患者病历；定期核查共用情况。")
    measure_en = ("Disable generic and shared accounts: one person, one named account; test "
                  "and administrator accounts never open patient records; audit for "
                  "sharing regularly.")

    def __init__(self, **kw):
        super().__init__(**kw)
        _check_patterns(self.p.name_patterns)
        _check_ranges(self.p.shared_ip_ranges)

    def run(self, ctx: Context) -> pd.DataFrame:
        ev = ctx.events
        if not len(ev):
            return self.findings([])
        keep = np.array(ev["user_id"].notna(), dtype=bool)
        if "outcome" in ev.columns:
            keep &= ~is_value(ev["outcome"], "failure")
        ucode, users = codes_of(ev["user_id"])
        ignored = np.isin(users.astype(str), [str(a) for a in self.p.ignore_accounts])
        keep &= (ucode >= 0) & ~np.append(ignored, False)[np.where(ucode < 0, len(users),
                                                                   ucode)]
        if not keep.any():
            return self.findings([])
        day = _day_numbers(ev["ts"], ctx.tz)
        rows = self._by_name(ctx, ev, keep, ucode, users, day)
        rows += self._by_sharing(ctx, ev, keep, ucode, users, day)
        return self.findings(rows)

    # -- the name ----------------------------------------------------------------------------
    def _by_name(self, ctx, ev, keep, ucode, users, day) -> list[dict]:
        rx = re.compile("|".join(f"(?:{p})" for p in self.p.name_patterns), re.I) \
            if self.p.name_patterns else None
        if rx is None:
            return []
        names = staff(ctx)["name"] if "name" in staff(ctx).columns else pd.Series(dtype=str)
        hits = {}
        for code in np.unique(ucode[keep]):              # once per active account
            acct = str(users[code])
            found = [m.group(0) for m in (rx.search(acct),) if m]
            nm = names.get(acct)
            if nm is not None and not pd.isna(nm):
                found += [m.group(0) for m in (rx.search(str(nm)),) if m]
            if found:
                hits[code] = sorted(set(found))
        rows = []
        for code, match in hits.items():
            sel = keep & (ucode == code)
            rows += self._monthly(ctx, ev, sel, day, str(users[code]), "name",
                                  lambda n_days, n_ws, _m=match: {"match": _m,
                                                                   "days": n_days,
                                                                   "workstations": n_ws})
        return rows

    # -- the behaviour -----------------------------------------------------------------------
    def _by_sharing(self, ctx, ev, keep, ucode, users, day) -> list[dict]:
        p = self.p
        term = "workstation" if "workstation" in ev.columns else "ip" if "ip" in ev.columns \
            else None
        if term is None:
            return []
        use = keep & ~_shared_mask(ev, p.shared_ip_ranges, p.shared_workstations) \
            & ~is_value(ev["action"], "logout")
        wcode, _ = codes_of(ev[term])
        use &= wcode >= 0
        if not use.any():
            return []
        dcode = day
        bucket = _us(ev["ts"]) // int(p.window_minutes * 60e6)
        i = np.flatnonzero(use)
        # distinct (account, bucket, terminal), then terminals per (account, bucket)
        k = pd.DataFrame({"u": ucode[i], "d": dcode[i], "b": bucket[i], "w": wcode[i]}) \
            .drop_duplicates()
        per_bucket = k.groupby(["u", "d", "b"]).size()
        per_day = per_bucket.groupby(level=["u", "d"]).max()
        active = pd.Series(1, index=pd.MultiIndex.from_frame(
            pd.DataFrame({"u": ucode[i], "d": dcode[i]}).drop_duplicates())).groupby(
            level="u").size()
        shared = (per_day >= p.min_workstations)
        n_shared = shared.groupby(level="u").sum()
        judged = pd.DataFrame({"active": active, "shared": n_shared}).fillna(0)
        judged = judged[(judged["active"] >= p.min_days)
                        & (judged["shared"] >= p.min_share * judged["active"])]
        rows = []
        for code, r in judged.iterrows():                 # one per shared account
            mine = shared.loc[code]
            sel = use & (ucode == code) & np.isin(day, mine.index[mine.to_numpy()].to_numpy())
            args_of = (lambda n_days, n_ws, _r=r: {
                "min_workstations": p.min_workstations, "minutes": p.window_minutes,
                "shared_days": int(_r["shared"]), "days": int(_r["active"])})
            rows += self._monthly(ctx, ev, sel, day, str(users[code]), "shared", args_of,
                                  extra={"thresholds": {
                                      "window_minutes": p.window_minutes,
                                      "min_workstations": p.min_workstations,
                                      "min_days": p.min_days, "min_share": p.min_share},
                                      "active_days": int(r["active"]),
                                      "days_shared": int(r["shared"])})
        return rows

    # -- one finding per account, reason and month -------------------------------------------
    def _monthly(self, ctx, ev, sel, day, acct, reason, args_of, extra=None) -> list[dict]:
        if not sel.any():
            return []
        idx = np.flatnonzero(sel)
        month = day[idx].astype("datetime64[D]").astype("datetime64[M]")
        inwin = ev["in_window"].to_numpy(dtype=bool)[idx]
        rows = []
        term = ev["workstation"] if "workstation" in ev.columns else ev.get("ip")
        for mo in np.unique(month[inwin]):              # months with in-window events
            m = str(mo)
            pos = idx[month == mo]
            ts = ev["ts"].iloc[pos]
            n_days = len(np.unique(day[pos]))
            n_ws = int(term.iloc[pos].nunique()) if term is not None else 0
            ids = ev["event_id"].iloc[pos].astype(str).tolist()
            half = self.p.max_events // 2
            listed = ids if len(ids) <= self.p.max_events else ids[:half] + ids[-half:]
            args = {"user": acct, **args_of(n_days, n_ws)}
            rule = f"generic.{reason}"
            rows.append({
                "key": f"{acct}|{reason}|{m}", "user_id": acct, "patient_id": "",
                "start": ts.min(), "end": ts.max(), "event_ids": listed,
                "severity": "high" if reason == "name" else "medium",
                "score": 2.0 + n_days / 10.0, "message_id": message_id(rule), "message_args": args,
                "evidence": {"rule": rule, "month": m,
                             "events_total": len(ids), "events_listed": len(listed),
                             "days": n_days, "workstations": n_ws, **(extra or {})}})
        return rows
