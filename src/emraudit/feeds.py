"""Does a feed explain what it should? Diagnose units, don't accuse their staff.

Real care feeds never explain every access: the best explanation-based auditing explains
about 94%. When one department, ward, role or source is explained far less than the rest
(its department codes differ between the HIS and the ADT feed, its admissions are not sent,
its staff are missing from the staff master), every access of its staff looks unexplained,
and a per-access detector would accuse hundreds of people of what is a data problem.

`explained_shares` measures, for each unit of each dimension, the share of its patient
accesses that some care relation explains, against the rest of the hospital. A unit is a
*gap* when it has at least `min_accesses` accesses and its share is below `floor`, or
`margin` or more below the rest. `held_mask` says which unexplained accesses belong to a gap
(and are then held as one feed-gap case per unit, with these figures, instead of a case per
person); accesses to protected patients and accesses after a name look-up are never held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emraudit.fastops import id_hashes

# in the order a held access is attributed to a gap: the most specific data problem first;
# "site" last: measured for the regional report (sites compared), never judged a gap (a
# site's accesses are its whole feed: held as one case they would hide every finding)
DIMENSIONS = ("source", "department", "ward", "role", "site")
MEASURED_ONLY = ("site",)
COLUMNS = ["dimension", "value", "accesses", "explained", "share", "others_share", "users",
           "patients", "gap", "reason"]


@dataclass(frozen=True)
class FeedRules:
    floor: float = 0.6
    margin: float = 0.3
    min_accesses: int = 200

    @classmethod
    def from_config(cls, feeds) -> "FeedRules":
        return cls(float(feeds.floor), float(feeds.margin), int(feeds.min_accesses))


def unit_columns(accesses: pd.DataFrame, users: pd.DataFrame | None,
                 source: pd.Series | None, site: pd.Series | None = None) -> pd.DataFrame:
    """Each access's unit in every dimension (missing: NA): the accessing user's department,
    ward and role from the staff master, the source the event came from and its site."""
    out = pd.DataFrame(index=accesses.index)
    uid = accesses["user_id"].astype("string")
    for col in ("department", "ward", "role"):
        if users is not None and col in users.columns and len(users):
            m = users.drop_duplicates("user_id", keep="last").set_index(
                users.drop_duplicates("user_id", keep="last")["user_id"].astype("string"))[col]
            out[col] = uid.map(m.astype("string")).astype("string")
        else:
            out[col] = pd.Series(pd.NA, index=accesses.index, dtype="string")
    for dim, col in (("source", source), ("site", site)):
        out[dim] = (col.reindex(accesses.index).astype("string") if col is not None
                    else pd.Series(pd.NA, index=accesses.index, dtype="string"))
    return out


def explained_shares(explained: np.ndarray, units: pd.DataFrame, user_id: pd.Series,
                     patient_id: pd.Series, rules: FeedRules) -> pd.DataFrame:
    """One row per (dimension, unit): accesses, explained, share, the rest's share, distinct
    users and patients, and whether it is a gap (reason `floor` or `below_rest`)."""
    return shares_from_counts([share_counts(explained, units, user_id, patient_id)], rules)


def share_counts(explained: np.ndarray, units: pd.DataFrame, user_id: pd.Series,
                 patient_id: pd.Series) -> dict:
    """What `shares_from_counts` needs from some of the accesses (one partition of the users):
    totals, per (dimension, unit) accesses, explained and distinct users, and the distinct
    (dimension, unit, patient) triples (patients are shared between partitions)."""
    explained = np.asarray(explained, dtype=bool)
    counts, pairs = [], []
    for dim in DIMENSIONS:
        if dim not in units.columns:        # a caller's frame without sites
            continue
        v = units[dim]
        has = v.notna().to_numpy()
        if not has.any():
            continue
        codes, names = pd.factorize(v[has])
        names = np.asarray(names, dtype=object)
        n = np.bincount(codes, minlength=len(names))
        x = np.bincount(codes, weights=explained[has], minlength=len(names)).astype(np.int64)
        sub = pd.DataFrame({"c": codes, "u": user_id[has].to_numpy()})
        users = sub.groupby("c")["u"].nunique().reindex(range(len(names)), fill_value=0)
        counts.append(pd.DataFrame({"dimension": dim, "value": names, "accesses": n,
                                    "explained": x, "users": users.to_numpy()}))
        pid = patient_id[has]
        ok = pid.notna().to_numpy()
        pp = pd.DataFrame({"c": codes[ok].astype(np.int32),
                           "p": id_hashes(pid[ok])}).drop_duplicates()
        pairs.append({"dimension": dim, "names": names, "c": pp["c"].to_numpy(),
                      "p": pp["p"].to_numpy()})
    return {"total": len(explained), "total_x": int(explained.sum()), "counts": counts,
            "pairs": pairs}


def _distinct_patients(pairs: list[dict]) -> pd.Series:
    """Distinct patients per (dimension, unit) over every partition's (unit code, patient
    hash) pairs: numbers, not a frame of ids (a 30-day backlog's 32 partitions sent ~60
    million id strings to the scan's process)."""
    out = []
    for dim in DIMENSIONS:
        mine = [q for q in pairs if q["dimension"] == dim]
        if not mine:
            continue
        names = pd.Index(pd.unique(np.concatenate(
            [np.asarray(q["names"], dtype=object) for q in mine])))
        codes = np.concatenate([names.get_indexer(np.asarray(q["names"], dtype=object))[
            np.asarray(q["c"], dtype=np.int64)] for q in mine])
        hashes = np.concatenate([np.asarray(q["p"], dtype=np.uint64) for q in mine])
        d = pd.DataFrame({"c": codes, "p": hashes}).drop_duplicates()
        n = np.bincount(d["c"].to_numpy(), minlength=len(names))
        out.append(pd.Series(n, index=pd.MultiIndex.from_arrays(
            [np.full(len(names), dim, dtype=object), np.asarray(names, dtype=object)])))
    return pd.concat(out) if out else pd.Series(dtype=np.int64)


def shares_from_counts(parts: list[dict], rules: FeedRules) -> pd.DataFrame:
    """`explained_shares` from the `share_counts` of disjoint sets of users."""
    total = sum(p["total"] for p in parts)
    total_x = sum(p["total_x"] for p in parts)
    counts = [c for p in parts for c in p["counts"]]
    if not counts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    pats = _distinct_patients([q for p in parts for q in p["pairs"]])
    agg = pd.concat(counts, ignore_index=True).groupby(["dimension", "value"], sort=False).sum()
    frames = []
    for dim in DIMENSIONS:
        if dim not in agg.index.get_level_values(0):
            continue
        a = agg.loc[dim]
        n, x = a["accesses"].to_numpy(), a["explained"].to_numpy().astype(np.int64)
        rest_n, rest_x = total - n, total_x - x
        share = x / np.maximum(n, 1)
        others = np.where(rest_n > 0, rest_x / np.maximum(rest_n, 1), np.nan)
        judged = (n >= rules.min_accesses) & (dim not in MEASURED_ONLY)
        low = judged & (share < rules.floor)
        below = judged & (rest_n >= rules.min_accesses) & ((others - share) >= rules.margin)
        frames.append(pd.DataFrame({
            "dimension": dim, "value": np.asarray(a.index, dtype=object), "accesses": n,
            "explained": x, "share": share.round(4), "others_share": np.round(others, 4),
            "users": a["users"].to_numpy(),
            "patients": (pats.loc[dim] if dim in pats.index.get_level_values(0)
                         else pd.Series(dtype=np.int64)).reindex(a.index, fill_value=0)
            .to_numpy(),
            "gap": low | below,
            "reason": np.where(low, "floor", np.where(below, "below_rest", ""))}))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["dimension", "share", "value"]).reset_index(drop=True)


