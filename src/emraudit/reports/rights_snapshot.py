"""What the last rights report showed, kept in the store, and what changed since.

Each `emraudit report rights` keeps a snapshot (table rights_snapshots): the rights held
then, the grants rows held and the role definitions, as compact JSON. The next report
compares its own state with the newest earlier snapshot: grants made and ended, accounts
gaining or losing a sensitive class, role definitions added or removed. No patient data.
"""

from __future__ import annotations

import json
import secrets
import zlib
from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from emraudit.store import Store, rights_snapshots

HOLDING_KEY = ["user_id", "permission", "record_class", "scope", "via", "role", "grant_id"]
GRANT_KEY = ["grant_id", "user_id", "role", "permission", "record_class"]
ROLE_KEY = ["role", "permissions", "record_class", "scope", "approved_by"]


def _rows(df: pd.DataFrame | None, cols: list[str]) -> list[list[str]]:
    if df is None or not len(df):
        return []
    part = pd.DataFrame({c: (df[c].astype("string").fillna("") if c in df.columns else "")
                         for c in cols}, index=df.index)
    return sorted(part.astype(str).values.tolist())


def state(held: pd.DataFrame, grants_held: pd.DataFrame | None,
          roles: pd.DataFrame | None, as_of: pd.Timestamp) -> dict:
    """The comparable state of one report."""
    return {"as_of": as_of.isoformat(), "holdings": _rows(held, HOLDING_KEY),
            "grants": _rows(grants_held, GRANT_KEY), "roles": _rows(roles, ROLE_KEY)}


def save(store: Store, st: dict, unmasked: bool = False) -> str:
    sid = datetime.now(timezone.utc).strftime("R%Y%m%dT%H%M%S") + secrets.token_hex(2)
    blob = zlib.compress(json.dumps(st, ensure_ascii=False, separators=(",", ":"))
                         .encode("utf-8"), 6)
    with store.begin() as c:
        c.execute(rights_snapshots.insert().values(
            snapshot_id=sid, taken_at=datetime.now(timezone.utc), as_of=st["as_of"],
            unmasked=unmasked, content=blob))
    return sid


def last(store: Store) -> tuple[dict, datetime] | None:
    """The newest stored snapshot and when it was taken, or None."""
    with store.engine.connect() as c:
        row = c.execute(sa.select(rights_snapshots.c.content, rights_snapshots.c.taken_at)
                        .order_by(rights_snapshots.c.taken_at.desc(),
                                  rights_snapshots.c.snapshot_id.desc()).limit(1)).first()
    if row is None:
        return None
    return json.loads(zlib.decompress(bytes(row[0])).decode("utf-8")), row[1]


def changes(old: dict, new: dict) -> dict:
    """Grants made and ended, sensitive-class holders gained and lost, role definitions
    added and removed, between two states (lists of dicts, sorted)."""
    def keyed(rows, cols):
        return {tuple(r): dict(zip(cols, r)) for r in rows}
    out = {}
    og, ng = keyed(old["grants"], GRANT_KEY), keyed(new["grants"], GRANT_KEY)
    out["grants_added"] = [ng[k] for k in sorted(set(ng) - set(og))]
    out["grants_ended"] = [og[k] for k in sorted(set(og) - set(ng))]

    def classes(rows):
        return {(r[0], r[2]) for r in rows if r[2]}
    oc, nc = classes(old["holdings"]), classes(new["holdings"])
    out["class_gained"] = [{"user_id": u, "record_class": c} for u, c in sorted(nc - oc)]
    out["class_lost"] = [{"user_id": u, "record_class": c} for u, c in sorted(oc - nc)]
    orl, nrl = keyed(old["roles"], ROLE_KEY), keyed(new["roles"], ROLE_KEY)
    out["roles_added"] = [nrl[k] for k in sorted(set(nrl) - set(orl))]
    out["roles_removed"] = [orl[k] for k in sorted(set(orl) - set(nrl))]
    return out
