"""Sessions: a workstation per stretch of work, logins before it and (usually) logouts after.

A session is a run of one user's accesses at one location with gaps under 45 minutes. Ward
nurses sit at the nurse station's terminals and everyone else at the doctors' office (or
their department's rooms); a planted event may force a workstation. Logins, occasional
failed logins and logouts (missing when the session timed out) are added around each
session; sessions are numbered in time order.
"""

from __future__ import annotations

import numpy as np

from emraudit.demo.events import A, M, SRC

GAP = 8 * 3600


def build_sessions(w, ev: dict, account_cases: np.ndarray) -> dict:
    """Assign workstations and sessions; return the events with logins and logouts added.

    `account_cases`: case indexes whose login/logout events belong to the case (the use of the
    account itself is the violation)."""
    rng = w.rng
    o = np.lexsort((ev["ts"], ev["user"]))
    ev = {k: v[o] for k, v in ev.items()}
    user, ts, loc, fws = ev["user"], ev["ts"], ev["loc"].astype(np.int64), ev["ws"]
    n = len(ts)
    place = loc * 100_000 + (fws.astype(np.int64) + 1)
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = (user[1:] != user[:-1]) | (place[1:] != place[:-1]) | (ts[1:] - ts[:-1] > GAP)
    sid = np.cumsum(new) - 1
    ns = int(sid[-1] + 1) if n else 0
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, n - 1] if n else first
    # workstation per session
    ws = w.workstations
    nurse_like = w.users.role.isin(["nurse"]).to_numpy() | w.users.title.isin(
        ["实习护士"]).to_numpy()
    tag_n = (ws._tag == "N").to_numpy()
    ws_loc = ws["loc"].to_numpy()
    # ranges of terminals per (loc, kind): kind 0 nurse station / other rooms, 1 doctors
    key = ws_loc * 2 + np.where(tag_n, 0, 1)
    order = np.lexsort((np.arange(len(ws)), key))
    skey = key[order]
    s_user = user[first]
    s_loc = loc[first]
    want = s_loc * 2 + np.where(nurse_like[s_user], 0, 1)
    lo = np.searchsorted(skey, want, "left")
    hi = np.searchsorted(skey, want, "right")
    alt = s_loc * 2 + np.where(nurse_like[s_user], 1, 0)
    lo2 = np.searchsorted(skey, alt, "left")
    hi2 = np.searchsorted(skey, alt, "right")
    use_alt = hi == lo
    lo = np.where(use_alt, lo2, lo)
    hi = np.where(use_alt, hi2, hi)
    # a user keeps to a favourite terminal most of the time
    fav = (s_user * 7919 + s_loc * 104729) % np.maximum(hi - lo, 1)
    pick = np.where(rng.random(ns) < 0.7, fav,
                    (rng.random(ns) * np.maximum(hi - lo, 1)).astype(np.int64))
    s_ws = np.where(hi > lo, order[np.minimum(lo + pick, len(order) - 1)], -1)
    forced = fws[first]
    s_ws = np.where(forced >= 0, forced, s_ws)
    ev["ws"] = s_ws[sid].astype(np.int32)
    ev["session"] = sid.astype(np.int64)
    # logins, failed logins, logouts
    s_case = ev["case"][first]
    acc = np.isin(s_case, account_cases)
    case_login = np.where(acc, s_case, -1)
    t_in = ts[first] - rng.integers(10, 180, ns)
    has_in = t_in >= w.t0   # a session begun before the window has its login outside it
    t_fail = t_in - rng.integers(5, 40, ns)
    fail = (rng.random(ns) < 0.01) & (t_fail >= w.t0) & has_in
    has_out = rng.random(ns) < 0.8
    t_out = ts[last] + rng.integers(20, 600, ns)
    has_out &= t_out < w.t_end
    add = []

    def block(mask, t, action):
        k = int(mask.sum())
        return {"ts": t[mask], "user": s_user[mask], "patient": np.full(k, -1),
                "action": np.full(k, action, np.int16), "module": np.full(k, M[""], np.int16),
                "loc": s_loc[mask].astype(np.int32), "enc": np.full(k, -1),
                "rc": np.ones(k, np.int32), "acting": np.full(k, -1),
                "reason": np.zeros(k, np.int16), "src": np.full(k, SRC["session"], np.int16),
                "ws": s_ws[mask].astype(np.int32), "case": case_login[mask].astype(np.int32),
                "session": np.flatnonzero(mask).astype(np.int64)}

    add.append(block(has_in, t_in, A["login"]))
    add.append(block(fail, t_fail, A["login_failed"]))
    add.append(block(has_out, t_out, A["logout"]))
    out = {k: np.concatenate([ev[k]] + [b[k] for b in add]) for k in ev}
    return out