def held_mask(units: pd.DataFrame, shares: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """(held, gap): which accesses fall in a gap unit, and the gap each is held by, as
    "dimension\x1fvalue": of the access's units that are gaps, the one explained least (the
    likeliest culprit: a department at 10% rather than the whole source at 55%), ties in
    the order of DIMENSIONS."""
    n = len(units)
    gap = pd.Series(pd.NA, index=units.index, dtype="string")
    if shares is None or not len(shares) or not shares["gap"].any():
        return np.zeros(n, dtype=bool), gap
    gaps = shares[shares["gap"]]
    best = np.full(n, np.inf)
    for dim in DIMENSIONS:
        g = gaps[gaps["dimension"] == dim]
        if not len(g) or dim not in units.columns:
            continue
        share = units[dim].map(dict(zip(g["value"].astype(str), g["share"].astype(float))))
        share = pd.to_numeric(share, errors="coerce").to_numpy(dtype=float, na_value=np.inf)
        better = share < best                  # strictly: an earlier dimension wins ties
        best = np.where(better, share, best)
        gap[better] = dim + "\x1f" + units.loc[better, dim].astype(str)
    return gap.notna().to_numpy(), gap


def held_summary(held: pd.DataFrame) -> pd.DataFrame:
    """Per gap: the accesses held, distinct users and patients, the first and last time,
    and the users with most held accesses (the case page's table)."""
    cols = ["dimension", "value", "held", "users", "patients", "start", "end", "top_users"]
    if held is None or not len(held):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    g = held.groupby("gap", sort=True)
    agg = g.agg(held=("event_id", "size"), users=("user_id", "nunique"),
                patients=("patient_id", "nunique"), start=("ts", "min"), end=("ts", "max"))
    per_user = held.groupby(["gap", "user_id"], observed=True).size().rename("n") \
        .reset_index().sort_values(["gap", "n", "user_id"], ascending=[True, False, True])
    top = per_user.groupby("gap").head(10).groupby("gap").apply(
        lambda t: [[str(u), int(k)] for u, k in zip(t["user_id"], t["n"])],
        include_groups=False)
    agg["top_users"] = top.reindex(agg.index)
    agg = agg.reset_index()
    parts = agg["gap"].str.split("\x1f", n=1, expand=True)
    agg["dimension"], agg["value"] = parts[0], parts[1]
    return agg[cols]


def held_outputs(held: pd.DataFrame) -> dict:
    """What a scan stores for the accesses held in feed gaps (columns event_id, user_id,
    patient_id, ts, gap): the per-gap summary and the held event ids, ordered by gap and
    time; "feed_gap_accesses" keeps the rows, so a partitioned scan can summarize the
    partitions' rows together."""
    held = held.sort_values(["gap", "ts", "event_id"], kind="stable").reset_index(drop=True)
    return {"feed_gaps": held_summary(held), "feed_gap_accesses": held,
            "feed_gap_events": held[["gap", "event_id"]]}


def feed_notes(shares: pd.DataFrame | None, held: pd.DataFrame | None) -> list[str]:
    """Lines for the scan summary: each gap unit with its figures, and what was held."""
    if shares is None or not len(shares) or not shares["gap"].any():
        return []
    held_by = {}
    if held is not None and len(held):
        held_by = {(str(r["dimension"]), str(r["value"])): r for r in held.to_dict("records")}
    lines = ["feeds: care relations explain some units far less than the rest (their feed "
             "looks incomplete; see the coverage report):"]
    for r in shares[shares["gap"]].to_dict("records"):
        others = "" if pd.isna(r["others_share"]) else \
            f" against {100 * float(r['others_share']):.0f}% elsewhere"
        h = held_by.get((str(r["dimension"]), str(r["value"])))
        held_txt = (f"; {int(h['held'])} unexplained accesses of {int(h['users'])} users held "
                    "as one feed-gap case") if h is not None else ""
        lines.append(f"  {r['dimension']} {r['value']}: {100 * float(r['share']):.0f}% of "
                     f"{int(r['accesses'])} accesses explained{others}{held_txt}")
    return lines


def format_health(shares: pd.DataFrame, all_units: bool = False) -> str:
    """The feed check of one scan as a plain table: the gap units (or every unit), least
    explained first."""
    if shares is None or not len(shares):
        return "care relations: not checked yet (no scan with care relations and patient " \
            "accesses)"
    df = shares if all_units else shares[shares["gap"].astype(bool)]
    scan = shares["scan_id"].iloc[0] if "scan_id" in shares.columns else ""
    head = f"care relations explain, per unit (scan {scan}"
    if len(shares) and "first_day" in shares.columns:
        head += f", {shares['first_day'].iloc[0]} .. {shares['last_day'].iloc[0]}"
    head += "):"
    if not len(df):
        return head + "\n  every unit within the usual range (no feed gap)"
    lines = [head, f"  {'unit':36} {'accesses':>9} {'explained':>9} {'elsewhere':>9}  verdict"]
    for r in df.sort_values(["share", "dimension", "value"]).to_dict("records"):
        others = "" if pd.isna(r["others_share"]) else f"{100 * float(r['others_share']):.0f}%"
        verdict = {"floor": "feed gap (below the floor)",
                   "below_rest": "feed gap (far below the rest)"}.get(r["reason"] or "", "ok")
        unit = f"{r['dimension']} {r['value']}"
        lines.append(f"  {unit:36} {int(r['accesses']):>9} "
                     f"{100 * float(r['share']):>8.0f}% {others:>9}  {verdict}")
    return "\n".join(lines)
