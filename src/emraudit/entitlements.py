"""Who may do what: the effective rights of every account, from users, grants and roles.

An account holds a right (a permission on a record class, with a scope) through one of three
routes, each kept so that a reviewer sees where a right comes from:

- `role`: a role it holds defines the right (the `roles` table). An account holds its
  `users.role` always, and any role granted to it (a grants row with user_id and role);
- `role_grant`: a role it holds was granted the right (a grants row with a role, no user);
- `grant`: the right was granted to the account itself (a grants row with user_id and a
  permission).

Every right has an interval [start, end): a grant from granted_at until it is revoked or
expires, a role's right for as long as the account holds the role. Pure functions on
canonical frames; a grant or role naming several permissions or classes gives one row per
permission and class ("" is the class of ordinary records).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.access_rights import split_list

HOLDING_COLUMNS = ["user_id", "permission", "record_class", "scope", "via", "role",
                   "grant_id", "start", "end", "approved", "source_start"]


def _explode(df: pd.DataFrame, perm_col: str) -> pd.DataFrame:
    """One row per permission and record class of each row."""
    if not len(df):
        return df.assign(permission=pd.Series(dtype="string"),
                         record_class=pd.Series(dtype="string"))
    perms = df[perm_col].map(split_list)
    classes = df["record_class"].map(lambda v: split_list(v) or [""]) \
        if "record_class" in df.columns else pd.Series([[""]] * len(df), index=df.index)
    out = df.drop(columns=[c for c in (perm_col, "record_class") if c in df.columns]) \
        .assign(permission=perms, record_class=classes)
    out = out.explode("permission").explode("record_class")
    out = out[out["permission"].notna()]
    return out.assign(permission=out["permission"].astype("string"),
                      record_class=out["record_class"].astype("string")).reset_index(drop=True)


def grant_end(grants: pd.DataFrame) -> pd.Series:
    """When each grant stops: revoked or expired, whichever is first (NaT: still open)."""
    ends = [grants[c] for c in ("revoked_at", "expires_at") if c in grants.columns]
    if not ends:
        return pd.Series(pd.NaT, index=grants.index, dtype=grants["granted_at"].dtype)
    end = ends[0]
    for e in ends[1:]:
        end = end.where(end.notna() & (e.isna() | (end <= e)), e)
    return end


def _col(df: pd.DataFrame, name: str, dtype: str = "string") -> pd.Series:
    return df[name] if name in df.columns else pd.Series(pd.NA, index=df.index, dtype=dtype)


def split_grants(grants: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The three kinds of grants rows: `direct` (a permission to an account), `assign` (a
    role to an account) and `role` (a permission to a role), each with `end` set."""
    if grants is None or not len(grants):
        empty = pd.DataFrame(columns=["grant_id", "user_id", "role", "permission"])
        return {"direct": empty, "assign": empty, "role": empty}
    g = grants.assign(end=grant_end(grants), user_id=_col(grants, "user_id"),
                      role=_col(grants, "role"), permission=_col(grants, "permission"))
    has_user, has_role, has_perm = g["user_id"].notna(), g["role"].notna(), \
        g["permission"].notna()
    return {"direct": g[has_user & has_perm], "assign": g[has_user & has_role & ~has_perm],
            "role": g[~has_user & has_role & has_perm]}


def memberships(users: pd.DataFrame | None, assign: pd.DataFrame, tz_dtype) -> pd.DataFrame:
    """(user_id, role, start, end, grant_id, approved): the staff master's role, held with no
    time limit, and every role granted to an account."""
    parts = []
    if users is not None and len(users) and "role" in users.columns:
        u = users.dropna(subset=["user_id", "role"]).drop_duplicates("user_id", keep="last")
        parts.append(pd.DataFrame({
            "user_id": u["user_id"].astype("string"), "role": u["role"].astype("string"),
            "start": pd.Series(pd.NaT, index=u.index, dtype=tz_dtype),
            "end": pd.Series(pd.NaT, index=u.index, dtype=tz_dtype),
            "grant_id": pd.Series(pd.NA, index=u.index, dtype="string"),
            "approved": True}))
    if len(assign):
        parts.append(pd.DataFrame({
            "user_id": assign["user_id"].astype("string"),
            "role": assign["role"].astype("string"), "start": assign["granted_at"],
            "end": assign["end"], "grant_id": assign["grant_id"].astype("string"),
            "approved": _col(assign, "approved_by").notna().to_numpy()}))
    if not parts:
        return pd.DataFrame({"user_id": pd.Series(dtype="string"),
                             "role": pd.Series(dtype="string"),
                             "start": pd.Series(dtype=tz_dtype),
                             "end": pd.Series(dtype=tz_dtype),
                             "grant_id": pd.Series(dtype="string"),
                             "approved": pd.Series(dtype=bool)})
    return pd.concat(parts, ignore_index=True)


