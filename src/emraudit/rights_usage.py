"""Which rights each account has used, and since when the tool has been watching.

An access uses the permission its action needs (view -> read, print -> print …) on the
ordinary class "" and on every sensitive class of the record: the patient's
`sensitive_class` and the encounter's (care_relations.sensitive_class by encounter_id).
Any successful event also counts as activity ("*" on class "*").

"Unused for 90 days" needs more history than a nightly scan loads, so usage is kept as
state: one row per (user_id, permission, record_class) with the first and last time seen.
Min and max are order-free, so rescans, late days and parallel workers always merge to the
same table. The scan passes the stored rows in `ctx.baseline["rights_usage"]` and saves
`ctx.outputs["rights_usage"]` (emraudit.rights_state); detectors only read and merge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.access_rights import ACTION_PERMISSION, SENSITIVE_CLASSES, split_list
from emraudit.detectors.base import Context
from emraudit.detectors.explain import _us
from emraudit.fastops import is_value, positions_in

USAGE_COLUMNS = ["user_id", "permission", "record_class", "first_used", "last_used"]
ANY = "*"                 # permission and class of "any activity at all"
# where a partitioned scan hands the stored usage to the partitions (ctx.population): they get
# no ctx.baseline (rights.unused puts it there, in population_prepare)
STORED_USAGE = "rights.usage.stored"
# where a partitioned scan gathers the usage each partition observed in its own events (the
# population pass): users are disjoint across partitions, so the parts concatenated are
# usage_from_events of every event, and the task that judges the grants loads no events
OBSERVED_USAGE = "rights.usage.observed"
MAX_CLASSES = 62          # bits of an int64 mask


def _class_masks(values: pd.Series, keys: pd.Series, bits: dict[str, int]
                 ) -> tuple[pd.Index, np.ndarray]:
    """(distinct keys with a class, their class bit masks)."""
    ok = values.notna() & keys.notna()
    v, k = values[ok], keys[ok].astype("string")
    if not len(v):
        return pd.Index([], dtype="string"), np.zeros(0, dtype=np.int64)
    per_value = {x: sum(1 << bits[c] for c in split_list(x) if c in bits)
                 for x in v.unique()}                       # once per distinct value
    m = v.map(per_value).astype(np.int64)
    agg = pd.Series(m.to_numpy(), index=k.to_numpy()).groupby(level=0).agg(
        lambda s: int(np.bitwise_or.reduce(s.to_numpy())))
    return pd.Index(agg.index, dtype="string"), agg.to_numpy(dtype=np.int64)


def class_bits(ctx: Context) -> dict[str, int]:
    """Every record class named in patients or care relations, with its bit."""
    def names(df):
        if df is None or "sensitive_class" not in df.columns:
            return set()
        return {c for v in df["sensitive_class"].dropna().unique() for c in split_list(v)}
    found = names(ctx.patients) | names(ctx.care_relations)
    known = [c for c in SENSITIVE_CLASSES if c in found]
    other = sorted(found - set(known))
    order = (known + other)[:MAX_CLASSES]
    return {c: i for i, c in enumerate(order)}


def event_classes(ctx: Context, ev: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Per event, the bit mask of the record's sensitive classes (0: ordinary), and the bits.
    Shared by the rights detectors of one scan through ctx.memo for ctx.events."""
    def compute():
        bits = class_bits(ctx)
        mask = np.zeros(len(ev), dtype=np.int64)
        if not bits:
            return mask, bits
        pt = ctx.patients
        if pt is not None and "sensitive_class" in pt.columns and "patient_id" in ev.columns:
            idx, m = _class_masks(pt["sensitive_class"], pt["patient_id"], bits)
            pos = positions_in(ev["patient_id"], idx)
            mask |= np.where(pos >= 0, np.append(m, 0)[pos], 0)
        cr = ctx.care_relations
        if cr is not None and "sensitive_class" in cr.columns and "encounter_id" in ev.columns:
            idx, m = _class_masks(cr["sensitive_class"], cr["encounter_id"], bits)
            pos = positions_in(ev["encounter_id"], idx)
            mask |= np.where(pos >= 0, np.append(m, 0)[pos], 0)
        return mask, bits
    if ev is ctx.events:
        return ctx.cached("rights.event_classes", compute)
    return compute()


def _ok_events(ev: pd.DataFrame) -> np.ndarray:
    keep = np.array(ev["user_id"].notna(), dtype=bool)
    if "outcome" in ev.columns:
        keep &= ~is_value(ev["outcome"], "failure")
    return keep


def codes_of(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 missing) and the distinct values; a coded column as it is."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy().astype(np.int64), np.asarray(s.cat.categories,
                                                                    dtype=object)
    codes, uniq = pd.factorize(s)
    return codes.astype(np.int64), np.asarray(uniq, dtype=object)


PERMISSION_ORDER = tuple(dict.fromkeys(ACTION_PERMISSION.values()))


