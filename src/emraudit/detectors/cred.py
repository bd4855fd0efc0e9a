"""Credential misuse (item 9: login keys and passwords lent to others, accounts not managed).

Eight rule detectors over the accounts' activity, each a sorted pass per user (shift(),
merge_asof, the explanation engine's interval search), never a pairwise cross join:

- cred.concurrent_use    one account active in two places with interleaved activity (A-B-A);
- cred.impossible_travel consecutive events on campuses further apart than the gap allows;
- cred.off_duty_use      the account used while its owner is on leave, in surgery or offsite;
- cred.inactive_account  activity after the owner left, while terminated, or after dormancy;
- cred.acting_mismatch   the logged-in account differs from the recorded acting person;
- cred.expired_access    trainees and vendors acting after their access_until;
- cred.external_access   records opened from outside the hospital's declared networks.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re

import numpy as np
import pandas as pd

from emraudit.detectors.base import Context, Detector, Param
from emraudit.detectors.explain import _us, complete, interval_hit
from emraudit.detectors.message import Clause, Message
from emraudit.detectors.registry import register
from emraudit.detectors.schedule import duty_mask
from emraudit.reports.i18n import N_, Np_
from emraudit.fastops import (dense_unique, factorize_text, is_value, local_days,
                               map_values, positions_in, stable_order)
from emraudit.model import ROLES

_MIN_US = 60 * 1_000_000
_FAR = 2 ** 52
_DAY_US = 86_400 * 1_000_000

SHARED_HOST_PARAMS = (
    Param("shared_ip_ranges", list, [], "IP ranges (CIDR, e.g. 10.9.0.0/24) of shared hosts "
          "— VDI/Citrix gateways, VPN concentrators, terminal servers — whose events say "
          "nothing about where the user is; they are ignored", items=str),
    Param("shared_workstations", list, [], "workstation names (shell patterns, e.g. "
          "'CITRIX-*') of shared hosts, ignored like shared_ip_ranges", items=str),
)


# --- shared helpers ------------------------------------------------------------------------

def _ip_ints(ip: pd.Series) -> np.ndarray:
    """IPv4 addresses as integers (-1 when missing or not IPv4); parsed once per distinct."""
    codes, uniq = factorize_text(ip)
    vals = np.full(len(uniq) + 1, -1, dtype=np.int64)
    for i, s in enumerate(uniq):            # one per distinct address, not per event
        try:
            a = ipaddress.ip_address(str(s).strip())
            vals[i] = int(a) if a.version == 4 else -1
        except ValueError:
            vals[i] = -1
    return vals[np.where(codes < 0, len(uniq), codes)]


def _shared_mask(ev: pd.DataFrame, ranges: list[str], names: list[str]) -> np.ndarray:
    """Events from configured shared hosts (VDI/Citrix/VPN): no evidence of a place."""
    out = np.zeros(len(ev), dtype=bool)
    if ranges and "ip" in ev.columns:
        ipi = _ip_ints(ev["ip"])
        for r in ranges:
            net = ipaddress.ip_network(r, strict=False)
            if net.version != 4:
                continue
            lo, hi = int(net.network_address), int(net.broadcast_address)
            out |= (ipi >= lo) & (ipi <= hi)
    if names and "workstation" in ev.columns:
        codes, uniq = factorize_text(ev["workstation"])
        hit = np.array([any(fnmatch.fnmatchcase(str(u), pat) for pat in names) for u in uniq]
                       + [False])
        out |= hit[np.where(codes < 0, len(uniq), codes)]
    return out


def _check_ranges(values: list[str]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"not an IP range: {v!r} (expected CIDR such as 10.9.0.0/24)")
    return values


def _distinct_terminals(ev: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """(code per event, one row per distinct workstation/IP pair): per-terminal work is done
    once per terminal, not once per event."""
    n = len(ev)
    cols = {}
    codes = np.zeros(n, dtype=np.int64)
    for c in ("workstation", "ip"):
        if c in ev.columns:
            k, u = factorize_text(ev[c])
            codes = codes * (len(u) + 1) + (k + 1)
            cols[c] = (k, u)
    _, first, inv = dense_unique(codes)
    small = pd.DataFrame({c: pd.array(np.where(k[first] >= 0, np.asarray(u, dtype=object)[
        np.clip(k[first], 0, None)] if len(u) else None, None), dtype="string")
        for c, (k, u) in cols.items()}, index=pd.RangeIndex(len(first)))
    return inv, small


def _workstation_info(ctx: Context, ev: pd.DataFrame, column: str) -> pd.Series:
    """The workstations-table `column` (department, campus, location) of each event, by
    workstation name, else by IP; missing when unknown."""
    if not len(ev):
        return pd.Series(pd.NA, index=ev.index, dtype="string")
    inv, small = _distinct_terminals(ev)
    vals = _terminal_info(ctx, small, column)
    return pd.Series(vals.to_numpy()[inv], index=ev.index, dtype="string")


def _terminal_info(ctx: Context, small: pd.DataFrame, column: str) -> pd.Series:
    out = pd.Series(pd.NA, index=small.index, dtype="string")
    ws = complete(ctx.workstations, "workstations", ctx.tz)
    if ws is None or not len(ws) or column not in ws.columns:
        return out
    if "workstation" in small.columns:
        m = ws.dropna(subset=["workstation"]).drop_duplicates("workstation", keep="last")
        out = small["workstation"].map(
            m.set_index("workstation")[column].astype("string")).astype("string")
    if "ip" in small.columns and out.isna().any():
        m = ws.dropna(subset=["ip"]).drop_duplicates("ip", keep="last")
        by_ip = small["ip"].map(m.set_index("ip")[column].astype("string"))
        out = out.fillna(by_ip.astype("string"))
    return out


def _terminal_place(ctx: Context, small: pd.DataFrame, level: str) -> pd.Series:
    """The place of each distinct terminal (see _place)."""
    campus = _terminal_info(ctx, small, "campus").fillna("")
    if level == "campus":
        place = _terminal_info(ctx, small, "campus")
    else:
        place = _terminal_info(ctx, small, level)
        place = (campus + "/" + place).where(place.notna())
    if "ip" in small.columns:
        net = small["ip"].str.extract(r"^(\d+\.\d+\.\d+)\.\d+$", expand=False)
        place = place.fillna(("net " + net).astype("string"))
    if "workstation" in small.columns:
        bad = small["workstation"].str.upper().isin(["UNKNOW", "UNKNOWN", "-"]).fillna(False)
        place = place.fillna(("ws " + small["workstation"]).where(~bad))
    return place.astype("string")


def _event_rows(ctx: Context) -> pd.DataFrame:
    """Successful events of known accounts (the log of what each account did)."""
    ev = ctx.events
    keep = np.array(ev["user_id"].notna(), dtype=bool)
    if "outcome" in ev.columns:
        keep &= ~is_value(ev["outcome"], "failure")
    return ev if keep.all() else ev.loc[keep]


def _presence_mask(ev: pd.DataFrame) -> np.ndarray:
    """Successful events of known accounts that show someone at the terminal (a logout is
    left out: it is often written by a time-out or by closing a session from elsewhere)."""
    keep = np.array(ev["user_id"].notna(), dtype=bool)
    if "outcome" in ev.columns:
        keep &= ~is_value(ev["outcome"], "failure")
    return keep & ~is_value(ev["action"], "logout")


def _per_event(values: pd.Series, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-terminal strings to per-event integer codes (-1 missing) and the code names."""
    code, names = pd.factorize(values)
    return np.asarray(code, dtype=np.int64)[inv], np.asarray(names, dtype=object)


