"""Stored rights usage: read before the detectors run, written when the scan commits.

`load_usage(store)` gives the frame the scan puts in `ctx.baseline["rights_usage"]`;
`save_usage(conn, frame, scan_id)` upserts `ctx.outputs["rights_usage"]` inside the scan's
committing transaction (emraudit.rights_usage explains the table). Times are stored as
ISO-8601 UTC text, which sorts as time does on every backend.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from emraudit.rights_usage import USAGE_COLUMNS, empty_usage, merge_usage
from emraudit.store import Store, rights_usage, upsert


def load_usage(store: Store, tz: str) -> pd.DataFrame:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(*[rights_usage.c[k] for k in USAGE_COLUMNS])).fetchall()
    if not rows:
        return empty_usage(tz)
    df = pd.DataFrame(rows, columns=USAGE_COLUMNS)
    return merge_usage(df, empty_usage(tz), tz)


def save_usage(conn: sa.Connection, usage: pd.DataFrame | None, scan_id: str) -> int:
    """Upsert the merged usage (already the min/max of stored and new); returns rows."""
    if usage is None or not len(usage):
        return 0
    u = usage
    rows = [{"user_id": a, "permission": b, "record_class": c,
             "first_used": f.tz_convert("UTC").isoformat(),
             "last_used": last.tz_convert("UTC").isoformat(), "scan_id": scan_id}
            for a, b, c, f, last in zip(u["user_id"].astype(str), u["permission"].astype(str),
                                        u["record_class"].astype(str), u["first_used"],
                                        u["last_used"])]
    upsert(conn, rights_usage, rows, ["user_id", "permission", "record_class"])
    return len(rows)
