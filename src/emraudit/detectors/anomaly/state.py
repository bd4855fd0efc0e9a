"""Stored state of the anomaly detectors: daily features and fitted models.

`anomaly.user_day` declares both tables in `state_tables`; the scan reads them through
`emraudit.state` before running detectors (they become `ctx.baseline[...]`) and saves
`ctx.outputs[...]` inside the transaction that commits the scan. Detectors never touch the
database themselves.

- `ctx.baseline["user_day_features"]` (`load_features`): DataFrame, one row per (user_id, day)
  with user_id, day ("YYYY-MM-DD"), role, department and one float column per
  `features.FEATURES` entry (NaN where a feature was unknown), for the days in
  [start_day, end_day].
- `ctx.baseline["models"]` (`load_models`): {detector_id: model row}, the newest row of table
  `models` per detector: model_id, detector, trained_at, window_start, window_end, features
  (list), params (dict), blob (bytes).
- `ctx.outputs["user_day_features"]` (`save_features`): DataFrame of the same shape (extra
  columns ignored), upserted by (user_id, day).
- `ctx.outputs["models"]` (`save_models`): list of model rows as above, upserted by model_id.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import sqlalchemy as sa

from emraudit.detectors.anomaly.features import FEATURE_NAMES
from emraudit.store import Store, models, upsert, user_day_features


def _clean(v: Any) -> Any:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return int(f) if f.is_integer() else f


def _parse_feature_json(texts: list) -> dict[str, np.ndarray]:
    """The stored feature objects as float columns (NaN where absent or null).

    Parsed as one newline-delimited JSON buffer by pyarrow: a 30-day baseline of a large
    hospital holds hundreds of thousands of rows, and json.loads per row costs seconds.
    """
    if not texts:
        return {f: np.empty(0, dtype=float) for f in FEATURE_NAMES}
    joined = "\n".join(texts) if None not in texts and "" not in texts else None
    if joined is None or joined.count("\n") != len(texts) - 1:
        # a missing object, or one spread over lines (json.dumps never writes one): per row
        joined = "\n".join((t or "{}").replace("\n", " ") for t in texts)
    buf = joined.encode("utf-8")
    schema = pa.schema([(f, pa.float64()) for f in FEATURE_NAMES])
    table = pa_json.read_json(io.BytesIO(buf), parse_options=pa_json.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore"))
    return {f: table.column(f).to_numpy(zero_copy_only=False).astype(float)
            for f in FEATURE_NAMES}


def load_features(store: Store, start_day: str, end_day: str, *,
                  baseline_days: int = 30) -> pd.DataFrame:
    """Stored user-day features for start_day..end_day (inclusive). Days are the site's
    calendar days as "YYYY-MM-DD". The start is widened to `baseline_days` + 1 days before
    end_day, so a nightly scan whose look-back is shorter than the anomaly baseline still
    gets the whole baseline from the store."""
    wide = (pd.Timestamp(end_day) - pd.Timedelta(days=baseline_days + 1)).strftime("%Y-%m-%d")
    start_day = min(start_day, wide)
    t = user_day_features
    # not ORDER BY: the database would sort ~400k rows of text before the first one arrives;
    # they are sorted below instead, in binary order on every backend
    stmt = (sa.select(t.c.user_id, t.c.day, t.c.role, t.c.department, t.c.features)
            .where(t.c.day >= start_day, t.c.day <= end_day))
    with store.engine.connect() as c:
        rows = c.execute(stmt).fetchall()
    users, days, roles, depts, texts = (list(col) for col in zip(*rows)) if rows else \
        ([], [], [], [], [])
    base = pd.DataFrame({
        "user_id": pd.Series(users, dtype="string"),
        "day": pd.Series(days, dtype="string"),
        "role": pd.Series(roles, dtype="string").fillna("other").replace("", "other"),
        "department": pd.Series(depts, dtype="string").fillna(""),
    })
    feats = _parse_feature_json(texts)
    for f in FEATURE_NAMES:
        base[f] = feats[f]
    order = pc.sort_indices(pa.table({"day": base["day"].array, "user_id": base["user_id"].array}),
                            sort_keys=[("day", "ascending"), ("user_id", "ascending")])
    return base.take(order.to_numpy()).reset_index(drop=True)


def load_models(store: Store) -> dict[str, dict]:
    """The newest stored model row per detector, by detector id."""
    with store.engine.connect() as c:
        mrows = c.execute(sa.select(models).order_by(models.c.detector,
                                                     models.c.trained_at.desc(),
                                                     models.c.model_id)).fetchall()
    out_models: dict[str, dict] = {}
    for r in mrows:
        m = r._mapping
        if m["detector"] in out_models:
            continue
        out_models[m["detector"]] = {
            "model_id": m["model_id"], "detector": m["detector"],
            "trained_at": m["trained_at"], "window_start": m["window_start"],
            "window_end": m["window_end"],
            "features": json.loads(m["features"]) if m["features"] else [],
            "params": json.loads(m["params"]) if m["params"] else {},
            "blob": bytes(m["blob"]) if m["blob"] is not None else b"",
        }
    return out_models


def load_baseline(store: Store, start_day: str, end_day: str, *,
                  baseline_days: int = 30) -> dict:
    """Both tables, as the scan puts them in ctx.baseline."""
    return {"user_day_features": load_features(store, start_day, end_day,
                                               baseline_days=baseline_days),
            "models": load_models(store)}


def save_features(conn: sa.Connection, feats: pd.DataFrame | None, scan_id: str) -> int:
    """Upsert the user-day features a detector left in ctx.outputs; returns rows written."""
    if feats is None or not len(feats):
        return 0
    cols = [f for f in FEATURE_NAMES if f in feats.columns]
    vals = feats[cols].to_numpy(float)
    rows = []
    for i, (uid, day, role, dept) in enumerate(zip(
            feats["user_id"].astype(str), feats["day"].astype(str),
            feats["role"].astype("string").fillna("other"),
            feats["department"].astype("string").fillna(""))):
        rows.append({"user_id": uid, "day": day, "role": str(role),
                     "department": str(dept),
                     "features": json.dumps({c: _clean(v) for c, v in zip(cols, vals[i])},
                                            sort_keys=True, separators=(",", ":")),
                     "scan_id": scan_id})
    upsert(conn, user_day_features, rows, ["user_id", "day"])
    return len(rows)


def save_models(conn: sa.Connection, rows: list[dict] | None, scan_id: str) -> int:
    """Upsert the fitted model rows a detector left in ctx.outputs; returns rows written."""
    mrows = []
    for m in rows or []:
        trained = m.get("trained_at") or datetime.now().astimezone()
        mrows.append({"model_id": m["model_id"], "detector": m["detector"],
                      "trained_at": trained, "window_start": m.get("window_start"),
                      "window_end": m.get("window_end"),
                      "features": json.dumps(list(m.get("features") or [])),
                      "params": json.dumps(m.get("params") or {}, sort_keys=True, default=str),
                      "blob": m.get("blob")})
    if mrows:
        upsert(conn, models, mrows, ["model_id"])
    return len(mrows)


def save_outputs(conn: sa.Connection, outputs: dict, scan_id: str) -> dict[str, int]:
    """Persist both tables from what detectors left in ctx.outputs; rows written per table."""
    return {"user_day_features": save_features(conn, outputs.get("user_day_features"), scan_id),
            "models": save_models(conn, outputs.get("models"), scan_id)}