def role_rights(roles: pd.DataFrame | None, role_grants: pd.DataFrame, tz_dtype
                ) -> pd.DataFrame:
    """(role, permission, record_class, scope, via, grant_id, start, end, approved): what
    each role may do, from its definition and from grants to the role."""
    parts = []
    if roles is not None and len(roles):
        none = pd.Series(pd.NaT, index=roles.index, dtype=tz_dtype)
        parts.append(_explode(pd.DataFrame({
            "role": roles["role"].astype("string"), "permissions": _col(roles, "permissions"),
            "record_class": _col(roles, "record_class"), "scope": _col(roles, "scope"),
            "via": "role", "grant_id": pd.Series(pd.NA, index=roles.index, dtype="string"),
            "start": none, "end": none,
            "approved": _col(roles, "approved_by").notna().to_numpy()}), "permissions"))
    if len(role_grants):
        g = role_grants
        parts.append(_explode(pd.DataFrame({
            "role": g["role"].astype("string"), "permission": g["permission"],
            "record_class": _col(g, "record_class"), "scope": _col(g, "scope"),
            "via": "role_grant", "grant_id": g["grant_id"].astype("string"),
            "start": g["granted_at"], "end": g["end"],
            "approved": _col(g, "approved_by").notna().to_numpy()}), "permission"))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["role", "permission", "record_class", "scope", "via",
                                     "grant_id", "start", "end", "approved"])
    return pd.concat(parts, ignore_index=True)


def _later(a: pd.Series, b: pd.Series) -> pd.Series:
    """The later of two starts (NaT = since always)."""
    return a.where(b.isna() | (a.notna() & (a >= b)), b)


def _earlier(a: pd.Series, b: pd.Series) -> pd.Series:
    """The earlier of two ends (NaT = never)."""
    return a.where(b.isna() | (a.notna() & (a <= b)), b)


def holdings(users: pd.DataFrame | None, grants: pd.DataFrame | None,
             roles: pd.DataFrame | None, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Every right every account holds or held, one row per route (HOLDING_COLUMNS).

    `start`/`end`: when the account holds it (NaT: since always / still); `grant_id`: the
    grants row behind it (the role's assignment for the `role` route, the role-level grant
    for `role_grant`, the grant itself for `grant`); `approved`: that row, or the role's
    definition, names an approver; `source_start`: when the right itself began (a role-level
    grant's granted_at), for reports."""
    dt = f"datetime64[ns, {tz}]"
    kinds = split_grants(grants)
    if len(kinds["direct"]) or len(kinds["assign"]) or len(kinds["role"]):
        dt = (grants["granted_at"].dtype)
    mem = memberships(users, kinds["assign"], dt)
    rr = role_rights(roles, kinds["role"], dt)
    parts = []
    if len(mem) and len(rr):
        j = mem.merge(rr, on="role", suffixes=("_m", "_r"))
        if len(j):
            via_assign = j["grant_id_m"].notna()
            parts.append(pd.DataFrame({
                "user_id": j["user_id"], "permission": j["permission"],
                "record_class": j["record_class"], "scope": j["scope"], "via": j["via"],
                "role": j["role"],
                # the row to act on: the role-level grant, else the assignment of the role
                "grant_id": j["grant_id_r"].where(j["via"] == "role_grant", j["grant_id_m"]),
                "start": _later(j["start_m"], j["start_r"]),
                "end": _earlier(j["end_m"], j["end_r"]),
                "approved": np.where(j["via"] == "role_grant", j["approved_r"],
                                     np.where(via_assign, j["approved_m"], j["approved_r"]))
                .astype(bool),
                "source_start": j["start_r"]}))
    d = kinds["direct"]
    if len(d):
        parts.append(_explode(pd.DataFrame({
            "user_id": d["user_id"].astype("string"), "permission": d["permission"],
            "record_class": _col(d, "record_class"), "scope": _col(d, "scope"),
            "via": "grant", "role": pd.Series(pd.NA, index=d.index, dtype="string"),
            "grant_id": d["grant_id"].astype("string"), "start": d["granted_at"],
            "end": d["end"], "approved": _col(d, "approved_by").notna().to_numpy(),
            "source_start": d["granted_at"]}), "permission"))
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_holdings(dt)
    out = pd.concat(parts, ignore_index=True)
    out = out[out["end"].isna() | out["start"].isna() | (out["end"] > out["start"])]
    for c in ("user_id", "permission", "record_class", "scope", "via", "role", "grant_id"):
        out[c] = out[c].astype("string")
    out["record_class"] = out["record_class"].fillna("")
    out = out.sort_values(["user_id", "permission", "record_class", "via", "grant_id"],
                          kind="stable", na_position="first")
    return out[HOLDING_COLUMNS].reset_index(drop=True)


def empty_holdings(dt: str = "datetime64[ns, Asia/Shanghai]") -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=dt if c in ("start", "end", "source_start")
                                      else bool if c == "approved" else "string")
                         for c in HOLDING_COLUMNS})


def in_post(users: pd.DataFrame, t: pd.Timestamp) -> np.ndarray:
    """For each staff row: still in post at `t` (not terminated; end_date and access_until
    not passed). Departed accounts hold no peer group and are rights.after_leaving's."""
    gone = pd.Series(False, index=users.index)
    if "status" in users.columns:
        gone |= (users["status"].astype("string") == "terminated").fillna(False)
    for c in ("end_date", "access_until"):
        if c in users.columns:
            gone |= (users[c].notna() & (users[c] < t)).fillna(False)
    return ~gone.to_numpy()


def held_at(h: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """The rights held at time `t`."""
    ok = (h["start"].isna() | (h["start"] <= t)) & (h["end"].isna() | (h["end"] > t))
    return h[ok.to_numpy()]


def grant_held_at(grants: pd.DataFrame, t: pd.Timestamp) -> pd.Series:
    """For each grants row: granted by `t` and neither revoked nor expired by then."""
    end = grant_end(grants)
    return ((grants["granted_at"] <= t) & (end.isna() | (end > t))).fillna(False)
