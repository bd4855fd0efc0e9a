"""Charting rows to canonical tables: a packed timeline, accesses from charting bursts, users
with home units, unit-level care relations. Vectorized (sorts and group-bys).

Decisions (README.md says why):
- *timeline*: the demos shift each patient's dates by a private offset (years 2100-2210), so
  one caregiver's patients lie decades apart, and hold 100 of the hospital's ~50,000
  patients, so a caregiver's silences are sampling gaps. Each admission (charting, care-unit
  stays, services) is moved by a whole number of weeks so that admissions are spread evenly
  over `days` days from `start`: weekday, time of day and every interval within an admission
  stay real; which admissions overlap in time (and a readmission's place relative to the
  first stay) is a modelling choice. A death moves with the patient's last admission.
- *access*: one caregiver's rows on one patient whose entry times (STORETIME) follow each
  other within `gap_minutes` are one sitting at the chart: one `update` event at the first
  entry time (charting writes the record; action_raw names the table).
- *users*: role from CAREGIVERS (MIMIC-III) or from what the id does (MIMIC-IV); home ward
  and department = the care unit and the service where the user's patients lay at most of
  their accesses (majority charting, never one relation per patient).
- *care relations*: unit level only (user_id empty): a patient's care-unit stays (TRANSFERS,
  ward) and service periods (SERVICES, department). No relation is derived from an access.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MODULE_OF_SOURCE = {"chartevents": "flowsheet", "datetimeevents": "flowsheet",
                    "inputevents_cv": "intake/output", "inputevents_mv": "intake/output",
                    "inputevents": "intake/output", "ingredientevents": "intake/output",
                    "outputevents": "intake/output", "procedureevents_mv": "procedures",
                    "procedureevents": "procedures", "poe": "orders", "emar": "medication"}
WEEK = pd.Timedelta(days=7)


def pack_timeline(data: dict[str, pd.DataFrame], start: str, days: int) -> dict:
    """Every admission's times moved by whole weeks so admissions spread over `days`."""
    mv = data["movements"]
    key = ["patient_id", "hadm_id"]
    first = mv.groupby(key)["start"].min()
    seen = data["charting"].groupby(key)["stored"].min()
    anchor = first.reindex(first.index.union(seen.index)).fillna(seen).sort_values(
        kind="stable")
    n = len(anchor)
    target = pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * days / max(n, 1), unit="D")
    weeks = np.round((target - anchor.to_numpy()) / WEEK).astype(np.int64)
    shift = pd.Series(pd.to_timedelta(weeks * 7, unit="D"), index=anchor.index)

    def moved(df: pd.DataFrame) -> np.ndarray:
        return shift.reindex(pd.MultiIndex.from_frame(df[key])).to_numpy()
    out = dict(data)
    ch = data["charting"]
    out["charting"] = ch.assign(stored=ch["stored"] + moved(ch))
    s = moved(mv)
    out["movements"] = mv.assign(start=mv["start"] + s, end=mv["end"] + s)
    last = shift.groupby(level="patient_id").last()     # death follows the last admission
    pt = data["patients"]
    out["patients"] = pt.assign(deceased_date=pt["deceased_date"] +
                                last.reindex(pt["patient_id"]).fillna(pd.Timedelta(0)).to_numpy())
    out["admissions"] = n
    return out


def bursts(ch: pd.DataFrame, gap_minutes: int, dataset: str) -> pd.DataFrame:
    """One `update` access per (user, patient) sitting: entries within `gap_minutes`."""
    ch = ch.sort_values(["user_id", "patient_id", "stored"], kind="stable").reset_index(drop=True)
    same = (ch["user_id"].eq(ch["user_id"].shift()) & ch["patient_id"].eq(ch["patient_id"].shift()))
    gap = ch["stored"].diff() > pd.Timedelta(minutes=gap_minutes)
    burst = (~same | gap).cumsum()
    g = ch.groupby(burst, sort=False)
    acc = g.agg(user_id=("user_id", "first"), patient_id=("patient_id", "first"),
                ts=("stored", "min"), source=("source", "first"), rows=("stored", "size"))
    acc = acc.sort_values(["ts", "user_id", "patient_id"], kind="stable").reset_index(drop=True)
    return pd.DataFrame({
        "event_id": dataset + ":" + acc["user_id"] + ":" + acc["patient_id"] + ":" +
                    acc["ts"].dt.strftime("%Y%m%dT%H%M%S"),
        "ts": acc["ts"], "user_id": acc["user_id"], "patient_id": acc["patient_id"],
        "action": "update", "action_raw": acc["source"],
        "module": acc["source"].map(MODULE_OF_SOURCE).fillna("chart"), "rows": acc["rows"]})


def unit_at(acc: pd.DataFrame, mv: pd.DataFrame, column: str) -> pd.Series:
    """The ward or department where each access's patient lay at its time (latest period
    started by then and not yet ended), else missing."""
    per = mv.dropna(subset=[column, "start"]).sort_values("start")
    a = acc[["ts", "patient_id"]].reset_index().sort_values("ts")
    m = pd.merge_asof(a, per[["patient_id", "start", "end", column]], left_on="ts",
                      right_on="start", by="patient_id", direction="backward")
    live = m["end"].isna() | (m["ts"] <= m["end"])
    return m.set_index("index")[column].where(live.to_numpy()).reindex(acc.index)


def home_units(acc: pd.DataFrame, mv: pd.DataFrame) -> pd.DataFrame:
    """Each user's majority care unit (ward) and service (department) over their accesses."""
    out = pd.DataFrame(index=pd.Index(acc["user_id"].unique(), name="user_id"))
    for col in ("ward", "department"):
        where = unit_at(acc, mv, col)
        counts = pd.DataFrame({"u": acc["user_id"], "x": where}).dropna().value_counts()
        top = counts.reset_index().sort_values(["u", "count", "x"], ascending=[True, False, True])
        out[col] = top.drop_duplicates("u").set_index("u")["x"]
    return out.reset_index()


def care_relations(mv: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": mv["patient_id"], "user_id": None,
                         "department": mv["department"], "ward": mv["ward"],
                         "kind": mv["kind"], "start": mv["start"], "end": mv["end"]})


def canonical(data: dict, *, dataset: str, start: str, days: int, gap_minutes: int) -> dict:
    """The canonical tables of one demo (before planting)."""
    packed = pack_timeline(data, start, days)
    acc = bursts(packed["charting"], gap_minutes, dataset)
    home = home_units(acc, packed["movements"])
    users = data["users"].merge(home, on="user_id", how="left")
    return {"access_log": acc.drop(columns="rows"), "users": users,
            "patients": packed["patients"], "care_relations": care_relations(
                packed["movements"]), "charting_rows": len(data["charting"]),
            "admissions": packed["admissions"]}
