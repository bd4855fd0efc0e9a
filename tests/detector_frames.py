"""Hand-made frames and a Context for detector tests (shared by every detector test module).

Rows are plain dicts with canonical column names and naive local times ("2025-07-01 10:00");
`make_ctx` runs them through `emraudit.model.validate`, so tests see exactly the dtypes the
scan pipeline produces. Missing tables stay None (the detector's `needs` is then testable).

    ctx = make_ctx(events=[ev("u1", "p1", "2025-07-01 10:00")],
                   users=[{"user_id": "u1", "role": "nurse", "ward": "W1"}],
                   window=("2025-07-01", "2025-07-02"))
"""

from __future__ import annotations

from itertools import count

import pandas as pd

from emraudit.model import code_event_columns

from emraudit.detectors.base import Context
from emraudit.model import empty_table, validate

TZ = "Asia/Shanghai"
_seq = count(1)


def ev(user_id: str, patient_id: str | None, ts: str, action: str = "view", **extra) -> dict:
    """One access_log row; event_id is generated unless given."""
    row = {"event_id": extra.pop("event_id", f"e{next(_seq):06d}"), "ts": ts,
           "user_id": user_id, "patient_id": patient_id, "action": action}
    row.update(extra)
    return row


def frame(table: str, rows: list[dict] | pd.DataFrame | None, tz: str = TZ) -> pd.DataFrame:
    """Rows validated into the canonical frame of `table` (all rows must be valid)."""
    if rows is None or len(rows) == 0:
        return empty_table(table, tz)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    v = validate(table, df, tz, "test")
    if len(v.quarantine):
        raise ValueError(f"test rows rejected for {table}: {v.quarantine['reason'].tolist()}")
    return v.accepted.drop(columns=["_source_ref"], errors="ignore")


def make_ctx(events: list[dict] | pd.DataFrame | None = None, *, window: tuple[str, str],
             users=None, patients=None, care_relations=None, patient_contacts=None,
             shifts=None, workstations=None, grants=None, roles=None, params: dict[str, dict] | None = None,
             tz: str = TZ, office_hours: tuple[int, int] = (8, 18),
             workdays: tuple[int, ...] = (0, 1, 2, 3, 4)) -> Context:
    """A Context as the scan builds it: events sorted by ts with `in_window` set.

    `window` is (start, end) in site-local time; events outside it are look-back history.
    Reference tables given as lists of dicts (or frames) are validated; None stays None.
    `params` maps detector id -> parameter overrides (merged over declared defaults), or a
    section name ("explain", "schedule") -> its parameters.
    """
    ws = pd.Timestamp(window[0]).tz_localize(tz)
    we = pd.Timestamp(window[1]).tz_localize(tz)
    evs = frame("access_log", events, tz)
    evs = evs.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    evs["in_window"] = ((evs["ts"] >= ws) & (evs["ts"] < we)).to_numpy(dtype=bool)
    code_event_columns(evs)   # as the scan loads them
    refs = {}
    for name, rows in (("users", users), ("patients", patients),
                       ("care_relations", care_relations),
                       ("patient_contacts", patient_contacts), ("shifts", shifts),
                       ("workstations", workstations), ("grants", grants), ("roles", roles)):
        refs[name] = None if rows is None else frame(name, rows, tz)
    detector_params, sections = {}, {}
    if params:
        from emraudit.detectors.base import SECTIONS
        from emraudit.detectors.registry import all_detectors
        known = all_detectors()
        for det_id, over in params.items():
            if det_id in SECTIONS:
                sections[det_id] = dict(over)
                continue
            base = {p.name: p.default for p in known[det_id].params} if det_id in known else {}
            base.update(over)
            detector_params[det_id] = base
    return Context(events=evs, window_start=ws, window_end=we, tz=tz,
                   office_hours=office_hours, workdays=workdays,
                   detector_params=detector_params, sections=sections, **refs)


def run(detector_id: str, ctx: Context, **overrides) -> pd.DataFrame:
    """Instantiate a registered detector with overrides (or ctx params) and run it."""
    from emraudit.detectors.registry import all_detectors
    cls = all_detectors()[detector_id]
    over = dict(ctx.detector_params.get(detector_id, {}))
    over.update(overrides)
    if overrides:
        merged = {p.name: p.default for p in cls.params}
        merged.update(over)
        ctx.detector_params[detector_id] = merged
    return cls(**over).run(ctx)