def _sorted_by_user(ev: pd.DataFrame, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Positions of the kept events ordered by account then time, with their account codes
    and times (µs): arrays only, the frame itself is never reordered."""
    ucode, _ = pd.factorize(ev["user_id"])
    t = _us(ev["ts"])
    pos = np.flatnonzero(keep)
    tp = t[pos]
    if len(tp) and (tp[1:] >= tp[:-1]).all():
        # already in time order (the scan's events are): a stable sort by account suffices
        order = stable_order(ucode[pos])
    else:
        order = np.lexsort((tp, ucode[pos]))
    idx = pos[order]
    return idx, np.asarray(ucode, dtype=np.int64)[idx], t[idx]


def _presence_sorted(ctx: Context, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Presence events ordered by account then time (shared by the cred detectors in one
    scan), limited to `keep`; filtering a sorted order keeps it sorted."""
    idx, u, t = ctx.cached("cred.presence_sorted",
                           lambda: _sorted_by_user(ctx.events, _presence_mask(ctx.events)))
    m = keep[idx]
    return idx[m], u[m], t[m]


def _terminals(ctx: Context) -> tuple[np.ndarray, pd.DataFrame]:
    return ctx.cached("cred.terminals", lambda: _distinct_terminals(ctx.events))


def _acting_differs(acting: pd.Series, user: pd.Series) -> np.ndarray:
    """An acting user is recorded and is not the account's user (a missing account user
    never counts). On the scan's coded user column the acting ids are looked up among its
    categories: integer comparisons, no string per event."""
    if isinstance(user.dtype, pd.CategoricalDtype):
        same = positions_in(acting, user.cat.categories) == user.cat.codes.to_numpy()
        return acting.notna().to_numpy() & ~same & user.notna().to_numpy()
    a = acting.astype("string")
    return (a.notna() & (a != user.astype("string"))).fillna(False).to_numpy(dtype=bool)


def _campus_codes(terminal_campus: pd.Series, inv: np.ndarray,
                  facility: pd.Series | None) -> tuple[np.ndarray, pd.Index]:
    """Each event's campus as an integer code (-1 unknown) and the code names: its
    terminal's campus, else the event's facility. Worked out on the distinct terminals and
    facilities, never on one string per event."""
    tcode, tnames = pd.factorize(terminal_campus.astype("string"))
    tcode = np.asarray(tcode, dtype=np.int64)
    per_event = tcode[inv] if len(tcode) else np.full(len(inv), -1, dtype=np.int64)
    names = pd.Index(tnames, dtype="string")
    if facility is None:
        return _same_places(per_event, names)
    fcode, fnames = pd.factorize(facility)
    fnames = pd.Index(fnames, dtype="string")
    names = names.append(fnames.difference(names, sort=False))
    fmap = np.append(names.get_indexer(fnames), -1)     # facility code -> campus code
    fcode = np.asarray(fcode, dtype=np.int64)
    return _same_places(np.where(per_event >= 0, per_event, fmap[fcode]), names)


def place_key(name: str) -> str:
    """One spelling of a place: case, surrounding blanks, a URL scheme, user info, default
    port and trailing slash do not make another campus ("server.example.com" and
    "http://server.example.com/" are one host; FHIR sources spell `source.site` both ways)."""
    key = str(name).strip().casefold()
    key = re.sub(r"^[a-z][a-z0-9+.-]*://", "", key)
    key = re.sub(r"^[^/@]*@", "", key)
    key = re.sub(r":(80|443)(?=/|$)", "", key)
    return key.rstrip("/")


def _same_places(code: np.ndarray, names: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """Codes of names that are spellings of one place merged onto its first spelling
    (worked out per distinct name)."""
    if not len(names):
        return code, names
    keys = [place_key(n) for n in names]
    first, uniq = pd.factorize(pd.Series(keys, dtype=object))
    if len(uniq) == len(names):
        return code, names
    keep = pd.Series(np.arange(len(names))).groupby(first).first().to_numpy()
    merged = np.append(np.asarray(first, dtype=np.int64), -1)
    return merged[np.where(code >= 0, code, len(names))], pd.Index(names[keep], dtype="string")


def _ids(df: pd.DataFrame) -> list[str]:
    return sorted(df["event_id"].astype(str).tolist())


# --- cred.concurrent_use -------------------------------------------------------------------

@register
class ConcurrentUse(Detector):
    id = "cred.concurrent_use"
    also_catches = ("cred.impossible_travel",)   # when the two places are campuses apart
    partition_key = "user"
    name_en = "One account active in two places at once"
    name_zh = "账号多终端同时使用"
    item = "9"
    severity = "high"
    needs = ("access_log",)
    uses = ("workstations",)
    params = (
        Param("window_minutes", float, 10.0, "A-B-A: the account is back in place A at most "
              "this long after its last event there, with activity in place B in between",
              "minutes", 0.5, 240),
        Param("move_minutes", float, 2.0, "on one campus a person can walk from A to B and "
              "back: the interleaving counts only when both switches (A to B, B back to A) "
              "are at most this fast — quicker than moving and logging in. Places on "
              "different campuses need only window_minutes", "minutes", 0, 60),
        Param("place_level", str, "department", "what counts as a different place: the "
              "workstation's department, location or campus (workstations table); without it "
              "the IP's /24 network, else the workstation name",
              choices=("department", "location", "campus")),
        Param("min_interleavings", int, 1, "A-B-A patterns in a day needed for a finding",
              "patterns", 1, 100),
    ) + SHARED_HOST_PARAMS
    description = ("One account with interleaved activity in two places — A, then B, then A "
                   "again within window_minutes — that one person cannot produce: on two "
                   "campuses (A at 10:00, B at 10:03, A at 10:05), or on one campus with both "
                   "switches faster than walking there and logging in (move_minutes). Two "
                   "people are using the login. Shared hosts (VDI/Citrix gateways, "
                   "configurable) are ignored; a logout is not taken as presence.")
    note = ("Check both workstations and the session ids in the events: two sessions open at "
            "once on different wards means two people. Ask who sat at each terminal; a "
            "password written on a monitor or a session left open for colleagues is common.")
    false_positives = (
        "a session left logged in at one terminal that still records automatic refreshes",
        "thin clients and VDI gateways not listed in shared_ip_ranges/shared_workstations",
        "a workstations table with wrong departments for some terminals",
    )
    description_zh = ("同一账号在两处交替操作——在 window_minutes 内先 A、再 B、又回到 A——一个人无"
                      "法做到：在两个院区（10:00 在 A，10:03 在 B，10:05 又在 A），或在同一院区但"
                      "两次切换都快于步行过去并登录所需的时间（move_minutes）。说明有两个人在使用"
                      "同一账号。共用主机（VDI 等远程桌面网关，可配置）不计；注销不视为在场。")
    note_zh = ("核对事件中的两台终端和会话号：不同病区同时开着两个会话，就是两个人。询问每台终端"
               "前坐的是谁；密码贴在显示器上或会话留给同事继续用都很常见。")
    false_positives_zh = (
        "某终端上未注销的会话仍在自动刷新",
        "未列入 shared_ip_ranges/shared_workstations 的瘦客户端和 VDI 网关",
        "终端表中部分终端所属科室有误",
    )
    measure_zh = "落实一人一号，禁止共用或出借账号；强制会话超时与单点登录互斥；对当事人及科室通报整改。"
    measure_en = ("Enforce one person one account; forbid sharing or lending logins; enforce "
                  "session time-outs and single active session; notify the user and unit.")
    messages = {"cred.concurrent_use": Message(
        Np_("account %(user)s was active in %(n_places)s places at once on %(day)s: %(places)s "
            "interleaved within %(minutes)s min (%(count)s time)",
            "account %(user)s was active in %(n_places)s places at once on %(day)s: %(places)s "
            "interleaved within %(minutes)s min (%(count)s times)"), count="count")}

    def __init__(self, **kw):
        super().__init__(**kw)
        _check_ranges(self.p.shared_ip_ranges)

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        full = ctx.events
        if not len(full):
            return self.findings([])
        keep = ~_shared_mask(full, p.shared_ip_ranges, p.shared_workstations)
        inv, small = _terminals(ctx)
        place_all, place_names = _per_event(_terminal_place(ctx, small, p.place_level), inv)
        campus_all, campus_names = _per_event(_terminal_info(ctx, small, "campus"), inv)
        keep &= place_all >= 0
        if not keep.any():
            return self.findings([])
        idx, u, t = _presence_sorted(ctx, keep)
        if not len(idx):        # only failed logins or logouts: nobody was present
            return self.findings([])
        pl = place_all[idx]
        cp = campus_all[idx]
        # runs of consecutive events in the same place, per user
        new_run = np.ones(len(idx), dtype=bool)
        new_run[1:] = (u[1:] != u[:-1]) | (pl[1:] != pl[:-1])
        starts = np.flatnonzero(new_run)
        ends = np.append(starts[1:], len(idx)) - 1
        r_user, r_place, r_campus = u[starts], pl[starts], cp[starts]
        r_t0, r_t1 = t[starts], t[ends]
        # A (run r-2) ... B (run r-1) ... A (run r), same user, back within the window
        r = np.arange(2, len(starts))
        ok = ((r_user[r] == r_user[r - 2]) & (r_user[r] == r_user[r - 1])
              & (r_place[r] == r_place[r - 2])
              & (r_t0[r] - r_t1[r - 2] <= p.window_minutes * _MIN_US))
        other_campus = ((r_campus[r] >= 0) & (r_campus[r - 1] >= 0)
                        & (r_campus[r] != r_campus[r - 1]))
        fast = ((r_t0[r - 1] - r_t1[r - 2] <= p.move_minutes * _MIN_US)
                & (r_t0[r] - r_t1[r - 1] <= p.move_minutes * _MIN_US))
        ok &= other_campus | fast
        hits = r[ok]
        if not len(hits):
            return self.findings([])
        # only the events of the patterns are looked at from here on (few)
        span = np.unique(np.concatenate([np.arange(ends[h - 2], starts[h] + 1)
                                         for h in hits]))
        ev = full.iloc[idx[span]].assign(place=place_names[pl[span]])
        remap = np.full(len(idx), -1, dtype=np.int64)
        remap[span] = np.arange(len(span))
        pl = ev["place"].to_numpy()
        t = _us(ev["ts"])
        ends = remap[ends]
        starts = remap[starts]
        day = local_days(ev["ts"], ctx.tz).to_numpy()
        in_win = ev["in_window"].to_numpy(dtype=bool)
        ids = ev["event_id"].astype(str).to_numpy()
        users_ = ev["user_id"].astype(str).to_numpy()
        pat = pd.DataFrame({"a": ends[hits - 2], "c": starts[hits]})
        pat["user"] = users_[pat["a"].to_numpy()]
        pat["day"] = day[pat["a"].to_numpy()]
        rows = []
        for (user, d), grp in pat.groupby(["user", "day"], sort=True):   # one per finding
            if len(grp) < p.min_interleavings:
                continue
            idx = sorted({i for a, c in zip(grp["a"], grp["c"]) for i in range(a, c + 1)})
            if not in_win[idx].any():
                continue
            first = grp.iloc[0]
            places = sorted({str(pl[i]) for i in idx})
            example = [{"place": str(pl[i]), "at": ev["ts"].iloc[i].isoformat(),
                        "workstation": _get(ev, i, "workstation"), "ip": _get(ev, i, "ip"),
                        "session_id": _get(ev, i, "session_id"), "event_id": ids[i]}
                       for i in range(int(first["a"]), int(first["c"]) + 1)][:20]
            gap = (t[int(first["c"])] - t[int(first["a"])]) / _MIN_US
            rows.append({
                "key": f"{user}|{d}", "user_id": user, "patient_id": "",
                "start": ev["ts"].iloc[idx[0]], "end": ev["ts"].iloc[idx[-1]],
                "event_ids": [ids[i] for i in idx], "score": float(len(grp)) + len(places),
                "message_id": self.id,
                "message_args": {"user": user, "n_places": len(places), "day": d,
                                 "places": places[:3], "minutes": int(round(gap)),
                                 "count": int(len(grp))},
                "evidence": {"day": d, "places": places, "interleavings": int(len(grp)),
                             "first_pattern": example,
                             "thresholds": {"window_minutes": p.window_minutes,
                                            "move_minutes": p.move_minutes,
                                            "place_level": p.place_level,
                                            "min_interleavings": p.min_interleavings},
                             "shared_hosts_excluded": {"ip_ranges": p.shared_ip_ranges,
                                                       "workstations":
                                                           p.shared_workstations}},
            })
        return self.findings(rows)


def _get(ev: pd.DataFrame, i: int, col: str):
    if col not in ev.columns:
        return None
    v = ev[col].iloc[i]
    return None if pd.isna(v) else str(v)


# --- cred.impossible_travel ----------------------------------------------------------------

@register
class ImpossibleTravel(Detector):
    id = "cred.impossible_travel"
    also_catches = ("cred.concurrent_use",)      # the blatant case is on two campuses
    partition_key = "user"
    name_en = "Impossible travel between campuses"
    name_zh = "账号跨院区异常切换"
    item = "9"
    severity = "high"
    needs = ("access_log",)
    uses = ("workstations",)
    params = (
        Param("default_travel_minutes", float, 30.0, "least time to get from one campus to "
              "any other", "minutes", 0, 1440),
        Param("campus_travel_minutes", dict, {}, "least travel time for given campus pairs, "
              "'A|B' = minutes (either order), overriding the default", "minutes",
              items=float),
    ) + SHARED_HOST_PARAMS
    description = ("Consecutive events of one account on two campuses closer in time than "
                   "anyone could travel between them (campus from the workstations table, "
                   "else the event's facility).")
    note = ("Compare the two workstations and their sessions; a login used on both campuses "
            "within minutes is being used by two people. Remote access through a gateway "
            "not yet listed as shared is the usual innocent cause.")
    false_positives = ("remote desktop or VPN gateways not listed as shared hosts",
                       "workstations assigned to the wrong campus in the workstations table")
    description_zh = ("同一账号在两个院区的相邻两次操作时间间隔短于任何人在两地之间往返所需的时间"
                      "（院区取自终端表，否则取自事件的 access_log.facility）。")
    note_zh = ("比较两台终端及其会话；同一账号几分钟内在两个院区使用，说明有两个人在用。经尚未登"
               "记为共用主机的网关远程访问，是常见的无害原因。")
    false_positives_zh = (
        "未登记为共用主机的远程桌面或 VPN 网关",
        "终端表中院区登记错误的终端",
    )
    measure_zh = "落实一人一号，禁止出借账号；核查异地登录，必要时启用双因素认证。"
    measure_en = ("Enforce one person one account; review cross-campus logins and require "
                  "two-factor authentication where needed.")
    messages = {"cred.impossible_travel": Message(
        N_("account %(user)s moved from %(from)s to %(to)s in %(minutes)s min on %(day)s (at "
           "least %(needed)s min needed)"),
        clauses=(Clause("hops", Np_(", %(hops)s such hop", ", %(hops)s such hops"),
                        count="hops"),))}

    def __init__(self, **kw):
        super().__init__(**kw)
        _check_ranges(self.p.shared_ip_ranges)
        for k, v in self.p.campus_travel_minutes.items():
            if "|" not in k or isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"campus_travel_minutes: expected 'A|B' = minutes, got "
                                 f"{k!r} = {v!r}")

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        full = ctx.events
        if not len(full):
            return self.findings([])
        keep = ~_shared_mask(full, p.shared_ip_ranges, p.shared_workstations)
        inv, small = _terminals(ctx)
        ccode, cnames = _campus_codes(_terminal_info(ctx, small, "campus"), inv,
                                      full["facility"] if "facility" in full.columns else None)
        keep &= ccode >= 0
        if not keep.any():
            return self.findings([])
        idx, u, t = _presence_sorted(ctx, keep)
        c = ccode[idx]
        moved = np.zeros(len(idx), dtype=bool)
        moved[1:] = (u[1:] == u[:-1]) & (c[1:] != c[:-1])
        gap_us = np.zeros(len(idx), dtype=np.int64)
        gap_us[1:] = t[1:] - t[:-1]
        need = np.full(len(idx), float(p.default_travel_minutes))
        names = np.asarray(cnames, dtype=object)
        prev_c = np.r_[-1, c[:-1]]
        for pair, minutes in p.campus_travel_minutes.items():
            a_, b_ = (x.strip() for x in pair.split("|", 1))
            ia = np.flatnonzero(names == a_)
            ib = np.flatnonzero(names == b_)
            if not len(ia) or not len(ib):
                continue
            m = ((c == ia[0]) & (prev_c == ib[0])) | ((c == ib[0]) & (prev_c == ia[0]))
            need[m] = float(minutes)
        hit = moved & (gap_us < need * _MIN_US)
        if not hit.any():
            return self.findings([])
        hp = np.flatnonzero(hit)
        span = np.unique(np.r_[hp - 1, hp])
        ev = full.iloc[idx[span]].reset_index(drop=True)
        ev["campus"] = names[c[span]]
        remap = np.full(len(idx), -1, dtype=np.int64)
        remap[span] = np.arange(len(span))
        gap = pd.Series(np.zeros(len(span)))
        gap.iloc[remap[hp]] = gap_us[hp] / _MIN_US
        need_s = pd.Series(need[span])
        pos = remap[hp]
        pairs = pd.DataFrame({"i": remap[hp - 1], "j": pos,
                              "user": ev["user_id"].astype(str).to_numpy()[pos],
                              "day": local_days(ev["ts"].iloc[pos], ctx.tz).to_numpy()})
        need = need_s
        rows = []
        in_win = ev["in_window"].to_numpy(dtype=bool)
        for (user, d), grp in pairs.groupby(["user", "day"], sort=True):
            idx = sorted(set(grp["i"]) | set(grp["j"]))
            if not in_win[idx].any():
                continue
            hops = [{"from": str(ev["campus"].iloc[i]), "to": str(ev["campus"].iloc[j]),
                     "from_at": ev["ts"].iloc[i].isoformat(), "to_at": ev["ts"].iloc[j].isoformat(),
                     "minutes": round(float(gap.iloc[j]), 1),
                     "needed_minutes": float(need.iloc[j]),
                     "from_workstation": _get(ev, i, "workstation"),
                     "to_workstation": _get(ev, j, "workstation"),
                     "event_ids": [str(ev["event_id"].iloc[i]), str(ev["event_id"].iloc[j])]}
                    for i, j in zip(grp["i"], grp["j"])]
            h = hops[0]
            rows.append({
                "key": f"{user}|{d}", "user_id": user, "patient_id": "",
                "start": ev["ts"].iloc[idx[0]], "end": ev["ts"].iloc[idx[-1]],
                "event_ids": ev["event_id"].iloc[idx].astype(str).tolist(),
                "score": float(len(hops)),
                "message_id": self.id,
                "message_args": {"user": user, "from": h["from"], "to": h["to"],
                                 "minutes": h["minutes"], "day": d,
                                 "needed": h["needed_minutes"],
                                 "hops": len(hops) if len(hops) > 1 else 0},
                "evidence": {"day": d, "hops": hops[:20],
                             "thresholds": {"default_travel_minutes": p.default_travel_minutes,
                                            "campus_travel_minutes":
                                                p.campus_travel_minutes}},
            })
        return self.findings(rows)


# --- cred.off_duty_use ---------------------------------------------------------------------

_FROM_PLACES = Clause("places", N_(" from %(places)s"))


def place_words_pattern(words: list[str]) -> str:
    """One regular expression for place words: each taken literally, and where it begins or
    ends with a Latin letter, not inside a longer Latin word (the default "OR" must not match
    CORRIDOR or WORKSTATION). Chinese words have no such boundary: 手术 matches 手术室."""
    parts = []
    for word in words:
        w = str(word)
        if not w:
            continue
        head = r"(?<![A-Za-z])" if w[0].isascii() and w[0].isalpha() else ""
        tail = r"(?![A-Za-z])" if w[-1].isascii() and w[-1].isalpha() else ""
        parts.append(head + re.escape(w) + tail)
    return "|".join(parts)


@register
class OffDutyUse(Detector):
    id = "cred.off_duty_use"
    partition_key = "user"
    name_en = "Account used while its owner is on leave, in surgery or offsite"
    name_zh = "休假/手术/外出期间账号被使用"
    item = "9"
    severity = "high"
    needs = ("access_log", "shifts")
    uses = ("workstations",)
    params = (
        Param("kinds", list, ["leave", "surgery", "offsite"], "roster block kinds during "
              "which use of the account is suspicious", choices=("leave", "surgery",
                                                                  "offsite")),
        Param("edge_minutes", float, 15.0, "activity this close to the start or end of a "
              "block is ignored (clocks, handover, a block entered to the hour)", "minutes",
              0, 240),
        Param("surgery_allowed_places", list, ["手术", "麻醉", "OR", "theatre"], "during "
              "surgery, use from a workstation whose location, department or name contains one "
              "of these (the operating theatre) is legitimate; so is the block's own location. "
              "Case is ignored, and a Latin word is matched as a word: OR matches OR-3 and "
              "Main OR 2, not CORRIDOR"),
        Param("min_events", int, 1, "events in one block needed for a finding", "events",
              1, 1000),
    ) + SHARED_HOST_PARAMS
    description = ("The roster says the account's owner is on leave, in an operation or "
                   "offsite, yet the account is active. A surgeon's account active at a ward "
                   "workstation during an operation is the classic lent-login signal.")
    note = ("Confirm the block with the roster keeper (cancelled leave, operation postponed), "
            "then ask who used the terminal. Use from the operating theatre during surgery is "
            "not flagged.")
    false_positives = ("leave cancelled or an operation moved without updating the roster",
                       "remote access while on leave that the hospital allows (list VPN "
                       "gateways as shared hosts to ignore them)")
    description_zh = ("排班显示账号本人在休假、手术中或外出，账号却在使用。手术期间外科医师的账号"
                      "在病区终端上活动，是借用账号的典型信号。")
    note_zh = ("先与排班管理人员核实该时段（休假取消、手术推迟），再询问是谁使用了该终端。手术期"
               "间在手术室内的使用不计。")
    false_positives_zh = (
        "休假取消或手术改期但排班未更新",
        "医院允许的休假期间远程访问（将 VPN 网关登记为共用主机即可忽略）",
    )
    measure_zh = "休假、手术期间账号不得由他人使用；排班变更及时录入；对出借账号者批评教育。"
    measure_en = ("An account must not be used by others while its owner is away; keep the "
                  "roster current; counsel those who lend their login.")
    messages = {
        "cred.off_duty_use.leave": Message(Np_(
            "account %(user)s was used %(count)s time while its owner was on leave "
            "(%(start)s – %(end)s)",
            "account %(user)s was used %(count)s times while its owner was on leave "
            "(%(start)s – %(end)s)"), count="count", clauses=(_FROM_PLACES,)),
        "cred.off_duty_use.surgery": Message(Np_(
            "account %(user)s was used %(count)s time while its owner was in surgery "
            "(%(start)s – %(end)s)",
            "account %(user)s was used %(count)s times while its owner was in surgery "
            "(%(start)s – %(end)s)"), count="count", clauses=(_FROM_PLACES,)),
        "cred.off_duty_use.offsite": Message(Np_(
            "account %(user)s was used %(count)s time while its owner was offsite "
            "(%(start)s – %(end)s)",
            "account %(user)s was used %(count)s times while its owner was offsite "
            "(%(start)s – %(end)s)"), count="count", clauses=(_FROM_PLACES,)),
    }

    def __init__(self, **kw):
        super().__init__(**kw)
        _check_ranges(self.p.shared_ip_ranges)

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        sh = complete(ctx.shifts, "shifts", ctx.tz)
        ev = _event_rows(ctx)
        if sh is None or not len(ev):
            return self.findings([])
        blocks = sh[sh["kind"].isin(p.kinds)].reset_index(drop=True)
        if not len(blocks):
            return self.findings([])
        ev = ev.loc[~_shared_mask(ev, p.shared_ip_ranges, p.shared_workstations)]
        if not len(ev):
            return self.findings([])
        ucode, uidx = pd.factorize(ev["user_id"])
        b_u = pd.Index(uidx).get_indexer(blocks["user_id"].astype("string"))
        edge = int(p.edge_minutes * _MIN_US)
        lo = _us(blocks["start"]) + edge
        hi = _us(blocks["end"]) - edge
        t = _us(ev["ts"])
        hit, which = interval_hit(ucode.astype(np.int64), t,
                                  np.where(lo <= hi, b_u, -1).astype(np.int64), lo, hi,
                                  np.arange(len(blocks), dtype=np.int64))
        if not hit.any():
            return self.findings([])
        sel = ev.loc[hit].assign(block=which[hit])
        kind = blocks["kind"].to_numpy()[sel["block"].to_numpy()]
        sel = sel.assign(kind=kind)
        # surgery: the operating theatre itself (or the block's own location) is fine
        surg = kind == "surgery"
        if surg.any():
            where = (_workstation_info(ctx, sel, "location").fillna("") + " "
                     + _workstation_info(ctx, sel, "department").fillna(""))
            if "workstation" in sel.columns:
                where = where + " " + sel["workstation"].astype("string").fillna("")
            allowed = np.zeros(len(sel), dtype=bool)
            pattern = place_words_pattern(p.surgery_allowed_places)
            if pattern:
                allowed = where.str.contains(pattern, regex=True, case=False
                                             ).fillna(False).to_numpy(dtype=bool)
            own = blocks["location"].astype("string").to_numpy()[sel["block"].to_numpy()]
            # the block's own location (few rows: only events inside surgery blocks)
            own_ok = np.array([isinstance(o, str) and bool(o) and o in str(w)
                               for o, w in zip(own, where.to_numpy())], dtype=bool)
            sel = sel[~(surg & (allowed | own_ok))]
        rows = []
        for b, grp in sel.groupby("block", sort=True):       # one per block
            if len(grp) < p.min_events or not grp["in_window"].any():
                continue
            blk = blocks.iloc[int(b)]
            user = str(blk["user_id"])
            k = str(blk["kind"])
            places = sorted(set(_workstation_info(ctx, grp, "location").dropna().astype(str))
                            | set(grp["workstation"].dropna().astype(str)
                                  if "workstation" in grp.columns else []))
            rows.append({
                "key": f"{user}|{k}|{blk['start'].isoformat()}", "user_id": user,
                "patient_id": (grp["patient_id"].dropna().iloc[0]
                               if grp["patient_id"].notna().sum() and
                               grp["patient_id"].nunique() == 1 else ""),
                "start": grp["ts"].min(), "end": grp["ts"].max(), "event_ids": _ids(grp),
                "severity": "high" if k in ("leave", "surgery") else "medium",
                "score": float(len(grp)),
                "message_id": f"{self.id}.{k}",
                "message_args": {"user": user, "count": int(len(grp)),
                                 "start": blk["start"].isoformat(),
                                 "end": blk["end"].isoformat(), "places": places[:3]},
                "evidence": {"block": {"kind": k, "start": blk["start"].isoformat(),
                                       "end": blk["end"].isoformat(),
                                       "location": None if pd.isna(blk["location"])
                                       else str(blk["location"])},
                             "places": places[:20], "events": int(len(grp)),
                             "actions": grp["action"].astype(str).value_counts().to_dict(),
                             "thresholds": {"edge_minutes": p.edge_minutes,
                                            "min_events": p.min_events}},
            })
        return self.findings(rows)


# --- cred.inactive_account -----------------------------------------------------------------

@register
class InactiveAccount(Detector):
    id = "cred.inactive_account"
    partition_key = "user"
    name_en = "Account of a departed or dormant user in use"
    name_zh = "离职/停用账号使用"
    item = "9"
    severity = "high"
    needs = ("access_log", "users")
    uses = ("shifts",)
    lookback_days = 91
    params = (
        Param("end_grace_days", float, 1.0, "activity up to this long after end_date is "
              "ignored (end_date is usually the last working day)", "days", 0, 90),
        Param("dormant_days", float, 90.0, "an account with no activity for this long (in a "
              "history at least this long) whose activity resumes is reported; 0 turns the "
              "check off", "days", 0, 3650),
        Param("dormant_severity", str, "medium", "severity of a dormant account resuming",
              choices=("low", "medium", "high", "critical")),
    )
    description = ("Activity after the owner's end_date or while their status is "
                   "terminated, and the first activity of a long-dormant account. Dormancy "
                   "needs the look-back history (lookback_days = dormant_days + 1); staff "
                   "returning from rostered leave and new starters are not dormant.")
    note = ("A departed user's account in use means someone else has the password or the "
            "account was never disabled: disable it and find who used it (workstation, "
            "session). A dormant account resuming is weaker: check with the owner.")
    false_positives = ("end_date recorded before the real last day (notice period, handover)",
                       "staff returning from long unrostered leave (maternity, study)",
                       "rarely used accounts of part-time or visiting staff")
    description_zh = ("人员离职日期（end_date）之后或状态为已停用时仍有操作，以及长期闲置账号的首"
                      "次重新使用。判断闲置需要回溯历史（lookback_days = dormant_days + 1）；排班"
                      "中休假归来的人员和新入职人员不算闲置。")
    note_zh = ("离职人员账号仍在使用，说明有人掌握其密码或账号从未停用：停用账号并查明是谁在使用"
               "（终端、会话）。闲置账号重新使用的证据较弱：与账号本人核实。")
    false_positives_zh = (
        "登记的离职日期早于实际最后工作日（交接期）",
        "长期未排班的休假后返岗（产假、进修学习）",
        "兼职或外来人员很少使用的账号",
    )
    measure_zh = "离职、调岗人员账号即时停用；定期清理长期未使用账号；核查停用账号被使用的原因。"
    measure_en = ("Disable accounts on departure or transfer; review long-unused accounts; "
                  "investigate any use of a disabled account.")
    messages = {
        "cred.inactive_account.ended": Message(Np_(
            "account %(user)s was used %(count)s time on %(day)s after the end date "
            "%(end_date)s",
            "account %(user)s was used %(count)s times on %(day)s after the end date "
            "%(end_date)s"), count="count"),
        "cred.inactive_account.terminated": Message(Np_(
            "account %(user)s was used %(count)s time on %(day)s while the account is "
            "terminated",
            "account %(user)s was used %(count)s times on %(day)s while the account is "
            "terminated"), count="count"),
        "cred.inactive_account.dormant": Message(Np_(
            "account %(user)s was used on %(day)s after %(days)s day without any activity",
            "account %(user)s was used on %(day)s after %(days)s days without any activity"),
            count="days"),
    }

    def effective_lookback_days(self) -> int:
        return int(math.ceil(self.p.dormant_days)) + 1 if self.p.dormant_days > 0 else 0

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        users = complete(ctx.users, "users", ctx.tz)
        full = ctx.events
        if users is None or not len(full):
            return self.findings([])
        u = users.drop_duplicates("user_id", keep="last").set_index("user_id")
        rows = []
        # departed: after end_date (+ grace) or terminated with no end_date; looked up once
        # per account, compared per event on integer arrays
        code, uniq = pd.factorize(full["user_id"])
        uniq = pd.Index(uniq, dtype="string")
        # reindex, not Index.map: map of an empty users table lost the datetime dtype
        end_u = _us(u["end_date"].reindex(uniq))
        term_u = (u["status"].astype("string").reindex(uniq)
                  == "terminated").fillna(False).to_numpy(dtype=bool) & (end_u >= _FAR)
        grace = int(p.end_grace_days * _DAY_US)
        has_end = end_u < _FAR
        t = _us(full["ts"])
        cu = np.clip(code, 0, None)
        ok_row = (code >= 0)
        if "outcome" in full.columns:
            ok_row &= ~is_value(full["outcome"], "failure")
        bad_arr = ok_row & full["in_window"].to_numpy(dtype=bool) & (
            (has_end[cu] & (t > end_u[cu] + grace)) | term_u[cu])
        sel = full[bad_arr]
        if len(sel):
            for (user, d), grp in sel.groupby(
                    [sel["user_id"], local_days(sel["ts"], ctx.tz)], sort=True):
                e = u.loc[user, "end_date"]
                st = u.loc[user, "status"]
                rows.append({
                    "key": f"{user}|departed|{d}", "user_id": user,
                    "patient_id": _one_patient(grp), "start": grp["ts"].min(),
                    "end": grp["ts"].max(), "event_ids": _ids(grp),
                    "severity": self.severity, "score": 2.0 + len(grp) / 10.0,
                    "message_id": self.id + (".ended" if pd.notna(e) else ".terminated"),
                    "message_args": {"user": user, "count": int(len(grp)), "day": d,
                                     "end_date": None if pd.isna(e) else e.isoformat()},
                    "evidence": {"day": d, "reason": "departed", "status": str(st),
                                 "end_date": None if pd.isna(e) else e.isoformat(),
                                 "events": int(len(grp)),
                                 "patients": int(grp["patient_id"].nunique()),
                                 "actions": grp["action"].astype(str).value_counts().to_dict(),
                                 "thresholds": {"end_grace_days": p.end_grace_days}},
                })
        first, last = ctx.history_bounds()        # of every partition's events
        if p.dormant_days > 0 and (last - first >= pd.Timedelta(days=p.dormant_days)):
            rows += self._dormant(ctx, _event_rows(ctx)[~bad_arr[ok_row]], u)
        return self.findings(rows)

    def _dormant(self, ctx: Context, ev: pd.DataFrame, u: pd.DataFrame) -> list[dict]:
        p = self.p
        if not len(ev):
            return []
        gap_need = pd.Timedelta(days=p.dormant_days)
        history_start = ctx.history_bounds()[0]
        if ev["ts"].max() - history_start < gap_need:
            return []            # the loaded history is too short to see any dormancy
        code, _ = pd.factorize(ev["user_id"])
        order = np.lexsort((_us(ev["ts"]), code))
        ev, code = ev.iloc[order], code[order]
        prev = ev["ts"].groupby(code, sort=False).shift()
        # a resumption: an in-window event whose previous event is long ago, or which is the
        # first in a history that reaches back far enough
        gap_start = prev.fillna(history_start)
        long_gap = (ev["ts"] - gap_start) >= gap_need
        covered = (ev["ts"] - history_start) >= gap_need
        cand = (long_gap & covered & ev["in_window"].astype(bool)).to_numpy()
        if not cand.any():
            return []
        c = ev[cand].assign(gap_start=gap_start[cand], prev=prev[cand])
        start = map_values(c["user_id"], u["start_date"]) if "start_date" in u.columns else None
        if start is not None:   # new starters are not dormant
            c = c[~(start.notna() & (start >= c["gap_start"] - pd.Timedelta(days=1))).to_numpy()]
        sh = complete(ctx.shifts, "shifts", ctx.tz)
        if sh is not None and len(c):   # rostered leave during the gap explains it
            lv = sh[sh["kind"] == "leave"][["user_id", "start", "end"]]
            m = c[["user_id", "gap_start", "ts"]].reset_index().merge(lv, on="user_id")
            overl = m[(m["start"] < m["ts"]) & (m["end"] > m["gap_start"])]
            c = c[~c.index.isin(overl["index"])]
        rows = []
        for r in c.itertuples():
            # the whole first day of renewed activity supports the finding
            d = local_days(pd.Series([r.ts]), ctx.tz).iloc[0]
            same = ev[(ev["user_id"] == r.user_id) & (ev["ts"] >= r.ts)
                      & (ev["ts"] < r.ts + pd.Timedelta(days=1))]
            days = (r.ts - r.gap_start).total_seconds() / 86400
            rows.append({
                "key": f"{r.user_id}|dormant|{d}", "user_id": r.user_id,
                "patient_id": _one_patient(same), "start": same["ts"].min(),
                "end": same["ts"].max(), "event_ids": _ids(same),
                "severity": p.dormant_severity, "score": 1.0 + days / 100.0,
                "message_id": self.id + ".dormant",
                "message_args": {"user": r.user_id, "day": d, "days": int(round(days))},
                "evidence": {"day": d, "reason": "dormant", "idle_days": round(days, 1),
                             "last_activity_before": (None if pd.isna(r.prev)
                                                      else pd.Timestamp(r.prev).isoformat()),
                             "thresholds": {"dormant_days": p.dormant_days}},
            })
        return rows


def _one_patient(grp: pd.DataFrame) -> str:
    pts = grp["patient_id"].dropna().unique() if "patient_id" in grp.columns else []
    return str(pts[0]) if len(pts) == 1 else ""


# --- cred.acting_mismatch ------------------------------------------------------------------

@register
class ActingMismatch(Detector):
    id = "cred.acting_mismatch"
    partition_key = "user"
    name_en = "Logged-in account differs from the acting person"
    name_zh = "登录人与操作人不一致"
    item = "9"
    severity = "high"
    needs = ("access_log",)
    uses = ("users",)
    params = (
        Param("allow_supervisor_in_trainee_session", bool, True, "a trainee's account with "
              "the trainee's own supervisor (users.supervisor_id) recorded as acting is the "
              "teacher reviewing and countersigning at the trainee's terminal, not a lent "
              "login; the reverse — a trainee acting under the supervisor's account — is "
              "always reported"),
        Param("min_events", int, 1, "mismatched events per account, acting person and day",
              "events", 1, 1000),
    )
    description = ("The EMR records the logged-in physician and the acting one "
                   "separately; when they differ, someone is working under another "
                   "person's login. A trainee acting under the supervisor's account is the "
                   "typical lent login; the supervisor countersigning in the trainee's session "
                   "is allowed by default.")
    note = ("Ask both people. Working under a senior's login to place orders or sign notes "
            "that the trainee may not sign alone is the case the rectification plan targets.")
    false_positives = ("systems that record a proxy (a scribe) with the responsible "
                       "doctor's account by design",
                       "supervisors not recorded in users.supervisor_id")
    description_zh = ("电子病历系统分别记录登录医师和操作医师；二者不一致时，说明有人在使用他人的"
                      "账号工作。进修/实习人员使用带教老师账号是典型的借用账号；带教老师在学员会"
                      "话中补签默认允许。")
    note_zh = ("分别询问双方。为开具医嘱或签署学员无权单独签署的文书而使用上级医师账号，正是整改"
               "方案所针对的情形。")
    false_positives_zh = (
        "按设计以责任医师账号记录代录人员（如代录员）的系统",
        "未在 users.supervisor_id 中登记的带教老师",
    )
    measure_zh = "严禁使用他人账号书写、签署病历或开具医嘱；规范上级医师审签流程；对出借者与使用者分别处理。"
    measure_en = ("Forbid writing, signing or ordering under another person's login; use the "
                  "countersign workflow; hold both lender and user accountable.")
    messages = {"cred.acting_mismatch": Message(
        Np_("%(acting)s acted %(count)s time under the account of %(user)s on %(day)s",
            "%(acting)s acted %(count)s times under the account of %(user)s on %(day)s"),
        count="count",
        clauses=(Clause("trainee", N_(" (a trainee under the supervisor's login)")),))}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        ev = _event_rows(ctx)
        if "acting_user_id" not in ev.columns or not len(ev):
            return self.findings([])
        mism = _acting_differs(ev["acting_user_id"], ev["user_id"])
        mism &= ev["in_window"].to_numpy(dtype=bool)
        sel = ev[mism]
        users = complete(ctx.users, "users", ctx.tz)
        sup = pd.Series(dtype="string")
        if users is not None and len(users):
            sup = users.drop_duplicates("user_id", keep="last").set_index("user_id")[
                "supervisor_id"].astype("string")
        if p.allow_supervisor_in_trainee_session and len(sel) and len(sup):
            own_sup = sel["user_id"].map(sup).astype("string")
            sel = sel[~(own_sup == sel["acting_user_id"].astype("string")).fillna(False)
                      .to_numpy()]
        rows = []
        if not len(sel):
            return self.findings(rows)
        for (user, act, d), grp in sel.groupby(
                [sel["user_id"], sel["acting_user_id"], local_days(sel["ts"], ctx.tz)],
                sort=True):
            if len(grp) < p.min_events:
                continue
            v = sup.get(act) if len(sup) else None
            trainee_on_sup = v is not None and not pd.isna(v) and str(v) == user
            rows.append({
                "key": f"{user}|{act}|{d}", "user_id": user, "patient_id": _one_patient(grp),
                "start": grp["ts"].min(), "end": grp["ts"].max(), "event_ids": _ids(grp),
                "score": float(len(grp)) + (1.0 if trainee_on_sup else 0.0),
                "message_id": self.id,
                "message_args": {"acting": act, "count": int(len(grp)), "user": user, "day": d,
                                 "trainee": trainee_on_sup},
                "evidence": {"day": d, "account": user, "acting": act,
                             "events": int(len(grp)),
                             "patients": int(grp["patient_id"].nunique()),
                             "actions": grp["action"].astype(str).value_counts().to_dict(),
                             "trainee_under_supervisor_account": trainee_on_sup,
                             "thresholds": {"min_events": p.min_events,
                                            "allow_supervisor_in_trainee_session":
                                                p.allow_supervisor_in_trainee_session}},
            })
        return self.findings(rows)


# --- cred.expired_access -------------------------------------------------------------------

@register
class ExpiredAccess(Detector):
    id = "cred.expired_access"
    partition_key = "user"
    name_en = "Trainee or vendor acting after their access expired"
    name_zh = "进修/实习/厂商人员超期使用"
    item = "9"
    severity = "medium"
    needs = ("access_log", "users")
    params = (
        Param("grace_days", float, 1.0, "activity up to this long after access_until is "
              "ignored (access_until is usually the last allowed day)", "days", 0, 90),
        Param("roles", list, [], "only these roles (empty: everyone with an access_until — "
              "trainees, vendors, visiting staff)", choices=ROLES, items=str),
    )
    description = ("Trainees' (visiting and student) and vendors' permissions are "
                   "time-limited: any "
                   "activity after their access_until is reported.")
    note = ("Check whether the training or contract was extended without updating "
            "access_until; otherwise disable the account and find who used it.")
    false_positives = ("extensions of training or contracts not yet entered in the staff "
                       "master",)
    description_zh = ("进修、实习人员和厂商人员的权限有期限：其 access_until 之后的任何操作都会报"
                      "告。")
    note_zh = "核实培训或合同是否已延期但未更新 access_until；否则停用该账号并查明是谁在使用。"
    false_positives_zh = (
        "培训或合同延期尚未录入人员主数据",
    )
    measure_zh = "进修、实习人员权限不超出培训期，厂商人员权限不超出合同期；到期自动停用。"
    measure_en = ("Trainees' access never beyond their training period, vendors' never beyond "
                  "their contract; expire accounts automatically.")
    messages = {"cred.expired_access": Message(
        Np_("%(role)s account %(user)s was used %(count)s time on %(day)s after its access "
            "ended on %(until)s",
            "%(role)s account %(user)s was used %(count)s times on %(day)s after its access "
            "ended on %(until)s"), count="count")}

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        users = complete(ctx.users, "users", ctx.tz)
        ev = _event_rows(ctx)
        if users is None or not len(ev):
            return self.findings([])
        u = users.drop_duplicates("user_id", keep="last").set_index("user_id")
        if p.roles:
            u = u[u["role"].isin(p.roles)]
        u = u[u["access_until"].notna()]
        if not len(u):
            return self.findings([])
        until = map_values(ev["user_id"], u["access_until"])
        bad = (until.notna() & (ev["ts"] > until + pd.Timedelta(days=p.grace_days))).fillna(
            False) & ev["in_window"].astype(bool)
        sel = ev[bad.to_numpy()]
        rows = []
        for (user, d), grp in sel.groupby([sel["user_id"], local_days(sel["ts"], ctx.tz)],
                                          sort=True):
            lim = u.loc[user, "access_until"]
            role = u.loc[user, "role"]
            days = (grp["ts"].min() - lim).total_seconds() / 86400
            rows.append({
                "key": f"{user}|{d}", "user_id": user, "patient_id": _one_patient(grp),
                "start": grp["ts"].min(), "end": grp["ts"].max(), "event_ids": _ids(grp),
                "severity": "high" if days > 30 else "medium",
                "score": 1.0 + len(grp) / 10.0 + days / 30.0,
                "message_id": self.id,
                "message_args": {"role": None if pd.isna(role) else str(role),
                                 "user": user, "count": int(len(grp)), "day": d,
                                 "until": lim.isoformat()},
                "evidence": {"day": d, "role": None if pd.isna(role) else str(role),
                             "access_until": lim.isoformat(), "days_after": round(days, 1),
                             "events": int(len(grp)),
                             "patients": int(grp["patient_id"].nunique()),
                             "thresholds": {"grace_days": p.grace_days}},
            })
        return self.findings(rows)


def _outside(ip: pd.Series, networks: list[str]) -> np.ndarray:
    """Events whose address is a valid IP outside every one of `networks` (missing or
    unparsable addresses are not outside: nothing is known of them). One parse per distinct
    address, IPv4 and IPv6 alike."""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    codes, uniq = factorize_text(ip)
    out = np.zeros(len(uniq) + 1, dtype=bool)
    for i, s in enumerate(uniq):            # one per distinct address, not per event
        try:
            a = ipaddress.ip_address(str(s).strip())
        except ValueError:
            continue
        out[i] = not any(a.version == n.version and a in n for n in nets)
    return out[np.where(codes < 0, len(uniq), codes)]


@register
class ExternalAccess(Detector):
    id = "cred.external_access"
    catches = ()           # the sample hospital declares no networks: nothing planted yet
    partition_key = "user"
    name_en = "Records opened from outside the hospital's networks"
    name_zh = "院外网络访问病历"
    item = "9"
    severity = "medium"
    needs = ("access_log",)
    uses = ("shifts", "users")
    shares = ("duty_mask",)
    params = (
        Param("night_hours", list, [22, 6], "local hours [from, to) counted as night (the "
              "range may cross midnight)", "hours"),
        Param("min_patient_events", int, 1, "patient records opened from outside in one day "
              "needed for a finding", "events", 1, 100_000),
        Param("ignore_roles", list, [], "roles whose remote reading is arranged (e.g. it for "
              "vendors on a sanctioned VPN that does not appear as an internal address)"),
    ) + SHARED_HOST_PARAMS
    description = ("Patient records opened from an address outside the hospital's own "
                   "networks ([site] networks, CIDR). Remote use of the EMR is a risk of its "
                   "own, and more so off roster, at night, or when records are printed or "
                   "exported from outside. Without declared networks the detector is idle.")
    note = ("Ask the user whether they worked remotely and through which channel; compare with "
            "the VPN log. Off-roster night access from outside with many patients is the "
            "pattern of a lent or stolen login.")
    false_positives = ("a VPN or VDI gateway whose address is not declared in [site] networks "
                       "(declare it there, or in shared_ip_ranges)",
                       "on-call staff reading from home through a sanctioned channel")
    description_zh = ("从医院自有网络（[site] networks，CIDR）以外的地址打开患者病历。院外使用电子"
                      "病历本身就有风险，非排班时段、夜间或从院外打印导出病历时风险更高。未声明网络"
                      "时该规则不运行。")
    note_zh = ("询问用户是否远程工作、通过什么渠道；与 VPN 日志核对。非排班时段夜间从院外查阅"
               "大量患者，是账号被借用或被盗用的典型模式。")
    false_positives_zh = (
        "地址未在 [site] networks 中声明的 VPN 或 VDI 网关（在该处或 shared_ip_ranges 中声明"
        "即可）",
        "值班人员通过经批准的渠道在家中查阅",
    )
    messages = {"cred.external_access": Message(
        Np_("account %(user)s opened patient records %(records)s time (%(patients)s patients) "
            "from outside the hospital's networks on %(day)s",
            "account %(user)s opened patient records %(records)s times (%(patients)s patients) "
            "from outside the hospital's networks on %(day)s"), count="records",
        clauses=(Clause("off_duty", N_("; off duty")), Clause("night", N_("; at night")),
                 Clause("outputs", N_("; records printed or exported"))))}
    measure_zh = ("核实院外访问的必要性与授权；院外访问须经审批并通过专用通道；"
                  "对借用、泄露账号者批评教育并重置口令。")
    measure_en = ("Verify the need and authorisation for access from outside; require approval "
                  "and a dedicated channel for remote access; counsel those who lent their "
                  "login and reset its password.")

    def __init__(self, **kw):
        super().__init__(**kw)
        _check_ranges(self.p.shared_ip_ranges)
        h = self.p.night_hours
        if len(h) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                  and 0 <= x <= 24 for x in h):
            raise ValueError(f"night_hours: expected [from, to] hours within 0..24, got {h!r}")

    def run(self, ctx: Context) -> pd.DataFrame:
        p = self.p
        if not ctx.networks:
            ctx.notes.append("cred.external_access: no [site] networks declared; access from "
                             "outside the hospital is not checked")
            return self.findings([])
        ev = _event_rows(ctx)
        if "ip" not in ev.columns or not len(ev):
            return self.findings([])
        ev = ev.loc[ev["in_window"].to_numpy(dtype=bool)]
        ev = ev.loc[~_shared_mask(ev, p.shared_ip_ranges, p.shared_workstations)]
        ev = ev.loc[_outside(ev["ip"], list(ctx.networks))]
        if p.ignore_roles and ctx.users is not None and len(ev):
            role = map_values(ev["user_id"], ctx.users.drop_duplicates(
                "user_id", keep="last").set_index("user_id")["role"])
            ev = ev.loc[~role.isin(p.ignore_roles).to_numpy(dtype=bool)]
        if not len(ev):
            return self.findings([])
        on_duty, basis = duty_mask(ctx)
        local = ev["ts"].dt.tz_convert(ctx.tz)
        hour = (local.dt.hour + local.dt.minute / 60.0).to_numpy()
        a, b = p.night_hours
        # [from, to) as the schedule's office hours: from = to is no hour, from > to crosses
        # midnight
        night = (hour >= a) & (hour < b) if a <= b else (hour >= a) | (hour < b)
        patient = ev["patient_id"].notna().to_numpy() & ~is_value(
            ev["action"], "login") & ~is_value(ev["action"], "logout")
        output = np.zeros(len(ev), dtype=bool)
        for act in ("print", "export", "copy", "download"):
            output |= is_value(ev["action"], act)
        f = pd.DataFrame({"user_id": ev["user_id"].astype("string").to_numpy(),
                          "day": local_days(ev["ts"], ctx.tz).to_numpy(),
                          "event_id": ev["event_id"].to_numpy(), "ts": ev["ts"].to_numpy(),
                          "patient_id": ev["patient_id"].astype("string").to_numpy(),
                          "ip": ev["ip"].astype("string").to_numpy(), "patient": patient,
                          "night": night, "output": output,
                          "off_duty": ~on_duty.reindex(ev.index).fillna(True).to_numpy(
                              dtype=bool),
                          "rostered": (basis.reindex(ev.index) == "roster").to_numpy()},
                         index=ev.index)
        g = f.groupby(["user_id", "day"], sort=True)
        n_pat = g["patient"].sum()
        keep = n_pat[n_pat >= p.min_patient_events].index
        rows = []
        for (user, day), grp in g:                  # one per finding
            if (user, day) not in keep:
                continue
            pat = grp[grp["patient"]]
            steps = int(grp["off_duty"].any()) + int(grp["night"].any()) + \
                int(grp["output"].any())
            ips = grp["ip"].value_counts().sort_index()
            rows.append({
                "key": f"{user}|{day}", "user_id": user,
                "patient_id": _one_patient(pat),
                "start": grp["ts"].min(), "end": grp["ts"].max(),
                "event_ids": sorted(grp["event_id"].astype(str)),
                "severity": ("medium", "high", "critical", "critical")[steps],
                "rectification_item": "8" if grp["output"].any() else "9",
                "score": 1.0 + steps + math.log2(1 + pat["patient_id"].nunique()),
                "message_id": self.id,
                "message_args": {"user": user, "records": int(len(pat)),
                                 "patients": int(pat["patient_id"].nunique()), "day": day,
                                 "off_duty": bool(grp["off_duty"].any()),
                                 "night": bool(grp["night"].any()),
                                 "outputs": bool(grp["output"].any())},
                "evidence": {"day": day, "addresses": {str(k): int(v) for k, v in ips.items()},
                             "patient_events": int(len(pat)),
                             "patients": int(pat["patient_id"].nunique()),
                             "night_events": int(grp["night"].sum()),
                             "off_duty_events": int(grp["off_duty"].sum()),
                             "duty_basis": "roster" if grp["rostered"].any() else "inferred",
                             "output_events": int(grp["output"].sum()),
                             "networks": list(ctx.networks),
                             "thresholds": {"min_patient_events": p.min_patient_events,
                                            "night_hours": list(p.night_hours)}},
            })
        return self.findings(rows)