def usage_from_events(ctx: Context) -> pd.DataFrame:
    """USAGE_COLUMNS from the loaded events: integer keys (account x permission) reduced
    once for any activity, once for ordinary use and once per class present."""
    ev = ctx.events
    if not len(ev):
        return empty_usage(ctx.tz)
    keep = _ok_events(ev)
    mask, bits = event_classes(ctx, ev)
    ucode, users = codes_of(ev["user_id"])
    acode, actions = codes_of(ev["action"])
    perm_of_action = np.array([PERMISSION_ORDER.index(ACTION_PERMISSION[a])
                               if a in ACTION_PERMISSION else -1 for a in actions] + [-1],
                              dtype=np.int64)
    pcode = perm_of_action[np.where(acode < 0, len(actions), acode)]
    t = _us(ev["ts"])
    keep &= ucode >= 0
    n_p = len(PERMISSION_ORDER)
    parts = []

    def reduce(sel: np.ndarray, perm: np.ndarray, cls: str) -> None:
        if not sel.any():
            return
        key = ucode[sel] * (n_p + 1) + perm[sel]
        g = pd.Series(t[sel]).groupby(key, sort=True)
        agg = g.agg(["min", "max"])
        k = agg.index.to_numpy()
        parts.append(pd.DataFrame({
            "user_id": users[k // (n_p + 1)],
            "permission": np.array(list(PERMISSION_ORDER) + [ANY], dtype=object)[
                k % (n_p + 1)],
            "record_class": cls, "first_used": agg["min"].to_numpy(),
            "last_used": agg["max"].to_numpy()}))

    reduce(keep, np.full(len(ev), n_p, dtype=np.int64), ANY)
    used = keep & (pcode >= 0)
    reduce(used, pcode, "")
    for cls, bit in bits.items():
        reduce(used & ((mask >> bit) & 1 == 1), pcode, cls)
    if not parts:
        return empty_usage(ctx.tz)
    out = pd.concat(parts, ignore_index=True)
    for c in ("first_used", "last_used"):
        out[c] = pd.to_datetime(out[c], unit="us", utc=True)
    return _typed(out, ctx.tz)


def _typed(df: pd.DataFrame, tz: str) -> pd.DataFrame:
    out = df[USAGE_COLUMNS].copy()
    for c in ("user_id", "permission", "record_class"):
        out[c] = out[c].astype("string")
    for c in ("first_used", "last_used"):
        t = pd.to_datetime(out[c], utc=True, format="ISO8601") \
            if not isinstance(out[c].dtype, pd.DatetimeTZDtype) else out[c]
        out[c] = t.dt.tz_convert(tz)
    return out.reset_index(drop=True)


def empty_usage(tz: str) -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype="string"),
                         "permission": pd.Series(dtype="string"),
                         "record_class": pd.Series(dtype="string"),
                         "first_used": pd.Series(dtype=f"datetime64[ns, {tz}]"),
                         "last_used": pd.Series(dtype=f"datetime64[ns, {tz}]")})


def merge_usage(a: pd.DataFrame, b: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Two usage tables as one: earliest first use, latest last use per key."""
    both = pd.concat([x for x in (_typed(a, tz) if len(a) else None,
                                  _typed(b, tz) if len(b) else None) if x is not None],
                     ignore_index=True) if len(a) or len(b) else empty_usage(tz)
    if not len(both):
        return both
    g = both.groupby(["user_id", "permission", "record_class"], sort=True, observed=True)
    return _typed(g.agg(first_used=("first_used", "min"),
                        last_used=("last_used", "max")).reset_index(), tz)


def usage(ctx: Context) -> pd.DataFrame:
    """The stored usage merged with this scan's events (once per scan). The rows that
    changed are left in ctx.outputs["rights_usage"] for the pipeline to save."""
    def compute():
        stored = ctx.baseline.get("rights_usage")
        if stored is None:
            stored = ctx.population.get(STORED_USAGE)
        stored = stored if stored is not None and len(stored) else empty_usage(ctx.tz)
        observed = ctx.population.get(OBSERVED_USAGE)
        if observed is None:
            observed = usage_from_events(ctx)
        merged = merge_usage(stored, observed, ctx.tz)
        keys = ["user_id", "permission", "record_class"]
        cmp = merged.merge(_typed(stored, ctx.tz), on=keys, how="left", suffixes=("", "_old"))
        changed = (cmp["first_used_old"].isna() | (cmp["first_used"] != cmp["first_used_old"])
                   | (cmp["last_used"] != cmp["last_used_old"])).to_numpy(dtype=bool)
        if changed.any():
            ctx.outputs["rights_usage"] = merged[changed].reset_index(drop=True)
        return merged
    return ctx.cached("rights.usage", compute)


def observed_since(u: pd.DataFrame) -> pd.Timestamp | None:
    """The earliest activity the tool has seen: usage older than this is unknown."""
    anyrow = u[(u["permission"] == ANY) & (u["record_class"] == ANY)]
    return None if not len(anyrow) else anyrow["first_used"].min()
